//! Documents from the server into models, with errors that name the document and the field.

use mongodb::bson::{self, Bson, Document, RawDocument, RawDocumentBuf};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::raw_walk::{ARRAY, DOCUMENT, Elements};

/// The deepest nesting of embedded documents and arrays that is decoded into a model; a deeper
/// document is [`Error::Decode`]. serde's BSON decoder recurses once per level, about 17 KiB of
/// stack per level in a debug build, so a document nested ~115 levels deep overflows a 2 MiB
/// thread stack (tokio's default): the process aborts, which no error handling can catch.
/// 64 levels leave room for the caller's own stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// The fewest bytes one level of nesting takes (type byte, empty key, empty document): a
/// document shorter than `MIN_LEVEL_BYTES * MAX_DEPTH` cannot be too deep, and is not walked.
const MIN_LEVEL_BYTES: usize = 7;

/// Decodes a raw document. The fast path is serde straight from the bytes; only when that fails
/// is the document decoded again with path tracking, to name the field that does not fit.
pub(crate) fn decode<T: DeserializeOwned>(collection: &str, raw: &RawDocument) -> Result<T> {
    decode_passing_over(collection, raw, &[])
}

/// [`decode`] for a type that reads the top-level fields `passed_over` without descending into
/// them (as raw bytes, or not at all), so that their nesting is not checked here: a change
/// event's header, whose documents are decoded, and checked, on their own.
pub(crate) fn decode_passing_over<T: DeserializeOwned>(
    collection: &str,
    raw: &RawDocument,
    passed_over: &[&str],
) -> Result<T> {
    if raw.as_bytes().len() >= MIN_LEVEL_BYTES * MAX_DEPTH {
        check_raw_depth(collection, raw, passed_over)?;
    }
    match bson::from_slice::<T>(raw.as_bytes()) {
        Ok(value) => Ok(value),
        Err(fast_error) => Err(explain::<T>(collection, raw, fast_error.to_string())),
    }
}

/// Decodes an owned document (from `findAndModify`, change events, ...).
pub(crate) fn decode_document<T: DeserializeOwned>(collection: &str, doc: Document) -> Result<T> {
    let id = doc.get("_id").cloned();
    if let Some(path) = too_deep(&doc) {
        return Err(depth_error(collection, id, path));
    }
    let tracked =
        serde_path_to_error::deserialize::<_, T>(bson::Deserializer::new(Bson::Document(doc)));
    tracked.map_err(|e| decode_error(collection, id, e.path().to_string(), e.inner().to_string()))
}

fn explain<T: DeserializeOwned>(collection: &str, raw: &RawDocument, fast_reason: String) -> Error {
    let id = raw_id(raw);
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
        id: id.map(Into::into),
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

/// A raw document's `_id`, if it has one that converts to a `Bson` value.
pub(crate) fn raw_id(raw: &RawDocument) -> Option<Bson> {
    let id = raw.get("_id").ok().flatten()?;
    Bson::try_from(id.to_raw_bson()).ok()
}

/// Encodes a model straight to raw BSON for a write, without building a `Document` first.
///
/// bson's raw serializer refuses a NUL byte in a field name or a regular expression (it writes
/// them as C strings); only then is the model encoded again as a `Document`, so that the error
/// names the field as [`check_names`] does.
pub(crate) fn encode_raw<T: Serialize>(
    collection: &str,
    what: &str,
    value: &T,
) -> Result<RawDocumentBuf> {
    match bson::to_raw_document_buf(value) {
        Ok(raw) => Ok(raw),
        Err(raw_error) => {
            let doc = encode(collection, value)?;
            check_names(collection, what, &doc)?;
            Err(Error::Encode {
                collection: collection.to_owned(),
                what: what.to_owned(),
                reason: raw_error.to_string(),
            })
        }
    }
}

fn depth_error(collection: &str, id: Option<Bson>, path: String) -> Error {
    Error::Decode {
        collection: collection.to_owned(),
        id: id.map(Into::into),
        field: path,
        reason: format!(
            "the document is nested more than {MAX_DEPTH} levels deep here; mongrove does not \
             decode it (serde's decoder would overflow the stack)"
        ),
    }
}

/// Refuses a raw document nested deeper than [`MAX_DEPTH`], without recursion, except in its
/// top-level fields `passed_over`. The walk reads only the layout (see `raw_walk`): the decoder
/// checks the values afterwards.
fn check_raw_depth(collection: &str, raw: &RawDocument, passed_over: &[&str]) -> Result<()> {
    let id = || raw_id(raw);
    // The open containers, innermost last, each with the key it was found under.
    let mut stack: Vec<(Elements<'_>, &[u8])> = Vec::with_capacity(8);
    stack.push((Elements::new(raw.as_bytes()), b""));
    while let Some((elements, _)) = stack.last_mut() {
        let Some(element) = elements.next() else {
            stack.pop();
            continue;
        };
        let element = element.map_err(|reason| Error::Decode {
            collection: collection.to_owned(),
            id: id().map(Into::into),
            field: ".".to_owned(),
            reason,
        })?;
        if !matches!(element.kind, DOCUMENT | ARRAY)
            || (stack.len() == 1 && passed_over.iter().any(|key| key.as_bytes() == element.key))
        {
            continue;
        }
        if stack.len() >= MAX_DEPTH {
            let path = stack[1..]
                .iter()
                .map(|(_, key)| *key)
                .chain([element.key])
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(".");
            return Err(depth_error(collection, id(), path));
        }
        stack.push((Elements::new(element.value), element.key));
    }
    Ok(())
}

/// The path at which `doc` goes deeper than [`MAX_DEPTH`], if it does.
fn too_deep(doc: &Document) -> Option<String> {
    // (container, its depth, its path); the top-level document is depth 1.
    let mut stack: Vec<(&Bson, usize, String)> = doc
        .iter()
        .map(|(key, value)| (value, 2, key.clone()))
        .collect();
    while let Some((value, depth, path)) = stack.pop() {
        let children: Vec<(&Bson, String)> = match value {
            Bson::Document(doc) => doc.iter().map(|(k, v)| (v, k.clone())).collect(),
            Bson::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (v, i.to_string()))
                .collect(),
            _ => continue,
        };
        if depth > MAX_DEPTH {
            return Some(path);
        }
        for (child, key) in children {
            if matches!(child, Bson::Document(_) | Bson::Array(_)) {
                stack.push((child, depth + 1, format!("{path}.{key}")));
            }
        }
    }
    None
}

/// Refuses, before anything is sent, a field name or regular expression that BSON cannot hold:
/// one with a NUL byte (the encoder would fail, or panic, or the server would read a broken
/// message). `what` names the document (`the filter`, `the document`, ...).
pub(crate) fn check_names(collection: &str, what: &str, doc: &Document) -> Result<()> {
    if !has_nul(doc) {
        return Ok(());
    }
    let (path, thing) = nul_path(doc, "").unwrap_or_else(|| (".".to_owned(), "a name"));
    Err(Error::Encode {
        collection: collection.to_owned(),
        what: format!("{what}, at `{}`", path.replace('\0', "\\0")),
        reason: format!("{thing} contains a NUL byte, which BSON cannot hold"),
    })
}

/// The fast scan: no allocation but the stack of containers still to look into.
fn has_nul(doc: &Document) -> bool {
    fn scan<'d>(doc: &'d Document, stack: &mut Vec<&'d Bson>) -> bool {
        for (key, value) in doc {
            if key.contains('\0') {
                return true;
            }
            if matches!(
                value,
                Bson::Document(_) | Bson::Array(_) | Bson::RegularExpression(_)
            ) {
                stack.push(value);
            }
        }
        false
    }
    let mut stack: Vec<&Bson> = Vec::new();
    if scan(doc, &mut stack) {
        return true;
    }
    while let Some(value) = stack.pop() {
        match value {
            Bson::Document(child) if scan(child, &mut stack) => return true,
            Bson::Array(items) => stack.extend(items.iter()),
            Bson::RegularExpression(regex)
                if regex.pattern.contains('\0') || regex.options.contains('\0') =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// Where the NUL byte is, for the error (only called once one is known to exist).
fn nul_path(doc: &Document, prefix: &str) -> Option<(String, &'static str)> {
    for (key, value) in doc {
        let path = join(prefix, key);
        if key.contains('\0') {
            return Some((path, "the field name"));
        }
        if let Some(found) = nul_path_in(value, &path) {
            return Some(found);
        }
    }
    None
}

fn nul_path_in(value: &Bson, path: &str) -> Option<(String, &'static str)> {
    match value {
        Bson::Document(doc) => nul_path(doc, path),
        Bson::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path_in(item, &join(path, &i.to_string()))),
        Bson::RegularExpression(regex)
            if regex.pattern.contains('\0') || regex.options.contains('\0') =>
        {
            Some((path.to_owned(), "the regular expression"))
        }
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{Regex, doc};

    #[test]
    fn raw_encoding_refuses_nul_bytes_naming_the_field() {
        use std::collections::BTreeMap;
        #[derive(serde::Serialize)]
        struct M {
            tags: BTreeMap<String, BTreeMap<String, i32>>,
            pattern: Regex,
        }
        let regex = |p: &str| Regex {
            pattern: p.into(),
            options: String::new(),
        };
        let nested = BTreeMap::from([("in\0ner".to_owned(), 1)]);
        let key = M {
            tags: BTreeMap::from([("outer".to_owned(), nested)]),
            pattern: regex("ok"),
        };
        let error = encode_raw("c", "the document", &key).unwrap_err();
        let Error::Encode { what, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(what.contains("tags.outer.in\\0ner"), "{what}");
        let bad_regex = M {
            tags: BTreeMap::new(),
            pattern: regex("a\0"),
        };
        let error = encode_raw("c", "the document", &bad_regex).unwrap_err();
        assert!(
            matches!(&error, Error::Encode { what, .. } if what.contains("pattern")),
            "{error:?}"
        );
    }

    #[test]
    fn nul_bytes_in_names_and_regexes_are_found_with_their_path() {
        let clean = doc! { "a": { "b": [1, { "c": "x\0y" }] } };
        assert!(check_names("c", "the filter", &clean).is_ok());
        let key = doc! { "a": { "b": [1, { "c\0d": 1 }] } };
        let error = check_names("c", "the filter", &key)
            .unwrap_err()
            .to_string();
        assert!(error.contains("a.b.1.c\\0d"), "{error}");
        assert!(error.contains("field name contains a NUL byte"), "{error}");
        let regex = doc! { "name": { "$regex": Bson::RegularExpression(Regex { pattern: "a\0".into(), options: String::new() }) } };
        let error = check_names("c", "the filter", &regex)
            .unwrap_err()
            .to_string();
        assert!(error.contains("name.$regex"), "{error}");
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let mut deep = doc! { "leaf": 1 };
        for _ in 0..200 {
            deep = doc! { "n": deep };
        }
        let path = too_deep(&deep).unwrap();
        assert_eq!(path.split('.').count(), MAX_DEPTH);
        let raw = bson::RawDocumentBuf::from_document(&deep).unwrap();
        let error = check_raw_depth("c", &raw, &[]).unwrap_err();
        assert!(
            error.to_string().contains("nested more than 64 levels"),
            "{error}"
        );
        let Error::Decode { field, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!(field, path);
        let mut fine = doc! { "leaf": 1 };
        for _ in 0..(MAX_DEPTH - 1) {
            fine = doc! { "n": fine };
        }
        assert!(too_deep(&fine).is_none());
        let raw = bson::RawDocumentBuf::from_document(&fine).unwrap();
        assert!(check_raw_depth("c", &raw, &[]).is_ok());
    }

    #[test]
    fn fields_passed_over_are_not_walked_and_the_rest_still_is() {
        let mut deep = doc! { "leaf": 1 };
        for _ in 0..100 {
            deep = doc! { "n": deep };
        }
        let event = bson::RawDocumentBuf::from_document(&doc! {
            "operationType": "insert",
            "fullDocument": deep.clone(),
        })
        .unwrap();
        assert!(check_raw_depth("c", &event, &["fullDocument"]).is_ok());
        assert!(check_raw_depth("c", &event, &[]).is_err());
        // Only a top-level field is passed over, not one of the same name further down.
        let nested = bson::RawDocumentBuf::from_document(&doc! {
            "updateDescription": { "fullDocument": deep },
        })
        .unwrap();
        assert!(check_raw_depth("c", &nested, &["fullDocument"]).is_err());
    }
}
