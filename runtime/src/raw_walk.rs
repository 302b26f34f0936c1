//! A walk over a BSON document's elements by the sizes the specification gives each type.
//!
//! bson's `RawIter` checks every key and value on the way (UTF-8, lengths, nested documents'
//! headers) at several times the cost of the walk itself. mongrove walks bytes where it only
//! needs the layout: to write its own fields into a serialized model (`raw_fields`) and to
//! bound a document's nesting before serde decodes it (`decode`). The walk checks that every
//! element fits inside its document and refuses anything that does not add up; what the values
//! mean is left to the decoder that reads them afterwards.

/// The type byte of `null`.
pub(crate) const NULL: u8 = 0x0A;
/// The type byte of an embedded document.
pub(crate) const DOCUMENT: u8 = 0x03;
/// The type byte of an array.
pub(crate) const ARRAY: u8 = 0x04;

/// One element of a document: its key's bytes (without the NUL), all its bytes (type, key,
/// value), its value's bytes, and its type byte.
pub(crate) struct Element<'b> {
    pub(crate) key: &'b [u8],
    pub(crate) whole: &'b [u8],
    pub(crate) value: &'b [u8],
    pub(crate) kind: u8,
}

/// The elements of one document's bytes (not of the documents inside it), in order.
pub(crate) struct Elements<'b> {
    bytes: &'b [u8],
    at: usize,
    /// Where the elements end: the document's closing NUL.
    end: usize,
    failed: bool,
}

impl<'b> Elements<'b> {
    /// The elements of `bytes`, a whole document: its length, its elements, its closing NUL.
    pub(crate) fn new(bytes: &'b [u8]) -> Self {
        Elements {
            bytes,
            at: 4,
            end: bytes.len().saturating_sub(1),
            failed: false,
        }
    }

    fn element(&self) -> Option<Element<'b>> {
        let rest = self.bytes.get(self.at..self.end)?;
        let (&kind, after_kind) = rest.split_first()?;
        let key_len = after_kind.iter().position(|b| *b == 0)?;
        let value = after_kind.get(key_len + 1..)?;
        let size = value_size(kind, value)?;
        let value = value.get(..size)?;
        Some(Element {
            key: &after_kind[..key_len],
            whole: &rest[..1 + key_len + 1 + size],
            value,
            kind,
        })
    }
}

impl<'b> Iterator for Elements<'b> {
    type Item = std::result::Result<Element<'b>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.end {
            return None;
        }
        match self.element() {
            Some(element) => {
                self.at += element.whole.len();
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
        // document, array, code with scope: the length counts itself, and is at least the
        // length and the closing NUL
        DOCUMENT | ARRAY | 0x0F => length(0).filter(|n| *n >= 5),
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
pub(crate) mod tests {
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{
        Binary, Bson, DateTime, Decimal128, JavaScriptCodeWithScope, RawDocumentBuf, Regex,
        Timestamp, doc, rawdoc,
    };

    use super::*;

    /// A document with an element of every BSON type.
    pub(crate) fn every_type() -> RawDocumentBuf {
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
        let walked: Vec<(String, usize, usize)> = Elements::new(raw.as_bytes())
            .map(|e| {
                let e = e.unwrap();
                let key = String::from_utf8(e.key.to_vec()).unwrap();
                (key, e.whole.len(), e.value.len())
            })
            .collect();
        let iterated: Vec<(String, usize, usize)> = raw
            .iter_elements()
            .map(|e| {
                let e = e.unwrap();
                (e.key().to_owned(), 2 + e.key().len() + e.len(), e.len())
            })
            .collect();
        assert_eq!(walked, iterated);
        assert_eq!(walked.len(), 21);
    }

    #[test]
    fn a_nested_documents_value_is_a_whole_document() {
        let raw = rawdoc! { "a": { "b": [1, 2] } };
        let a = Elements::new(raw.as_bytes()).next().unwrap().unwrap();
        assert_eq!(a.kind, DOCUMENT);
        let b = Elements::new(a.value).next().unwrap().unwrap();
        assert_eq!((b.key, b.kind), (&b"b"[..], ARRAY));
        let items: Vec<u8> = Elements::new(b.value).map(|e| e.unwrap().kind).collect();
        assert_eq!(items, [0x10, 0x10]);
    }

    #[test]
    fn bytes_that_do_not_add_up_are_an_error_not_a_panic() {
        let good = rawdoc! { "s": "text", "n": 1, "d": { "x": 1 } };
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
        // A nested document whose length is shorter than a document can be.
        for length in [0_i32, 4, -1] {
            let mut tiny = rawdoc! { "d": {} }.into_bytes();
            tiny[7..11].copy_from_slice(&length.to_le_bytes());
            assert!(Elements::new(&tiny).next().unwrap().is_err(), "{length}");
        }
    }
}
