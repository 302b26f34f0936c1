//! `Change<M>`: one typed change event, and the public types it is made of (its
//! [`Operation`], [`Namespace`], [`TransactionId`], [`UpdateDescription`]). The decoding of the
//! server's raw event into it lives in `event.rs`.

use std::fmt;

use mongodb::bson::{Bson, DateTime, Document, RawDocument, RawDocumentBuf, Timestamp};
use serde::Deserialize;

use super::ResumeToken;
use crate::model::Model;

/// The kind of a change event, as the server names it in `operationType`.
///
/// Used to filter a stream ([`Watch::operations`](super::Watch::operations)) and to tell events
/// apart without matching on their contents ([`Change::operation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A document was inserted.
    Insert,
    /// A document was updated in place.
    Update,
    /// A document was replaced whole.
    Replace,
    /// A document was deleted.
    Delete,
    /// The collection was dropped.
    Drop,
    /// The collection was renamed.
    Rename,
    /// The database was dropped (database-wide streams).
    DropDatabase,
    /// The stream cannot go on (after a drop or a rename of the watched collection).
    Invalidate,
    /// An event type this version of mongrove does not know (such as the DDL events of
    /// `showExpandedEvents`).
    Other,
}

impl Operation {
    /// The server's name for it (`"insert"`, `"dropDatabase"`, ...); `None` for [`Operation::Other`].
    pub fn server_name(self) -> Option<&'static str> {
        Some(match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Replace => "replace",
            Operation::Delete => "delete",
            Operation::Drop => "drop",
            Operation::Rename => "rename",
            Operation::DropDatabase => "dropDatabase",
            Operation::Invalidate => "invalidate",
            Operation::Other => return None,
        })
    }

    pub(super) fn from_server_name(name: &str) -> Operation {
        match name {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "replace" => Operation::Replace,
            "delete" => Operation::Delete,
            "drop" => Operation::Drop,
            "rename" => Operation::Rename,
            "dropDatabase" => Operation::DropDatabase,
            "invalidate" => Operation::Invalidate,
            _ => Operation::Other,
        }
    }

    /// Events about the stream itself rather than a document: drop, rename, drop database and
    /// invalidate. A stream always delivers them, whatever its filters.
    pub fn is_lifecycle(self) -> bool {
        matches!(
            self,
            Operation::Drop | Operation::Rename | Operation::DropDatabase | Operation::Invalidate
        )
    }
}

/// A database and, for collection events, a collection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Namespace {
    /// The database name.
    pub db: String,
    /// The collection name; `None` for database-level events.
    #[serde(rename = "coll", default)]
    pub collection: Option<String>,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.collection {
            Some(coll) => write!(f, "{}.{coll}", self.db),
            None => f.write_str(&self.db),
        }
    }
}

/// Which committed transaction an event belongs to: the session id and the transaction number
/// the server recorded. Every write of one multi-document transaction carries the same identity,
/// so a consumer can group the events of one commit; writes outside a transaction carry none.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionId {
    /// The logical session id (`lsid`) the transaction ran in.
    pub lsid: Document,
    /// The transaction number within that session (`txnNumber`).
    pub txn_number: i64,
}

/// What an update changed, as the server describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateDescription {
    /// Stored paths that were set, with their new values (`{"status": "paid", "version": 3}`).
    pub updated_fields: Document,
    /// Stored paths that were removed.
    pub removed_fields: Vec<String>,
    /// Arrays that were shortened from the end: their path and new length.
    pub truncated_arrays: Vec<(String, u32)>,
}

/// The typed content of a change event.
///
/// `before` holds the document as it was before the change; the server sends it only when the
/// stream asked for it ([`Watch::full_document_before_change`](super::Watch::full_document_before_change))
/// and the collection records pre-images ([`Repo::enable_pre_and_post_images`](crate::Repo::enable_pre_and_post_images)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChangeKind<M: Model> {
    /// A document was inserted.
    Insert {
        /// Its `_id`.
        id: M::Id,
        /// The inserted document.
        document: M,
    },
    /// A document was updated in place.
    Update {
        /// Its `_id`.
        id: M::Id,
        /// The fields set and removed.
        description: UpdateDescription,
        /// The document after the update, when the stream asked for it: with
        /// `FullDocumentType::UpdateLookup` the current majority-committed document (possibly
        /// later than this event, or `None` when it was deleted since); with post-images, the
        /// document exactly as this update left it.
        document: Option<M>,
        /// The document before the update, when asked for and recorded.
        before: Option<M>,
    },
    /// A document was replaced whole.
    Replace {
        /// Its `_id`.
        id: M::Id,
        /// The new document.
        document: M,
        /// The document before, when asked for and recorded.
        before: Option<M>,
    },
    /// A document was deleted.
    Delete {
        /// Its `_id`.
        id: M::Id,
        /// The document before, when asked for and recorded.
        before: Option<M>,
    },
    /// The collection was dropped. An [`ChangeKind::Invalidate`] follows.
    Drop,
    /// The collection was renamed. An [`ChangeKind::Invalidate`] follows.
    Rename {
        /// The new namespace.
        to: Namespace,
    },
    /// The database was dropped (database-wide streams). An [`ChangeKind::Invalidate`] follows.
    DropDatabase,
    /// The stream is over: the watched collection was dropped or renamed (or, for a
    /// database-wide stream, the database). A new stream can start after this event's token
    /// ([`Watch::start_after`](super::Watch::start_after)).
    Invalidate,
    /// An event type this version of mongrove does not decode; the raw event is
    /// [`Change::raw_event`].
    Other {
        /// The server's `operationType`.
        operation_type: String,
    },
}

/// One change event of a model's collection: what happened ([`Change::kind`]) and where it sits
/// in the stream (its resume token, cluster time and transaction).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Change<M: Model> {
    /// What happened, with the typed documents.
    pub kind: ChangeKind<M>,
    /// Resuming after this token continues with the next event.
    pub token: ResumeToken,
    /// When the change was committed, in the cluster's logical clock. Events of one transaction
    /// share it.
    pub cluster_time: Option<Timestamp>,
    /// The wall-clock time of the change on the server (MongoDB 6.0 and later).
    pub wall_time: Option<DateTime>,
    /// The transaction the write was part of, if any.
    pub transaction: Option<TransactionId>,
    /// The namespace the event is about.
    pub namespace: Option<Namespace>,
    // Set by `Event::into_change`, in the sibling module that decodes events.
    pub(super) raw: RawDocumentBuf,
}

impl<M: Model> Change<M> {
    /// The kind of event.
    pub fn operation(&self) -> Operation {
        match &self.kind {
            ChangeKind::Insert { .. } => Operation::Insert,
            ChangeKind::Update { .. } => Operation::Update,
            ChangeKind::Replace { .. } => Operation::Replace,
            ChangeKind::Delete { .. } => Operation::Delete,
            ChangeKind::Drop => Operation::Drop,
            ChangeKind::Rename { .. } => Operation::Rename,
            ChangeKind::DropDatabase => Operation::DropDatabase,
            ChangeKind::Invalidate => Operation::Invalidate,
            ChangeKind::Other { .. } => Operation::Other,
        }
    }

    /// The `_id` of the changed document (document events only).
    pub fn id(&self) -> Option<&M::Id> {
        match &self.kind {
            ChangeKind::Insert { id, .. }
            | ChangeKind::Update { id, .. }
            | ChangeKind::Replace { id, .. }
            | ChangeKind::Delete { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The document after the change, when the event has it.
    pub fn document(&self) -> Option<&M> {
        match &self.kind {
            ChangeKind::Insert { document, .. } | ChangeKind::Replace { document, .. } => {
                Some(document)
            }
            ChangeKind::Update { document, .. } => document.as_ref(),
            _ => None,
        }
    }

    /// The document before the change, when the stream asked for pre-images and the server had
    /// one.
    pub fn before(&self) -> Option<&M> {
        match &self.kind {
            ChangeKind::Update { before, .. }
            | ChangeKind::Replace { before, .. }
            | ChangeKind::Delete { before, .. } => before.as_ref(),
            _ => None,
        }
    }

    /// The version the document has after this change, for versioned models: the inserted or
    /// replacing document's version, or the version an update set (from its updated fields, which
    /// every mongrove update carries). `None` for deletes, other events, unversioned models and
    /// updates made outside mongrove that left the version alone.
    pub fn version(&self) -> Option<i64> {
        let field = M::VERSION_FIELD?;
        match &self.kind {
            ChangeKind::Insert { document, .. } | ChangeKind::Replace { document, .. } => {
                document.version()
            }
            // Not the looked-up document: with `UpdateLookup` it may already be later.
            ChangeKind::Update { description, .. } => {
                bson_to_i64(description.updated_fields.get(field)?)
            }
            _ => None,
        }
    }

    /// The raw event as the server sent it, for fields mongrove does not decode.
    pub fn raw_event(&self) -> &RawDocument {
        &self.raw
    }
}

pub(crate) fn bson_to_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        // Versions are integers, but a hand-written `$set` may have stored a whole double.
        Bson::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
        _ => None,
    }
}
