//! Reading the driver's errors: server codes, duplicate keys, outages.

use mongodb::error::{ErrorKind, WriteFailure};

use super::Error;

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

pub(crate) fn duplicate_key_message(error: &mongodb::error::Error) -> Option<&str> {
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
pub(crate) fn parse_collection(message: &str) -> Option<String> {
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
