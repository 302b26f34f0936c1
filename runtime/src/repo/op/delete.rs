//! `delete` (one loaded model, version-checked) and `delete_many` (by filter).

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};

use super::{awaitable, session_setter};
use crate::error::Result;
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::EncodeProblem;
use crate::repo::occ;
use crate::repo::{Repo, lifecycle};
use crate::session::{SessionSlot, run_in};

/// Deletes a loaded model. Created by [`Repo::delete`].
///
/// For a versioned model the document goes only if it is still at the model's version;
/// otherwise [`Error::VersionConflict`](crate::Error::VersionConflict), or
/// [`Error::NotFound`](crate::Error::NotFound) when it is already gone.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Delete<'a, M: Model> {
    repo: &'a Repo<M>,
    doc: &'a M,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Delete<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, doc: &'a M) -> Self {
        Delete {
            session: repo.session_slot(),
            repo,
            doc,
        }
    }

    async fn run(mut self) -> Result<()> {
        let repo = self.repo;
        let id = repo.id_bson(self.doc, "delete")?;
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeDelete,
            "delete",
        )
        .await?;
        {
            let mut guard = self.session.lock().await?;
            let mut filter = doc! { "_id": id.clone() };
            let mut expected = None;
            if let (Some(field), Some(claimed)) = (M::VERSION_FIELD, self.doc.version()) {
                let version =
                    occ::expected_version(repo, &mut guard, &id, claimed, self.doc).await?;
                filter = occ::with_version(filter, field, version);
                expected = Some(version);
            }
            let result = run_in!(guard, repo.docs.delete_one(filter));
            let result = result.map_err(|e| repo.driver_error(e))?;
            if result.deleted_count == 0 {
                return Err(occ::missing_or_conflict(repo, &mut guard, id, expected).await);
            }
        }
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::AfterDelete,
            "delete",
        )
        .await?;
        Ok(())
    }
}

awaitable!(Delete => (), "delete");
session_setter!(Delete);

/// Deletes every match. Created by [`Repo::delete_many`]. Runs no hooks.
#[must_use = "an operation does nothing until it is awaited"]
pub struct DeleteMany<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> DeleteMany<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        DeleteMany {
            session: repo.session_slot(),
            repo,
            filter,
        }
    }

    async fn run(mut self) -> Result<u64> {
        let repo = self.repo;
        let filter = repo.checked_part(self.filter, "the filter")?;
        let mut guard = self.session.lock().await?;
        let result = run_in!(guard, repo.docs.delete_many(filter));
        result
            .map(|r| r.deleted_count)
            .map_err(|e| repo.driver_error(e))
    }
}

awaitable!(DeleteMany => u64, "delete_many", super::trace::deleted);
session_setter!(DeleteMany);
