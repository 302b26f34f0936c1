//! Operations built on the version key: update-if-current for event listeners, and
//! load-change-save with retry on version conflicts.

use std::future::IntoFuture;
use std::time::Instant;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc};

use super::occ;
use super::read::{awaitable, session_setter};
use super::{Repo, lifecycle};
use crate::error::{Error, Result};
use crate::hooks::model_name;
use crate::model::Model;
use crate::query::{EncodeProblem, Update};
use crate::retry::{RetryPolicy, pause};
use crate::session::{SessionSlot, run_in};

/// What [`Repo::apply_if_current`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The stored version was the event's minus one: the update is applied and the stored
    /// version is now the event's.
    Applied,
    /// The event is early: an earlier one has not been applied yet (or the document does not
    /// exist yet). Nothing changed; process the event again later.
    OutOfOrder {
        /// The stored version, or `None` when there is no such document.
        stored: Option<i64>,
    },
    /// The event was applied before (the stored version is the event's or later). Nothing
    /// changed; acknowledge the event.
    Stale {
        /// The stored version.
        stored: i64,
    },
}

impl<M: Model> Repo<M> {
    /// Applies `update` to document `id` only when its stored version is `event_version - 1`, and
    /// sets the version to `event_version`: the way a listener replays another service's
    /// changes exactly once and in order. Needs a versioned model.
    pub fn apply_if_current(
        &self,
        id: impl Into<M::Id>,
        event_version: i64,
        update: Update<M>,
    ) -> ApplyIfCurrent<'_, M>
    where
        M: crate::model::Versioned,
    {
        let id = self.id_filter(&id.into());
        ApplyIfCurrent {
            session: self.session_slot(),
            repo: self,
            id,
            event_version,
            update: update.into_parts(),
        }
    }

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

/// Update-if-current. Created by [`Repo::apply_if_current`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct ApplyIfCurrent<'a, M: Model> {
    repo: &'a Repo<M>,
    id: Result<Document, EncodeProblem>,
    event_version: i64,
    update: Result<Document, EncodeProblem>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> ApplyIfCurrent<'a, M> {
    async fn run(mut self) -> Result<Applied> {
        let repo = self.repo;
        let Some(field) = M::VERSION_FIELD else {
            return Err(Error::NotVersioned {
                model: model_name::<M>(),
                operation: "apply_if_current",
            });
        };
        let mut filter = repo.checked_part(self.id, "the _id")?;
        let mut update = repo.checked_part(self.update, "the update")?;
        lifecycle::before_update(
            repo,
            &mut self.session,
            &mut filter,
            &mut update,
            "apply_if_current",
        )
        .await?;
        let id_filter = filter.clone();
        let filter = occ::with_version(filter, field, self.event_version - 1);
        // The event's version is set, not incremented: replaying the same event can never
        // move the version twice.
        let mut set = match update.remove("$set") {
            Some(Bson::Document(set)) => set,
            _ => Document::new(),
        };
        set.insert(field, self.event_version);
        if let Some(ts) = M::TIMESTAMPS {
            set.entry(ts.updated.to_owned())
                .or_insert(Bson::DateTime(DateTime::now()));
        }
        update.insert("$set", set);
        if let Some(Bson::Document(inc)) = update.get_mut("$inc") {
            inc.remove(field);
        }
        let mut guard = self.session.lock().await?;
        let result = run_in!(guard, repo.docs.update_one(filter, update));
        let result = result.map_err(|e| repo.driver_error(e))?;
        if result.matched_count == 1 {
            drop(guard);
            lifecycle::after_update(repo, &mut self.session, "apply_if_current").await?;
            return Ok(Applied::Applied);
        }
        let mut options = mongodb::options::FindOneOptions::default();
        options.projection = Some(doc! { field: 1 });
        let stored = run_in!(guard, repo.docs.find_one(id_filter).with_options(options));
        let stored = stored.map_err(|e| repo.driver_error(e))?;
        let stored = match stored {
            Some(doc) => Some(occ::stored_version::<M>(&doc, field)?),
            None => None,
        };
        Ok(match stored {
            None => Applied::OutOfOrder { stored: None },
            Some(stored) if stored >= self.event_version => Applied::Stale { stored },
            Some(stored) => Applied::OutOfOrder {
                stored: Some(stored),
            },
        })
    }
}

awaitable!(ApplyIfCurrent => Applied);
session_setter!(ApplyIfCurrent);

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
        Box::pin(self.run())
    }
}
