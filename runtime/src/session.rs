//! Which `ClientSession`, if any, an operation runs in.

use std::sync::Arc;

use mongodb::ClientSession;
use tokio::sync::{Mutex, MutexGuard};

/// A session shared by every repository of one transaction scope.
pub(crate) type SharedSession = Arc<Mutex<ClientSession>>;

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

    /// Locks a shared session only for one call, so a transaction's other repositories can use
    /// it between the batches of a cursor.
    pub(crate) async fn lock(&mut self) -> SessionGuard<'_> {
        match self {
            SessionSlot::None => SessionGuard::None,
            SessionSlot::Borrowed(session) => SessionGuard::Borrowed(session),
            SessionSlot::Shared(session) => SessionGuard::Locked(session.lock().await),
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
