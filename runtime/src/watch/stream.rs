//! The reopening stream: the driver's stream of raw events under every subscription, and what
//! decides how it goes on after it breaks.
//!
//! A stream is opened from a [`Spec`] and a start point; reopening after an invalidate event or
//! an error passes the last token as `startAfter`. Which errors allow that is decided here:
//! resumable ones ([`is_resumable`]: the network, an election, a lost cursor) are reopened
//! from the last token, a lost resume point ([`stream_error`] makes it
//! [`Error::ChangeHistoryLost`]) ends the subscription. The loop that reopens, pauses and gives
//! up is the consumer's ([`Consumer`](super::Consumer)); a plain
//! [`ChangeStream`](super::ChangeStream) leaves resuming to the driver.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use mongodb::bson::RawDocumentBuf;
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database};

use super::ResumeToken;
use super::event::Event;
use super::spec::Spec;
use crate::error::{Error, Result};

/// The server's code for a resume point that is no longer in the oplog.
const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
/// The server's code for a change stream that cannot go on, among others because its resume
/// token is not in the oplog.
const CHANGE_STREAM_FATAL: i32 = 280;

/// What a stream watches.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Collection(Collection<RawDocumentBuf>),
    Database(Database),
}

/// The driver's change stream of raw events, with the name used in errors.
pub(crate) struct EventStream {
    inner: mongodb::change_stream::ChangeStream<RawDocumentBuf>,
    label: String,
}

impl EventStream {
    pub(crate) async fn open(
        target: &Target,
        spec: &Spec,
        label: &str,
        start_after: Option<ResumeToken>,
    ) -> std::result::Result<EventStream, OpenError> {
        let stages = spec.stages(label).map_err(OpenError::Invalid)?;
        let mut options = spec.options.clone();
        if let Some(token) = start_after {
            // `startAfter` rather than `resumeAfter`: it also starts after an invalidate event.
            options.resume_after = None;
            options.start_at_operation_time = None;
            options.start_after = Some(token);
        }
        let opened = match target {
            Target::Collection(coll) => coll
                .watch()
                .pipeline(stages)
                .with_options(options)
                .await
                .map(|s| s.with_type::<RawDocumentBuf>()),
            Target::Database(db) => db
                .watch()
                .pipeline(stages)
                .with_options(options)
                .await
                .map(|s| s.with_type::<RawDocumentBuf>()),
        };
        match opened {
            Ok(stream) => Ok(EventStream {
                inner: stream,
                label: label.to_owned(),
            }),
            Err(e) => Err(OpenError::Driver(e)),
        }
    }

    /// At most one round trip: the next event, or `None` when the batch came back empty.
    pub(crate) async fn next_if_any(&mut self) -> mongodb::error::Result<Option<RawDocumentBuf>> {
        self.inner.next_if_any().await
    }

    pub(crate) fn resume_token(&self) -> Option<ResumeToken> {
        self.inner.resume_token()
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(stream_error(&self.label, e)))),
            Poll::Ready(Some(Ok(raw))) => Poll::Ready(Some(Event::parse(&self.label, raw))),
        }
    }
}

/// Why a stream could not be opened.
pub(crate) enum OpenError {
    /// The subscription itself is wrong (a filter value that does not encode).
    Invalid(Error),
    /// The server or the network refused.
    Driver(mongodb::error::Error),
}

impl OpenError {
    pub(super) fn into_error(self, label: &str) -> Error {
        match self {
            OpenError::Invalid(e) => e,
            OpenError::Driver(e) => stream_error(label, e),
        }
    }
}

/// Names the errors a change stream can meet; a lost resume point gets its own variant.
pub(crate) fn stream_error(label: &str, error: mongodb::error::Error) -> Error {
    if is_history_lost(&error) {
        let reason = match error.kind.as_ref() {
            ErrorKind::Command(e) => e.message.clone(),
            _ => error.to_string(),
        };
        return Error::ChangeHistoryLost {
            collection: label.to_owned(),
            reason,
        };
    }
    Error::from_driver(label, error)
}

fn is_history_lost(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => {
            e.code == CHANGE_STREAM_HISTORY_LOST
                || (e.code == CHANGE_STREAM_FATAL
                    && e.message.contains("resume token was not found"))
                // Servers before 4.4 said it in words under another code.
                || e.message.contains("no longer be in the oplog")
        }
        _ => false,
    }
}

/// Whether the change-streams specification calls an error resumable: network and server
/// selection errors, a lost cursor, and errors labelled `ResumableChangeStreamError`.
pub(crate) fn is_resumable(error: &mongodb::error::Error) -> bool {
    const CURSOR_NOT_FOUND: i32 = 43;
    if error.contains_label("ResumableChangeStreamError") {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(e) => e.code == CURSOR_NOT_FOUND,
        _ => false,
    }
}
