//! mongrove's own fields (`_id`, version, timestamps) written into a model's raw BSON.
//!
//! A write serializes the model once, straight to bytes; this module then writes mongrove's
//! values in one pass that copies the model's other elements as they are. It walks the
//! elements with [`crate::raw_walk`]: the bytes come from bson's own serializer, and the walk
//! still refuses anything that does not add up.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{Error, Result};
use crate::raw_walk::{Elements, NULL};

/// `raw` with mongrove's own fields written in: each of `set` replaces the model's value of
/// that key where it stands, or is appended; an `_id: null` (an `Option` id that serde wrote as
/// null) is dropped, since it would be stored as a real `_id: null`. `id`, if given, is written
/// first when the document has no `_id` of its own: the driver would otherwise prepend one by
/// copying the whole document once more.
pub(crate) fn with_fields(
    collection: &str,
    raw: &RawDocument,
    id: Option<ObjectId>,
    set: &[(&str, RawBsonRef<'_>)],
) -> Result<RawDocumentBuf> {
    let malformed = |reason: String| Error::Encode {
        collection: collection.to_owned(),
        what: "the document".to_owned(),
        reason,
    };
    if set.len() > 64 {
        return Err(malformed(format!(
            "{} fields to set; at most 64",
            set.len()
        )));
    }
    let bytes = raw.as_bytes();
    // Room for the document, a made `_id` and mongrove's elements (type, key, NUL, 8 bytes).
    let own: usize = set.iter().map(|(key, _)| key.len() + 10).sum();
    let mut out = Vec::with_capacity(bytes.len() + 17 + own);
    out.extend_from_slice(&[0; 4]);
    // Provisional until the pass finds whether the document has an `_id` of its own.
    let mut made_id = id.map(|id| {
        write_element(&mut out, "_id", RawBsonRef::ObjectId(id));
        4..out.len()
    });
    let mut written: u64 = 0;
    for element in Elements::new(bytes) {
        let element = element.map_err(malformed)?;
        let key = element.key;
        if key == b"_id" {
            if element.kind == NULL {
                continue;
            }
            if let Some(made) = made_id.take() {
                out.drain(made);
            }
            out.extend_from_slice(element.whole);
            continue;
        }
        match set.iter().position(|(k, _)| k.as_bytes() == key) {
            Some(i) => {
                if written & (1 << i) == 0 {
                    written |= 1 << i;
                    write_element(&mut out, set[i].0, set[i].1);
                }
            }
            None => out.extend_from_slice(element.whole),
        }
    }
    for (i, (key, value)) in set.iter().enumerate() {
        if written & (1 << i) == 0 {
            write_element(&mut out, key, *value);
        }
    }
    out.push(0);
    let length = i32::try_from(out.len())
        .map_err(|_| malformed("larger than BSON can describe (2 GiB)".to_owned()))?;
    out[..4].copy_from_slice(&length.to_le_bytes());
    RawDocumentBuf::from_bytes(out).map_err(|e| malformed(e.to_string()))
}

/// Appends one element to a document's bytes under construction. mongrove's own values (ids,
/// versions, timestamps) are written as they are; any other value goes through bson's encoder.
/// The keys are the derive's checked names, which hold no NUL byte.
fn write_element(out: &mut Vec<u8>, key: &str, value: RawBsonRef<'_>) {
    let (kind, value): (u8, &[u8]) = match &value {
        RawBsonRef::Int64(n) => (0x12, &n.to_le_bytes()),
        RawBsonRef::Int32(n) => (0x10, &n.to_le_bytes()),
        RawBsonRef::DateTime(at) => (0x09, &at.timestamp_millis().to_le_bytes()),
        RawBsonRef::ObjectId(id) => (0x07, &id.bytes()),
        _ => {
            let mut one = RawDocumentBuf::new();
            one.append_ref(key, value);
            // The element alone: without the document's length and closing NUL.
            let bytes = one.as_bytes();
            out.extend_from_slice(&bytes[4..bytes.len() - 1]);
            return;
        }
    };
    out.push(kind);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use mongodb::bson::rawdoc;

    use super::*;
    use crate::raw_walk::tests::every_type;

    #[test]
    fn every_other_element_is_copied_unchanged() {
        let raw = every_type();
        let out = with_fields("c", &raw, None, &[("version", RawBsonRef::Int64(0))]).unwrap();
        let mut expected = raw.to_document().unwrap();
        expected.insert("version", 0_i64);
        assert_eq!(out.to_document().unwrap(), expected);
    }

    #[test]
    fn mongroves_fields_are_written_in_place_and_a_null_id_dropped() {
        let raw = rawdoc! { "_id": null, "a": 1, "version": 9_i64, "b": 2 };
        let set = [
            ("version", RawBsonRef::Int64(0)),
            ("at", RawBsonRef::Int32(5)),
        ];
        let out = with_fields("c", &raw, None, &set).unwrap();
        assert_eq!(out, rawdoc! { "a": 1, "version": 0_i64, "b": 2, "at": 5 });
    }

    #[test]
    fn a_made_id_goes_first_and_replaces_a_null_one() {
        let id = ObjectId::new();
        let raw = rawdoc! { "a": { "x": [1, 2] }, "_id": null, "version": 3_i64 };
        let out = with_fields("c", &raw, Some(id), &[("version", RawBsonRef::Int64(0))]).unwrap();
        assert_eq!(
            out,
            rawdoc! { "_id": id, "a": { "x": [1, 2] }, "version": 0_i64 }
        );
        let empty = with_fields("c", &rawdoc! {}, Some(id), &[]).unwrap();
        assert_eq!(empty, rawdoc! { "_id": id });
    }

    #[test]
    fn a_documents_own_id_wins_over_a_made_one() {
        let own = ObjectId::new();
        let raw = rawdoc! { "a": 1, "_id": own, "version": 3_i64 };
        let set = [
            ("version", RawBsonRef::Int64(4)),
            ("at", RawBsonRef::Int32(5)),
        ];
        let out = with_fields("c", &raw, Some(ObjectId::new()), &set).unwrap();
        assert_eq!(
            out,
            rawdoc! { "a": 1, "_id": own, "version": 4_i64, "at": 5 }
        );
        let text = rawdoc! { "_id": "key", "b": [1, "x", { "c": null }] };
        let out = with_fields("c", &text, Some(ObjectId::new()), &[]).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn each_value_is_written_as_bsons_encoder_writes_it() {
        let id = ObjectId::new();
        let at = mongodb::bson::DateTime::from_millis(1_700_000_000_123);
        let values = [
            RawBsonRef::Int64(-3),
            RawBsonRef::Int32(7),
            RawBsonRef::DateTime(at),
            RawBsonRef::ObjectId(id),
            RawBsonRef::String("by the encoder"),
            RawBsonRef::Boolean(true),
        ];
        for value in values {
            let mut expected = RawDocumentBuf::new();
            expected.append_ref("a", 1);
            expected.append_ref("v", value);
            let out = with_fields("c", &rawdoc! { "a": 1 }, None, &[("v", value)]).unwrap();
            assert_eq!(out, expected, "{value:?}");
            let replaced = with_fields("c", &rawdoc! { "v": null, "a": 1 }, None, &[("v", value)]);
            assert_eq!(replaced.unwrap().get("v").unwrap(), Some(value));
        }
    }
}
