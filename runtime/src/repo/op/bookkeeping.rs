//! What every write adds to a versioned or timestamped model's update: the version increment,
//! the `updated` time, and for an upsert's insert version 0 and the `created` time.

use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::model::Model;

/// Adds the version increment and the `updated` timestamp to an update document.
pub(crate) fn bookkept<M: Model>(mut update: Document, now: DateTime) -> Document {
    if let Some(version) = M::VERSION_FIELD {
        add_operator(&mut update, "$inc", version, Bson::Int64(1));
    }
    if let Some(ts) = M::TIMESTAMPS {
        add_operator(&mut update, "$set", ts.updated, Bson::DateTime(now));
    }
    update
}

/// The update of an upsert's insert: the caller's operators, the `updated` timestamp, and
/// version 0 and the `created` timestamp on insert only.
pub(crate) fn for_insert<M: Model>(mut update: Document, now: DateTime) -> Document {
    if let Some(ts) = M::TIMESTAMPS {
        add_operator(&mut update, "$set", ts.updated, Bson::DateTime(now));
        add_operator(&mut update, "$setOnInsert", ts.created, Bson::DateTime(now));
    }
    if let Some(version) = M::VERSION_FIELD {
        add_operator(&mut update, "$setOnInsert", version, Bson::Int64(0));
    }
    update
}

/// A filter that no stored document matches (every document has an `_id`), but whose equality
/// conditions still seed the document an upsert inserts.
pub(crate) fn insert_only(filter: Document) -> Document {
    doc! { "$and": [filter, { "_id": { "$exists": false } }] }
}

/// Sets `path` under `op` unless the update already writes that path with any operator: a
/// caller who sets the field explicitly keeps their value (and the server refuses two
/// operators on one path).
fn add_operator(update: &mut Document, op: &str, path: &str, value: Bson) {
    let written = update
        .values()
        .any(|fields| matches!(fields, Bson::Document(fields) if fields.contains_key(path)));
    if written {
        return;
    }
    match update.get_mut(op) {
        Some(Bson::Document(fields)) => {
            fields.insert(path, value);
        }
        _ => {
            update.insert(op, doc! { path: value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_keeps_an_explicit_value() {
        let mut update = doc! { "$inc": { "version": 5 } };
        add_operator(&mut update, "$inc", "version", Bson::Int64(1));
        add_operator(&mut update, "$set", "updated_at", Bson::Int32(1));
        add_operator(&mut update, "$setOnInsert", "version", Bson::Int64(0));
        assert_eq!(
            update,
            doc! { "$inc": { "version": 5 }, "$set": { "updated_at": 1 } }
        );
    }
}
