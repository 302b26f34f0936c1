//! What a lifecycle hook is handed: the context of the operation (its database and session),
//! the hook point, and an update's filter and update. Below `model`, which names these types in
//! the hidden methods the derive implements; the `Hooks` trait users implement is in `hooks`.

use mongodb::ClientSession;
use mongodb::bson::Document;

use crate::db::Db;
use crate::session::{Bound, SessionSlot};

/// What a hook returns: any error, which the repository wraps in
/// [`Error::Hook`](crate::Error::Hook).
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What a hook can reach besides the document: the database and the caller's session.
///
/// A write a hook makes through [`HookContext::repo`] joins the caller's transaction scope; when
/// the caller passed its own session with `.session(&mut s)`, use [`HookContext::session`].
pub struct HookContext<'a> {
    db: &'a Db,
    pub(crate) shared: Option<Bound>,
    borrowed: Option<&'a mut ClientSession>,
    operation: &'static str,
}

impl<'a> HookContext<'a> {
    pub(crate) fn new(db: &'a Db, slot: &'a mut SessionSlot<'_>, operation: &'static str) -> Self {
        let (shared, borrowed) = match slot {
            // Slots are decided before hooks run (`lifecycle`); an undecided one has no session.
            SessionSlot::None | SessionSlot::Ambient(..) => (None, None),
            SessionSlot::Borrowed(session) => (None, Some(&mut **session)),
            SessionSlot::Shared(bound) => (Some(bound.clone()), None),
        };
        HookContext {
            db,
            shared,
            borrowed,
            operation,
        }
    }

    /// The database of the operation.
    pub fn db(&self) -> &Db {
        self.db
    }

    /// The session the caller passed with `.session(&mut session)`, if any.
    pub fn session(&mut self) -> Option<&mut ClientSession> {
        self.borrowed.as_deref_mut()
    }

    /// Whether the operation runs in a session (a transaction scope or one passed by the caller).
    pub fn in_session(&self) -> bool {
        self.shared.is_some() || self.borrowed.is_some()
    }

    /// The operation that runs the hook: `insert`, `save`, `update_one`, ...
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

/// The filter and update of an `update_one`, `update_many` or `find_one_and_update`, which
/// `before_update` may inspect and change.
#[derive(Debug)]
pub struct UpdateSpec<'a> {
    /// The filter, as the server will receive it.
    pub filter: &'a mut Document,
    /// The update operators, as the server will receive them.
    pub update: &'a mut Document,
}

/// The hook points a repository calls, dispatched by the derive to [`Hooks`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    BeforeInsert,
    AfterInsert,
    BeforeSave,
    AfterSave,
    BeforeDelete,
    AfterDelete,
    AfterLoad,
}

impl HookPoint {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HookPoint::BeforeInsert => "before_insert",
            HookPoint::AfterInsert => "after_insert",
            HookPoint::BeforeSave => "before_save",
            HookPoint::AfterSave => "after_save",
            HookPoint::BeforeDelete => "before_delete",
            HookPoint::AfterDelete => "after_delete",
            HookPoint::AfterLoad => "after_load",
        }
    }
}
