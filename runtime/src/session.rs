//! Which `ClientSession`, if any, an operation runs in.

use std::collections::HashMap;
use std::sync::Arc;

use mongodb::ClientSession;
use mongodb::bson::Bson;
use tokio::sync::{Mutex, MutexGuard};

/// The session of one transaction scope, shared by every repository bound to it, with the
/// versioned writes made in the current attempt (so an abort can put in-memory versions back).
#[derive(Debug)]
pub(crate) struct TxShared {
    pub(crate) session: Mutex<ClientSession>,
    pub(crate) writes: std::sync::Mutex<Vec<VersionWrite>>,
}

impl TxShared {
    pub(crate) fn new(session: ClientSession) -> Self {
        TxShared {
            session: Mutex::new(session),
            writes: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The versioned writes of the attempt so far, leaving the list empty for the next one.
    pub(crate) fn take_writes(&self) -> Vec<VersionWrite> {
        self.writes
            .lock()
            .map(|mut writes| std::mem::take(&mut *writes))
            .unwrap_or_default()
    }
}

/// A session shared by every repository of one transaction scope.
pub(crate) type SharedSession = Arc<TxShared>;

/// A versioned document written inside a transaction: `before` is what the server had,
/// `after` is what the in-memory model now claims.
#[derive(Debug, Clone)]
pub(crate) struct VersionWrite {
    pub(crate) database: String,
    pub(crate) collection: &'static str,
    pub(crate) id: Bson,
    pub(crate) before: i64,
    pub(crate) after: i64,
}

/// Versions that in-memory models claim but the server never kept, because the transaction that
/// wrote them was aborted. A model cannot be reached after the closure that held it returns, so
/// the correction happens when such a model is next written: its version is put back to the one
/// the server has, and the write goes on as if the aborted attempt never happened.
#[derive(Debug, Default)]
pub(crate) struct VersionLedger {
    /// `(claimed, real)` versions per document.
    rolled_back: std::sync::Mutex<HashMap<LedgerKey, (i64, i64)>>,
}

/// A document: database, collection and `_id` (as extended JSON text, since `Bson` is not `Hash`).
type LedgerKey = (String, &'static str, String);

fn ledger_key(database: &str, collection: &'static str, id: &Bson) -> LedgerKey {
    (database.to_owned(), collection, id.to_string())
}

impl VersionLedger {
    /// Records the versioned writes of an aborted attempt.
    pub(crate) fn record_rollback(&self, writes: Vec<VersionWrite>) {
        let Ok(mut map) = self.rolled_back.lock() else {
            return;
        };
        for write in writes {
            let key = ledger_key(&write.database, write.collection, &write.id);
            // Several saves of one document in one attempt: the first `before` is the real one.
            let real = map.get(&key).map_or(write.before, |(_, real)| *real);
            map.insert(key, (write.after, real));
        }
    }

    /// The version to expect for a model claiming `claimed`: the server's, when `claimed` came
    /// from an aborted transaction.
    pub(crate) fn correct(
        &self,
        database: &str,
        collection: &'static str,
        id: &Bson,
        claimed: i64,
    ) -> i64 {
        let Ok(mut map) = self.rolled_back.lock() else {
            return claimed;
        };
        let key = ledger_key(database, collection, id);
        match map.get(&key) {
            Some((stale, real)) if *stale == claimed => {
                let real = *real;
                map.remove(&key);
                real
            }
            _ => claimed,
        }
    }

    /// A write of this document succeeded: whatever was recorded for it is history.
    pub(crate) fn forget(&self, database: &str, collection: &'static str, id: &Bson) {
        if let Ok(mut map) = self.rolled_back.lock() {
            map.remove(&ledger_key(database, collection, id));
        }
    }
}

/// The session an operation was given: none, one borrowed from the caller, or the shared
/// session of the transaction its repository is bound to.
#[derive(Default)]
pub(crate) enum SessionSlot<'a> {
    #[default]
    None,
    Borrowed(&'a mut ClientSession),
    Shared(SharedSession),
}

/// A session held for the duration of one server round trip.
pub(crate) enum SessionGuard<'g> {
    None,
    Borrowed(&'g mut ClientSession),
    Locked(MutexGuard<'g, ClientSession>),
}

impl<'a> SessionSlot<'a> {
    pub(crate) fn from_shared(shared: Option<&SharedSession>) -> Self {
        match shared {
            Some(session) => SessionSlot::Shared(session.clone()),
            None => SessionSlot::None,
        }
    }

    /// Notes a versioned write made in a transaction scope's session.
    pub(crate) fn record(&self, write: VersionWrite) {
        if let SessionSlot::Shared(shared) = self
            && let Ok(mut writes) = shared.writes.lock()
        {
            writes.push(write);
        }
    }

    /// Locks a shared session only for one call, so a transaction's other repositories can use
    /// it between the batches of a cursor.
    pub(crate) async fn lock(&mut self) -> SessionGuard<'_> {
        match self {
            SessionSlot::None => SessionGuard::None,
            SessionSlot::Borrowed(session) => SessionGuard::Borrowed(session),
            SessionSlot::Shared(shared) => SessionGuard::Locked(shared.session.lock().await),
        }
    }
}

impl SessionGuard<'_> {
    pub(crate) fn get(&mut self) -> Option<&mut ClientSession> {
        match self {
            SessionGuard::None => None,
            SessionGuard::Borrowed(session) => Some(session),
            SessionGuard::Locked(guard) => Some(&mut *guard),
        }
    }
}

/// Runs a driver action in the held session, if there is one.
macro_rules! run_in {
    ($guard:expr, $action:expr) => {
        match $guard.get() {
            Some(session) => $action.session(session).await,
            None => $action.await,
        }
    };
}
pub(crate) use run_in;
