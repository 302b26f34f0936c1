//! `modify`: load, change (an async closure), save, retried on version conflicts.

use std::future::{Future, IntoFuture};
use std::time::Instant;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::repo::Repo;
use crate::repo::occ::Missed;
use crate::retry::{RetryPolicy, pause, pause_or_explain};
use crate::session::SessionSlot;

impl<M: Model> Repo<M> {
    /// Loads document `id`, hands it to `change` (an async closure that takes the document and
    /// gives it back changed) and saves it; when another writer saved first
    /// ([`Error::VersionConflict`]) it loads the document again and reruns `change`, under a
    /// [`RetryPolicy`] (by default: backoff with jitter, 120 s deadline). Returns the saved
    /// document. [`Error::NotFound`] when there is no such document.
    ///
    /// `change` may await (look up a price, ask another collection) and may return an error to
    /// stop without writing (with [`Error::custom`] for the application's own reasons): the
    /// error comes back unchanged and is not retried (unless the policy's
    /// [`RetryPolicy::retry_if`] says so). When the document `change` returns encodes exactly
    /// like the loaded one, nothing is written and the loaded document comes back, version
    /// unchanged.
    ///
    /// ```no_run
    /// # use mongrove::{Db, Error, Model};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Model)]
    /// # #[model(version = "version")]
    /// # struct Product { #[serde(rename = "_id")] id: String, stock: u32, version: i64 }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let product = db
    ///     .repo::<Product>()
    ///     .modify("sku-1".to_owned(), async |mut p: Product| {
    ///         if p.stock < 2 {
    ///             return Err(Error::custom("insufficient stock"));
    ///         }
    ///         p.stock -= 2;
    ///         Ok(p)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn modify<F, Fut>(&self, id: impl Into<M::Id>, change: F) -> Modify<'_, M, F>
    where
        F: FnMut(M) -> Fut + Send,
        Fut: Future<Output = Result<M>> + Send,
    {
        Modify {
            repo: self,
            id: id.into(),
            change,
            policy: RetryPolicy::default().retry_version_conflicts(true),
            session: None,
        }
    }
}

/// Load, change, save, retried on version conflicts. Created by [`Repo::modify`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Modify<'a, M: Model, F> {
    repo: &'a Repo<M>,
    id: M::Id,
    change: F,
    policy: RetryPolicy,
    session: Option<&'a mut ClientSession>,
}

impl<'a, M: Model, F, Fut> Modify<'a, M, F>
where
    F: FnMut(M) -> Fut + Send + 'a,
    Fut: Future<Output = Result<M>> + Send,
{
    /// The retry policy. Version conflicts are always retried by `modify`, whatever the policy's
    /// `retry_version_conflicts` says; attempts, backoff and deadline come from `policy`.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy.retry_version_conflicts(true);
        self
    }

    /// Runs every load and save in `session`.
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.session = Some(session);
        self
    }

    async fn run(mut self) -> Result<M> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.attempt().await {
                Ok(Attempt::Saved(doc)) => return Ok(doc),
                // Another writer saved first. The next attempt loads the document again, which
                // tells whether it is still there; only when no attempt follows is the miss
                // explained (the version found, or the document gone) by reading it.
                Ok(Attempt::Lost(missed)) => {
                    let policy = self.policy.clone();
                    let explain = self.explain(missed);
                    let shown = "another writer saved the document first";
                    pause_or_explain(
                        &policy,
                        attempt,
                        started,
                        "modify",
                        "VersionConflict",
                        shown,
                        explain,
                    )
                    .await?;
                }
                Err(error) => {
                    if !self.policy.retries(&error) {
                        return Err(error);
                    }
                    pause(&self.policy, attempt, started, error, "modify").await?;
                }
            }
            attempt += 1;
        }
    }

    /// Why a save matched nothing: [`Error::VersionConflict`] with the version stored now, or
    /// [`Error::NotFound`].
    async fn explain(&mut self, missed: Missed) -> Error {
        let mut slot = match self.session.as_deref_mut() {
            Some(session) => SessionSlot::Borrowed(session),
            None => self.repo.session_slot(),
        };
        missed.explain(self.repo, &mut slot).await
    }

    async fn attempt(&mut self) -> Result<Attempt<M>> {
        let repo = self.repo;
        let find = repo.find_by_id(self.id.clone());
        let loaded = match self.session.as_deref_mut() {
            Some(session) => find.session(session).await?,
            None => find.await?,
        };
        let loaded = loaded.ok_or_else(|| Error::NotFound {
            collection: M::COLLECTION.to_owned(),
            id: crate::value::to_bson(&self.id).ok().map(Into::into),
        })?;
        let before = encode(&loaded)?;
        let mut doc = (self.change)(loaded).await?;
        if encode(&doc)? == before {
            return Ok(Attempt::Saved(doc));
        }
        let save = repo.save(&mut doc);
        let missed = match self.session.as_deref_mut() {
            Some(session) => save.session(session).or_missed().await?,
            None => save.or_missed().await?,
        };
        Ok(match missed {
            None => Attempt::Saved(doc),
            Some(missed) => Attempt::Lost(missed),
        })
    }
}

/// How one load-change-save went.
enum Attempt<M> {
    Saved(M),
    /// The save matched nothing: another writer saved first, or the document is gone.
    Lost(Missed),
}

/// The document's bytes as it would be stored, to tell whether `change` changed anything
/// (compared byte for byte: "encodes exactly like").
fn encode<M: Model>(doc: &M) -> Result<mongodb::bson::RawDocumentBuf> {
    crate::decode::encode_raw(M::COLLECTION, "the document", doc)
}

impl<'a, M: Model, F, Fut> IntoFuture for Modify<'a, M, F>
where
    F: FnMut(M) -> Fut + Send + 'a,
    Fut: Future<Output = Result<M>> + Send + 'a,
{
    type Output = Result<M>;
    type IntoFuture = BoxFuture<'a, Result<M>>;

    fn into_future(self) -> Self::IntoFuture {
        super::trace::traced(
            self.repo.db().name(),
            M::COLLECTION,
            "modify",
            super::trace::nothing,
            self.run(),
        )
    }
}
