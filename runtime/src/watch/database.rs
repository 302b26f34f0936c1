//! Database streams: [`Db::watch`] and its builder [`WatchDb`], the [`DbChangeStream`] it
//! opens, and its events, [`DbChange`], which become typed changes of a model on demand.

use std::future::IntoFuture;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use mongodb::bson::{Bson, Document, RawDocument, Timestamp};

use super::event::Event;
use super::spec::{Spec, common_setters};
use super::stream::{EventStream, Target};
use super::{
    Change, FullDocumentBeforeChangeType, FullDocumentType, Namespace, Operation, ResumeToken,
    TransactionId,
};
use crate::db::Db;
use crate::error::Result;
use crate::model::Model;

/// A subscription to the changes of every collection of a database. Created by [`Db::watch`].
#[must_use = "a subscription does nothing until it is awaited"]
pub struct WatchDb<'a> {
    db: &'a Db,
    spec: Spec,
}

impl Db {
    /// Subscribes to the changes of every collection of this database; each event says its
    /// collection and turns into a typed [`Change`] with [`DbChange::typed`].
    pub fn watch(&self) -> WatchDb<'_> {
        WatchDb {
            db: self,
            spec: Spec::default(),
        }
    }
}

impl<'a> WatchDb<'a> {
    common_setters!();

    /// Only events of these collections (database-level events — drop database, invalidate —
    /// always pass).
    pub fn collections<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.spec.collections = Some(names.into_iter().map(Into::into).collect());
        self
    }

    async fn run(self) -> Result<DbChangeStream> {
        let target = Target::Database(self.db.database().clone());
        let events = EventStream::open(&target, &self.spec, "*", None)
            .await
            .map_err(|e| e.into_error("*"))?;
        Ok(DbChangeStream { events })
    }
}

impl<'a> IntoFuture for WatchDb<'a> {
    type Output = Result<DbChangeStream>;
    type IntoFuture = BoxFuture<'a, Result<DbChangeStream>>;

    fn into_future(self) -> Self::IntoFuture {
        // A database-wide stream has no collection: the span leaves the name empty.
        crate::repo::trace::traced(
            self.db.name(),
            "",
            "watch",
            crate::repo::trace::nothing,
            self.run(),
        )
    }
}

/// An open database-wide change stream: a `Stream` of `Result<DbChange>`.
pub struct DbChangeStream {
    events: EventStream,
}

impl DbChangeStream {
    /// The token to resume after everything returned so far.
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.events.resume_token()
    }

    /// Whether more events can come (false after an invalidate event).
    pub fn is_alive(&self) -> bool {
        self.events.is_alive()
    }
}

impl std::fmt::Debug for DbChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbChangeStream")
            .field("alive", &self.events.is_alive())
            .finish()
    }
}

impl Stream for DbChangeStream {
    type Item = Result<DbChange>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.events
            .poll_event(cx)
            .map(|item| item.map(|event| event.map(DbChange::new)))
    }
}

/// One event of a database-wide stream, not yet tied to a model.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DbChange {
    /// The kind of event.
    pub operation: Operation,
    /// Resuming after this token continues with the next event.
    pub token: ResumeToken,
    /// When the change was committed, in the cluster's logical clock.
    pub cluster_time: Option<Timestamp>,
    /// The transaction the write was part of, if any.
    pub transaction: Option<TransactionId>,
    /// The namespace the event is about.
    pub namespace: Option<Namespace>,
    event: Event,
}

impl DbChange {
    fn new(event: Event) -> DbChange {
        DbChange {
            operation: event.operation(),
            token: event.header.token.clone(),
            cluster_time: event.header.cluster_time,
            transaction: event.transaction(),
            namespace: event.header.ns.clone(),
            event,
        }
    }

    /// The collection the event is about; `None` for database-level events.
    pub fn collection(&self) -> Option<&str> {
        self.namespace.as_ref()?.collection.as_deref()
    }

    /// The event as a typed change of model `M`, when it is about `M`'s collection; `None` for
    /// other collections and database-level events. Decoding errors name the document and field.
    pub fn typed<M: Model>(&self) -> Option<Result<Change<M>>> {
        if self.collection() != Some(M::COLLECTION) {
            return None;
        }
        Some(self.event.clone().into_change::<M>(M::COLLECTION))
    }

    /// The `_id` of the changed document, as BSON (document events only).
    pub fn document_id(&self) -> Option<Bson> {
        self.event.document_id()
    }

    /// The raw event as the server sent it.
    pub fn raw_event(&self) -> &RawDocument {
        &self.event.raw
    }
}
