//! `apply_if_current`: update-if-current, for listeners that replay another service's changes
//! exactly once and in order.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc};

use super::{awaitable, session_setter};
use crate::error::{Error, Result};
use crate::hooks::model_name;
use crate::model::Model;
use crate::query::{EncodeProblem, Update};
use crate::repo::{Repo, lifecycle, occ};
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

awaitable!(ApplyIfCurrent => Applied, "apply_if_current");
session_setter!(ApplyIfCurrent);
