//! The one error type of mongrove, at the bottom of the crate: every other module may use it,
//! it uses none of them. What a failed batch or tree reports lives in [`report`]; reading the
//! driver's errors, in `driver`. This file is a little over 400 lines because the enum's variant
//! docs are the reference of every failure a user can meet, and they belong together.

use std::fmt;

use mongodb::bson::Bson;

mod driver;
mod id;
pub mod report;

use driver::{duplicate_key_message, parse_collection, parse_duplicate_key};
pub(crate) use driver::{is_outage, server_code, write_error};
pub use id::DocId;
use report::Report;
pub use report::{BulkOutcome, FailedWrite, PartialWrite};

/// The result type of every fallible mongrove operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, named so that a caller can act on it.
///
/// Server errors that mongrove does not interpret stay available as [`Error::Driver`]; their
/// error labels (`TransientTransactionError`, `UnknownTransactionCommitResult`, ...) are kept and
/// can be queried with [`Error::has_label`].
///
/// ```no_run
/// # use mongrove::{Db, Model};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Model)]
/// # #[model(collection = "orders", version = "version")]
/// # struct Order {
/// #     #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
/// #     id: Option<mongrove::bson::oid::ObjectId>,
/// #     customer: String,
/// #     total: i64,
/// #     status: String,
/// #     tags: Vec<String>,
/// #     version: i64,
/// # }
/// # async fn demo(db: &Db, mut order: Order) -> mongrove::Result<()> {
/// use mongrove::Error;
///
/// match db.repo::<Order>().save(&mut order).await {
///     Ok(()) => {}
///     Err(Error::VersionConflict { expected, found, .. }) => {
///         println!("changed by someone else: {expected} -> {found}; reload and retry");
///     }
///     Err(Error::Validation { failures, .. }) => {
///         for failure in failures {
///             println!("{}: {}", failure.field, failure.message);
///         }
///     }
///     Err(e) if e.has_label("TransientTransactionError") => println!("try again: {e}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No document matched where one was required.
    #[error("no document in `{collection}` with _id {}", show_id(.id.as_deref()))]
    NotFound {
        /// The collection that was searched.
        collection: String,
        /// The id that was looked for, when the operation was by id.
        id: Option<DocId>,
    },

    /// The stored document has another version than the one the write expected: somebody else
    /// changed it since it was loaded. Reload it and apply the change again.
    #[error(
        "version conflict in `{collection}` on _id {id}: expected version {expected}, found {found}"
    )]
    VersionConflict {
        /// The collection of the document.
        collection: String,
        /// The document's `_id`.
        id: DocId,
        /// The version the write was based on.
        expected: i64,
        /// The version stored now. (When the document is gone the error is [`Error::NotFound`].)
        found: i64,
    },

    /// A unique index rejected the write (server error E11000).
    #[error("duplicate key in `{collection}`: index `{index}` already has {key}")]
    DuplicateKey {
        /// The collection written to.
        collection: String,
        /// The name of the unique index.
        index: String,
        /// The duplicated key as the server reported it, for example `{ email: "a@example.com" }`.
        key: String,
    },

    /// Field rules rejected a document before it was written.
    #[error("validation failed for `{model}`: {}", show_failures(.failures))]
    Validation {
        /// The model type.
        model: &'static str,
        /// Every failing field, not only the first.
        failures: Vec<FieldFailure>,
    },

    /// A lifecycle hook failed, so the operation was stopped before it wrote anything.
    #[error("hook `{hook}` of `{model}` failed: {source}")]
    Hook {
        /// The model type.
        model: &'static str,
        /// The hook, for example `before_save`.
        hook: &'static str,
        /// What the hook returned.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stored document does not fit the model any more (a missing field, a wrong type).
    #[error(
        "cannot decode document {} of `{collection}`: field `{field}`: {reason}",
        show_id(.id.as_deref())
    )]
    Decode {
        /// The collection the document came from.
        collection: String,
        /// The document's `_id`, when it has one.
        id: Option<DocId>,
        /// The path of the offending field, such as `items[2].qty`, or `.` for the whole document.
        field: String,
        /// What serde reported.
        reason: String,
    },

    /// A value could not be turned into BSON (for example a `u64` above `i64::MAX`, or a map with
    /// non-string keys). Nothing was sent to the server.
    #[error("cannot encode {what} for `{collection}`: {reason}")]
    Encode {
        /// The collection the value was meant for.
        collection: String,
        /// What was being encoded: a document, or the value for a field path.
        what: String,
        /// What the encoder reported.
        reason: String,
    },

    /// A populated reference names a document that does not exist (it was deleted, or the id
    /// was never valid). Reported by `.populate(..).strict()`; without `strict` the result
    /// carries the dangling id instead ([`Resolved::Dangling`](crate::Resolved::Dangling)).
    #[error(
        "document {} of `{collection}` refers through `{path}` to _id {missing} in `{target}`, which does not exist",
        show_id(.id.as_deref())
    )]
    DanglingRef {
        /// The collection of the referring document.
        collection: String,
        /// The referring document's `_id`.
        id: Option<DocId>,
        /// The stored path of the reference field.
        path: String,
        /// The collection the reference points into.
        target: String,
        /// The id that was not found.
        missing: DocId,
    },

    /// A page cursor passed to `.after(..)` does not belong to this query (another filter or
    /// sort) or was altered. Start again from the first page.
    #[error("invalid page cursor for `{collection}`: {reason}")]
    InvalidCursor {
        /// The collection queried.
        collection: String,
        /// Why the cursor was refused.
        reason: String,
    },

    /// An operation that needs the document's id was given a document without one.
    #[error(
        "the document has no _id yet, so `{operation}` cannot address it in `{collection}`; insert it first"
    )]
    MissingId {
        /// The collection.
        collection: String,
        /// The operation that needed the id.
        operation: &'static str,
    },

    /// The server refused one write of a batch for a reason other than a duplicate key.
    #[error("write {index} of a bulk write to `{collection}` failed with code {code}: {message}")]
    WriteFailed {
        /// The collection written to.
        collection: String,
        /// The position of the failing operation in the batch.
        index: usize,
        /// The server's error code.
        code: i32,
        /// The server's message.
        message: String,
    },

    /// A batch (`insert_many`, `bulk_write`) was written only in part. The report says which
    /// positions were written, which failed and why, and which were never sent (an ordered
    /// batch stops at its first failure). Nothing is rolled back: outside a transaction, the
    /// written part stays written.
    #[error("{0}")]
    PartialWrite(Box<PartialWrite>),

    /// The operation needs a versioned model (`#[model(version = "...")]`).
    #[error(
        "`{operation}` needs a versioned model, and `{model}` has no `#[model(version = \"...\")]`"
    )]
    NotVersioned {
        /// The model type.
        model: &'static str,
        /// The operation that needed the version.
        operation: &'static str,
    },

    /// The deployment cannot run multi-document transactions (a standalone `mongod`).
    #[error(
        "this MongoDB deployment does not support transactions (a standalone server); run a \
         single-node replica set (`mongod --replSet rs0`, then `rs.initiate()`), or opt in to \
         running without a transaction for local development"
    )]
    TransactionsUnsupported,

    /// An operation ran in a transaction that has ended: a repository from `tx.repo()` (or a
    /// task bound with [`Tx::bind`](crate::Tx::bind)) used after its transaction committed,
    /// aborted or was replaced by a retry. Nothing was sent. Take repositories inside the
    /// closure, and await spawned work before the closure returns.
    #[error(
        "the transaction this operation belongs to has ended (committed, aborted, or retried); \
         nothing was sent: use repositories only inside the transaction's closure, and await \
         spawned work before the closure returns"
    )]
    TransactionEnded,

    /// An operation that only makes sense inside a transaction ran outside one: a lock taken by
    /// [`Repo::find_one_for_update`](crate::Repo::find_one_for_update) or
    /// [`Repo::find_for_update`](crate::Repo::find_for_update) would be released at once, so it
    /// would protect nothing. Nothing was sent. Call it on a repository from `tx.repo()` (or
    /// inside `db.transaction(...)`, or while a [`Transaction`](crate::Transaction) is open).
    #[error(
        "`{operation}` must run inside a transaction (a lock outside one is released at once and \
         protects nothing); nothing was sent: call it inside `db.transaction(async |tx| ...)` on \
         `tx.repo()`, or on a repository of an open `db.begin()` transaction"
    )]
    NotInTransaction {
        /// The operation that was called.
        operation: &'static str,
    },

    /// The transaction's closure returned `Ok` after one of its operations had failed with a
    /// server error. The server aborts a transaction on any such error, so the transaction
    /// cannot commit; it was aborted and not retried. The closure must not swallow errors of
    /// operations in a transaction: return them (`?`), or check before writing.
    #[error(
        "the transaction closure returned Ok after an operation in it failed, and the server \
         aborts a transaction on such an error: the error was swallowed (return it with `?`, or \
         check before writing); the transaction was aborted, not retried: {0}"
    )]
    Swallowed(Box<Error>),

    /// An operation or a retry loop ran out of time.
    #[error("timed out: {context}")]
    Timeout {
        /// What ran out of time, and the last error seen, if any.
        context: String,
        /// The last error before the deadline, with its labels.
        last: Option<Box<Error>>,
    },

    /// A change stream cannot resume because its resume point is no longer in the server's
    /// oplog (server error 286, `ChangeStreamHistoryLost`: the consumer was away longer than the
    /// oplog window), or cannot be found there (error 280 with "the resume token was not found":
    /// a token from another deployment, or of a write that was rolled back). Events may have been
    /// lost. Rebuild what the consumer derives from a full read of the collection, then clear the
    /// stored token to start again from now.
    #[error(
        "the change stream on `{collection}` cannot resume: its resume point is no longer in the \
         oplog, so events may have been lost; rebuild from a full read, then clear the stored \
         resume token ({reason})"
    )]
    ChangeHistoryLost {
        /// The watched collection (or `*` for a database-wide stream).
        collection: String,
        /// What the server reported.
        reason: String,
    },

    /// A change-stream consumer's handler failed; the event's resume token was not recorded, so
    /// the event is delivered again when the consumer runs again.
    #[error("the handler of subscription `{subscription}` failed: {source}")]
    Handler {
        /// The subscription (the consumer's name in its resume-token store).
        subscription: String,
        /// What the handler returned.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The resume-token store of a change-stream consumer failed to load or save a
    /// subscription's position. `source` is the store's own error (a driver error keeps its
    /// labels and code: [`Error::has_label`] and [`Error::code`] answer for it).
    ///
    /// A consumer rides out resumable store errors (lost connections, elections, ...) for as
    /// long as its `retry_for` and then returns [`Error::Timeout`] whose `last` is this error;
    /// other store errors end the run at once with this error. Either way nothing is skipped:
    /// events whose position was not saved are delivered again by the next run.
    #[error(
        "resume-token store `{store}` could not {action} the position of subscription \
         `{subscription}`: {source}"
    )]
    TokenStore {
        /// Where the tokens are kept: the collection of a
        /// `watch::MongoTokenStore`, or what `watch::ResumeTokenStore::describe` says.
        store: String,
        /// The subscription whose position it was.
        subscription: String,
        /// `load` or `save`.
        action: &'static str,
        /// The store's error.
        source: Box<Error>,
    },

    /// The application's own reason to stop, returned from a transaction closure, a tree action
    /// or a saga step with [`Error::custom`]. It aborts the transaction, is never retried, and
    /// comes back unchanged; [`Error::downcast_custom`] gets the original value back.
    #[error("{0}")]
    Custom(Box<dyn std::error::Error + Send + Sync>),

    /// An action of a transaction tree failed (or the first commit failed before anything was
    /// committed): every transaction of the tree was aborted, so nothing was written.
    #[error("transaction tree aborted: node `{node}` failed: {source}")]
    TreeAborted {
        /// The node whose action (or commit) failed.
        node: String,
        /// What it failed with.
        source: Box<Error>,
    },

    /// A commit of a transaction tree failed after other nodes had already committed. The
    /// compensations of the committed nodes ran; the report says which nodes committed, which
    /// were compensated, which were aborted and what failed. Nodes committed but not
    /// compensated (no compensation, or a compensation that failed) need attention.
    #[error("transaction tree partially committed: {0}")]
    PartiallyCommitted(Box<Report>),

    /// A saga step failed; the steps that had completed were compensated in reverse order. The
    /// report says which steps completed, which were compensated, and what failed.
    #[error("saga failed: {0}")]
    SagaFailed(Box<Report>),

    /// A tree action or saga step asked the store for the result of a node that has not run
    /// before it. Make that node an ancestor or an earlier sibling (or an earlier saga step).
    #[error(
        "the result of `{node}` is not in the store yet: only ancestors and earlier siblings \
         (earlier steps of a saga) have run before this action"
    )]
    MissingResult {
        /// The node whose result was asked for.
        node: String,
    },

    /// The test kit could not provide a server (only from `mongrove::testkit`).
    #[cfg(feature = "testkit")]
    #[error("test server: {0}")]
    Testkit(String),

    /// An error from the MongoDB driver that mongrove passes on unchanged.
    #[error(transparent)]
    Driver(#[from] mongodb::error::Error),
}

/// One failing field of [`Error::Validation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFailure {
    /// The stored field name.
    pub field: String,
    /// The rule that failed, for example `range(min = 0)`.
    pub rule: String,
    /// A sentence for humans.
    pub message: String,
}

impl fmt::Display for FieldFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {} ({})", self.field, self.message, self.rule)
    }
}

fn show_failures(failures: &[FieldFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn show_id(id: Option<&Bson>) -> String {
    match id {
        Some(id) => id.to_string(),
        None => "(no _id)".to_owned(),
    }
}

impl Error {
    /// Whether the server (or the driver) attached this error label, for example
    /// `TransientTransactionError`. A timeout answers for the last error it kept.
    pub fn has_label(&self, label: &str) -> bool {
        match self {
            Error::Driver(e) => e.contains_label(label),
            Error::Swallowed(inner) => inner.has_label(label),
            Error::Timeout {
                last: Some(last), ..
            } => last.has_label(label),
            Error::TokenStore { source, .. } => source.has_label(label),
            _ => false,
        }
    }

    /// The variant's name (`"VersionConflict"`, `"Driver"` ...): a short, stable label for logs
    /// and metrics. The spans of repository operations record it as `error.type`.
    ///
    /// ```
    /// assert_eq!(mongrove::Error::custom("no stock").kind(), "Custom");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::VersionConflict { .. } => "VersionConflict",
            Error::DuplicateKey { .. } => "DuplicateKey",
            Error::Validation { .. } => "Validation",
            Error::Hook { .. } => "Hook",
            Error::Decode { .. } => "Decode",
            Error::Encode { .. } => "Encode",
            Error::MissingId { .. } => "MissingId",
            Error::WriteFailed { .. } => "WriteFailed",
            Error::PartialWrite(_) => "PartialWrite",
            Error::NotVersioned { .. } => "NotVersioned",
            Error::TransactionsUnsupported => "TransactionsUnsupported",
            Error::TransactionEnded => "TransactionEnded",
            Error::Swallowed(_) => "Swallowed",
            Error::Timeout { .. } => "Timeout",
            Error::ChangeHistoryLost { .. } => "ChangeHistoryLost",
            Error::Handler { .. } => "Handler",
            Error::TokenStore { .. } => "TokenStore",
            Error::Custom(_) => "Custom",
            Error::TreeAborted { .. } => "TreeAborted",
            Error::PartiallyCommitted(_) => "PartiallyCommitted",
            Error::SagaFailed(_) => "SagaFailed",
            Error::MissingResult { .. } => "MissingResult",
            Error::DanglingRef { .. } => "DanglingRef",
            Error::InvalidCursor { .. } => "InvalidCursor",
            Error::NotInTransaction { .. } => "NotInTransaction",
            #[cfg(feature = "testkit")]
            Error::Testkit(_) => "Testkit",
            Error::Driver(_) => "Driver",
        }
    }

    /// All error labels of this error.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Error::Driver(e) => e.labels().iter().cloned().collect(),
            Error::Swallowed(inner) => inner.labels(),
            Error::Timeout {
                last: Some(last), ..
            } => last.labels(),
            Error::TokenStore { source, .. } => source.labels(),
            _ => Vec::new(),
        }
    }

    /// The application's own error, to return from a transaction closure, a tree action or a
    /// saga step: the transaction is aborted and the error comes back as [`Error::Custom`].
    ///
    /// ```
    /// let error = mongrove::Error::custom("insufficient funds");
    /// assert_eq!(error.to_string(), "insufficient funds");
    /// ```
    pub fn custom(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Custom(error.into())
    }

    /// The application's error inside [`Error::Custom`], if it has type `E`.
    pub fn downcast_custom<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Custom(error) => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// The server's error code, when the server sent one.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Driver(e) => server_code(e),
            Error::DuplicateKey { .. } => Some(11000),
            Error::WriteFailed { code, .. } => Some(*code),
            Error::PartialWrite(report) => report.failed.first()?.error.code(),
            Error::Swallowed(inner) => inner.code(),
            Error::Timeout {
                last: Some(last), ..
            } => last.code(),
            Error::TokenStore { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Turns a driver error into the variant that names it, in the context of `collection`.
    pub(crate) fn from_driver(collection: &str, error: mongodb::error::Error) -> Error {
        match duplicate_key_message(&error) {
            Some(message) => {
                let (index, key) = parse_duplicate_key(message);
                let collection = match collection {
                    // Not known to the caller: the server's message names it (`db.collection`).
                    "" => parse_collection(message).unwrap_or_default(),
                    known => known.to_owned(),
                };
                Error::DuplicateKey {
                    collection,
                    index,
                    key,
                }
            }
            None => Error::Driver(error),
        }
    }
}

#[cfg(test)]
mod tests;
