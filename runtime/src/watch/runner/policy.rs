//! A consumer's policies and what a run reports: what to do with an event that does not decode
//! ([`OnBadEvent`], with the dead-letter record it writes), after an invalidate event
//! ([`OnInvalidate`]), and why and how a run ended ([`StopReason`], [`RunSummary`]).

use mongodb::Collection;
use mongodb::bson::{self, Bson, DateTime, Document, RawDocumentBuf, doc};

use super::Consumer;
use crate::error::{DocId, Error, Result};
use crate::model::Model;
use crate::watch::{ResumeToken, ResumeTokenStore};

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

impl<M: Model, S: ResumeTokenStore> Consumer<M, S> {
    /// Applies the bad-event policy: the error back for `Stop`, a dead-letter record for `Skip`.
    pub(super) async fn bad_event(
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
}
