//! `find_one_for_update` and `find_for_update`: read inside a transaction and take the write
//! lock of every document read, MongoDB's answer to `SELECT ... FOR UPDATE`.
//!
//! A transaction reads a snapshot, so two transactions may each read the same documents, decide
//! on what they saw and write different documents: both commit, and the invariant their reads
//! checked is gone (write skew). Writing to a document takes its write lock until the
//! transaction ends, and a second transaction writing the same document fails with a write
//! conflict (labelled `TransientTransactionError`) when the first holds it or has committed
//! after the second's snapshot. So the read also writes: it increments a hidden counter,
//! [`LOCK_FIELD`], that no model field maps to. The loser of a race is rerun by the
//! transaction scope and then reads what the winner committed.

use std::future::IntoFuture;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::options::{FindOneAndUpdateOptions, FindOptions, ReturnDocument};

use super::{awaitable, session_setter};
use crate::decode::decode;
use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::{EncodeProblem, IntoFilter, Sort};
use crate::repo::{Repo, lifecycle};
use crate::session::{SessionGuard, SessionSlot};

/// The field a locking read increments. It is left out of the documents returned (so a model
/// with `#[serde(deny_unknown_fields)]` still decodes them), and only the lock reads touch it.
pub const LOCK_FIELD: &str = "_lock";

impl<M: Model> Repo<M> {
    /// The first document matching `filter`, read inside the running transaction with its write
    /// lock taken: until the transaction ends, another transaction that locks or writes the
    /// same document fails with a transient write conflict and is rerun by its scope, after
    /// this one has committed, so it reads what this one wrote. Use it for the documents a
    /// decision is based on (check-then-act), to rule out write skew.
    ///
    /// The lock is a write that changes nothing the model sees (`$inc` of [`LOCK_FIELD`]); hooks,
    /// versions and timestamps are left alone. Outside a transaction it fails with
    /// [`Error::NotInTransaction`] and sends nothing. With `.session(&mut s)`, start the
    /// transaction on `s` first: the driver does not tell whether a session is in one, so such a
    /// session is taken at its word.
    ///
    /// ```no_run
    /// # use mongrove::{Db, Model};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Model)]
    /// # struct Seat { #[serde(rename = "_id")] id: String, free: bool }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let booked = db
    ///     .transaction(async |tx| {
    ///         let seats = tx.repo::<Seat>();
    ///         let Some(mut seat) = seats.find_one_for_update(Seat::fields().id.eq("12A".to_owned())).await? else {
    ///             return Ok(false);
    ///         };
    ///         if !seat.free {
    ///             return Ok(false);
    ///         }
    ///         seat.free = false;
    ///         seats.replace(Seat::fields().id.eq("12A".to_owned()), &mut seat).await?;
    ///         Ok(true)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn find_one_for_update(&self, filter: impl IntoFilter<M>) -> FindOneForUpdate<'_, M> {
        FindOneForUpdate {
            session: self.session_slot(),
            repo: self,
            filter: filter.into().into_parts(),
            sort: None,
            lock_wait: None,
        }
    }

    /// Every document matching `filter`, read inside the running transaction with each one's
    /// write lock taken; see [`Repo::find_one_for_update`]. Documents inserted by others later
    /// are not locked (there are no range locks): lock a document that stands for the set (a
    /// parent, a counter) when inserts matter.
    pub fn find_for_update(&self, filter: impl IntoFilter<M>) -> FindForUpdate<'_, M> {
        FindForUpdate {
            session: self.session_slot(),
            repo: self,
            filter: filter.into().into_parts(),
            sort: None,
        }
    }
}

/// A locking read of one document. Created by [`Repo::find_one_for_update`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindOneForUpdate<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    sort: Option<Document>,
    lock_wait: Option<Duration>,
    session: SessionSlot<'a>,
}

/// A locking read of every matching document. Created by [`Repo::find_for_update`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindForUpdate<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    sort: Option<Document>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> FindOneForUpdate<'a, M> {
    /// Which document is read and locked when several match.
    pub fn sort(mut self, sort: Sort<M>) -> Self {
        self.sort = Some(sort.into_document());
        self
    }

    /// How long the server may spend taking the lock (`maxTimeMS` of the locking write); past
    /// it the operation fails with the server's `MaxTimeMSExpired`. A document locked by
    /// another transaction fails at once with a transient write conflict either way.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = Some(wait);
        self
    }

    async fn run(mut self) -> Result<Option<M>> {
        let repo = self.repo;
        let filter = repo.checked_part(self.filter, "the filter")?;
        let mut guard = self.session.lock().await?;
        let session = in_transaction(&mut guard, "find_one_for_update")?;
        let mut options = FindOneAndUpdateOptions::default();
        options.sort = self.sort;
        options.return_document = Some(ReturnDocument::After);
        options.projection = Some(doc! { LOCK_FIELD: 0 });
        options.max_time = self.lock_wait;
        let result = repo
            .raw
            .find_one_and_update(filter, lock_update())
            .with_options(options)
            .session(session)
            .await;
        guard.note(&result);
        drop(guard);
        let Some(raw) = result.map_err(|e| repo.driver_error(e))? else {
            return Ok(None);
        };
        let mut doc = decode::<M>(M::COLLECTION, &raw)?;
        after_load(repo, &mut self.session, &mut doc).await?;
        Ok(Some(doc))
    }
}

impl<'a, M: Model> FindForUpdate<'a, M> {
    /// The order of the results.
    pub fn sort(mut self, sort: Sort<M>) -> Self {
        self.sort = Some(sort.into_document());
        self
    }

    async fn run(mut self) -> Result<Vec<M>> {
        let repo = self.repo;
        let filter = repo.checked_part(self.filter, "the filter")?;
        let mut guard = self.session.lock().await?;
        let session = in_transaction(&mut guard, "find_for_update")?;
        // Lock first, then read: the read sees the transaction's own snapshot and writes, so it
        // returns exactly the documents the update matched (the counter is in no filter).
        let mut options = FindOptions::default();
        options.sort = self.sort;
        options.projection = Some(doc! { LOCK_FIELD: 0 });
        let result = async {
            repo.raw
                .update_many(filter.clone(), lock_update())
                .session(&mut *session)
                .await?;
            let mut cursor = repo
                .raw
                .find(filter)
                .with_options(options)
                .session(&mut *session)
                .await?;
            let mut found: Vec<RawDocumentBuf> = Vec::new();
            while cursor.advance(&mut *session).await? {
                found.push(cursor.current().to_owned());
            }
            Ok(found)
        }
        .await;
        guard.note(&result);
        drop(guard);
        let found = result.map_err(|e| repo.driver_error(e))?;
        let mut docs = Vec::with_capacity(found.len());
        for raw in &found {
            let mut doc = decode::<M>(M::COLLECTION, raw)?;
            after_load(repo, &mut self.session, &mut doc).await?;
            docs.push(doc);
        }
        Ok(docs)
    }
}

/// `$inc` of the hidden counter: a real write (so it takes the lock) that no model field sees.
fn lock_update() -> Document {
    doc! { "$inc": { LOCK_FIELD: Bson::Int64(1) } }
}

/// The session of the running transaction, or [`Error::NotInTransaction`]. A session passed
/// with `.session(&mut s)` is taken at its word: the driver does not say whether it is in a
/// transaction, so starting one on it is the caller's part.
fn in_transaction<'g>(
    guard: &'g mut SessionGuard<'_>,
    operation: &'static str,
) -> Result<&'g mut ClientSession> {
    guard.get().ok_or(Error::NotInTransaction { operation })
}

async fn after_load<M: Model>(
    repo: &Repo<M>,
    session: &mut SessionSlot<'_>,
    doc: &mut M,
) -> Result<()> {
    if M::HAS_HOOKS {
        lifecycle::hook_mut(repo, session, doc, HookPoint::AfterLoad, "find").await?;
    }
    Ok(())
}

awaitable!(FindOneForUpdate => Option<M>, "find_one_for_update", super::trace::row);
awaitable!(FindForUpdate => Vec<M>, "find_for_update", super::trace::rows);
session_setter!(FindOneForUpdate);
session_setter!(FindForUpdate);
