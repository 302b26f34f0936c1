//! `db.begin()`: a transaction the caller commits or aborts by hand (Sequelize's unmanaged
//! transaction), for code whose shape does not fit a closure.

use std::fmt;

use super::attempt::{Clock, Commit, TxSession};
use super::{Tx, TxOptions};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::repo::Repo;
use crate::retry::RetryPolicy;
use crate::session::ambient;

/// A transaction begun with [`Db::begin`], ended by [`Transaction::commit`] or
/// [`Transaction::abort`]; dropped without either, it aborts.
///
/// While it is open, its repositories ([`Transaction::repo`]) write in it, and so do the
/// repositories of the same deployment (`db.repo()` of this `Db`, its clones, and `Db`s on the
/// same client) used **on the tokio task that called `begin`** (or, when `begin` was called
/// outside any task, in the future given to `block_on`, such as the body of `#[tokio::main]`):
/// the transaction registers under that task's id (or that thread). Other tasks do not join,
/// spawned ones included: use [`Tx::bind`] on [`Transaction::tx`] for spawned work. A scope
/// running on the task counts as inner to the manual transactions of the task: inside its
/// closure, `db.repo()` joins the scope, and a `db.transaction(...)` begun while a manual
/// transaction is open joins the manual one.
///
/// Unlike [`Db::transaction`], nothing runs again on a transient error (a write conflict, a
/// primary stepping down): the error comes back and the transaction is dead; begin another and
/// redo the work. Prefer the scope when the work can be written as a closure.
///
/// ```no_run
/// # use mongrove::{Db, Model};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Serialize, Deserialize, Model)]
/// # struct Line { #[serde(rename = "_id")] id: String }
/// # async fn demo(db: &Db) -> mongrove::Result<()> {
/// let tx = db.begin().await?;
/// tx.repo::<Line>().insert(&mut Line { id: "a".into() }).await?;
/// db.repo::<Line>().insert(&mut Line { id: "b".into() }).await?; // joins: same task
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Transaction {
    session: TxSession,
    tx: Tx,
    policy: RetryPolicy,
    /// The task (or `block_on` thread) it is registered on, until it ends.
    task: Option<ambient::Owner>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("database", &self.tx.db().name())
            .field("open", &self.task.is_some())
            .finish()
    }
}

impl Db {
    /// Begins a transaction that the caller ends by hand; see [`Transaction`]. Fails with
    /// [`Error::TransactionsUnsupported`] on a standalone server.
    pub async fn begin(&self) -> Result<Transaction> {
        self.begin_with(TxOptions::default()).await
    }

    /// [`Db::begin`] with options: read and write concern, read preference, maximum commit time,
    /// and the [`RetryPolicy`] that bounds the retries of an unknown commit result.
    pub async fn begin_with(&self, options: TxOptions) -> Result<Transaction> {
        if !self.supports_transactions().await? {
            return Err(Error::TransactionsUnsupported);
        }
        let mut session = TxSession::new(self).await?;
        session.start(1, &options.driver_options()).await?;
        let tx = session.tx(1);
        let task = Some(ambient::register(tx.scope()));
        Ok(Transaction {
            session,
            tx,
            policy: options.retry_policy().clone(),
            task,
        })
    }
}

impl Transaction {
    /// The repository of model `M`, bound to this transaction.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        self.tx.repo()
    }

    /// The repository of model `M` in another database of the same deployment, bound to this
    /// transaction.
    pub fn repo_in<M: Model>(&self, database: &str) -> Repo<M> {
        self.tx.repo_in(database)
    }

    /// The transaction as a [`Tx`], for code written for the scope's closure, and for
    /// [`Tx::bind`].
    pub fn tx(&self) -> &Tx {
        &self.tx
    }

    /// Commits. An unknown commit result (`UnknownTransactionCommitResult`) is retried as the
    /// MongoDB specification says, within the [`RetryPolicy`]'s deadline; any other error comes
    /// back, and the transaction is over either way. A transient error
    /// (`TransientTransactionError`) means nothing was committed: begin again and redo the work.
    /// An operation of the transaction that failed on the server (the server then aborts the
    /// transaction) makes the commit fail with [`Error::Swallowed`].
    pub async fn commit(mut self) -> Result<()> {
        self.unregister();
        let mut clock = Clock::start(&self.policy);
        match self.session.commit(&self.policy, &mut clock).await {
            Commit::Done => Ok(()),
            Commit::Rerun(error) | Commit::Failed(error) => Err(error),
        }
    }

    /// Aborts: nothing the transaction wrote is kept, and the versions its writes gave to
    /// in-memory models are known to be phantoms (the next version-checked write of such a
    /// model checks against the stored version).
    pub async fn abort(mut self) {
        self.unregister();
        self.session.abort().await;
    }

    fn unregister(&mut self) {
        if let Some(task) = self.task.take() {
            ambient::unregister(task, self.session.shared());
        }
    }
}

impl Drop for Transaction {
    /// Dropped without `commit` or `abort` (an early `?`, a panic): the transaction stops
    /// accepting operations and is aborted (the session's drop aborts it on the server in the
    /// background), like an aborted scope.
    fn drop(&mut self) {
        self.unregister();
    }
}
