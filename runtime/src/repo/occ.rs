//! The version key, in one place: the condition a checked write puts on it, the stored version
//! read back, why a checked write missed, and which version a model's write must expect when the
//! number it claims may come from a transaction that never committed.

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::FindOneOptions;

use super::Repo;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::{SessionGuard, SessionSlot, run_in};

/// The filter condition "the stored version is `expected`". A document stored without the field
/// (written around mongrove, read with `#[serde(default)]`) is at version 0.
pub(crate) fn condition(expected: i64) -> Bson {
    if expected == 0 {
        Bson::Document(doc! { "$in": [0_i64, Bson::Null] })
    } else {
        Bson::Int64(expected)
    }
}

/// `filter` restricted to documents at version `expected` (under `$and` when the filter already
/// says something about the version field).
pub(crate) fn with_version(mut filter: Document, field: &str, expected: i64) -> Document {
    if filter.contains_key(field) {
        doc! { "$and": [filter, { field: condition(expected) }] }
    } else {
        filter.insert(field, condition(expected));
        filter
    }
}

/// The version stored in `doc`: a missing or null field is version 0; anything but an integer
/// is an error that says what is stored there.
pub(crate) fn stored_version<M: Model>(doc: &Document, field: &str) -> Result<i64> {
    let not_an_integer = |what: String| Error::Decode {
        collection: M::COLLECTION.to_owned(),
        id: doc.get("_id").cloned().map(Into::into),
        field: field.to_owned(),
        reason: format!("the stored version is {what}, not an integer"),
    };
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(0),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Int64(v)) => Ok(*v),
        // Integral doubles compare equal to integers on the server, so they work as versions.
        Some(Bson::Double(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(*v as i64),
        Some(other) => Err(not_an_integer(format!(
            "{other} ({:?})",
            other.element_type()
        ))),
    }
}

/// Why a version-checked write matched nothing.
pub(crate) enum Miss {
    /// No document matches the write's filter, whatever its version.
    NoMatch,
    /// A document matches at another version (or its version cannot be read).
    Conflict(Error),
}

/// Looks at the stored document a checked write with `filter` (without its version condition)
/// missed, and names the reason.
pub(crate) async fn explain_miss<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    filter: Document,
    expected: i64,
) -> Result<Miss> {
    let Some(field) = M::VERSION_FIELD else {
        return Ok(Miss::NoMatch);
    };
    let mut options = FindOneOptions::default();
    options.projection = Some(doc! { field: 1 });
    let stored = run_in!(guard, repo.docs.find_one(filter).with_options(options));
    let Some(stored) = stored.map_err(|e| repo.driver_error(e))? else {
        return Ok(Miss::NoMatch);
    };
    let id = stored.get("_id").cloned().unwrap_or(Bson::Null);
    let found = match stored_version::<M>(&stored, field) {
        Ok(found) => found,
        Err(error) => return Ok(Miss::Conflict(error)),
    };
    crate::session::ledger().observed(repo.db.name(), M::COLLECTION, &id, found);
    Ok(Miss::Conflict(Error::VersionConflict {
        collection: M::COLLECTION.to_owned(),
        id: id.into(),
        expected,
        found,
    }))
}

/// A checked save by `_id` that matched nothing, not yet explained: the document's id, and the
/// version the save expected.
pub(crate) struct Missed {
    pub(crate) id: Bson,
    pub(crate) expected: Option<i64>,
}

impl Missed {
    /// Why nothing matched, read in the operation's session: [`Error::VersionConflict`] with
    /// the version stored now, or [`Error::NotFound`].
    pub(crate) async fn explain<M: Model>(
        self,
        repo: &Repo<M>,
        slot: &mut SessionSlot<'_>,
    ) -> Error {
        match slot.lock().await {
            Ok(mut guard) => missing_or_conflict(repo, &mut guard, self.id, self.expected).await,
            Err(error) => error,
        }
    }
}

/// The error for a checked write by `_id` that matched nothing: the document is gone, or it is
/// at another version.
pub(crate) async fn missing_or_conflict<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    id: Bson,
    expected: Option<i64>,
) -> Error {
    let not_found = |id: Bson| Error::NotFound {
        collection: M::COLLECTION.to_owned(),
        id: Some(id.into()),
    };
    let Some(expected) = expected else {
        return not_found(id);
    };
    match explain_miss(repo, guard, doc! { "_id": id.clone() }, expected).await {
        Ok(Miss::Conflict(error)) => error,
        Ok(Miss::NoMatch) => not_found(id),
        Err(error) => error,
    }
}

/// The version that a write from `doc` (claiming version `claimed`, stored as `_id` `id`) must
/// find stored.
///
/// Normally that is the claimed version. But a model saved in a transaction attempt that was
/// aborted, retried or cancelled claims a version the server never kept (a phantom, recorded
/// by the ledger), and later a real write may give the document that same number. Only the
/// stored document can tell the two apart:
///
/// - stored at the phantom's base: nobody wrote since; the model's real base is that version;
/// - stored at the claimed number, with content that differs from the phantom's where the model
///   still agrees with the phantom: the model is the stale one, and its write must fail (it
///   expects the base, so the write misses and reports the conflict);
/// - otherwise the model is a copy loaded after the real write, and the claim stands.
pub(crate) async fn expected_version<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    id: &Bson,
    claimed: i64,
    doc: &M,
) -> Result<i64> {
    let ledger = crate::session::ledger();
    let Some(phantom) = ledger.phantom(repo.db.name(), M::COLLECTION, id, claimed) else {
        return Ok(claimed);
    };
    let Some(field) = M::VERSION_FIELD else {
        return Ok(claimed);
    };
    let stored = run_in!(guard, repo.docs.find_one(doc! { "_id": id.clone() }));
    let Some(stored) = stored.map_err(|e| repo.driver_error(e))? else {
        return Ok(claimed);
    };
    let found = stored_version::<M>(&stored, field)?;
    ledger.observed(repo.db.name(), M::COLLECTION, id, found);
    if found == phantom.base {
        return Ok(phantom.base);
    }
    if found != claimed {
        return Ok(claimed);
    }
    let body = crate::decode::encode(M::COLLECTION, doc)?;
    let skip = bookkeeping_fields::<M>();
    // The rare phantom path: the body written by the aborted attempt is compared as a tree.
    let Ok(written) = phantom.body.to_document() else {
        return Ok(claimed);
    };
    if still_phantom(&written, &stored, &body, &skip) {
        Ok(phantom.base)
    } else {
        Ok(claimed)
    }
}

/// The fields mongrove itself writes: compared by nobody.
fn bookkeeping_fields<M: Model>() -> Vec<&'static str> {
    let mut fields = vec!["_id"];
    fields.extend(M::VERSION_FIELD);
    if let Some(ts) = M::TIMESTAMPS {
        fields.extend([ts.created, ts.updated]);
    }
    fields
}

/// Whether `model` still holds the phantom's value of a field in which the stored document
/// differs from the phantom: writing it would undo a write it never saw.
fn still_phantom(phantom: &Document, stored: &Document, model: &Document, skip: &[&str]) -> bool {
    phantom
        .keys()
        .chain(model.keys())
        .filter(|key| !skip.contains(&key.as_str()))
        .any(|key| {
            let was = phantom.get(key);
            was != stored.get(key) && model.get(key) == was
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_zero_also_matches_a_missing_field() {
        assert_eq!(
            with_version(doc! { "_id": 1 }, "v", 0),
            doc! { "_id": 1, "v": { "$in": [0_i64, Bson::Null] } }
        );
        assert_eq!(
            with_version(doc! { "_id": 1 }, "v", 3),
            doc! { "_id": 1, "v": 3_i64 }
        );
        assert_eq!(
            with_version(doc! { "v": { "$gt": 1 } }, "v", 3),
            doc! { "$and": [{ "v": { "$gt": 1 } }, { "v": 3_i64 }] }
        );
    }

    #[test]
    fn a_copy_that_kept_the_phantom_value_of_a_changed_field_is_stale() {
        let phantom = doc! { "_id": 1, "title": "aborted", "price": 1, "v": 1 };
        let stored = doc! { "_id": 1, "title": "original", "price": 2, "v": 1 };
        // The stale model: still the aborted title and the old price.
        assert!(still_phantom(&phantom, &stored, &phantom, &["_id", "v"]));
        // Stale, but edited since on one field: the other still undoes the real write.
        let edited = doc! { "_id": 1, "title": "edited", "price": 1, "v": 1 };
        assert!(still_phantom(&phantom, &stored, &edited, &["_id", "v"]));
        // A fresh copy, loaded after the real write and edited.
        let fresh = doc! { "_id": 1, "title": "fresh", "price": 2, "v": 1 };
        assert!(!still_phantom(&phantom, &stored, &fresh, &["_id", "v"]));
        // The real write stored exactly what the phantom had: nothing can be undone.
        assert!(!still_phantom(&phantom, &phantom, &phantom, &["_id", "v"]));
    }
}
