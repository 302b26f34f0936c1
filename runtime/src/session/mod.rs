//! Which `ClientSession`, if any, an operation runs in.
//!
//! An operation of a repository from `tx.repo()` runs in that transaction's session. Any other
//! repository decides when the operation runs, not when the repository was made: it joins the
//! innermost transaction running on the current task whose session belongs to its client (see
//! [`ambient`]), and otherwise runs without a session. A transaction that has ended (committed,
//! aborted, or replaced by a retry) accepts no more operations: a repository kept past its
//! transaction, or a spawned task still running after it, gets [`Error::TransactionEnded`]
//! instead of silently writing outside the transaction.

pub(crate) mod ambient;
pub(crate) mod ledger;

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mongodb::{ClientSession, Database};
use tokio::sync::{Mutex, MutexGuard};

pub(crate) use ledger::{VersionWrite, ledger};

use crate::error::{Error, Result};
use crate::retry::TRANSIENT_TRANSACTION_ERROR;

/// The session of one transaction scope, shared by every repository bound to it.
#[derive(Debug)]
pub(crate) struct TxShared {
    pub(crate) session: Mutex<ClientSession>,
    /// The identity of the `Db` lineage that started the scope (see `Db::lineage`).
    pub(crate) lineage: usize,
    /// Which attempt is open: 1, 2, ... while a transaction runs; 0 when none does.
    attempt: AtomicU32,
    /// Versioned writes of the open attempt (so an abort can tell their models apart).
    writes: std::sync::Mutex<Vec<VersionWrite>>,
    /// The first server error of the open attempt: the server aborted the transaction on it,
    /// so a closure that returns `Ok` after it has swallowed it.
    failure: std::sync::Mutex<Option<mongodb::error::Error>>,
    /// Other lineages already asked whether their client is this session's client.
    clients: std::sync::Mutex<Vec<(usize, bool)>>,
    /// The batchers of batching repositories' calls in the open attempt, one per database and
    /// collection (type-erased: the batcher belongs to the repository layer above).
    batchers: std::sync::Mutex<Vec<AttemptBatcher>>,
}

/// A batcher of one attempt's calls to one collection: (attempt, database, collection, batcher).
type AttemptBatcher = (u32, String, &'static str, Arc<dyn Any + Send + Sync>);

impl TxShared {
    pub(crate) fn new(session: ClientSession, lineage: usize) -> Self {
        TxShared {
            session: Mutex::new(session),
            lineage,
            attempt: AtomicU32::new(0),
            writes: std::sync::Mutex::new(Vec::new()),
            failure: std::sync::Mutex::new(None),
            clients: std::sync::Mutex::new(Vec::new()),
            batchers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The batcher of `collection` in `database` for the calls of `attempt`, made by `make`
    /// the first time. Batchers of attempts that are over are let go; one made for an attempt
    /// that is over already is not kept (its calls are refused when it sends them).
    pub(crate) fn batcher(
        &self,
        attempt: u32,
        database: &str,
        collection: &'static str,
        make: impl FnOnce() -> Arc<dyn Any + Send + Sync>,
    ) -> Arc<dyn Any + Send + Sync> {
        let mut batchers = self.batchers.lock().unwrap_or_else(|p| p.into_inner());
        let open = self.current_attempt();
        batchers.retain(|(a, ..)| *a == open);
        if let Some((.., batcher)) = batchers
            .iter()
            .find(|(a, d, c, _)| *a == attempt && d == database && *c == collection)
        {
            return batcher.clone();
        }
        let batcher = make();
        if attempt == open {
            batchers.push((attempt, database.to_owned(), collection, batcher.clone()));
        }
        batcher
    }

    /// An attempt starts: operations bound to earlier attempts are refused from now on.
    pub(crate) fn open(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::SeqCst);
        if let Ok(mut failure) = self.failure.lock() {
            *failure = None;
        }
    }

    /// The attempt is over (committed, aborted, or given up).
    pub(crate) fn close(&self) {
        self.attempt.store(0, Ordering::SeqCst);
        // Its batchers too: a call still holding one is refused when it sends.
        if let Ok(mut batchers) = self.batchers.lock() {
            batchers.clear();
        }
    }

    /// The attempt open now (0 when none is).
    pub(crate) fn current_attempt(&self) -> u32 {
        self.attempt.load(Ordering::SeqCst)
    }

    pub(crate) fn is_open(&self, attempt: u32) -> bool {
        attempt != 0 && self.attempt.load(Ordering::SeqCst) == attempt
    }

    /// The versioned writes of the attempt so far, leaving the list empty for the next one.
    pub(crate) fn take_writes(&self) -> Vec<VersionWrite> {
        self.writes
            .lock()
            .map(|mut writes| std::mem::take(&mut *writes))
            .unwrap_or_default()
    }

    /// The server error that aborted the attempt, if an operation met one.
    pub(crate) fn take_failure(&self) -> Option<mongodb::error::Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// The server error that aborted the attempt, if an operation met one, left in place.
    pub(crate) fn failure(&self) -> Option<mongodb::error::Error> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Notes a failed operation. Only a server's answer aborts the transaction on the server; a
    /// transient error needs no note (the commit fails transiently and the body runs again).
    pub(crate) fn note_failure(&self, error: &mongodb::error::Error) {
        let from_server = crate::error::server_code(error).is_some();
        if from_server
            && !error.contains_label(TRANSIENT_TRANSACTION_ERROR)
            && let Ok(mut failure) = self.failure.lock()
            && failure.is_none()
        {
            *failure = Some(error.clone());
        }
    }
}

/// A session shared by every repository of one transaction scope.
pub(crate) type SharedSession = Arc<TxShared>;

/// A transaction's session together with the attempt an operation belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub(crate) shared: SharedSession,
    pub(crate) attempt: u32,
}

/// The session an operation was given.
#[derive(Default)]
pub(crate) enum SessionSlot<'a> {
    /// No session.
    #[default]
    None,
    /// The caller's own session (`.session(&mut s)`).
    Borrowed(&'a mut ClientSession),
    /// A transaction scope's session.
    Shared(Bound),
    /// Not decided yet: the transaction running on the task when the operation runs, if any
    /// (identified by the repository's database and `Db` lineage).
    Ambient(&'a Database, usize),
}

/// A session held for the duration of one server round trip.
pub(crate) enum SessionGuard<'g> {
    None,
    Borrowed(&'g mut ClientSession),
    Locked(MutexGuard<'g, ClientSession>, &'g TxShared),
}

impl<'a> SessionSlot<'a> {
    /// The same session for one more operation, leaving this slot usable afterwards: an
    /// operation made of several commands (a find and its populate queries, a page and its
    /// count) runs each in the caller's session.
    pub(crate) fn reborrow(&mut self) -> SessionSlot<'_> {
        match self {
            SessionSlot::None => SessionSlot::None,
            SessionSlot::Borrowed(session) => SessionSlot::Borrowed(session),
            SessionSlot::Shared(bound) => SessionSlot::Shared(bound.clone()),
            SessionSlot::Ambient(database, lineage) => SessionSlot::Ambient(database, *lineage),
        }
    }

    /// Whether the operation runs in a transaction scope's shared session (decided once the
    /// slot has been locked).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, SessionSlot::Shared(_))
    }

    /// Notes a versioned write made in a transaction scope's session.
    pub(crate) fn record(&self, write: VersionWrite) {
        if let SessionSlot::Shared(bound) = self
            && let Ok(mut writes) = bound.shared.writes.lock()
        {
            writes.push(write);
        }
    }

    /// Decides the session now, if it is not decided yet, and checks that a bound transaction is
    /// still open.
    pub(crate) async fn resolve(&mut self) -> Result<()> {
        self.lock().await.map(drop)
    }

    /// Decides the session (the first time) and locks a shared one for one call only, so a
    /// transaction's other repositories can use it between the batches of a cursor.
    pub(crate) async fn lock(&mut self) -> Result<SessionGuard<'_>> {
        if let SessionSlot::Ambient(database, lineage) = self {
            *self = match ambient::join(database, *lineage).await {
                Some(bound) => SessionSlot::Shared(bound),
                None => SessionSlot::None,
            };
        }
        Ok(match self {
            SessionSlot::None | SessionSlot::Ambient(..) => SessionGuard::None,
            SessionSlot::Borrowed(session) => SessionGuard::Borrowed(session),
            SessionSlot::Shared(bound) => {
                let session = bound.shared.session.lock().await;
                if !bound.shared.is_open(bound.attempt) {
                    return Err(Error::TransactionEnded);
                }
                SessionGuard::Locked(session, &bound.shared)
            }
        })
    }
}

impl SessionGuard<'_> {
    pub(crate) fn get(&mut self) -> Option<&mut ClientSession> {
        match self {
            SessionGuard::None => None,
            SessionGuard::Borrowed(session) => Some(session),
            SessionGuard::Locked(guard, _) => Some(&mut *guard),
        }
    }

    /// Whether the round trips may run in a transaction: a scope's or a manual one, or the
    /// caller's own session, which the driver does not say whether it began one on.
    pub(crate) fn may_be_in_transaction(&self) -> bool {
        !matches!(self, SessionGuard::None)
    }

    /// Notes the outcome of a server round trip made in a transaction scope's session.
    pub(crate) fn note<T>(&self, result: &std::result::Result<T, mongodb::error::Error>) {
        if let (SessionGuard::Locked(_, shared), Err(error)) = (self, result) {
            shared.note_failure(error);
        }
    }
}

/// Runs a driver action in the held session, if there is one, noting a server error that
/// aborts the transaction. A macro because each driver action is its own type with its own
/// `session` method.
macro_rules! run_in {
    ($guard:expr, $action:expr) => {
        match $guard.get() {
            Some(session) => {
                let result = $action.session(session).await;
                $guard.note(&result);
                result
            }
            None => $action.await,
        }
    };
}
pub(crate) use run_in;
