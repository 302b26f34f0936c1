//! mongrove: a typed ODM for MongoDB.
//!
//! Derive [`Model`](macro@Model) on a serde struct and get a typed repository:
//!
//! ```no_run
//! use mongrove::{Db, Model};
//! use mongrove::bson::oid::ObjectId;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, Model)]
//! #[model(collection = "tickets", version = "version", index(keys(title = 1), unique))]
//! struct Ticket {
//!     #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
//!     id: Option<ObjectId>,
//!     title: String,
//!     price: f64,
//!     version: i64,
//! }
//!
//! # async fn run() -> mongrove::Result<()> {
//! let db = Db::connect("mongodb://127.0.0.1:27017/?replicaSet=rs0", "shop").await?;
//! let tickets = db.repo::<Ticket>();
//! let mut ticket = Ticket { id: None, title: "Concert".into(), price: 40.0, version: 0 };
//! tickets.insert(&mut ticket).await?;
//! let cheap = tickets.find(Ticket::fields().price.lt(50.0)).limit(10).await?;
//! # Ok(()) }
//! ```
//!
//! The guide (`book/` in the repository) teaches the rest: typed paths, sessions, indexes,
//! versioning, hooks and validation, references ([`Ref`], `populate`), projections
//! ([`Projection`](macro@Projection)), `distinct`, keyset pages ([`Find::page`]) and typed
//! aggregation ([`Repo::aggregate`]), transactions (`Db::transaction`) and their retry policy,
//! transaction trees and sagas across clients ([`coordinate`]), change streams and resumable
//! consumers ([`watch`]), and the test kit (`testkit`, feature `testkit`).
//!
//! # The derive's attributes
//!
//! On the struct, `#[model(...)]` takes:
//! - `collection = "name"`: the collection (default: the struct name in snake_case, pluralised);
//! - `version = "field"`: an integer field holding the document version (optimistic concurrency);
//! - `timestamps` or `timestamps(created = "field", updated = "field")`: `bson::DateTime` fields
//!   set on insert and on every write;
//! - `index(keys(field = 1, other = -1), unique, sparse, expire_after = secs, partial = path, name = "...")`,
//!   repeatable; a key may be a string path (`"address.city" = 1`) or a special kind (`"text"`);
//! - `hooks`: the model implements [`Hooks`];
//! - `embedded`: the struct is stored inside other models; it gets typed paths but no collection;
//! - `crate = "path"`: where the generated code finds mongrove, for a crate that re-exports it
//!   (`#[model(crate = "my_framework::mongrove")]`); by default `::mongrove`.
//!
//! On a field: `#[model(id)]` (the field stored as `_id`; a field renamed to `_id` is the id
//! without it), `#[model(nested)]` (typed paths into an embedded struct, `Option` of one, or
//! `Vec` of one) and `#[model(validate(...))]` (`range(min, max)`, `length(min, max)`,
//! `pattern = "regex"`, `non_empty`, `custom = path`, checked before insert, save and replace,
//! and on the values typed paths `set` in updates, on embedded structs' fields too, reported by
//! stored path such as `lines.1.qty`). serde's
//! `rename`, `rename_all`, `skip` and `flatten` decide the stored names.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// `Error` carries the ids and names an application needs to act on (a `Bson` id, the
// collection), which makes it larger than clippy's default limit. Errors are the cold path of
// operations that wait on the network, so their size does not matter; their content does.

pub mod coordinate;
mod db;
mod decode;
mod error;
mod hook_context;
mod hooks;
mod model;
mod projection;
pub mod query;
mod raw_fields;
mod raw_walk;
mod relation;
mod repo;
mod retry;
mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transaction;
mod validate;
mod value;
pub mod watch;

pub use async_trait::async_trait;
pub use coordinate::{NodeRef, Saga, Store, TxTree};
pub use db::Db;
pub use error::{BulkOutcome, DocId, Error, FailedWrite, FieldFailure, PartialWrite, Result};
pub use hooks::{HookContext, HookResult, Hooks, UpdateSpec};
pub use model::{Embedded, IndexKey, IndexSpec, Model, TimestampFields, Versioned};
pub use mongodb;
pub use mongodb::bson;
pub use mongrove_macros::{Model, Projection};
pub use projection::{ProjectInto, Projection};
pub use query::{
    AnyElement, ArrayFilter, Field, Filter, Filtered, IdField, Nested, Sort, Update, VersionField,
};
pub use relation::{Populated, Ref, Reference, Resolved};
pub use repo::{
    Acc, Aggregate, AggregateAs, Applied, ApplyIfCurrent, BulkWrite, Count, Delete, DeleteMany,
    Distinct, Exists, Find, FindForUpdate, FindOne, FindOneAndUpdate, FindOneForUpdate,
    FindOnePopulated, FindPage, FindPopulated, FindPopulatedThen, FindProjected, IndexReport,
    Insert, InsertMany, LOCK_FIELD, MAX_BATCH, Modify, Page, PageCursor, RefersTo, Replace, Repo,
    Save, Summable, SyncIndexes, UpdateMany, UpdateOne, UpdateOutcome, WriteOp,
};
pub use retry::{Jitter, RetryPolicy};
pub use transaction::{
    ChunkReport, FailedItem, ProcessInChunks, RejectedBy, Standalone, Transaction, Tx, TxOptions,
};
pub use validate::{LengthValue, PatternValue, RangeValue};

/// Items the generated code names (`#[derive(Model)]` of the same version). Not part of the
/// public API.
#[doc(hidden)]
pub mod __private_v1 {
    pub use crate::error::FieldFailure;
    pub use crate::hooks::{
        HookContext, HookFns, HookPoint, HookResult, UpdateSpec, hooks_of, run_after_update,
        run_before_update, run_hook, run_hook_ref, run_validate,
    };
    pub use crate::model::{
        Derived, Embedded, IndexKey, IndexSpec, Model, TimestampFields, Versioned, version_to_i64,
    };
    pub use crate::projection::{ProjectedPath, Projection, project_field};
    pub use crate::query::{
        Direct, Elements, Field, IdField, InArray, Nested, PathKind, SubPaths, VersionField,
        join_path,
    };
    pub use crate::validate::{
        check_custom, check_length, check_non_empty, check_pattern, check_range, compiled,
    };
    pub use futures_util::future::BoxFuture;
    pub use mongodb::bson::{Bson, DateTime, Document, from_bson, oid::ObjectId};
    pub use regex_lite::Regex;
}
