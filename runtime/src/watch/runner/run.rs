//! A consumer's run loop: it opens the subscription's stream from the recorded token, hands each
//! event to the handler, and reopens the stream after a resumable error or an invalidate event,
//! until the shutdown signal fires or an error ends the run.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use mongodb::bson::RawDocumentBuf;

use super::progress::Progress;
use super::{Consumer, Handler, OnInvalidate, RunSummary, StopReason};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::watch::ResumeTokenStore;
use crate::watch::change::Operation;
use crate::watch::collection::collection_target;
use crate::watch::event::Event;
use crate::watch::stream::{EventStream, OpenError, is_resumable, stream_error};

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

/// The shutdown signal of a run, pinned once and polled wherever the run waits.
pub(super) type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

impl<M: Model, S: ResumeTokenStore> Consumer<M, S> {
    /// Runs until `shutdown` completes (use `std::future::pending()` to run until an error),
    /// calling `handler` for each event in order. See [`Consumer`] for the guarantees.
    pub async fn run(
        &self,
        mut handler: impl Handler<M>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary> {
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown: Shutdown<'_> = shutdown;
        let mut progress = Progress::new();
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

    /// Waits for `future` unless shutdown fires first (or has fired).
    pub(super) async fn wait<T>(
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
}

/// Waits for `future` unless `shutdown` fires first.
pub(crate) async fn unless<T>(
    shutdown: &mut Pin<&mut (dyn Future<Output = ()> + Send)>,
    future: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = shutdown.as_mut() => None,
        value = future => Some(value),
    }
}
