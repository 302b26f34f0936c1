//! The transaction scopes running on the current task, and which of them an operation joins.
//!
//! A scope puts itself on a task-local stack while its body runs (and `Tx::bind` puts it on the
//! stack of another future, for example a spawned task). An operation of a repository that is
//! not bound to a transaction looks at the stack when it runs: it joins the innermost scope of
//! its own `Db` lineage (clones, `with_database`), or else the innermost scope whose session
//! belongs to the repository's client (`Db::new` on a clone of the client). A repository of
//! another client never joins: a session cannot be used across clients.
//!
//! A manual transaction (`db.begin()`) cannot put itself on a task-local stack for the rest of
//! the task: a task-local lives only as long as the future it wraps. It registers instead under
//! the id of the tokio task that began it (`tokio::task::try_id`), until it commits, aborts or
//! is dropped; those registered scopes count as the outermost of the task's stack. The future
//! given to `block_on` (the body of `#[tokio::main]` and `#[tokio::test]`) is no task and has
//! no id: there the key is the thread, which runs that one future and, on a current-thread
//! runtime, also the spawned tasks, but those have ids of their own and do not join.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ReadPreference, SelectionCriteria};
use tokio::task::futures::TaskLocalFuture;

use super::{Bound, TxShared};
use crate::db::Db;

/// A scope on the stack: its `Db`, and its session and attempt (`None` for a scope that runs
/// without a transaction on a standalone server).
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) db: Db,
    pub(crate) bound: Option<Bound>,
}

tokio::task_local! {
    /// The transaction scopes running on the current task, innermost last.
    static SCOPES: Stack;
}

/// The scopes a future runs in, innermost last. One scope, the usual case, is held without an
/// allocation.
#[derive(Debug, Clone)]
pub(crate) enum Stack {
    One(Scope),
    Nested(Vec<Scope>),
}

impl Stack {
    fn as_slice(&self) -> &[Scope] {
        match self {
            Stack::One(scope) => std::slice::from_ref(scope),
            Stack::Nested(scopes) => scopes,
        }
    }

    /// The scopes of the current task (if any) with `scope` inside them.
    fn current_with(scope: Scope) -> Stack {
        match SCOPES.try_with(|stack| stack.as_slice().to_vec()) {
            Ok(mut scopes) => {
                scopes.push(scope);
                Stack::Nested(scopes)
            }
            Err(_) => Stack::One(scope),
        }
    }
}

/// Where a manual transaction was begun: a tokio task, or outside any (a `block_on` future).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Owner {
    fn current() -> Owner {
        match tokio::task::try_id() {
            Some(task) => Owner::Task(task),
            None => Owner::Thread(std::thread::current().id()),
        }
    }
}

/// The manual transactions open on each task, in the order they began.
static MANUAL: LazyLock<std::sync::Mutex<HashMap<Owner, Vec<Scope>>>> =
    LazyLock::new(Default::default);

/// How many manual transactions are registered in [`MANUAL`], changed under its lock. While it
/// is zero, operations need not take that process-wide lock at all. A task that registered one
/// itself always sees its own count: registering happened before, on this task.
static MANUAL_OPEN: AtomicUsize = AtomicUsize::new(0);

/// The scopes running on the current task, innermost last: the manual transactions it began,
/// then the scopes it runs in.
pub(crate) fn scopes() -> Vec<Scope> {
    let mut stack = if MANUAL_OPEN.load(Ordering::Acquire) == 0 {
        Vec::new()
    } else {
        MANUAL
            .lock()
            .ok()
            .and_then(|manual| manual.get(&Owner::current()).cloned())
            .unwrap_or_default()
    };
    // Nothing is copied when no scope runs, the case of every operation outside one.
    let _ = SCOPES.try_with(|scopes| stack.extend_from_slice(scopes.as_slice()));
    stack
}

/// Registers a manual transaction on the current task; the owner is what [`unregister`] needs.
pub(crate) fn register(scope: Scope) -> Owner {
    let owner = Owner::current();
    if let Ok(mut manual) = MANUAL.lock() {
        manual.entry(owner).or_default().push(scope);
        MANUAL_OPEN.fetch_add(1, Ordering::Release);
    }
    owner
}

/// Removes the manual transaction with session `shared` from the scopes of `task`.
pub(crate) fn unregister(task: Owner, shared: &super::SharedSession) {
    if let Ok(mut manual) = MANUAL.lock()
        && let Some(stack) = manual.get_mut(&task)
    {
        let before = stack.len();
        stack.retain(|scope| {
            !scope
                .bound
                .as_ref()
                .is_some_and(|bound| Arc::ptr_eq(&bound.shared, shared))
        });
        MANUAL_OPEN.fetch_sub(before - stack.len(), Ordering::Release);
        if stack.is_empty() {
            manual.remove(&task);
        }
    }
}

/// Runs `future` with `scope` as the innermost scope of its task.
pub(crate) fn within<F: Future>(scope: Scope, future: F) -> TaskLocalFuture<Stack, F> {
    SCOPES.scope(Stack::current_with(scope), future)
}

/// The transaction an operation of a repository of `database` (a `Db` of `lineage`) joins.
pub(crate) async fn join(database: &Database, lineage: usize) -> Option<Bound> {
    let stack = scopes();
    if let Some(own) = stack.iter().rev().find(|s| s.db.lineage() == lineage) {
        return own.bound.clone();
    }
    for scope in stack.iter().rev() {
        if let Some(bound) = &scope.bound
            && same_client(bound, database, lineage).await
        {
            return Some(bound.clone());
        }
    }
    None
}

/// Whether the client of `database` is the client of the transaction's session.
///
/// The driver does not expose a client's identity, but it checks it itself, before anything is
/// sent: an operation given a session of another client fails with `InvalidArgument`, and one
/// given its own client's session inside a transaction with a non-primary read preference fails
/// with a transaction error. The probe makes that check once per lineage and transaction scope;
/// `tests/integration/transactions.rs` pins the behaviour it relies on.
async fn same_client(bound: &Bound, database: &Database, lineage: usize) -> bool {
    let shared: &TxShared = &bound.shared;
    if shared.lineage == lineage {
        return true;
    }
    if let Some(known) = shared
        .clients
        .lock()
        .ok()
        .and_then(|known| known.iter().find(|(l, _)| *l == lineage).map(|(_, s)| *s))
    {
        return known;
    }
    let answer = {
        let mut session = shared.session.lock().await;
        // The probe answers before anything is sent only inside a transaction; an attempt that
        // has ended accepts nothing anyway.
        if !shared.is_open(bound.attempt) {
            return false;
        }
        let secondary =
            SelectionCriteria::ReadPreference(ReadPreference::Secondary { options: None });
        let probes = database.collection::<Document>("mongrove.client_probe");
        let probe = probes
            .find_one(doc! {})
            .selection_criteria(secondary)
            .session(&mut *session);
        // Both answers come before anything is sent; the bound only guards against a driver
        // that would change that.
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Err(error)) => !matches!(*error.kind, ErrorKind::InvalidArgument { .. }),
            Ok(Ok(_)) | Err(_) => false,
        }
    };
    if let Ok(mut known) = shared.clients.lock() {
        known.push((lineage, answer));
    }
    answer
}
