//! mongrove's own fields (`_id`, version, timestamps) written into a model's raw BSON.
//!
//! [`encode_with_fields`] is every write's entry. It serializes the model once, straight to
//! bytes, with mongrove's values written in as the model's fields go by ([`one_pass`]). A model
//! that does not serialize as a plain struct is serialized alone, and mongrove's values are then
//! written into its bytes in place where they fit ([`with_fields_owned`]), or in a pass that
//! copies the model's other elements as they are ([`with_fields`]). Every path gives the same
//! bytes. The passes over bytes walk the elements with [`crate::raw_walk`], which refuses
//! anything that does not add up.

mod one_pass;

use std::ops::Range;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use serde::Serialize;

use crate::decode::encode_raw;
use crate::error::{Error, Result};
use crate::raw_walk::{Elements, NULL};

/// `value` serialized for a write, with mongrove's fields written in: each of `set` replaces
/// the model's value of that key where it stands, or is appended; an `_id: null` (an `Option`
/// id that serde wrote as null) is dropped, since it would be stored as a real `_id: null`.
/// `id`, if given, is written first when the document has no `_id` of its own: the driver
/// would otherwise prepend one by copying the whole document once more. Pass it only for a
/// model without an id of its own; one that has one takes a slower path to the same bytes.
///
/// `what` names the value in an encoding error ("the document", "a document").
pub(crate) fn encode_with_fields<T: Serialize>(
    collection: &str,
    what: &str,
    value: &T,
    id: Option<ObjectId>,
    set: &[(&'static str, RawBsonRef<'_>)],
) -> Result<RawDocumentBuf> {
    if let Some(raw) = one_pass::encode(value, id, set) {
        return Ok(raw);
    }
    // Not a plain struct, or an error that the path below describes.
    let raw = encode_raw(collection, what, value)?;
    with_fields_owned(collection, raw, id, set)
}

/// `raw` with mongrove's own fields written in, as [`encode_with_fields`] says, in one pass
/// that copies the model's other elements.
fn with_fields(
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

/// [`with_fields`] on a document the caller gives up, in its own buffer when that can be done:
/// a value of mongrove's that has the type of the model's own overwrites it where it stands,
/// the others are appended, and a made `_id` is moved in at the front. A document that needs
/// more (a value of another type to replace, a key twice) takes the copying path. The result
/// is the same byte for byte; what is saved is a second buffer and a pass over the bytes.
fn with_fields_owned(
    collection: &str,
    raw: RawDocumentBuf,
    id: Option<ObjectId>,
    set: &[(&str, RawBsonRef<'_>)],
) -> Result<RawDocumentBuf> {
    const MOST: usize = 4;
    if set.len() > MOST {
        return with_fields(collection, &raw, id, set);
    }
    let bytes = raw.as_bytes();
    let offset = |part: &[u8]| part.as_ptr() as usize - bytes.as_ptr() as usize;
    // Where each of `set` overwrites the model's value, if it does.
    let mut found: [Option<usize>; MOST] = [None; MOST];
    let mut null_id: Option<Range<usize>> = None;
    let mut own_id = false;
    for element in Elements::new(bytes) {
        let Ok(element) = element else {
            // The copying path says what is wrong.
            return with_fields(collection, &raw, id, set);
        };
        if element.key == b"_id" {
            if own_id || null_id.is_some() {
                return with_fields(collection, &raw, id, set);
            }
            if element.kind == NULL {
                let start = offset(element.whole);
                null_id = Some(start..start + element.whole.len());
            } else {
                own_id = true;
            }
            continue;
        }
        let Some(i) = set
            .iter()
            .position(|(key, _)| key.as_bytes() == element.key)
        else {
            continue;
        };
        match fixed(&set[i].1) {
            Some((kind, _)) if kind == element.kind && found[i].is_none() => {
                found[i] = Some(offset(element.value));
            }
            _ => return with_fields(collection, &raw, id, set),
        }
    }
    let mut out = raw.into_bytes();
    for ((_, value), at) in set.iter().zip(found) {
        if let (Some(at), Some((_, bytes))) = (at, fixed(value)) {
            out[at..at + bytes.len()].copy_from_slice(bytes.as_slice());
        }
    }
    out.pop(); // the closing NUL, back after the appended fields
    for ((key, value), at) in set.iter().zip(found) {
        if at.is_none() {
            write_element(&mut out, key, *value);
        }
    }
    out.push(0);
    if let Some(null) = null_id {
        out.drain(null);
    }
    if let (Some(id), false) = (id, own_id) {
        let mut element = [0_u8; 17];
        element[0] = 0x07;
        element[1..5].copy_from_slice(b"_id\0");
        element[5..].copy_from_slice(&id.bytes());
        // Moved along by one copy within the buffer, rather than through `splice`.
        let end = out.len();
        out.resize(end + element.len(), 0);
        out.copy_within(4..end, 4 + element.len());
        out[4..4 + element.len()].copy_from_slice(&element);
    }
    let length = i32::try_from(out.len()).map_err(|_| Error::Encode {
        collection: collection.to_owned(),
        what: "the document".to_owned(),
        reason: "larger than BSON can describe (2 GiB)".to_owned(),
    })?;
    out[..4].copy_from_slice(&length.to_le_bytes());
    RawDocumentBuf::from_bytes(out).map_err(|e| Error::Encode {
        collection: collection.to_owned(),
        what: "the document".to_owned(),
        reason: e.to_string(),
    })
}

/// The type byte and the bytes of a value mongrove writes as it is: ids, versions, timestamps.
fn fixed(value: &RawBsonRef<'_>) -> Option<(u8, Fixed)> {
    Some(match value {
        RawBsonRef::Int64(n) => (0x12, Fixed::Eight(n.to_le_bytes())),
        RawBsonRef::Int32(n) => (0x10, Fixed::Four(n.to_le_bytes())),
        RawBsonRef::DateTime(at) => (0x09, Fixed::Eight(at.timestamp_millis().to_le_bytes())),
        RawBsonRef::ObjectId(id) => (0x07, Fixed::Twelve(id.bytes())),
        _ => return None,
    })
}

/// The bytes of a fixed-size value.
enum Fixed {
    Four([u8; 4]),
    Eight([u8; 8]),
    Twelve([u8; 12]),
}

impl Fixed {
    fn as_slice(&self) -> &[u8] {
        match self {
            Fixed::Four(bytes) => bytes,
            Fixed::Eight(bytes) => bytes,
            Fixed::Twelve(bytes) => bytes,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// Appends one element to a document's bytes under construction. mongrove's own values (ids,
/// versions, timestamps) are written as they are; any other value goes through bson's encoder.
/// The keys are the derive's checked names, which hold no NUL byte.
fn write_element(out: &mut Vec<u8>, key: &str, value: RawBsonRef<'_>) {
    let Some((kind, bytes)) = fixed(&value) else {
        let mut one = RawDocumentBuf::new();
        one.append_ref(key, value);
        // The element alone: without the document's length and closing NUL.
        let bytes = one.as_bytes();
        out.extend_from_slice(&bytes[4..bytes.len() - 1]);
        return;
    };
    out.push(kind);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(bytes.as_slice());
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

    /// The fields every path is checked with: none; a version; a version and timestamps; a
    /// value that fits no model's field in place; more than fit in one pass.
    fn sets(at: mongodb::bson::DateTime) -> Vec<Vec<(&'static str, RawBsonRef<'static>)>> {
        vec![
            vec![],
            vec![("version", RawBsonRef::Int64(0))],
            vec![
                ("version", RawBsonRef::Int64(0)),
                ("created", RawBsonRef::DateTime(at)),
                ("updated", RawBsonRef::DateTime(at)),
            ],
            vec![("created", RawBsonRef::String("text"))],
            vec![
                ("a", RawBsonRef::Int32(1)),
                ("b", RawBsonRef::Int32(2)),
                ("c", RawBsonRef::Int32(3)),
                ("d", RawBsonRef::Int32(4)),
                ("version", RawBsonRef::Int64(5)),
            ],
        ]
    }

    #[test]
    fn in_place_gives_the_bytes_the_copying_path_gives() {
        let id = ObjectId::new();
        let at = mongodb::bson::DateTime::from_millis(1_700_000_000_123);
        let documents = [
            rawdoc! { "a": 1, "version": 7_i64, "b": [1, { "c": "x" }] },
            rawdoc! { "_id": null, "a": 1, "version": 7_i64 },
            rawdoc! { "a": 1, "_id": null },
            rawdoc! { "_id": ObjectId::new(), "version": 3_i64, "created": at },
            rawdoc! { "_id": "key", "a": { "version": 1 } },
            rawdoc! { "version": 3_i32, "a": 1 },
            rawdoc! { "version": null, "created": null },
            rawdoc! { "version": 1_i64, "version": 2_i64 },
            rawdoc! { "_id": null, "_id": 5 },
            rawdoc! {},
            every_type(),
        ];
        let sets = sets(at);
        for document in &documents {
            for set in &sets {
                for made in [None, Some(id)] {
                    let copied = with_fields("c", document, made, set).unwrap();
                    let in_place = with_fields_owned("c", document.clone(), made, set).unwrap();
                    assert_eq!(
                        in_place.as_bytes(),
                        copied.as_bytes(),
                        "{document:?} {set:?} {made:?}"
                    );
                }
            }
        }
    }

    mod models {
        use std::collections::BTreeMap;

        use mongodb::bson::{DateTime, RawDocumentBuf, oid::ObjectId};
        use serde::Serialize;

        #[derive(Serialize, Clone)]
        pub struct Line {
            pub sku: String,
            pub qty: i32,
        }

        #[derive(Serialize, Clone)]
        pub struct Plain {
            #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
            pub id: Option<ObjectId>,
            pub a: i32,
            pub version: i64,
            pub lines: Vec<Line>,
            pub created: Option<DateTime>,
        }

        #[derive(Serialize)]
        pub struct NullId {
            pub a: i32,
            pub _id: Option<ObjectId>,
            pub rest: RawDocumentBuf,
        }

        #[derive(Serialize)]
        pub struct TextId {
            pub _id: String,
            pub version: i32,
            pub updated: String,
        }

        #[derive(Serialize)]
        pub struct Flattened {
            pub a: i32,
            #[serde(flatten)]
            pub rest: BTreeMap<String, i64>,
        }

        #[derive(Serialize)]
        #[serde(transparent)]
        pub struct Wrapped(pub Plain);

        #[derive(Serialize)]
        pub struct Twice {
            #[serde(rename = "version")]
            pub first: i64,
            #[serde(rename = "version")]
            pub second: i64,
        }
    }

    /// The one pass, and whether it alone made the bytes (no fallback).
    fn one_pass_of<T: Serialize>(
        value: &T,
        id: Option<ObjectId>,
        set: &[(&'static str, RawBsonRef<'_>)],
    ) -> (RawDocumentBuf, bool) {
        let alone = one_pass::encode(value, id, set);
        let out = encode_with_fields("c", "the document", value, id, set).unwrap();
        if let Some(alone) = &alone {
            assert_eq!(alone.as_bytes(), out.as_bytes());
        }
        (out, alone.is_some())
    }

    #[test]
    fn one_pass_gives_the_bytes_the_copying_path_gives() {
        use models::*;
        let at = mongodb::bson::DateTime::from_millis(1_700_000_000_123);
        let plain = Plain {
            id: None,
            a: 1,
            version: 7,
            lines: vec![Line {
                sku: "x".into(),
                qty: 2,
            }],
            created: None,
        };
        let with_id = Plain {
            id: Some(ObjectId::new()),
            created: Some(at),
            ..plain.clone()
        };
        let rest: std::collections::BTreeMap<String, i64> =
            [("version".to_owned(), 4), ("b".to_owned(), 5)].into();
        let sets = sets(at);
        let null_id = NullId {
            a: 1,
            _id: None,
            rest: every_type(),
        };
        let text_id = TextId {
            _id: "key".into(),
            version: 3,
            updated: "then".into(),
        };
        let twice = Twice {
            first: 1,
            second: 2,
        };
        // Each model, and whether the one pass takes it with no made id, and with one.
        check("plain", &plain, [true, true], &sets);
        check("own id", &with_id, [true, false], &sets);
        check("null id", &null_id, [true, true], &sets);
        check("text id", &text_id, [true, false], &sets);
        check(
            "flattened",
            &Flattened { a: 1, rest },
            [false, false],
            &sets,
        );
        check("transparent", &Wrapped(plain.clone()), [true, true], &sets);
        check("twice", &twice, [true, true], &sets);
    }

    fn check<T: Serialize>(
        name: &str,
        model: &T,
        takes: [bool; 2],
        sets: &[Vec<(&'static str, RawBsonRef<'_>)>],
    ) {
        let encoded = encode_raw("c", "the document", model).unwrap();
        for set in sets {
            for (made, takes) in [None, Some(ObjectId::new())].into_iter().zip(takes) {
                let copied = with_fields("c", &encoded, made, set).unwrap();
                let (out, alone) = one_pass_of(model, made, set);
                assert_eq!(out.as_bytes(), copied.as_bytes(), "{name} {set:?} {made:?}");
                // More than four fields, or a field of mongrove's written twice, always take
                // the other path.
                let twice = name == "twice" && set.iter().any(|(k, _)| *k == "version");
                let expected = takes && set.len() <= one_pass::MOST && !twice;
                assert_eq!(alone, expected, "{name} {set:?} {made:?}");
            }
        }
    }

    #[test]
    fn one_pass_refuses_what_encoding_refuses() {
        let mut bad = std::collections::BTreeMap::new();
        bad.insert("a\0b".to_owned(), 1);
        #[derive(Serialize)]
        struct WithMap {
            m: std::collections::BTreeMap<String, i32>,
        }
        let error =
            encode_with_fields("c", "the document", &WithMap { m: bad }, None, &[]).unwrap_err();
        let Error::Encode { what, reason, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(what.contains("m"), "{what}: {reason}");
        let error = encode_with_fields("c", "the document", &5_i32, None, &[]).unwrap_err();
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    }

    #[test]
    fn in_place_refuses_what_the_copying_path_refuses() {
        let good = rawdoc! { "s": "text", "version": 1_i64 };
        let mut corrupt = good.as_bytes().to_vec();
        corrupt[7..11].copy_from_slice(&1000_i32.to_le_bytes());
        let corrupt = RawDocumentBuf::from_bytes(corrupt).unwrap();
        let set = [("version", RawBsonRef::Int64(0))];
        assert!(with_fields_owned("c", corrupt, None, &set).is_err());
    }
}
