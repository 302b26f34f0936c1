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
//! Repositories from [`Tx::repo`] are bound to the transaction's session, and so is every
//! repository taken from the same [`Db`] with [`Db::repo`] while the scope runs on the current
//! task (an ambient transaction): a forgotten session cannot write outside the transaction.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use mongodb::ClientSession;
use mongodb::bson::doc;
use mongodb::options::{
    ReadConcern, ReadPreference, SelectionCriteria, TransactionOptions, WriteConcern,
};
use tokio::sync::MutexGuard;
use tokio::task::futures::TaskLocalFuture;
use tracing::Instrument;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::repo::Repo;
use crate::retry::{RetryPolicy, TRANSIENT_TRANSACTION_ERROR};
use crate::retry::{UNKNOWN_TRANSACTION_COMMIT_RESULT, pause};
use crate::session::{SharedSession, TxShared};

/// `MaxTimeMSExpired`: a commit that ran out of its `maxTimeMS` is not retried.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// What to do on a deployment that cannot run transactions (a standalone `mongod`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Standalone {
    /// Fail with [`Error::TransactionsUnsupported`] (the default): code that needs atomicity
    /// must not silently lose it.
    #[default]
    Fail,
    /// Run the closure once, without a transaction, and log a warning. For local development
    /// against a standalone server only: the writes are neither atomic nor rolled back when the
    /// closure fails, and transient errors are not retried.
    RunWithoutTransaction,
}

/// Options of a transaction scope, for [`Db::transaction_with`].
///
/// ```
/// use std::time::Duration;
/// use mongrove::{RetryPolicy, Standalone, TxOptions};
/// use mongrove::mongodb::options::{ReadConcern, WriteConcern};
///
/// let options = TxOptions::new()
///     .read_concern(ReadConcern::snapshot())
///     .write_concern(WriteConcern::majority())
///     .max_commit_time(Duration::from_secs(5))
///     .retry(RetryPolicy::default().deadline(Duration::from_secs(30)))
///     .standalone(Standalone::Fail);
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
pub struct TxOptions {
    read_concern: Option<ReadConcern>,
    write_concern: Option<WriteConcern>,
    selection_criteria: Option<SelectionCriteria>,
    max_commit_time: Option<Duration>,
    retry: RetryPolicy,
    standalone: Standalone,
}

impl TxOptions {
    /// The defaults: the client's concerns, the default [`RetryPolicy`], [`Standalone::Fail`].
    pub fn new() -> Self {
        TxOptions::default()
    }

    /// The read concern of the transaction's reads (for example `ReadConcern::snapshot()`).
    pub fn read_concern(mut self, concern: ReadConcern) -> Self {
        self.read_concern = Some(concern);
        self
    }

    /// The write concern of the commit (for example `WriteConcern::majority()`).
    pub fn write_concern(mut self, concern: WriteConcern) -> Self {
        self.write_concern = Some(concern);
        self
    }

    /// The read preference of the transaction's reads. Transactions that read must read from
    /// the primary; the server rejects anything else.
    pub fn read_preference(mut self, preference: ReadPreference) -> Self {
        self.selection_criteria = Some(SelectionCriteria::ReadPreference(preference));
        self
    }

    /// The longest the server may spend on one commit (`maxTimeMS` of `commitTransaction`).
    /// A commit that runs out fails with `MaxTimeMSExpired`, which is not retried.
    pub fn max_commit_time(mut self, time: Duration) -> Self {
        self.max_commit_time = Some(time);
        self
    }

    /// How transient errors and unknown commit results are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What to do on a deployment without transactions (see [`Standalone`]).
    pub fn standalone(mut self, mode: Standalone) -> Self {
        self.standalone = mode;
        self
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    pub(crate) fn standalone_mode(&self) -> Standalone {
        self.standalone
    }

    pub(crate) fn driver_options(&self) -> TransactionOptions {
        TransactionOptions::builder()
            .read_concern(self.read_concern.clone())
            .write_concern(self.write_concern.clone())
            .selection_criteria(self.selection_criteria.clone())
            .max_commit_time(self.max_commit_time)
            .build()
    }
}

/// The running transaction, handed to the closure of [`Db::transaction`].
///
/// Cheap to clone. Do not keep it (or its repositories) beyond the closure: after the commit
/// they would run without a transaction.
#[derive(Clone)]
pub struct Tx {
    db: Db,
    shared: Option<SharedSession>,
    attempt: u32,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("database", &self.db.name())
            .field("in_transaction", &self.shared.is_some())
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Tx {
    /// A scope without a transaction (a standalone server in local mode).
    pub(crate) fn local(db: Db) -> Tx {
        Tx {
            db,
            shared: None,
            attempt: 1,
        }
    }

    /// The repository of model `M`, bound to this transaction.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        Repo::new(self.db.clone(), self.shared.clone())
    }

    /// The repository of model `M` in another database of the same deployment, bound to this
    /// transaction (a transaction may span the databases of one replica set).
    pub fn repo_in<M: Model>(&self, database: &str) -> Repo<M> {
        Repo::new(self.db.with_database(database), self.shared.clone())
    }

    /// The database the transaction was started on.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Which run of the closure this is: 1, then 2 and more after transient errors.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether a real transaction runs (`false` only with
    /// [`Standalone::RunWithoutTransaction`] on a standalone server).
    pub fn in_transaction(&self) -> bool {
        self.shared.is_some()
    }

    /// The transaction's driver session, for driver calls mongrove does not wrap (pass it with
    /// `.session(&mut *guard)`). Other operations of the transaction wait while it is held, so
    /// drop it before awaiting them. `None` without a transaction.
    pub async fn session(&self) -> Option<MutexGuard<'_, ClientSession>> {
        match &self.shared {
            Some(shared) => Some(shared.session.lock().await),
            None => None,
        }
    }
}

tokio::task_local! {
    /// The transaction scopes running on the current task, innermost last.
    static AMBIENT: Vec<Tx>;
}

/// The innermost transaction of `db`'s deployment running on the current task.
pub(crate) fn ambient_tx(db: &Db) -> Option<Tx> {
    AMBIENT
        .try_with(|scopes| {
            scopes
                .iter()
                .rev()
                .find(|tx| tx.db.same_deployment(db))
                .cloned()
        })
        .ok()
        .flatten()
}

/// The session a repository taken from `db` right now must run in.
pub(crate) fn ambient_session(db: &Db) -> Option<SharedSession> {
    ambient_tx(db).and_then(|tx| tx.shared)
}

/// Runs `future` with `tx` as the innermost ambient transaction of the current task.
pub(crate) fn with_ambient<F: Future>(tx: &Tx, future: F) -> TaskLocalFuture<Vec<Tx>, F> {
    let mut scopes = AMBIENT.try_with(Clone::clone).unwrap_or_default();
    scopes.push(tx.clone());
    AMBIENT.scope(scopes, future)
}

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
    /// [`Db::with_database`]) is running on the current task, so that [`Db::repo`] joins it.
    pub fn in_transaction(&self) -> bool {
        ambient_tx(self).is_some_and(|tx| tx.in_transaction())
    }
}

/// One session running one transaction at a time, across the attempts of a scope.
pub(crate) struct TxSession {
    db: Db,
    shared: SharedSession,
    /// A transaction was started and neither committed nor rolled back in the ledger yet.
    open: bool,
}

impl TxSession {
    pub(crate) async fn new(db: &Db) -> Result<TxSession> {
        let session = db.client().start_session().await?;
        Ok(TxSession {
            db: db.clone(),
            shared: std::sync::Arc::new(TxShared::new(session)),
            open: false,
        })
    }

    pub(crate) async fn start(&mut self, options: &TransactionOptions) -> Result<()> {
        let mut session = self.shared.session.lock().await;
        session
            .start_transaction()
            .with_options(options.clone())
            .await?;
        self.open = true;
        Ok(())
    }

    pub(crate) fn tx(&self, attempt: u32) -> Tx {
        Tx {
            db: self.db.clone(),
            shared: Some(self.shared.clone()),
            attempt,
        }
    }

    /// Aborts the transaction (errors are ignored, as the specification says: the server
    /// aborts it anyway when it times out) and puts the versions of its writes back.
    pub(crate) async fn abort(&mut self) {
        {
            let mut session = self.shared.session.lock().await;
            if let Err(error) = session.abort_transaction().await {
                tracing::trace!(%error, "abortTransaction failed; the server drops the transaction itself");
            }
        }
        self.rolled_back();
    }

    async fn commit_once(&mut self) -> Result<()> {
        let mut session = self.shared.session.lock().await;
        Ok(session.commit_transaction().await?)
    }

    /// The attempt's writes did not happen, or may not have (an unknown commit result): the
    /// versions their models claim are phantoms until the server shows otherwise (see
    /// `repo::occ::expected_version`).
    fn rolled_back(&mut self) {
        self.open = false;
        self.db.ledger().record_rollback(self.shared.take_writes());
    }

    /// The attempt's writes are committed: the versions their models claim are real.
    fn committed(&mut self) {
        self.open = false;
        drop(self.shared.take_writes());
    }

    /// Commits, retrying an unknown commit result as the specification says.
    pub(crate) async fn commit(&mut self, policy: &RetryPolicy, started: Instant) -> Commit {
        let mut tries = 0;
        loop {
            tries += 1;
            let span = tracing::debug_span!("commit", try_number = tries);
            let error = match self.commit_once().instrument(span).await {
                Ok(()) => {
                    self.committed();
                    return Commit::Done;
                }
                Err(error) => error,
            };
            let unknown = error.has_label(UNKNOWN_TRANSACTION_COMMIT_RESULT);
            if unknown && error.code() != Some(MAX_TIME_MS_EXPIRED) {
                match pause(policy, tries, started, error, "transaction commit").await {
                    Ok(()) => continue,
                    Err(error) => {
                        self.rolled_back();
                        return Commit::Failed(error);
                    }
                }
            }
            if error.has_label(TRANSIENT_TRANSACTION_ERROR) {
                self.rolled_back();
                return Commit::Rerun(error);
            }
            self.rolled_back();
            return Commit::Failed(error);
        }
    }
}

impl Drop for TxSession {
    fn drop(&mut self) {
        // Dropped in the middle of an attempt (the scope's future was cancelled): the driver
        // aborts the transaction when the session goes; the versions go back here.
        if self.open {
            self.rolled_back();
        }
    }
}

/// How a commit ended.
pub(crate) enum Commit {
    /// Committed.
    Done,
    /// A transient error: the transaction did not commit, and may run again.
    Rerun(Error),
    /// Failed for good, or its outcome is unknown and retrying it ran out of budget.
    Failed(Error),
}

/// The transaction loop: joins the running transaction of the same deployment, or runs a new
/// one (or none, on a standalone server in local mode) with the retries of the specification.
/// `$call` makes the body's future from `$tx: &Tx`. A macro rather than a function generic over
/// the body, so that the async closure entry and the boxed-action entry (transaction trees and
/// sagas) each get a future whose `Send`-ness the compiler can prove (rust-lang/rust#96865).
macro_rules! transaction_loop {
    ($db:expr, $options:expr, |$tx:ident| $call:expr) => {{
        let db: &$crate::db::Db = $db;
        let options: &$crate::transaction::TxOptions = $options;
        if let Some(outer) = $crate::transaction::ambient_tx(db) {
            ::tracing::debug!(
                db = db.name(),
                "joining the transaction running on this task"
            );
            let $tx = &outer;
            return $call.await;
        }
        let span = ::tracing::info_span!("transaction", db = db.name());
        ::tracing::Instrument::instrument(
            async {
                let Some(mut session) = $crate::transaction::open(db, options).await? else {
                    let local = $crate::transaction::Tx::local(db.clone());
                    let $tx = &local;
                    return $crate::transaction::with_ambient($tx, $call).await;
                };
                let policy = options.retry_policy();
                let driver_options = options.driver_options();
                let started = ::std::time::Instant::now();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    session.start(&driver_options).await?;
                    let current = session.tx(attempt);
                    let $tx = &current;
                    let outcome = ::futures_util::FutureExt::catch_unwind(
                        ::std::panic::AssertUnwindSafe(::tracing::Instrument::instrument(
                            $crate::transaction::with_ambient($tx, $call),
                            ::tracing::debug_span!("attempt", number = attempt),
                        )),
                    )
                    .await;
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
                        Ok(Ok(value)) => match session.commit(policy, started).await {
                            $crate::transaction::Commit::Done => return Ok(value),
                            $crate::transaction::Commit::Rerun(error) => error,
                            $crate::transaction::Commit::Failed(error) => return Err(error),
                        },
                    };
                    if !policy.retries(&error) {
                        return Err(error);
                    }
                    $crate::retry::pause(policy, attempt, started, error, "transaction").await?;
                }
            },
            span,
        )
        .await
    }};
}
pub(crate) use transaction_loop;

/// A session for a new transaction scope on `db`, or `None` to run without a transaction (a
/// standalone server in local mode, after one warning).
pub(crate) async fn open(db: &Db, options: &TxOptions) -> Result<Option<TxSession>> {
    if db.supports_transactions().await? {
        return Ok(Some(TxSession::new(db).await?));
    }
    match options.standalone {
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
