//! The raw event: a server event with its metadata decoded (its token, operation, namespace,
//! transaction), and the decoding of its documents into a typed [`Change`].
//!
//! The metadata is decoded first and on its own so that an event whose documents do not fit
//! the model still has a token: a consumer can record it as bad and step over it.

use mongodb::bson::{Bson, DateTime, Document, RawBson, RawDocumentBuf, Timestamp};
use serde::Deserialize;

use super::ResumeToken;
use super::change::{Change, ChangeKind, Namespace, Operation, TransactionId, UpdateDescription};
use crate::decode::{decode, decode_passing_over};
use crate::error::{Error, Result};
use crate::model::Model;

/// The metadata of an event, decoded before the documents so that an event whose document does
/// not fit the model can still be skipped by its token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    #[serde(rename = "_id")]
    pub(crate) token: ResumeToken,
    pub(crate) operation_type: String,
    pub(crate) ns: Option<Namespace>,
    pub(crate) to: Option<Namespace>,
    pub(crate) lsid: Option<Document>,
    pub(crate) txn_number: Option<i64>,
    /// Kept raw: as a `Document`, its `_id` would go through its hex form.
    pub(crate) document_key: Option<RawDocumentBuf>,
    pub(crate) update_description: Option<RawUpdateDescription>,
    pub(crate) cluster_time: Option<Timestamp>,
    pub(crate) wall_time: Option<DateTime>,
    // The documents are decoded later, from the event's bytes; named here so that the header
    // passes over them as one copy of their bytes rather than visiting every value.
    #[serde(default, rename = "fullDocument")]
    _full_document: Option<Skipped>,
    #[serde(default, rename = "fullDocumentBeforeChange")]
    _full_document_before_change: Option<Skipped>,
}

/// The event's documents, which the header passes over (see [`Skipped`]).
const DOCUMENTS: [&str; 2] = ["fullDocument", "fullDocumentBeforeChange"];

/// A value the header does not read, passed over whole.
#[derive(Debug, Clone)]
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as raw BSON, bson's decoder hands the value over as its bytes; ignored, it would
        // visit every value inside.
        RawBson::deserialize(deserializer).map(|_| Skipped)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawUpdateDescription {
    #[serde(default)]
    updated_fields: Document,
    #[serde(default)]
    removed_fields: Vec<String>,
    #[serde(default)]
    truncated_arrays: Vec<RawTruncatedArray>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTruncatedArray {
    field: String,
    new_size: u32,
}

/// A raw event with its metadata decoded; the documents are decoded by [`Event::into_change`].
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) header: Header,
    pub(crate) raw: RawDocumentBuf,
}

impl Event {
    /// Decodes the metadata. `collection` names the stream in errors.
    pub(crate) fn parse(collection: &str, raw: RawDocumentBuf) -> Result<Event> {
        let header = decode_passing_over::<Header>(collection, &raw, &DOCUMENTS)?;
        Ok(Event { header, raw })
    }

    pub(crate) fn operation(&self) -> Operation {
        Operation::from_server_name(&self.header.operation_type)
    }

    pub(crate) fn transaction(&self) -> Option<TransactionId> {
        match (&self.header.lsid, self.header.txn_number) {
            (Some(lsid), Some(txn_number)) => Some(TransactionId {
                lsid: lsid.clone(),
                txn_number,
            }),
            _ => None,
        }
    }

    /// The collection the event's documents belong to, for errors: the event's own namespace,
    /// else the one the stream watches.
    fn collection_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.header
            .ns
            .as_ref()
            .and_then(|ns| ns.collection.as_deref())
            .unwrap_or(fallback)
    }

    /// The `_id` in `documentKey`, as BSON.
    pub(crate) fn document_id(&self) -> Option<Bson> {
        let key = self.header.document_key.as_ref()?;
        Bson::try_from(key.get("_id").ok()??.to_raw_bson()).ok()
    }

    /// Decodes the documents into model `M`. Decoding errors name the collection, the document's
    /// `_id` and the field.
    pub(crate) fn into_change<M: Model>(self, fallback_collection: &str) -> Result<Change<M>> {
        let collection = self.collection_or(fallback_collection).to_owned();
        let operation = self.operation();
        let kind = match operation {
            Operation::Insert => ChangeKind::Insert {
                id: self.id::<M>(&collection)?,
                document: self.required_document::<M>(&collection, "fullDocument")?,
            },
            Operation::Update => ChangeKind::Update {
                id: self.id::<M>(&collection)?,
                description: self.update_description(),
                document: self.document::<M>(&collection, "fullDocument")?,
                before: self.document::<M>(&collection, "fullDocumentBeforeChange")?,
            },
            Operation::Replace => ChangeKind::Replace {
                id: self.id::<M>(&collection)?,
                document: self.required_document::<M>(&collection, "fullDocument")?,
                before: self.document::<M>(&collection, "fullDocumentBeforeChange")?,
            },
            Operation::Delete => ChangeKind::Delete {
                id: self.id::<M>(&collection)?,
                before: self.document::<M>(&collection, "fullDocumentBeforeChange")?,
            },
            Operation::Drop => ChangeKind::Drop,
            Operation::Rename => ChangeKind::Rename {
                to: self.header.to.clone().ok_or_else(|| Error::Decode {
                    collection: collection.clone(),
                    id: None,
                    field: "to".to_owned(),
                    reason: "a rename event without its new namespace".to_owned(),
                })?,
            },
            Operation::DropDatabase => ChangeKind::DropDatabase,
            Operation::Invalidate => ChangeKind::Invalidate,
            Operation::Other => ChangeKind::Other {
                operation_type: self.header.operation_type.clone(),
            },
        };
        let transaction = self.transaction();
        let Event { header, raw } = self;
        Ok(Change {
            kind,
            token: header.token,
            cluster_time: header.cluster_time,
            wall_time: header.wall_time,
            transaction,
            namespace: header.ns,
            raw,
        })
    }

    fn id<M: Model>(&self, collection: &str) -> Result<M::Id> {
        let id = self.document_id().ok_or_else(|| Error::Decode {
            collection: collection.to_owned(),
            id: None,
            field: "documentKey._id".to_owned(),
            reason: "the event has no document key".to_owned(),
        })?;
        crate::value::from_bson(id.clone()).map_err(|e| Error::Decode {
            collection: collection.to_owned(),
            id: Some(id.into()),
            field: "_id".to_owned(),
            reason: e.to_string(),
        })
    }

    fn document<M: Model>(&self, collection: &str, key: &str) -> Result<Option<M>> {
        match self.raw.get(key) {
            Ok(Some(value)) => match value.as_document() {
                Some(doc) => decode::<M>(collection, doc).map(Some),
                // `null`: asked for, but the server had none (a deleted document, no pre-image).
                None => Ok(None),
            },
            Ok(None) => Ok(None),
            Err(e) => Err(Error::Decode {
                collection: collection.to_owned(),
                id: self.document_id().map(Into::into),
                field: key.to_owned(),
                reason: format!("malformed BSON: {e}"),
            }),
        }
    }

    fn required_document<M: Model>(&self, collection: &str, key: &str) -> Result<M> {
        self.document::<M>(collection, key)?
            .ok_or_else(|| Error::Decode {
                collection: collection.to_owned(),
                id: self.document_id().map(Into::into),
                field: key.to_owned(),
                reason: format!("the {} event has no {key}", self.header.operation_type),
            })
    }

    fn update_description(&self) -> UpdateDescription {
        match &self.header.update_description {
            Some(raw) => UpdateDescription {
                updated_fields: raw.updated_fields.clone(),
                removed_fields: raw.removed_fields.clone(),
                truncated_arrays: raw
                    .truncated_arrays
                    .iter()
                    .map(|t| (t.field.clone(), t.new_size))
                    .collect(),
            },
            None => UpdateDescription::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, oid::ObjectId};

    use super::*;

    fn event(ns: Bson, full_document: Bson) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&doc! {
            "_id": { "_data": "8263" },
            "operationType": "insert",
            "fullDocument": full_document,
            "ns": ns,
            "documentKey": { "_id": ObjectId::new() },
        })
        .unwrap()
    }

    #[test]
    fn the_header_passes_over_any_document_and_names_a_bad_field_of_its_own() {
        let ns = || Bson::Document(doc! { "db": "d", "coll": "c" });
        for full_document in [
            Bson::Document(doc! { "a": [1, { "b": ObjectId::new() }] }),
            Bson::Null,
            Bson::String("not a document".into()),
        ] {
            let parsed = Event::parse("c", event(ns(), full_document.clone()));
            assert!(parsed.is_ok(), "{full_document:?}: {parsed:?}");
        }
        // The error of a malformed header names its field, even with the documents present
        // (the explaining decoder reads them another way than the fast one).
        let bad = Event::parse("c", event(Bson::Int32(5), Bson::Document(doc! { "a": 1 })));
        match bad {
            Err(Error::Decode { field, .. }) => assert_eq!(field, "ns"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}
