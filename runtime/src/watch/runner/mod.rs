//! The resumable consumer: at-least-once delivery of a subscription's events to a handler.
//!
//! This file holds the [`Consumer`] and its settings; `run.rs` its run loop, `progress.rs` how
//! it saves its position and rides out outages, `policy.rs` its policies and reports, and
//! `handler.rs` what it calls for each event.

mod handler;
mod policy;
mod progress;
mod run;

use std::time::Duration;

pub use handler::{BoxError, Handler};
pub use policy::{OnBadEvent, OnInvalidate, RunSummary, StopReason};

use crate::error::Result;
use crate::model::Model;
use crate::repo::Repo;
use crate::watch::spec::Spec;
use crate::watch::{ResumeToken, ResumeTokenStore};

/// A subscription that survives restarts: it calls a handler for each event, in order, and
/// records the event's resume token in a [`ResumeTokenStore`] only after the handler
/// succeeded. Created by [`Watch::consumer`](super::Watch::consumer).
///
/// Delivery is at least once: an event whose handler finished but whose token was not yet
/// recorded when the process stopped is delivered again, so handlers should be idempotent
/// (an upsert, a version check, a processed-ids set).
///
/// - **Start.** A run starts after the stored token. With no stored token it starts where the
///   subscription says (now, or its `start_at_operation_time` / `start_after`), and records that
///   starting point at once, so that a crash before the first event loses nothing.
/// - **Quiet streams.** When the server answers with an empty batch, the stream's
///   post-batch token is recorded, so a subscription that filters out most events still keeps a
///   recent position in the oplog.
/// - **Resumable errors** (lost connections, elections, a killed cursor) are ridden out: the
///   driver resumes once, then the consumer reopens from its last recorded token with a growing
///   pause (50 ms doubling up to 5 s), for as long as [`Consumer::retry_for`] (60 s by default)
///   without progress; after that the run returns [`Error::Timeout`] with the last error.
/// - **History lost.** When the stored token is no longer in the oplog the run returns
///   [`Error::ChangeHistoryLost`]: events were lost, and only a full re-read can recover.
/// - **Outages of the token store** are ridden out the same way: a save (or the load at the
///   start) that fails with a resumable error (a lost connection, no primary, a step-down,
///   `RetryableWriteError`, ...) is tried again with the same pauses, within the same
///   `retry_for` without progress. The consumer does not go on before the token is saved, so
///   none is skipped; if the store stays down, the run returns [`Error::Timeout`] whose last
///   error is an [`Error::TokenStore`] naming the store, and the next run delivers the events
///   whose tokens were not saved. Other store errors end the run at once with
///   [`Error::TokenStore`].
/// - **Bad events** follow [`OnBadEvent`]; a failing handler stops the run with
///   [`Error::Handler`], its event not recorded.
/// - **Batched saves** ([`Consumer::save_tokens_every`]) trade redelivery for fewer writes:
///   after a crash, up to that many events are delivered again.
/// - **Invalidate** follows [`OnInvalidate`].
/// - **Shutdown.** When the shutdown future completes, the run returns
///   [`StopReason::Shutdown`] at the next point where it waits for the server (or pauses); a
///   handler call that has started is finished and the last token is saved first. When that
///   save fails, the run returns its error instead (and the next run delivers those events
///   again).
/// - **Memory** is one batch of events (see [`Watch::batch_size`](super::Watch::batch_size)):
///   events are handled one at a time and the next batch is fetched only when the last one is
///   done, so a slow handler slows the stream instead of filling a queue.
///
/// [`Error::Timeout`]: crate::Error::Timeout
/// [`Error::ChangeHistoryLost`]: crate::Error::ChangeHistoryLost
/// [`Error::TokenStore`]: crate::Error::TokenStore
/// [`Error::Handler`]: crate::Error::Handler
pub struct Consumer<M: Model, S> {
    repo: Repo<M>,
    spec: Spec,
    subscription: String,
    store: S,
    on_bad_event: OnBadEvent,
    on_invalidate: OnInvalidate,
    retry_for: Duration,
    save_every: SaveEvery,
}

/// When a [`Consumer`] saves its token: after `events` events, or once the oldest unsaved one
/// is `delay` old, whichever comes first.
#[derive(Debug, Clone, Copy)]
struct SaveEvery {
    events: u32,
    delay: Duration,
}

impl<M: Model, S: Clone> Clone for Consumer<M, S> {
    fn clone(&self) -> Self {
        Consumer {
            repo: self.repo.clone(),
            spec: self.spec.clone(),
            subscription: self.subscription.clone(),
            store: self.store.clone(),
            on_bad_event: self.on_bad_event.clone(),
            on_invalidate: self.on_invalidate,
            retry_for: self.retry_for,
            save_every: self.save_every,
        }
    }
}

impl<M: Model, S> std::fmt::Debug for Consumer<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("collection", &M::COLLECTION)
            .field("subscription", &self.subscription)
            .field("on_bad_event", &self.on_bad_event)
            .field("on_invalidate", &self.on_invalidate)
            .field("retry_for", &self.retry_for)
            .field("save_every", &self.save_every)
            .finish()
    }
}

impl<M: Model, S: ResumeTokenStore> Consumer<M, S> {
    pub(crate) fn new(repo: Repo<M>, spec: Spec, subscription: String, store: S) -> Self {
        Consumer {
            repo,
            spec,
            subscription,
            store,
            on_bad_event: OnBadEvent::default(),
            on_invalidate: OnInvalidate::default(),
            retry_for: Duration::from_secs(60),
            save_every: SaveEvery {
                events: 1,
                delay: Duration::ZERO,
            },
        }
    }

    /// What to do with an event that does not decode (default [`OnBadEvent::Stop`]).
    pub fn on_bad_event(mut self, policy: OnBadEvent) -> Self {
        self.on_bad_event = policy;
        self
    }

    /// What to do after an invalidate event (default [`OnInvalidate::Continue`]).
    pub fn on_invalidate(mut self, policy: OnInvalidate) -> Self {
        self.on_invalidate = policy;
        self
    }

    /// How long to keep reopening the stream, or saving the token, after resumable errors
    /// without making progress (default 60 s).
    pub fn retry_for(mut self, patience: Duration) -> Self {
        self.retry_for = patience;
        self
    }

    /// Saves the token after every `events` events, or once the oldest unsaved event was
    /// finished with `max_delay` ago, whichever comes first, instead of after each event: for
    /// handlers so fast that the token write would dominate. (The delay is checked as events
    /// come; when the stream goes quiet, the token is saved at the next empty batch, within
    /// about a second.) A graceful stop, an invalidate event and a run that ends with an
    /// error save what is unsaved first.
    ///
    /// Delivery stays at least once, with more redelivery: after a crash, up to `events - 1`
    /// events that were handled but whose token was not saved yet (those of the last
    /// `max_delay`, at most) are delivered again. `events` of 0 or 1 means every event, the
    /// default.
    pub fn save_tokens_every(mut self, events: u32, max_delay: Duration) -> Self {
        self.save_every = SaveEvery {
            events: events.max(1),
            delay: max_delay,
        };
        self
    }

    /// The subscription's name, its key in the store.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The token store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The recorded position: the token the next run starts after.
    pub async fn position(&self) -> Result<Option<ResumeToken>> {
        self.store.load(&self.subscription).await
    }
}
