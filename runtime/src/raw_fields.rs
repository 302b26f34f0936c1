//! mongrove's own fields (`_id`, version, timestamps) written into a model's raw BSON.
//!
//! A write serializes the model once, straight to bytes; this module then writes mongrove's
//! values in one pass that copies the model's other elements as they are. It walks the
//! elements by the sizes the BSON specification gives each type rather than with bson's
//! `RawIter`, which checks every key and value on the way at several times the cost: the bytes
//! come from bson's own serializer, and the walk still refuses anything that does not add up.

use std::ops::Range;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{Error, Result};

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
    // mongrove's own elements, encoded once (into room for the usual three), each remembered by
    // its byte range (an element appended to a raw document ends just before the document's
    // closing NUL). Their keys are the derive's checked names, so `append_ref` cannot meet a
    // NUL byte.
    let mut empty = Vec::with_capacity(64);
    empty.extend_from_slice(&[5, 0, 0, 0, 0]);
    let mut fresh = RawDocumentBuf::from_bytes(empty).map_err(|e| malformed(e.to_string()))?;
    let mut appended = |key: &str, value: RawBsonRef<'_>| {
        let start = fresh.as_bytes().len() - 1;
        fresh.append_ref(key, value);
        start..fresh.as_bytes().len() - 1
    };
    let id_range = id.map(|id| appended("_id", RawBsonRef::ObjectId(id)));
    let set_ranges: Vec<Range<usize>> = set.iter().map(|(k, v)| appended(k, *v)).collect();
    let fresh_bytes = fresh.as_bytes();

    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + fresh_bytes.len());
    out.extend_from_slice(&[0; 4]);
    // Provisional until the pass finds whether the document has an `_id` of its own.
    let mut made_id = id_range.map(|range| {
        out.extend_from_slice(&fresh_bytes[range.clone()]);
        4..4 + range.len()
    });
    let mut written: u64 = 0;
    for element in Elements::new(bytes) {
        let element = element.map_err(malformed)?;
        let key = &bytes[element.key.clone()];
        if key == b"_id" {
            if element.kind == NULL {
                continue;
            }
            if let Some(made) = made_id.take() {
                out.drain(made);
            }
            out.extend_from_slice(&bytes[element.whole]);
            continue;
        }
        match set.iter().position(|(k, _)| k.as_bytes() == key) {
            Some(i) => {
                if written & (1 << i) == 0 {
                    written |= 1 << i;
                    out.extend_from_slice(&fresh_bytes[set_ranges[i].clone()]);
                }
            }
            None => out.extend_from_slice(&bytes[element.whole]),
        }
    }
    for (i, range) in set_ranges.iter().enumerate() {
        if written & (1 << i) == 0 {
            out.extend_from_slice(&fresh_bytes[range.clone()]);
        }
    }
    out.push(0);
    let length = i32::try_from(out.len())
        .map_err(|_| malformed("larger than BSON can describe (2 GiB)".to_owned()))?;
    out[..4].copy_from_slice(&length.to_le_bytes());
    RawDocumentBuf::from_bytes(out).map_err(|e| malformed(e.to_string()))
}

/// The type byte of `null`.
const NULL: u8 = 0x0A;

/// One top-level element: its key's bytes, all its bytes (type, key, value), its type byte.
struct Element {
    key: Range<usize>,
    whole: Range<usize>,
    kind: u8,
}

/// The top-level elements of a document's bytes, in order.
struct Elements<'b> {
    bytes: &'b [u8],
    at: usize,
    /// Where the elements end: the document's closing NUL.
    end: usize,
    failed: bool,
}

impl<'b> Elements<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Elements {
            bytes,
            at: 4,
            end: bytes.len().saturating_sub(1),
            failed: false,
        }
    }

    fn element(&self) -> Option<Element> {
        let kind = *self.bytes.get(self.at)?;
        let key_start = self.at + 1;
        let key_len = self
            .bytes
            .get(key_start..self.end)?
            .iter()
            .position(|b| *b == 0)?;
        let value = key_start + key_len + 1;
        let size = value_size(kind, self.bytes.get(value..self.end)?)?;
        let next = value.checked_add(size).filter(|next| *next <= self.end)?;
        Some(Element {
            key: key_start..key_start + key_len,
            whole: self.at..next,
            kind,
        })
    }
}

impl Iterator for Elements<'_> {
    type Item = std::result::Result<Element, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.end {
            return None;
        }
        match self.element() {
            Some(element) => {
                self.at = element.whole.end;
                Some(Ok(element))
            }
            None => {
                self.failed = true;
                Some(Err(format!(
                    "malformed BSON: the element at byte {} does not fit the document",
                    self.at
                )))
            }
        }
    }
}

/// The size of a value of BSON type `kind` that starts `rest`, as the specification gives it.
fn value_size(kind: u8, rest: &[u8]) -> Option<usize> {
    let length = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = rest.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(i32::from_le_bytes(bytes)).ok()
    };
    let cstring =
        |at: usize| -> Option<usize> { Some(rest.get(at..)?.iter().position(|b| *b == 0)? + 1) };
    match kind {
        // double, datetime, timestamp, int64
        0x01 | 0x09 | 0x11 | 0x12 => Some(8),
        // string, JavaScript code, symbol: length, then that many bytes (with the NUL)
        0x02 | 0x0D | 0x0E => Some(4 + length(0)?),
        // document, array, code with scope: the length counts itself
        0x03 | 0x04 | 0x0F => length(0),
        // binary: length, subtype, bytes
        0x05 => Some(5 + length(0)?),
        // undefined, null, min key, max key
        0x06 | NULL | 0xFF | 0x7F => Some(0),
        0x07 => Some(12),
        0x08 => Some(1),
        // regular expression: pattern and options, two C strings
        0x0B => {
            let pattern = cstring(0)?;
            Some(pattern + cstring(pattern)?)
        }
        // DB pointer: a string, then an ObjectId
        0x0C => Some(4 + length(0)? + 12),
        0x10 => Some(4),
        0x13 => Some(16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{
        Binary, Bson, DateTime, Decimal128, JavaScriptCodeWithScope, Regex, Timestamp, doc, rawdoc,
    };

    use super::*;

    /// A document with an element of every BSON type.
    fn every_type() -> RawDocumentBuf {
        let document = doc! {
            "double": 1.5,
            "string": "text é",
            "document": { "a": 1, "b": [1, "x"] },
            "array": [1, { "c": null }],
            "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "undefined": Bson::Undefined,
            "oid": ObjectId::new(),
            "bool": true,
            "date": DateTime::from_millis(5),
            "null": null,
            "regex": Regex { pattern: "^a.*".into(), options: "i".into() },
            "code": Bson::JavaScriptCode("f()".into()),
            "symbol": Bson::Symbol("s".into()),
            "scoped": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! { "x": 1 } },
            "int32": 7,
            "timestamp": Timestamp { time: 1, increment: 2 },
            "int64": 8_i64,
            "decimal": Decimal128::from_bytes([1; 16]),
            "min": Bson::MinKey,
            "max": Bson::MaxKey,
            "version": 3_i64,
        };
        RawDocumentBuf::from_document(&document).unwrap()
    }

    #[test]
    fn the_walk_finds_the_elements_bsons_iterator_finds() {
        let raw = every_type();
        let walked: Vec<(String, usize)> = Elements::new(raw.as_bytes())
            .map(|e| {
                let e = e.unwrap();
                let key = String::from_utf8(raw.as_bytes()[e.key].to_vec()).unwrap();
                (key, e.whole.len())
            })
            .collect();
        let iterated: Vec<(String, usize)> = raw
            .iter_elements()
            .map(|e| {
                let e = e.unwrap();
                (e.key().to_owned(), 2 + e.key().len() + e.len())
            })
            .collect();
        assert_eq!(walked, iterated);
        assert_eq!(walked.len(), 21);
    }

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
    fn bytes_that_do_not_add_up_are_an_error_not_a_panic() {
        let good = rawdoc! { "s": "text", "n": 1 };
        let bytes = good.as_bytes();
        // Every truncation and every corrupted string length: an error or a whole document,
        // never a panic or an element read past the end.
        for cut in 5..bytes.len() {
            let mut short = bytes[..cut].to_vec();
            short.push(0);
            let _ = Elements::new(&short).collect::<Vec<_>>();
        }
        let mut corrupt = bytes.to_vec();
        // The string's length field follows the type byte and the key `s\0`.
        corrupt[7..11].copy_from_slice(&1000_i32.to_le_bytes());
        let walked: Vec<_> = Elements::new(&corrupt).collect();
        assert!(walked.last().unwrap().is_err(), "{}", walked.len());
        corrupt[7..11].copy_from_slice(&(-5_i32).to_le_bytes());
        assert!(Elements::new(&corrupt).any(|e| e.is_err()));
        let mut unknown = bytes.to_vec();
        unknown[4] = 0x42;
        assert!(Elements::new(&unknown).next().unwrap().is_err());
    }
}
