//! `distinct`: the different values of one field, decoded as the field's Rust type.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{self, Document};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::query::EncodeProblem;
use crate::repo::Repo;
use crate::session::{SessionSlot, run_in};

/// The distinct values of one field among the matching documents. Created by
/// [`Repo::distinct`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Distinct<'a, M: Model, T> {
    repo: &'a Repo<M>,
    path: String,
    filter: Result<Document, EncodeProblem>,
    session: SessionSlot<'a>,
    marker: PhantomData<fn() -> T>,
}

impl<'a, M: Model, T: DeserializeOwned + Send + 'a> Distinct<'a, M, T> {
    /// The distinct values at `path`, decoded as `T` (the field's type, or its element type
    /// for an array field).
    pub(crate) fn new(repo: &'a Repo<M>, path: &str) -> Self {
        Distinct {
            session: repo.session_slot(),
            repo,
            path: path.to_owned(),
            filter: Ok(Document::new()),
            marker: PhantomData,
        }
    }

    /// Only the values of documents matching `filter` (by default, every document).
    pub fn filter(mut self, filter: impl crate::query::IntoFilter<M>) -> Self {
        self.filter = filter.into().into_parts();
        self
    }

    /// Runs the operation in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.session = SessionSlot::Borrowed(session);
        self
    }

    async fn run(mut self) -> Result<Vec<T>> {
        let filter = self.repo.checked_part(self.filter, "the filter")?;
        let mut guard = self.session.lock().await?;
        let values = run_in!(guard, self.repo.docs.distinct(&self.path, filter))
            .map_err(|e| self.repo.driver_error(e))?;
        // The server returns the values untyped; each must still be a `T` (a document written
        // by other code may hold another type there), reported like any decode failure.
        values
            .into_iter()
            .map(|value| {
                bson::from_bson::<T>(value).map_err(|e| Error::Decode {
                    collection: M::COLLECTION.to_owned(),
                    id: None,
                    field: self.path.clone(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

impl<'a, M: Model, T: DeserializeOwned + Send + 'a> IntoFuture for Distinct<'a, M, T> {
    type Output = Result<Vec<T>>;
    type IntoFuture = BoxFuture<'a, Result<Vec<T>>>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "distinct",
            super::trace::rows,
            self.run(),
        )
    }
}
