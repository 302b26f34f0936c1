//! Change streams: typed events of a collection (or a database) as they are committed.
//!
//! [`Repo::watch`] builds a subscription that opens when awaited and yields a
//! [`ChangeStream`], a `Stream` of `Result<Change<M>>`:
//!
//! ```no_run
//! # use mongrove::Model;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Serialize, Deserialize, Model)]
//! # struct Order { #[serde(rename = "_id")] id: mongrove::bson::oid::ObjectId, total: i64 }
//! # async fn demo(db: mongrove::Db) -> mongrove::Result<()> {
//! use futures_util::StreamExt;
//! use mongrove::watch::{ChangeKind, Operation};
//!
//! let orders = db.repo::<Order>();
//! let mut changes = orders
//!     .watch()
//!     .operations([Operation::Insert])
//!     .filter(Order::fields().total.gte(100))
//!     .await?;
//! while let Some(change) = changes.next().await {
//!     if let ChangeKind::Insert { document, .. } = change?.kind {
//!         println!("big order: {document:?}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! For a consumer that must not lose events across restarts, [`Watch::consumer`] turns the
//! same subscription into a [`Consumer`]: it records each event's resume token in a
//! [`ResumeTokenStore`] after the handler succeeded, and resumes from it. [`Replica`] keeps a
//! copy of another collection, applying events in version order.

mod change;
mod replica;
mod runner;
mod tokens;

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use mongodb::bson::{Bson, Document, RawDocument, RawDocumentBuf, Timestamp, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ChangeStreamOptions;
use mongodb::{Collection, Database};

pub use change::{Change, ChangeKind, Namespace, Operation, TransactionId, UpdateDescription};
/// The opaque position of an event in a change stream; resuming after it continues with the
/// next event. It serializes to BSON, so it can be stored (see [`ResumeTokenStore`]).
pub use mongodb::change_stream::event::ResumeToken;
pub use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
pub use replica::{Replica, ReplicaOutcome};
pub use runner::{BoxError, Consumer, Handler, OnBadEvent, OnInvalidate, RunSummary, StopReason};
pub use tokens::{MemoryTokenStore, MongoTokenStore, ResumeTokenStore};

use crate::db::Db;
use crate::error::{Error, Result, server_code};
use crate::model::Model;
use crate::query::{EncodeProblem, IntoFilter};
use crate::repo::Repo;
use change::Event;

/// The server's code for a resume point that is no longer in the oplog.
const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
/// The server's code for a change stream that cannot go on, among others because its resume
/// token is not in the oplog.
const CHANGE_STREAM_FATAL: i32 = 280;
/// The server's code for "namespace not found".
const NAMESPACE_NOT_FOUND: i32 = 26;

/// What a subscription asks the server for; kept apart from the repository so that a
/// [`Consumer`] can open the same subscription again and again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    operations: Option<Vec<Operation>>,
    filter: Option<Result<Document, EncodeProblem>>,
    collections: Option<Vec<String>>,
    pipeline: Vec<Document>,
    options: ChangeStreamOptions,
}

const LIFECYCLE: [&str; 4] = ["drop", "rename", "dropDatabase", "invalidate"];

impl Spec {
    /// The stages after `$changeStream`. Lifecycle events always pass, so a stream never ends
    /// without saying why.
    fn stages(&self, label: &str) -> Result<Vec<Document>> {
        let mut stages = Vec::new();
        if let Some(operations) = &self.operations {
            let mut names: Vec<&str> = operations.iter().filter_map(|o| o.server_name()).collect();
            for name in LIFECYCLE {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            stages.push(doc! { "$match": { "operationType": { "$in": names } } });
        }
        if let Some(collections) = &self.collections {
            stages.push(doc! { "$match": { "$or": [
                { "ns.coll": { "$in": collections.clone() } },
                { "operationType": { "$in": ["dropDatabase", "invalidate"] } },
            ] } });
        }
        if let Some(filter) = &self.filter {
            let filter = filter.clone().map_err(|p| Error::Encode {
                collection: label.to_owned(),
                what: p.what,
                reason: p.reason,
            })?;
            let mut deleted = prefixed("fullDocumentBeforeChange", &filter);
            deleted.insert("operationType", "delete");
            stages.push(doc! { "$match": { "$or": [
                { "operationType": { "$in": LIFECYCLE.to_vec() } },
                prefixed("fullDocument", &filter),
                deleted,
            ] } });
        }
        stages.extend(self.pipeline.iter().cloned());
        Ok(stages)
    }
}

/// Rewrites a filter on a model's documents into one on `prefix.<path>` of change events.
fn prefixed(prefix: &str, filter: &Document) -> Document {
    let mut out = Document::new();
    for (key, value) in filter {
        if key.starts_with('$') {
            let value = match (key.as_str(), value) {
                ("$and" | "$or" | "$nor", Bson::Array(items)) => Bson::Array(
                    items
                        .iter()
                        .map(|item| match item {
                            Bson::Document(sub) => Bson::Document(prefixed(prefix, sub)),
                            other => other.clone(),
                        })
                        .collect(),
                ),
                // `$expr`, `$comment`, ...: the caller's business; left as written.
                _ => value.clone(),
            };
            out.insert(key.clone(), value);
        } else {
            out.insert(format!("{prefix}.{key}"), value.clone());
        }
    }
    out
}

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

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
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
    fn into_error(self, label: &str) -> Error {
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

/// A subscription to the changes of model `M`'s collection. Created by [`Repo::watch`]; opens
/// when awaited.
///
/// A change stream never runs inside a transaction (the server does not allow it), so a
/// repository bound to a transaction watches outside it: the stream sees committed changes only.
#[must_use = "a subscription does nothing until it is awaited"]
pub struct Watch<'a, M: Model> {
    repo: &'a Repo<M>,
    spec: Spec,
}

impl<M: Model> Repo<M> {
    /// Subscribes to the changes of this collection: await the returned [`Watch`] for a
    /// [`ChangeStream`], or make it a [`Consumer`] that survives restarts.
    pub fn watch(&self) -> Watch<'_, M> {
        Watch {
            repo: self,
            spec: Spec::default(),
        }
    }

    /// Makes the collection record pre- and post-images (MongoDB 6.0 and later), so that
    /// streams can ask for the document before a change
    /// ([`Watch::full_document_before_change`]) and for the exact document after an update
    /// ([`FullDocumentType::WhenAvailable`] / [`FullDocumentType::Required`]). Creates the
    /// collection when it does not exist yet. Idempotent.
    pub async fn enable_pre_and_post_images(&self) -> Result<()> {
        let database = self.db().database();
        let modified = database
            .run_command(doc! {
                "collMod": M::COLLECTION,
                "changeStreamPreAndPostImages": { "enabled": true },
            })
            .await;
        match modified {
            Ok(_) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => {
                let created = database
                    .run_command(doc! {
                        "create": M::COLLECTION,
                        "changeStreamPreAndPostImages": { "enabled": true },
                    })
                    .await;
                match created {
                    Ok(_) => Ok(()),
                    // Created by someone else in between: set the option on theirs.
                    Err(e) if server_code(&e) == Some(48) => {
                        Box::pin(self.enable_pre_and_post_images()).await
                    }
                    Err(e) => Err(Error::from_driver(M::COLLECTION, e)),
                }
            }
            Err(e) => Err(Error::from_driver(M::COLLECTION, e)),
        }
    }
}

/// Setters shared by [`Watch`] and [`WatchDb`].
macro_rules! common_setters {
    () => {
        /// Only these kinds of events (lifecycle events — drop, rename, drop database,
        /// invalidate — always pass, so that the end of a stream is never silent).
        pub fn operations(mut self, operations: impl IntoIterator<Item = Operation>) -> Self {
            self.spec.operations = Some(operations.into_iter().collect());
            self
        }

        /// Aggregation stages appended after mongrove's own `$match` stages. Do not remove
        /// `_id`, `operationType` or `ns`: resuming needs them.
        pub fn pipeline(mut self, stages: impl IntoIterator<Item = Document>) -> Self {
            self.spec.pipeline.extend(stages);
            self
        }

        /// What update events carry as the document after the change: `UpdateLookup` (the
        /// current document, looked up when the event is sent), or `WhenAvailable` / `Required`
        /// (the post-image recorded with the change; see
        /// [`Repo::enable_pre_and_post_images`]). Without it, updates carry only what changed.
        pub fn full_document(mut self, mode: FullDocumentType) -> Self {
            self.spec.options.full_document = Some(mode);
            self
        }

        /// Whether update, replace and delete events carry the document as it was before:
        /// `WhenAvailable` or `Required` (needs [`Repo::enable_pre_and_post_images`]).
        pub fn full_document_before_change(mut self, mode: FullDocumentBeforeChangeType) -> Self {
            self.spec.options.full_document_before_change = Some(mode);
            self
        }

        /// Starts with the changes committed at or after this cluster time (for example a
        /// session's `operation_time()`).
        pub fn start_at_operation_time(mut self, time: Timestamp) -> Self {
            self.spec.options.start_at_operation_time = Some(time);
            self
        }

        /// Continues after the event with this token (which must not be an invalidate event's).
        pub fn resume_after(mut self, token: ResumeToken) -> Self {
            self.spec.options.resume_after = Some(token);
            self
        }

        /// Continues after the event with this token; unlike [`Self::resume_after`], the token
        /// may be an invalidate event's, to follow a collection that was dropped and created
        /// again.
        pub fn start_after(mut self, token: ResumeToken) -> Self {
            self.spec.options.start_after = Some(token);
            self
        }

        /// How many events the server sends per round trip (the memory a stream holds).
        pub fn batch_size(mut self, size: u32) -> Self {
            self.spec.options.batch_size = Some(size);
            self
        }

        /// How long the server waits for new events before answering with an empty batch.
        pub fn max_await_time(mut self, wait: Duration) -> Self {
            self.spec.options.max_await_time = Some(wait);
            self
        }
    };
}

impl<'a, M: Model> Watch<'a, M> {
    common_setters!();

    /// Only events whose document matches `filter` (typed paths of the model). Inserts and
    /// replaces are matched on their new document, updates on the full document (so set
    /// [`Watch::full_document`], or no update passes), deletes on the document before (so
    /// ask for pre-images, or no delete passes).
    pub fn filter(mut self, filter: impl IntoFilter<M>) -> Self {
        self.spec.filter = Some(filter.into().into_parts());
        self
    }

    /// Turns the subscription into a resumable consumer named `subscription` whose progress is
    /// kept in `store`.
    pub fn consumer<S: ResumeTokenStore>(
        self,
        subscription: impl Into<String>,
        store: S,
    ) -> Consumer<M, S> {
        Consumer::new(self.repo.clone(), self.spec, subscription.into(), store)
    }

    async fn run(self) -> Result<ChangeStream<M>> {
        let target = collection_target(self.repo);
        let events = EventStream::open(&target, &self.spec, M::COLLECTION, None)
            .await
            .map_err(|e| e.into_error(M::COLLECTION))?;
        Ok(ChangeStream {
            events,
            marker: PhantomData,
        })
    }
}

pub(crate) fn collection_target<M: Model>(repo: &Repo<M>) -> Target {
    Target::Collection(repo.collection().clone_with_type::<RawDocumentBuf>())
}

impl<'a, M: Model> IntoFuture for Watch<'a, M> {
    type Output = Result<ChangeStream<M>>;
    type IntoFuture = BoxFuture<'a, Result<ChangeStream<M>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// An open change stream of model `M`: a `Stream` of `Result<Change<M>>`.
///
/// It holds at most one batch of events in memory. Resumable errors (a lost connection, a new
/// primary) are ridden out by the driver, which resumes once after each; other errors, and a
/// document that does not decode ([`Error::Decode`]), are yielded as items and the stream goes
/// on. Dropping it closes the server-side cursor.
pub struct ChangeStream<M: Model> {
    events: EventStream,
    marker: PhantomData<fn() -> M>,
}

impl<M: Model> ChangeStream<M> {
    /// Waits for at most one round trip: the next event, or `None` when the server's batch came
    /// back empty (then [`ChangeStream::resume_token`] has moved on anyway).
    pub async fn next_if_any(&mut self) -> Result<Option<Change<M>>> {
        match self.events.next_if_any().await {
            Ok(Some(raw)) => Event::parse(M::COLLECTION, raw)
                .and_then(|event| event.into_change::<M>(M::COLLECTION))
                .map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(stream_error(M::COLLECTION, e)),
        }
    }

    /// The token to resume after everything returned so far; it advances on empty batches too,
    /// so storing it keeps a quiet subscription's position recent.
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.events.resume_token()
    }

    /// Whether more events can come (false after an invalidate event).
    pub fn is_alive(&self) -> bool {
        self.events.is_alive()
    }
}

impl<M: Model> Stream for ChangeStream<M> {
    type Item = Result<Change<M>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.events
            .poll_event(cx)
            .map(|item| item.map(|event| event.and_then(|e| e.into_change::<M>(M::COLLECTION))))
    }
}

impl<M: Model> std::fmt::Debug for ChangeStream<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("collection", &M::COLLECTION)
            .field("alive", &self.events.is_alive())
            .finish()
    }
}

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
        Box::pin(self.run())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_moved_under_the_event_document() {
        let filter = doc! { "total": { "$gte": 10 }, "$or": [{ "status": "new" }, { "a.b": 1 }] };
        assert_eq!(
            prefixed("fullDocument", &filter),
            doc! {
                "fullDocument.total": { "$gte": 10 },
                "$or": [{ "fullDocument.status": "new" }, { "fullDocument.a.b": 1 }],
            }
        );
    }

    #[test]
    fn operation_filters_keep_lifecycle_events() {
        let spec = Spec {
            operations: Some(vec![Operation::Insert, Operation::Drop]),
            ..Spec::default()
        };
        let stages = spec.stages("orders").unwrap();
        assert_eq!(
            stages,
            vec![doc! { "$match": { "operationType": { "$in": [
                "insert", "drop", "rename", "dropDatabase", "invalidate"
            ] } } }]
        );
    }

    #[test]
    fn resume_tokens_round_trip_through_bson() {
        let token: ResumeToken =
            mongodb::bson::from_bson(Bson::Document(doc! { "_data": "8263A1" })).unwrap();
        let stored = mongodb::bson::to_bson(&token).unwrap();
        assert_eq!(stored, Bson::Document(doc! { "_data": "8263A1" }));
        let back: ResumeToken = mongodb::bson::from_bson(stored).unwrap();
        assert_eq!(back, token);
    }
}
