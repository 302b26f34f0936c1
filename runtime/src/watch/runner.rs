//! The resumable consumer: at-least-once delivery of a subscription's events to a handler.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::TryFutureExt;
use futures_util::future::BoxFuture;
use mongodb::Collection;
use mongodb::bson::{self, Bson, DateTime, Document, RawDocumentBuf, doc};

use super::change::{Event, Operation};
use super::{
    Change, EventStream, OpenError, Replica, ResumeToken, ResumeTokenStore, Spec,
    collection_target, is_resumable, stream_error, unless,
};
use crate::error::{DocId, Error, Result, is_outage};
use crate::model::Model;
use crate::repo::Repo;

/// An error a handler returns: anything that converts into a boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`Consumer`] calls for each event.
///
/// Implemented for closures `FnMut(Change<M>) -> impl Future<Output = Result<(), E>>` whose
/// future owns what it uses (clone shared state into it: `move |change| { let db = db.clone();
/// async move { ... } }`), with `E` any error that converts into [`BoxError`], and for [`Replica`] (also
/// `&mut Replica`, to look at it after the run), which applies each event to its copy.
pub trait Handler<M: Model>: Send {
    /// Handles one event. An error stops the run; the event is delivered again next time.
    //
    // A boxed future rather than `impl Future`: with an opaque type the compiler has to prove
    // the implementation's bounds for every lifetime when it checks that a run is `Send`, which
    // fails for `E = Box<dyn Error>` (rust-lang/rust#64552 and friends).
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>>;
}

impl<M, F, Fut, E> Handler<M> for F
where
    M: Model,
    F: FnMut(Change<M>) -> Fut + Send,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self(change).map_err(Into::into))
    }
}

impl<M: Model> Handler<M> for Replica<M> {
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.apply(change).await?;
            Ok(())
        })
    }
}

impl<M: Model> Handler<M> for &mut Replica<M> {
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.apply(change).await?;
            Ok(())
        })
    }
}

/// What a [`Consumer`] does with an event whose document does not decode into the model.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum OnBadEvent {
    /// Stop and return the [`Error::Decode`] (the default). The event's token is not recorded,
    /// so once the model is fixed the next run starts with that event.
    #[default]
    Stop,
    /// Write the event and its error to this collection (a dead-letter collection), record its
    /// token, and go on with the next event. The handler never sees it.
    SkipAndRecord(Collection<Document>),
}

/// What a [`Consumer`] does after the invalidate event that ends a stream (the watched
/// collection was dropped or renamed).
///
/// Either way the handler first receives the drop (or rename) event and the invalidate event
/// itself, and the invalidate event's token is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnInvalidate {
    /// Open a new stream that starts after the invalidate event (`startAfter`) and go on: the
    /// handler sees the events of a collection created again under the same name (the default).
    #[default]
    Continue,
    /// Return [`StopReason::Invalidated`]. A later run continues after the invalidate event.
    Stop,
}

/// Why [`Consumer::run`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The shutdown signal fired.
    Shutdown,
    /// The stream was invalidated and the policy is [`OnInvalidate::Stop`].
    Invalidated,
}

/// What a run of a [`Consumer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Events the handler finished with (and whose tokens were recorded).
    pub handled: u64,
    /// Bad events skipped under [`OnBadEvent::SkipAndRecord`].
    pub skipped: u64,
    /// Times the stream was opened again after a resumable error or an invalidate event.
    pub reopened: u64,
    /// Writes to the token store (fewer than events with
    /// [`Consumer::save_tokens_every`]).
    pub saves: u64,
    /// Why the run ended.
    pub stopped: StopReason,
}

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

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Where a run is: counters, the last token it finished with, what of that is not saved yet,
/// and how long it has been failing.
struct Progress {
    handled: u64,
    skipped: u64,
    reopened: u64,
    saves: u64,
    /// The token of the last event finished with: where a new stream of this run starts.
    token: Option<ResumeToken>,
    /// Events finished with since the last save (their token is `token`).
    unsaved: u32,
    /// When the oldest of them was finished with.
    unsaved_since: Option<Instant>,
    failing_since: Option<Instant>,
    failures: u32,
    /// The shutdown future has completed: it must not be polled again, and nothing waits any
    /// more.
    stopping: bool,
}

impl Progress {
    fn summary(&self, stopped: StopReason) -> RunSummary {
        RunSummary {
            handled: self.handled,
            skipped: self.skipped,
            reopened: self.reopened,
            saves: self.saves,
            stopped,
        }
    }

    fn succeeded(&mut self) {
        self.failing_since = None;
        self.failures = 0;
    }
}

/// Why the inner loop let go of a stream.
enum Reopen {
    /// After an invalidate event: start after its token.
    Invalidated,
    /// After a resumable error (or a cursor the server closed): pause first.
    Failed(mongodb::error::Error),
}

/// What comes after one stream.
enum Next {
    /// A new stream.
    Reopen(Reopen),
    /// The end of the run.
    Stop(StopReason),
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

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

    /// Runs until `shutdown` completes (use `std::future::pending()` to run until an error),
    /// calling `handler` for each event in order. See [`Consumer`] for the guarantees.
    pub async fn run(
        &self,
        mut handler: impl Handler<M>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary> {
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown: Shutdown<'_> = shutdown;
        let mut progress = Progress {
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
        };
        let ended = self
            .events(&mut handler, &mut progress, &mut shutdown)
            .await;
        // Whatever ended the run, the events finished with are saved (one attempt, with the
        // driver's own retry, since nothing waits any more): with batched saves, a graceful
        // stop loses no progress, and an error redelivers only the events after the last one
        // that succeeded.
        progress.stopping = true;
        let flushed = self.flush(&mut progress, &mut shutdown).await;
        let stopped = ended?;
        flushed?;
        Ok(progress.summary(stopped))
    }

    /// The loop of streams of one run: opens, consumes, reopens, until the run stops.
    async fn events<H: Handler<M>>(
        &self,
        handler: &mut H,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<StopReason> {
        let target = collection_target(&self.repo);
        progress.token = self.load(progress, shutdown).await?;
        loop {
            let opened = self
                .wait(
                    progress,
                    shutdown,
                    EventStream::open(&target, &self.spec, M::COLLECTION, progress.token.clone()),
                )
                .await;
            let mut stream = match opened {
                None => return Ok(StopReason::Shutdown),
                Some(Ok(stream)) => stream,
                Some(Err(OpenError::Driver(e))) if is_resumable(&e) => {
                    self.pause_stream(progress, e, shutdown).await?;
                    if progress.stopping {
                        return Ok(StopReason::Shutdown);
                    }
                    progress.reopened += 1;
                    continue;
                }
                Some(Err(e)) => return Err(e.into_error(M::COLLECTION)),
            };
            if progress.token.is_none()
                && let Some(start) = stream.resume_token()
            {
                // Recorded at once, batching or not: a crash before the first event must not
                // move the start to a later "now".
                self.save(&start, progress, shutdown).await?;
                progress.token = Some(start);
            }
            let reopen = match self
                .consume(&mut stream, handler, progress, shutdown)
                .await?
            {
                Next::Reopen(reopen) => reopen,
                Next::Stop(stopped) => return Ok(stopped),
            };
            drop(stream);
            if let Reopen::Failed(error) = reopen {
                self.pause_stream(progress, error, shutdown).await?;
                if progress.stopping {
                    return Ok(StopReason::Shutdown);
                }
            }
            progress.reopened += 1;
        }
    }

    /// Handles the events of one open stream, until it needs a new one or the run ends.
    async fn consume<H: Handler<M>>(
        &self,
        stream: &mut EventStream,
        handler: &mut H,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Next> {
        loop {
            if progress.stopping {
                return Ok(Next::Stop(StopReason::Shutdown));
            }
            let Some(next) = self.wait(progress, shutdown, stream.next_if_any()).await else {
                return Ok(Next::Stop(StopReason::Shutdown));
            };
            let raw = match next {
                Ok(Some(raw)) => raw,
                Ok(None) if stream.is_alive() => {
                    progress.succeeded();
                    // An empty batch: everything before the post-batch token has been handled.
                    match stream.resume_token() {
                        Some(latest) if progress.token.as_ref() != Some(&latest) => {
                            // It covers the unsaved events too.
                            self.save(&latest, progress, shutdown).await?;
                            progress.token = Some(latest);
                        }
                        _ => self.flush(progress, shutdown).await?,
                    }
                    continue;
                }
                Ok(None) => {
                    // The server closed the cursor without an invalidate event (a pipeline that
                    // filtered it out, a killed cursor): go on from the recorded token.
                    return Ok(Next::Reopen(Reopen::Failed(mongodb::error::Error::custom(
                        "the change stream's cursor was closed",
                    ))));
                }
                Err(e) if is_resumable(&e) => return Ok(Next::Reopen(Reopen::Failed(e))),
                Err(e) => return Err(stream_error(stream.label(), e)),
            };
            progress.succeeded();
            let operation = self.deliver(raw, handler, progress, shutdown).await?;
            if operation == Some(Operation::Invalidate) {
                // The next stream starts after it, or the next run does.
                self.flush(progress, shutdown).await?;
                return Ok(match self.on_invalidate {
                    OnInvalidate::Continue => Next::Reopen(Reopen::Invalidated),
                    OnInvalidate::Stop => Next::Stop(StopReason::Invalidated),
                });
            }
        }
    }

    /// Decodes one event, hands it to the handler (or skips it) and records its token. Returns
    /// the event's operation.
    async fn deliver<H: Handler<M>>(
        &self,
        raw: RawDocumentBuf,
        handler: &mut H,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Option<Operation>> {
        let event = match Event::parse(M::COLLECTION, raw.clone()) {
            Ok(event) => event,
            // Without its metadata the event has no token to record: it can be recorded as bad
            // but not stepped over, so a restart meets it again unless a later token moves on.
            Err(error) => {
                self.bad_event(None, &raw, error).await?;
                progress.skipped += 1;
                return Ok(None);
            }
        };
        let token = event.header.token.clone();
        let operation = event.operation();
        match event.into_change::<M>(M::COLLECTION) {
            Ok(change) => {
                if let Err(source) = handler.handle(change).await {
                    return Err(Error::Handler {
                        subscription: self.subscription.clone(),
                        source,
                    });
                }
                progress.handled += 1;
            }
            Err(error) => {
                self.bad_event(Some(&token), &raw, error).await?;
                progress.skipped += 1;
            }
        }
        progress.token = Some(token);
        progress.unsaved = progress.unsaved.saturating_add(1);
        let since = *progress.unsaved_since.get_or_insert_with(Instant::now);
        if progress.unsaved >= self.save_every.events || since.elapsed() >= self.save_every.delay {
            self.flush(progress, shutdown).await?;
        }
        Ok(Some(operation))
    }

    /// Saves the token of the last event finished with, if it is not saved yet.
    async fn flush(&self, progress: &mut Progress, shutdown: &mut Shutdown<'_>) -> Result<()> {
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
    async fn save(
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
    async fn load(
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
    async fn with_store<T, F, Fut>(
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

    /// Waits for `future` unless shutdown fires first (or has fired).
    async fn wait<T>(
        &self,
        progress: &mut Progress,
        shutdown: &mut Shutdown<'_>,
        future: impl Future<Output = T>,
    ) -> Option<T> {
        if progress.stopping {
            return None;
        }
        let value = unless(shutdown, future).await;
        progress.stopping = value.is_none();
        value
    }

    /// Applies the bad-event policy: the error back for `Stop`, a dead-letter record for `Skip`.
    async fn bad_event(
        &self,
        token: Option<&ResumeToken>,
        raw: &RawDocumentBuf,
        error: Error,
    ) -> Result<()> {
        let OnBadEvent::SkipAndRecord(dead_letters) = &self.on_bad_event else {
            return Err(error);
        };
        let (id, field) = match &error {
            Error::Decode { id, field, .. } => (
                id.clone().map_or(Bson::Null, DocId::into_bson),
                field.clone(),
            ),
            _ => (Bson::Null, String::new()),
        };
        let token = token
            .and_then(|t| bson::to_bson(t).ok())
            .unwrap_or(Bson::Null);
        let event = Document::try_from(raw.as_ref()).unwrap_or_default();
        let record = doc! {
            "subscription": &self.subscription,
            "collection": M::COLLECTION,
            "documentId": id,
            "field": field,
            "error": error.to_string(),
            "token": token,
            "event": event,
            "recordedAt": DateTime::now(),
        };
        dead_letters
            .insert_one(record)
            .await
            .map_err(|e| Error::from_driver(dead_letters.name(), e))?;
        Ok(())
    }

    /// Waits before reopening the stream after `error`.
    async fn pause_stream(
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
    async fn pause(
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
