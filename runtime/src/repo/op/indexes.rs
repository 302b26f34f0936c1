//! `sync_indexes`: converge the collection's indexes on the model's declarations.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::bson::{Bson, Document, doc};

use super::awaitable;
use crate::error::Result;
use crate::model::{IndexSpec, Model};
use crate::repo::Repo;

/// What [`Repo::sync_indexes`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Indexes created because they were declared and missing (or had changed).
    pub created: Vec<String>,
    /// Indexes dropped because they were no longer declared (or had changed).
    pub dropped: Vec<String>,
    /// Declared indexes that already existed as declared.
    pub unchanged: Vec<String>,
}

/// Index synchronisation. Created by [`Repo::sync_indexes`]. Index builds cannot run inside a
/// transaction, so this never uses a session.
#[must_use = "an operation does nothing until it is awaited"]
pub struct SyncIndexes<'a, M: Model> {
    repo: &'a Repo<M>,
    dry_run: bool,
}

const NAMESPACE_NOT_FOUND: i32 = 26;

impl<'a, M: Model> SyncIndexes<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>) -> Self {
        SyncIndexes {
            repo,
            dry_run: false,
        }
    }

    /// Reports what would change without changing anything.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    async fn existing(&self) -> Result<Vec<Document>> {
        let database = self.repo.db.database();
        let reply = database
            .run_command(doc! { "listIndexes": M::COLLECTION })
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if crate::error::server_code(&e) == Some(NAMESPACE_NOT_FOUND) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.repo.driver_error(e)),
        };
        let batch = reply
            .get_document("cursor")
            .and_then(|cursor| cursor.get_array("firstBatch"))
            .map(|batch| {
                batch
                    .iter()
                    .filter_map(|b| b.as_document().cloned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(batch)
    }

    async fn run(self) -> Result<IndexReport> {
        let declared = M::indexes();
        let existing = self.existing().await?;
        let mut report = IndexReport::default();
        let mut keep = Vec::new();
        for index in &existing {
            let Ok(name) = index.get_str("name") else {
                continue;
            };
            if name == "_id_" {
                continue;
            }
            match declared.iter().find(|spec| spec.name == name) {
                Some(spec) if same_index(spec, index) => {
                    keep.push(name.to_owned());
                    report.unchanged.push(name.to_owned());
                }
                _ => report.dropped.push(name.to_owned()),
            }
        }
        let to_create: Vec<&IndexSpec> = declared
            .iter()
            .filter(|s| !keep.iter().any(|k| k == s.name))
            .collect();
        report.created = to_create.iter().map(|s| s.name.to_owned()).collect();
        if self.dry_run {
            return Ok(report);
        }
        let database = self.repo.db.database();
        for name in &report.dropped {
            database
                .run_command(doc! { "dropIndexes": M::COLLECTION, "index": name.as_str() })
                .await
                .map_err(|e| self.repo.driver_error(e))?;
        }
        if !to_create.is_empty() {
            let indexes: Vec<Document> = to_create.iter().map(|s| s.to_document()).collect();
            database
                .run_command(doc! { "createIndexes": M::COLLECTION, "indexes": indexes })
                .await
                .map_err(|e| self.repo.driver_error(e))?;
        }
        Ok(report)
    }
}

awaitable!(SyncIndexes => IndexReport, "sync_indexes");

/// Whether an index listed by the server is the one declared: same keys in the same order and
/// the same options. Numbers are compared by value, since the server may widen them.
fn same_index(spec: &IndexSpec, existing: &Document) -> bool {
    let declared = spec.to_document();
    let option = |doc: &Document, key: &str| doc.get(key).map(normalize);
    let flag = |doc: &Document, key: &str| doc.get_bool(key).unwrap_or(false);
    // `Document` equality ignores key order, and an index's key order is its meaning.
    let ordered = |doc: Document| normalize_doc(&doc).into_iter().collect::<Vec<_>>();
    listed_key(existing).map(ordered) == Some(ordered(spec.key_document()))
        && flag(existing, "unique") == flag(&declared, "unique")
        && flag(existing, "sparse") == flag(&declared, "sparse")
        && option(existing, "expireAfterSeconds") == option(&declared, "expireAfterSeconds")
        && option(existing, "partialFilterExpression")
            == option(&declared, "partialFilterExpression")
}

/// The key document as it was declared. The server lists a text index as `_fts: "text",
/// _ftsx: 1` with the text fields under `weights`; put them back in place.
fn listed_key(existing: &Document) -> Option<Document> {
    let key = existing.get_document("key").ok()?;
    if !key.contains_key("_fts") {
        return Some(key.clone());
    }
    let weights = existing.get_document("weights").ok()?;
    let mut declared = Document::new();
    for (name, value) in key {
        match name.as_str() {
            "_fts" => {
                for (field, _) in weights {
                    declared.insert(field, "text");
                }
            }
            "_ftsx" => {}
            _ => {
                declared.insert(name, value.clone());
            }
        }
    }
    Some(declared)
}

fn normalize(value: &Bson) -> Bson {
    match value {
        Bson::Int32(n) => Bson::Double(f64::from(*n)),
        Bson::Int64(n) => Bson::Double(*n as f64),
        Bson::Document(doc) => Bson::Document(normalize_doc(doc)),
        Bson::Array(items) => Bson::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn normalize_doc(doc: &Document) -> Document {
    doc.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IndexKey;

    #[test]
    fn an_index_widened_by_the_server_is_the_same() {
        static KEYS: [(&str, IndexKey); 2] =
            [("a", IndexKey::Ascending), ("b", IndexKey::Descending)];
        let spec = IndexSpec::__new("a_1_b_-1", &KEYS, true, false, Some(60), None);
        let listed = doc! { "v": 2, "key": { "a": 1.0, "b": -1_i64 }, "name": "a_1_b_-1", "unique": true, "expireAfterSeconds": 60 };
        assert!(same_index(&spec, &listed));
        let not_unique = doc! { "v": 2, "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1", "expireAfterSeconds": 60 };
        assert!(!same_index(&spec, &not_unique));
        let reordered = doc! { "key": { "b": -1, "a": 1 }, "name": "a_1_b_-1", "unique": true, "expireAfterSeconds": 60 };
        assert!(!same_index(&spec, &reordered));
    }
}
