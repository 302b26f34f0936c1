//! Versions that in-memory models may claim although the server never kept them.
//!
//! One ledger serves the whole process, so that every `Db` of a client (clones, other
//! databases, `Db::new` on a clone of the client) sees the same phantoms.

use std::collections::HashMap;
use std::sync::OnceLock;

use mongodb::bson::{Bson, RawDocumentBuf};

/// The ledger of the process.
pub(crate) fn ledger() -> &'static VersionLedger {
    static LEDGER: OnceLock<VersionLedger> = OnceLock::new();
    LEDGER.get_or_init(VersionLedger::default)
}

/// A versioned document written inside a transaction: `before` is what the server had,
/// `after` is what the in-memory model now claims, `body` is what was written.
#[derive(Debug, Clone)]
pub(crate) struct VersionWrite {
    pub(crate) database: String,
    pub(crate) collection: &'static str,
    pub(crate) id: Bson,
    pub(crate) before: i64,
    pub(crate) after: i64,
    pub(crate) body: RawDocumentBuf,
}

/// A version that an in-memory model may claim although the server never kept it: the model
/// was saved in a transaction attempt that was then aborted, retried or cancelled (or whose
/// commit outcome stayed unknown). Rust gives mongrove no way back to that model once its save
/// has returned, so the claim is recognised when the model is written next.
#[derive(Debug, Clone)]
pub(crate) struct Phantom {
    /// The version the model claims.
    pub(crate) claimed: i64,
    /// The version the server had before the attempt: what the model was really based on.
    pub(crate) base: i64,
    /// What the aborted write stored, to tell the stale model from a fresh copy that claims
    /// the same number because a later write really reached it.
    pub(crate) body: RawDocumentBuf,
}

/// The phantom versions of one process, per document. See [`Phantom`]; the decision that uses
/// them is `repo::occ::expected_version`.
#[derive(Debug, Default)]
pub(crate) struct VersionLedger {
    phantoms: std::sync::Mutex<Phantoms>,
}

/// A document: database, collection and `_id` (as extended JSON text, since `Bson` is not `Hash`).
type LedgerKey = (String, &'static str, String);

fn ledger_key(database: &str, collection: &'static str, id: &Bson) -> LedgerKey {
    (database.to_owned(), collection, id.to_string())
}

/// The phantoms per document, and the order in which documents got their first one (for
/// eviction, oldest first).
#[derive(Debug, Default)]
struct Phantoms {
    by_document: HashMap<LedgerKey, Vec<Phantom>>,
    arrival: std::collections::VecDeque<LedgerKey>,
}

/// Documents with phantoms kept at most; beyond it the oldest entries go (a stale model of an
/// evicted document then gets the ordinary check against the number it claims).
const LEDGER_CAPACITY: usize = 10_000;

impl VersionLedger {
    /// Records the versioned writes of an attempt that did not commit (or may not have).
    pub(crate) fn record_rollback(&self, writes: Vec<VersionWrite>) {
        if writes.is_empty() {
            return;
        }
        let Ok(mut ledger) = self.phantoms.lock() else {
            return;
        };
        let Phantoms {
            by_document: map,
            arrival,
        } = &mut *ledger;
        // Several saves of one document in one attempt: the first `before` is the real base.
        let mut bases: HashMap<LedgerKey, i64> = HashMap::new();
        for write in writes {
            let key = ledger_key(&write.database, write.collection, &write.id);
            let base = *bases.entry(key.clone()).or_insert(write.before);
            if !map.contains_key(&key) {
                arrival.push_back(key.clone());
            }
            let phantoms = map.entry(key).or_default();
            phantoms.retain(|p| p.claimed != write.after);
            phantoms.push(Phantom {
                claimed: write.after,
                base,
                body: write.body,
            });
        }
        while map.len() > LEDGER_CAPACITY {
            // Keys of documents whose phantoms are gone already are skipped on the way.
            let Some(oldest) = arrival.pop_front() else {
                break;
            };
            map.remove(&oldest);
        }
        if arrival.len() > 2 * LEDGER_CAPACITY {
            arrival.retain(|key| map.contains_key(key));
        }
    }

    /// The phantom a model claiming `claimed` for this document may be, if any.
    pub(crate) fn phantom(
        &self,
        database: &str,
        collection: &'static str,
        id: &Bson,
        claimed: i64,
    ) -> Option<Phantom> {
        let ledger = self.phantoms.lock().ok()?;
        // The common case, no attempt ever rolled back: no key to build.
        if ledger.by_document.is_empty() {
            return None;
        }
        ledger
            .by_document
            .get(&ledger_key(database, collection, id))?
            .iter()
            .find(|p| p.claimed == claimed)
            .cloned()
    }

    /// The server holds the document at `stored`: phantoms below it can never be mistaken for
    /// the stored version again.
    pub(crate) fn observed(
        &self,
        database: &str,
        collection: &'static str,
        id: &Bson,
        stored: i64,
    ) {
        let Ok(mut ledger) = self.phantoms.lock() else {
            return;
        };
        if ledger.by_document.is_empty() {
            return;
        }
        let key = ledger_key(database, collection, id);
        if let Some(phantoms) = ledger.by_document.get_mut(&key) {
            phantoms.retain(|p| p.claimed >= stored);
            if phantoms.is_empty() {
                ledger.by_document.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(id: i32, before: i64) -> VersionWrite {
        VersionWrite {
            database: "db".into(),
            collection: "c",
            id: Bson::Int32(id),
            before,
            after: before + 1,
            body: mongodb::bson::RawDocumentBuf::new(),
        }
    }

    #[test]
    fn the_oldest_documents_are_forgotten_first() {
        let ledger = VersionLedger::default();
        let total = i32::try_from(LEDGER_CAPACITY).unwrap() + 5;
        for id in 0..total {
            ledger.record_rollback(vec![write(id, 0)]);
        }
        for id in 0..5 {
            assert!(ledger.phantom("db", "c", &Bson::Int32(id), 1).is_none());
        }
        for id in [5, total - 1] {
            assert!(ledger.phantom("db", "c", &Bson::Int32(id), 1).is_some());
        }
    }

    #[test]
    fn a_phantom_below_the_stored_version_is_dropped() {
        let ledger = VersionLedger::default();
        ledger.record_rollback(vec![write(1, 0), write(1, 1)]);
        let phantom = ledger.phantom("db", "c", &Bson::Int32(1), 2).unwrap();
        assert_eq!(phantom.base, 0, "the first write's base is the real one");
        ledger.observed("db", "c", &Bson::Int32(1), 2);
        assert!(ledger.phantom("db", "c", &Bson::Int32(1), 1).is_none());
        assert!(ledger.phantom("db", "c", &Bson::Int32(1), 2).is_some());
    }
}
