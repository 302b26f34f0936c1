//! `modify`: load, change, save, retried on version conflicts.

use std::future::IntoFuture;
use std::time::Instant;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::repo::Repo;
use crate::retry::{RetryPolicy, pause};

impl<M: Model> Repo<M> {
    /// Loads document `id`, runs `change` on it and saves it; when another writer saved first
    /// ([`Error::VersionConflict`]) it loads the document again and reruns `change`, under a
    /// [`RetryPolicy`] (by default: backoff with jitter, 120 s deadline). Returns the saved
    /// document. [`Error::NotFound`] when there is no such document.
    pub fn modify<F>(&self, id: impl Into<M::Id>, change: F) -> Modify<'_, M, F>
    where
        F: FnMut(&mut M) + Send,
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

impl<'a, M: Model, F: FnMut(&mut M) + Send + 'a> Modify<'a, M, F> {
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
            let error = match self.attempt().await {
                Ok(doc) => return Ok(doc),
                Err(error) => error,
            };
            if !self.policy.retries(&error) {
                return Err(error);
            }
            pause(&self.policy, attempt, started, error, "modify").await?;
            attempt += 1;
        }
    }

    async fn attempt(&mut self) -> Result<M> {
        let repo = self.repo;
        let find = repo.find_by_id(self.id.clone());
        let loaded = match self.session.as_deref_mut() {
            Some(session) => find.session(session).await?,
            None => find.await?,
        };
        let mut doc = loaded.ok_or_else(|| Error::NotFound {
            collection: M::COLLECTION.to_owned(),
            id: mongodb::bson::to_bson(&self.id).ok().map(Into::into),
        })?;
        (self.change)(&mut doc);
        let save = repo.save(&mut doc);
        match self.session.as_deref_mut() {
            Some(session) => save.session(session).await?,
            None => save.await?,
        }
        Ok(doc)
    }
}

impl<'a, M: Model, F: FnMut(&mut M) + Send + 'a> IntoFuture for Modify<'a, M, F> {
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
