//! The one error type of mongrove.

use std::fmt;

use mongodb::bson::Bson;
use mongodb::error::{ErrorKind, WriteFailure};

/// The result type of every fallible mongrove operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, named so that a caller can act on it.
///
/// Server errors that mongrove does not interpret stay available as [`Error::Driver`]; their
/// error labels (`TransientTransactionError`, `UnknownTransactionCommitResult`, ...) are kept and
/// can be queried with [`Error::has_label`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No document matched where one was required.
    #[error("no document in `{collection}` with _id {}", show_id(.id.as_ref()))]
    NotFound {
        /// The collection that was searched.
        collection: String,
        /// The id that was looked for, when the operation was by id.
        id: Option<Bson>,
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
        id: Bson,
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
        show_id(.id.as_ref())
    )]
    Decode {
        /// The collection the document came from.
        collection: String,
        /// The document's `_id`, when it has one.
        id: Option<Bson>,
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
        /// [`MongoTokenStore`](crate::watch::MongoTokenStore), or what
        /// [`ResumeTokenStore::describe`](crate::watch::ResumeTokenStore::describe) says.
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
    PartiallyCommitted(Box<crate::coordinate::Report>),

    /// A saga step failed; the steps that had completed were compensated in reverse order. The
    /// report says which steps completed, which were compensated, and what failed.
    #[error("saga failed: {0}")]
    SagaFailed(Box<crate::coordinate::Report>),

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
    #[error("test server: {0}")]
    Testkit(String),

    /// An error from the MongoDB driver that mongrove passes on unchanged.
    #[error(transparent)]
    Driver(#[from] mongodb::error::Error),
}

/// What [`Error::PartialWrite`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub struct PartialWrite {
    /// The collection written to.
    pub collection: String,
    /// The operation: `insert_many` or `bulk_write`.
    pub operation: &'static str,
    /// How many positions the batch had.
    pub total: usize,
    /// The positions that were written, in order.
    pub written: Vec<usize>,
    /// The positions that failed, each with its cause (`DuplicateKey`, `VersionConflict`,
    /// `WriteFailed`, `NotFound`, ...).
    pub failed: Vec<FailedWrite>,
    /// The positions never sent, because an ordered batch stops at its first failure.
    pub not_attempted: Vec<usize>,
    /// What the written positions did: counts, and the ids of inserted documents.
    pub outcome: BulkOutcome,
}

/// One failed position of a [`PartialWrite`].
#[derive(Debug)]
pub struct FailedWrite {
    /// The position in the batch.
    pub index: usize,
    /// Why it failed.
    pub error: Error,
}

/// What a bulk write did, summed over the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkOutcome {
    /// Documents inserted.
    pub inserted: u64,
    /// Documents matched by updates and replacements.
    pub matched: u64,
    /// Documents changed by updates and replacements.
    pub modified: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// `(position in the batch, _id)` of every inserted or upserted document.
    pub ids: Vec<(usize, Bson)>,
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` on `{}` wrote {} of {} positions",
            self.operation,
            self.collection,
            self.written.len(),
            self.total
        )?;
        if !self.written.is_empty() {
            write!(f, " ({})", show_positions(&self.written))?;
        }
        for failure in &self.failed {
            write!(f, "; position {} failed: {}", failure.index, failure.error)?;
        }
        if !self.not_attempted.is_empty() {
            write!(
                f,
                "; not attempted: {}",
                show_positions(&self.not_attempted)
            )?;
        }
        Ok(())
    }
}

/// `0, 1, 2, 5` with long runs shortened to `0..=999`.
fn show_positions(positions: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < positions.len() {
        let start = positions[i];
        let mut end = start;
        while i + 1 < positions.len() && positions[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if end > start + 1 {
            format!("{start}..={end}")
        } else if end == start + 1 {
            format!("{start}, {end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    parts.join(", ")
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

/// Whether `error` says that the server could not be reached for a while or is changing roles
/// (a lost connection, no server to select, an election, a shutdown), so the same operation
/// may succeed when tried again: what a consumer rides out instead of stopping.
pub(crate) fn is_outage(error: &Error) -> bool {
    match error {
        Error::Driver(e) => is_driver_outage(e),
        Error::TokenStore { source, .. } => is_outage(source),
        _ => false,
    }
}

/// [`is_outage`] for a driver error.
pub(crate) fn is_driver_outage(error: &mongodb::error::Error) -> bool {
    /// Not writable primary, node recovering or shutting down, host unreachable or not found,
    /// network timeout, socket exception, exceeded time limit, write concern failed, write
    /// conflict: the codes the driver's retry rules treat as transient, and a few more that
    /// are transient for an idempotent write of one document.
    const TRANSIENT_CODES: [i32; 17] = [
        10107, 13435, 10058, 11600, 11602, 13436, 189, 91, 7, 6, 89, 9001, 134, 262, 64, 112, 50,
    ];
    const LABELS: [&str; 3] = [
        "RetryableWriteError",
        "ResumableChangeStreamError",
        "TransientTransactionError",
    ];
    if LABELS.iter().any(|label| error.contains_label(label)) {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        _ => server_code(error).is_some_and(|code| TRANSIENT_CODES.contains(&code)),
    }
}

/// The server's error code carried by a driver error, if any.
pub(crate) fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|e| e.code),
        _ => None,
    }
}

const DUPLICATE_KEY: i32 = 11000;

fn duplicate_key_message(error: &mongodb::error::Error) -> Option<&str> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) if e.code == DUPLICATE_KEY => Some(&e.message),
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            Some(&e.message)
        }
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()?
            .iter()
            .find(|e| e.code == DUPLICATE_KEY)
            .map(|e| e.message.as_str()),
        _ => None,
    }
}

/// The error of one failed write of a batch: a duplicate key, or the server's code and message.
pub(crate) fn write_error(collection: &str, index: usize, code: i32, message: &str) -> Error {
    if code == DUPLICATE_KEY {
        let (index, key) = parse_duplicate_key(message);
        Error::DuplicateKey {
            collection: collection.to_owned(),
            index,
            key,
        }
    } else {
        Error::WriteFailed {
            collection: collection.to_owned(),
            index,
            code,
            message: message.to_owned(),
        }
    }
}

/// The collection named in an E11000 message (`collection: app.users index: ...`).
fn parse_collection(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("collection: ")?;
    let namespace = rest.split_whitespace().next()?;
    Some(
        namespace
            .split_once('.')
            .map_or(namespace, |(_, c)| c)
            .to_owned(),
    )
}

/// Reads the index name and key out of the server's E11000 message:
/// `E11000 duplicate key error collection: db.users index: email_1 dup key: { email: "a" }`.
pub(crate) fn parse_duplicate_key(message: &str) -> (String, String) {
    let index = message
        .split_once(" index: ")
        .map(|(_, rest)| {
            rest.split(" dup key")
                .next()
                .unwrap_or(rest)
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "(unknown)".to_owned());
    let key = message
        .split_once("dup key: ")
        .map(|(_, rest)| rest.trim().to_owned())
        .unwrap_or_else(|| message.to_owned());
    (index, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_message_is_parsed() {
        let (index, key) = parse_duplicate_key(
            r#"E11000 duplicate key error collection: app.users index: email_1 dup key: { email: "a@b.c" }"#,
        );
        assert_eq!(index, "email_1");
        assert_eq!(key, r#"{ email: "a@b.c" }"#);
    }

    #[test]
    fn unexpected_duplicate_key_message_keeps_the_text() {
        let (index, key) = parse_duplicate_key("E11000 something new");
        assert_eq!(index, "(unknown)");
        assert_eq!(key, "E11000 something new");
    }

    #[test]
    fn positions_are_shown_in_runs() {
        assert_eq!(show_positions(&[0, 1, 2, 3, 5, 7, 8]), "0..=3, 5, 7, 8");
        assert_eq!(show_positions(&[]), "");
    }

    #[test]
    fn outages_are_told_from_lasting_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let network = Error::Driver(mongodb::error::Error::from(ErrorKind::Io(
            std::sync::Arc::new(io),
        )));
        assert!(is_outage(&network));
        let wrapped = Error::TokenStore {
            store: "tokens".into(),
            subscription: "s".into(),
            action: "save",
            source: Box::new(network),
        };
        assert!(is_outage(&wrapped));
        assert!(!is_outage(&Error::custom("the disk is full")));
        assert!(!is_outage(&Error::Driver(mongodb::error::Error::custom(
            "not a server error"
        ))));
    }

    #[test]
    fn version_conflict_says_both_versions() {
        let error = Error::VersionConflict {
            collection: "tickets".into(),
            id: Bson::Int32(7),
            expected: 0,
            found: 1,
        };
        assert_eq!(
            error.to_string(),
            "version conflict in `tickets` on _id 7: expected version 0, found 1"
        );
    }
}
