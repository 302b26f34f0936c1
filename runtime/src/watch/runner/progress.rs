//! A run's progress and how it is saved: the counters, the last token finished with and what of
//! it is not saved yet ([`Progress`]), saving and loading the token through the store while
//! riding out its outages, and the one pause schedule that the store and the reopening of
//! streams share.

use std::future::Future;
use std::time::{Duration, Instant};

use super::Consumer;
use super::run::Shutdown;
use super::{RunSummary, StopReason};
use crate::error::{Error, Result, is_outage};
use crate::model::Model;
use crate::watch::stream::stream_error;
use crate::watch::{ResumeToken, ResumeTokenStore};

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Where a run is: counters, the last token it finished with, what of that is not saved yet,
/// and how long it has been failing.
pub(super) struct Progress {
    pub(super) handled: u64,
    pub(super) skipped: u64,
    pub(super) reopened: u64,
    pub(super) saves: u64,
    /// The token of the last event finished with: where a new stream of this run starts.
    pub(super) token: Option<ResumeToken>,
    /// Events finished with since the last save (their token is `token`).
    pub(super) unsaved: u32,
    /// When the oldest of them was finished with.
    pub(super) unsaved_since: Option<Instant>,
    failing_since: Option<Instant>,
    failures: u32,
    /// The shutdown future has completed: it must not be polled again, and nothing waits any
    /// more.
    pub(super) stopping: bool,
}

impl Progress {
    /// A run that has done nothing yet.
    pub(super) fn new() -> Progress {
        Progress {
            handled: 0,
            skipped: 0,
            reopened: 0,
            saves: 0,
            token: None,
            unsaved: 0,
            unsaved_since: None,
            failing_since: None,
            failures: 0,
            stopping: false,
        }
    }

    pub(super) fn summary(&self, stopped: StopReason) -> RunSummary {
        RunSummary {
            handled: self.handled,
            skipped: self.skipped,
            reopened: self.reopened,
            saves: self.saves,
            stopped,
        }
    }

    pub(super) fn succeeded(&mut self) {
        self.failing_since = None;
        self.failures = 0;
    }
}

impl<M: Model, S: ResumeTokenStore> Consumer<M, S> {
    /// Saves the token of the last event finished with, if it is not saved yet.
    pub(super) async fn flush(
        &self,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<()> {
        if progress.unsaved == 0 {
            return Ok(());
        }
        let Some(token) = progress.token.clone() else {
            return Ok(());
        };
        self.save(&token, progress, shutdown).await
    }

    /// Saves `token`, riding out the store's outages; returns only when it is saved or the
    /// store has failed for good, so that no token is ever skipped.
    pub(super) async fn save(
        &self,
        token: &ResumeToken,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<()> {
        self.with_store("save", progress, shutdown, || {
            self.store.save(&self.subscription, token)
        })
        .await?;
        progress.saves += 1;
        progress.unsaved = 0;
        progress.unsaved_since = None;
        Ok(())
    }

    /// Loads the stored position, riding out the store's outages.
    pub(super) async fn load(
        &self,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Option<ResumeToken>> {
        self.with_store("load", progress, shutdown, || {
            self.store.load(&self.subscription)
        })
        .await
    }

    /// Runs one store operation until it succeeds, pausing between attempts that fail with an
    /// outage; other errors, an outage longer than `retry_for`, and a failed attempt after
    /// shutdown are returned, named after the store.
    pub(super) async fn with_store<T, F, Fut>(
        &self,
        action: &'static str,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
        mut operation: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        loop {
            let error = match operation().await {
                Ok(value) => {
                    progress.succeeded();
                    return Ok(value);
                }
                Err(error) => Error::TokenStore {
                    store: self.store.describe(),
                    subscription: self.subscription.clone(),
                    action,
                    source: Box::new(error),
                },
            };
            if !is_outage(&error) || progress.stopping {
                return Err(error);
            }
            let store = self.store.describe();
            // After a shutdown during this pause, one more attempt is made, and its error
            // returned: nothing waits any more.
            self.pause(progress, shutdown, |patience| Error::Timeout {
                context: format!(
                    "subscription `{}` could not {action} its resume token in the store `{store}` \
                     for {patience:?}",
                    self.subscription
                ),
                last: Some(Box::new(error)),
            })
            .await?;
        }
    }

    /// Waits before reopening the stream after `error`.
    pub(super) async fn pause_stream(
        &self,
        progress: &mut Progress,
        error: mongodb::error::Error,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<()> {
        self.pause(progress, shutdown, |patience| Error::Timeout {
            context: format!(
                "subscription `{}` could not resume its change stream on `{}` for {patience:?}",
                self.subscription,
                M::COLLECTION,
            ),
            last: Some(Box::new(stream_error(M::COLLECTION, error))),
        })
        .await
    }

    /// Waits before trying again after a resumable failure, or sets `progress.stopping` when
    /// shutdown fires meanwhile; the error of `give_up` when the consumer has failed for longer
    /// than `retry_for`. Streams and the store share the one schedule: any success resets it.
    pub(super) async fn pause(
        &self,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
        give_up: impl FnOnce(Duration) -> Error,
    ) -> Result<()> {
        let since = *progress.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.retry_for {
            return Err(give_up(self.retry_for));
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << progress.failures.min(10))
            .min(LONGEST_PAUSE);
        progress.failures = progress.failures.saturating_add(1);
        self.wait(progress, shutdown, tokio::time::sleep(pause))
            .await;
        Ok(())
    }
}
