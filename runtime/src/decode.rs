//! Documents from the server into models, with errors that name the document and the field.

use mongodb::bson::{self, Bson, Document, RawDocument};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Decodes a raw document. The fast path is serde straight from the bytes; only when that fails
/// is the document decoded again with path tracking, to name the field that does not fit.
pub(crate) fn decode<T: DeserializeOwned>(collection: &str, raw: &RawDocument) -> Result<T> {
    match bson::from_slice::<T>(raw.as_bytes()) {
        Ok(value) => Ok(value),
        Err(fast_error) => Err(explain::<T>(collection, raw, fast_error.to_string())),
    }
}

/// Decodes an owned document (from `findAndModify`, change events, ...).
pub(crate) fn decode_document<T: DeserializeOwned>(collection: &str, doc: Document) -> Result<T> {
    let id = doc.get("_id").cloned();
    let tracked =
        serde_path_to_error::deserialize::<_, T>(bson::Deserializer::new(Bson::Document(doc)));
    tracked.map_err(|e| decode_error(collection, id, e.path().to_string(), e.inner().to_string()))
}

fn explain<T: DeserializeOwned>(collection: &str, raw: &RawDocument, fast_reason: String) -> Error {
    let id = raw
        .get("_id")
        .ok()
        .flatten()
        .and_then(|id| Bson::try_from(id.to_raw_bson()).ok());
    match Document::try_from(raw) {
        Ok(doc) => match decode_document::<T>(collection, doc) {
            Err(error) => error,
            // The tracking decoder accepted what the raw one refused: keep the raw reason.
            Ok(_) => decode_error(collection, id, ".".to_owned(), fast_reason),
        },
        Err(e) => decode_error(
            collection,
            id,
            ".".to_owned(),
            format!("malformed BSON: {e}"),
        ),
    }
}

fn decode_error(collection: &str, id: Option<Bson>, path: String, reason: String) -> Error {
    // serde reports a missing field at the level of its parent, with the name in the message.
    let field = match reason.strip_prefix("missing field `") {
        Some(rest) => {
            let name = rest.split('`').next().unwrap_or(rest);
            if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        }
        None => path,
    };
    Error::Decode {
        collection: collection.to_owned(),
        id,
        field,
        reason,
    }
}

/// Encodes a model or value into a document for the server.
pub(crate) fn encode<T: Serialize>(collection: &str, value: &T) -> Result<Document> {
    bson::to_document(value).map_err(|e| Error::Encode {
        collection: collection.to_owned(),
        what: "the document".to_owned(),
        reason: e.to_string(),
    })
}
