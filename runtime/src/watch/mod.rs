//! Change streams: typed events of a collection (or a database) as they are committed.
//!
//! [`Repo::watch`](crate::Repo::watch) builds a subscription that opens when awaited and yields a
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
//!
//! The module's files, by concept: `spec.rs` (what a subscription asks for, and the builder
//! setters), `stream.rs` (the raw stream and when it can be reopened), `collection.rs` and
//! `database.rs` (the two kinds of subscription and their streams), `change.rs` and `event.rs`
//! (typed events, and decoding them), `runner/` (the resumable consumer), `tokens.rs` (where
//! it keeps its position) and `replica/` (a copy kept from events).

mod change;
mod collection;
mod database;
mod event;
mod replica;
mod runner;
mod spec;
mod stream;
mod tokens;

pub use change::{Change, ChangeKind, Namespace, Operation, TransactionId, UpdateDescription};
pub use collection::{ChangeStream, Watch};
pub use database::{DbChange, DbChangeStream, WatchDb};
/// The opaque position of an event in a change stream; resuming after it continues with the
/// next event. It serializes to BSON, so it can be stored (see [`ResumeTokenStore`]).
pub use mongodb::change_stream::event::ResumeToken;
pub use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
pub use replica::{Replica, ReplicaOutcome};
pub use runner::{BoxError, Consumer, Handler, OnBadEvent, OnInvalidate, RunSummary, StopReason};
pub use tokens::{MemoryTokenStore, MongoTokenStore, ResumeTokenStore};
