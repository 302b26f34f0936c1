//! The transaction scope: `db.transaction(async |tx| { ... })`.
//!
//! The scope follows the MongoDB convenient-transaction specification:
//!
//! - the closure runs inside a transaction; `Ok` commits, `Err` aborts, a panic aborts and then
//!   continues;
//! - an error labelled `TransientTransactionError`, from the closure or from the commit, runs the
//!   whole closure again in a new transaction;
//! - an error labelled `UnknownTransactionCommitResult` from the commit retries only the commit
//!   (the driver sends the retry with majority write concern), except when it is
//!   `MaxTimeMSExpired` (code 50);
//! - every other error aborts and is returned unchanged;
//! - retries wait a jittered exponential backoff and stop at an overall deadline (120 s by
//!   default); see [`RetryPolicy`].
//!
//! Repositories from [`Tx::repo`] are bound to the transaction's session, and every other
//! repository of the same client joins it when its operations run on the task that runs the
//! scope (see `session::ambient`): a forgotten session cannot write outside the transaction.

mod attempt;
mod chunks;
mod manual;
mod options;
mod tx;

pub(crate) use attempt::{Clock, Commit, TxSession};
pub use chunks::{ChunkReport, FailedItem, ProcessInChunks, RejectedBy};
pub use manual::Transaction;
pub use options::{Standalone, TxOptions};
pub use tx::Tx;

use crate::db::Db;
use crate::error::{Error, Result};
#[allow(unused_imports)] // for the docs
use crate::retry::RetryPolicy;
use crate::session::ambient;

impl Db {
    /// Runs `body` in a transaction and returns its value: commits on `Ok`, aborts on `Err`
    /// (returning the error), aborts on a panic (and lets the panic continue).
    ///
    /// Retries follow the MongoDB convenient-transaction specification:
    ///
    /// - an error labelled `TransientTransactionError`, from the body or from the commit, runs
    ///   the whole body again in a new transaction: the body may run more than once, so keep
    ///   side effects that cannot be repeated (emails, HTTP calls) out of it, or after it;
    /// - an error labelled `UnknownTransactionCommitResult` from the commit retries only the
    ///   commit (with majority write concern), except `MaxTimeMSExpired` (code 50);
    /// - any other error aborts and is returned unchanged;
    /// - retries wait a jittered exponential backoff and stop at the deadline of the
    ///   [`RetryPolicy`] (120 s by default) with [`Error::Timeout`], which keeps the last error
    ///   and its labels. [`Db::transaction_with`] sets the policy and the other options.
    ///
    /// Inside the body, [`Tx::repo`] and `db.repo()` both give repositories bound to the
    /// transaction. A `db.transaction(...)` called inside the body (directly or in a function it
    /// calls) joins this transaction instead of starting another: its body runs once, in this
    /// transaction, and its error, if any, is this transaction's to handle.
    ///
    /// On a standalone server (no replica set) it fails with
    /// [`Error::TransactionsUnsupported`]; [`Standalone::RunWithoutTransaction`] opts in to
    /// running the body without a transaction instead.
    ///
    /// ```no_run
    /// # use mongrove::{Db, Model, Error};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Model)]
    /// # struct Account { #[serde(rename = "_id")] id: String, balance: i64 }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let mut runs = 0;
    /// let moved = db
    ///     .transaction(async |tx| {
    ///         runs += 1;
    ///         let accounts = tx.repo::<Account>();
    ///         let fields = Account::fields();
    ///         let taken = accounts
    ///             .update_one(fields.id.eq("alice".to_owned()).and(fields.balance.gte(10)), fields.balance.inc(-10))
    ///             .await?;
    ///         if taken.modified == 0 {
    ///             return Err(Error::custom("insufficient funds"));
    ///         }
    ///         accounts.update_one(fields.id.eq("bob".to_owned()), fields.balance.inc(10)).await?;
    ///         Ok(10)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// A body that borrows local state (`runs` above) makes a future that is not `Send`
    /// (a compiler limitation, rust-lang/rust#96865): inside `tokio::spawn`, write
    /// `async move |tx|` and capture owned or cloned values.
    pub async fn transaction<T, F>(&self, body: F) -> Result<T>
    where
        F: AsyncFnMut(&Tx) -> Result<T>,
    {
        run_closure(self, &TxOptions::default(), body).await
    }

    /// [`Db::transaction`] with options: read and write concern, read preference, maximum
    /// commit time, the [`RetryPolicy`], and what to do on a standalone server.
    pub async fn transaction_with<T, F>(&self, options: TxOptions, body: F) -> Result<T>
    where
        F: AsyncFnMut(&Tx) -> Result<T>,
    {
        run_closure(self, &options, body).await
    }

    /// Whether the deployment can run transactions: a replica set or a sharded cluster, not a
    /// standalone server. Asked once per `Db` (and its clones) with the `hello` command.
    pub async fn supports_transactions(&self) -> Result<bool> {
        Ok(self.hello().await?.transactions)
    }

    /// Whether a transaction scope of this `Db` (or a clone, or one made with
    /// [`Db::with_database`]) is running on the current task, or a [`Transaction`] of it begun
    /// on this task is open, so that [`Db::repo`] joins it.
    ///
    /// This looks only at scopes of this `Db`'s own lineage; a `Db::new` on a clone of the
    /// client joins too when its operations run, but is not reported here.
    pub fn in_transaction(&self) -> bool {
        ambient::scopes()
            .iter()
            .rev()
            .find(|scope| scope.db.lineage() == self.lineage())
            .is_some_and(|scope| scope.bound.is_some())
    }
}

/// The transaction loop: joins the running transaction of the same client, or runs a new one
/// (or none, on a standalone server in local mode) with the retries of the specification,
/// every attempt and commit try bounded by what remains of the deadline. `$call` makes the
/// body's future from `$tx: &Tx`. A macro rather than a function generic over the body, so
/// that the async closure entry and the boxed-action entry (transaction trees and sagas) each
/// get a future whose `Send`-ness the compiler can prove (rust-lang/rust#96865).
macro_rules! transaction_loop {
    ($db:expr, $options:expr, |$tx:ident| $call:expr) => {{
        let db: &$crate::db::Db = $db;
        let options: &$crate::transaction::TxOptions = $options;
        if let Some(outer) = $crate::transaction::joined(db).await {
            ::tracing::debug!(
                db = db.name(),
                "joining the transaction running on this task"
            );
            let $tx = &outer;
            return $call.await;
        }
        let span = ::tracing::info_span!("transaction", db = db.name());
        $crate::repo::trace::instrumented(
            async {
                let Some(mut session) = $crate::transaction::open(db, options).await? else {
                    let local = $crate::transaction::Tx::new(db.clone(), None);
                    let $tx = &local;
                    return $crate::session::ambient::within($tx.scope(), $call).await;
                };
                let policy = options.retry_policy();
                let driver_options = options.driver_options();
                let mut clock = $crate::transaction::Clock::start(policy);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    session.start(attempt, &driver_options).await?;
                    let current = session.tx(attempt);
                    let $tx = &current;
                    let body = ::futures_util::FutureExt::catch_unwind(
                        ::std::panic::AssertUnwindSafe($crate::repo::trace::instrumented(
                            $crate::session::ambient::within($tx.scope(), $call),
                            ::tracing::debug_span!("attempt", number = attempt),
                        )),
                    );
                    let Some(outcome) = clock.bound(body).await else {
                        return Err(session.body_timed_out(policy, &clock, attempt).await);
                    };
                    let error = match outcome {
                        Err(panic) => {
                            ::tracing::debug!("the transaction body panicked; aborting");
                            session.abort().await;
                            ::std::panic::resume_unwind(panic)
                        }
                        Ok(Err(error)) => {
                            session.abort().await;
                            error
                        }
                        Ok(Ok(value)) => match session.commit(policy, &mut clock).await {
                            $crate::transaction::Commit::Done => return Ok(value),
                            $crate::transaction::Commit::Rerun(error) => error,
                            $crate::transaction::Commit::Failed(error) => return Err(error),
                        },
                    };
                    if !policy.retries(&error) {
                        return Err(error);
                    }
                    $crate::retry::pause(policy, attempt, clock.started(), error, "transaction")
                        .await?;
                }
            },
            span,
        )
        .await
    }};
}
pub(crate) use transaction_loop;

/// The transaction a `db.transaction(...)` called inside another one joins: the innermost scope
/// of the same lineage, or of the same client.
pub(crate) async fn joined(db: &Db) -> Option<Tx> {
    let scopes = ambient::scopes();
    if let Some(own) = scopes
        .iter()
        .rev()
        .find(|scope| scope.db.lineage() == db.lineage())
    {
        return Some(Tx::new(db.clone(), own.bound.clone()));
    }
    ambient::join(db.database(), db.lineage())
        .await
        .map(|bound| Tx::new(db.clone(), Some(bound)))
}

/// A session for a new transaction scope on `db`, or `None` to run without a transaction (a
/// standalone server in local mode, after one warning).
pub(crate) async fn open(db: &Db, options: &TxOptions) -> Result<Option<TxSession>> {
    if db.supports_transactions().await? {
        return Ok(Some(TxSession::new(db).await?));
    }
    match options.standalone_mode() {
        Standalone::Fail => Err(Error::TransactionsUnsupported),
        Standalone::RunWithoutTransaction => {
            tracing::warn!(
                db = db.name(),
                "the deployment does not support transactions (a standalone server): running \
                 without one, as Standalone::RunWithoutTransaction asks; writes are not atomic \
                 and are not rolled back on error"
            );
            Ok(None)
        }
    }
}

/// Runs an async closure in a transaction of `db` (or the running one).
async fn run_closure<T, F>(db: &Db, options: &TxOptions, mut body: F) -> Result<T>
where
    F: AsyncFnMut(&Tx) -> Result<T>,
{
    transaction_loop!(db, options, |tx| body(tx))
}
