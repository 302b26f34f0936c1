//! `count` and `exists`.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use mongodb::options::{CountOptions, FindOneOptions};

use super::{awaitable, session_setter};
use crate::error::Result;
use crate::model::Model;
use crate::query::EncodeProblem;
use crate::repo::Repo;
use crate::session::{SessionSlot, run_in};

/// The number of matching documents. Created by [`Repo::count`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Count<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    limit: Option<u64>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Count<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        Count {
            session: repo.session_slot(),
            repo,
            filter,
            limit: None,
        }
    }

    /// Stops counting at `limit`.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    async fn run(mut self) -> Result<u64> {
        let filter = self.repo.checked_part(self.filter, "the filter")?;
        let mut options = CountOptions::default();
        options.limit = self.limit;
        let mut guard = self.session.lock().await?;
        let count = run_in!(
            guard,
            self.repo.docs.count_documents(filter).with_options(options)
        );
        count.map_err(|e| self.repo.driver_error(e))
    }
}

awaitable!(Count => u64, "count");
session_setter!(Count);

/// Whether a document matches. Created by [`Repo::exists`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Exists<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Exists<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        Exists {
            session: repo.session_slot(),
            repo,
            filter,
        }
    }

    async fn run(mut self) -> Result<bool> {
        let filter = self.repo.checked_part(self.filter, "the filter")?;
        let mut options = FindOneOptions::default();
        options.projection = Some(doc! { "_id": 1 });
        let mut guard = self.session.lock().await?;
        let found = run_in!(guard, self.repo.docs.find_one(filter).with_options(options));
        found
            .map(|doc| doc.is_some())
            .map_err(|e| self.repo.driver_error(e))
    }
}

awaitable!(Exists => bool, "exists");
session_setter!(Exists);
