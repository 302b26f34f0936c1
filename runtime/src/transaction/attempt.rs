//! One session running one transaction at a time, across the attempts of a scope: start,
//! abort, commit (with the specification's retries), and what happens when time runs out.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use crate::repo::trace::instrumented;
use mongodb::bson::doc;
use mongodb::options::TransactionOptions;

use super::tx::Tx;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::retry::{RetryPolicy, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use crate::retry::{deadline_context, pause};
use crate::session::{Bound, SharedSession, TxShared, ledger};

/// `MaxTimeMSExpired`: a commit that ran out of its `maxTimeMS` is not retried.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// How long the clean-up after giving up (abort, `killSessions`) may take.
const CLEAN_UP: Duration = Duration::from_secs(5);

/// The scope's clock: when it started and when its deadline passes.
#[derive(Debug)]
pub(crate) struct Clock {
    started: Instant,
    deadline: Option<Instant>,
    /// One timer for the whole scope, shared by its attempts and commit tries: registered with
    /// tokio's timer wheel once, on the first wait, rather than once per wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    pub(crate) fn start(policy: &RetryPolicy) -> Clock {
        let started = Instant::now();
        Clock {
            started,
            deadline: policy.deadline_limit().map(|limit| started + limit),
            timer: None,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Runs `future` for the time that remains; `None` when the deadline came first.
    pub(crate) async fn bound<F: Future>(&mut self, future: F) -> Option<F::Output> {
        let Some(deadline) = self.deadline else {
            return Some(future.await);
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        let mut future = pin!(future);
        // The future first, as `tokio::time::timeout` does: an answer that is ready counts.
        poll_fn(|cx| match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
        })
        .await
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

/// The session of a transaction scope.
pub(crate) struct TxSession {
    db: Db,
    shared: SharedSession,
    /// An attempt is open and its writes are neither committed nor recorded as phantoms.
    open: bool,
}

impl TxSession {
    pub(crate) async fn new(db: &Db) -> Result<TxSession> {
        let session = db.client().start_session().await?;
        Ok(TxSession {
            db: db.clone(),
            shared: Arc::new(TxShared::new(session, db.lineage())),
            open: false,
        })
    }

    /// Starts attempt number `attempt`.
    pub(crate) async fn start(&mut self, attempt: u32, options: &TransactionOptions) -> Result<()> {
        let mut session = self.shared.session.lock().await;
        session
            .start_transaction()
            .with_options(options.clone())
            .await?;
        self.shared.open(attempt);
        self.open = true;
        Ok(())
    }

    /// The session shared by the transaction's repositories.
    pub(crate) fn shared(&self) -> &SharedSession {
        &self.shared
    }

    pub(crate) fn tx(&self, attempt: u32) -> Tx {
        Tx::new(
            self.db.clone(),
            Some(Bound {
                shared: self.shared.clone(),
                attempt,
            }),
        )
    }

    /// Aborts the transaction (errors are ignored, as the specification says: the server
    /// aborts it anyway when it times out) and records the versions of its writes as phantoms.
    pub(crate) async fn abort(&mut self) {
        self.shared.close();
        {
            let mut session = self.shared.session.lock().await;
            match tokio::time::timeout(CLEAN_UP, session.abort_transaction()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::trace!(%error, "abortTransaction failed; the server drops the transaction itself");
                }
                Err(_) => tracing::debug!("abortTransaction did not answer in time"),
            }
        }
        self.rolled_back();
    }

    /// The attempt's writes did not happen, or may not have (an unknown commit result): the
    /// versions their models claim are phantoms until the server shows otherwise (see
    /// `repo::occ::expected_version`).
    fn rolled_back(&mut self) {
        self.open = false;
        self.shared.close();
        ledger().record_rollback(self.shared.take_writes());
    }

    /// The attempt's writes are committed: the versions their models claim are real.
    fn committed(&mut self) {
        self.open = false;
        self.shared.close();
        drop(self.shared.take_writes());
    }

    /// mongrove gives up on a transaction whose commit may not have run: make the server drop
    /// it now (`killSessions` aborts the session's open transaction and frees its locks), rather
    /// than when `transactionLifetimeLimitSeconds` (60 s by default) runs out, blocking every
    /// writer of the same documents until then.
    async fn kill(&mut self) {
        let lsid = self.shared.session.lock().await.id().clone();
        let admin = self.db.client().database("admin");
        let kill = async move {
            // After a state-change error the client may first have to find the primary again,
            // so the kill gets the driver's usual patience, in the background if need be.
            match admin.run_command(doc! { "killSessions": [lsid] }).await {
                Ok(_) => tracing::debug!("killed the session of the abandoned transaction"),
                Err(error) => {
                    tracing::warn!(%error, "killSessions failed; the server drops the transaction when its lifetime limit passes")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(kill);
                if tokio::time::timeout(CLEAN_UP, task).await.is_err() {
                    tracing::debug!("killSessions goes on in the background");
                }
            }
            Err(_) => kill.await,
        }
    }

    /// The body ran out of time: abort, make sure the server lets go, and say so.
    pub(crate) async fn body_timed_out(
        &mut self,
        policy: &RetryPolicy,
        clock: &Clock,
        attempt: u32,
    ) -> Error {
        self.abort().await;
        self.kill().await;
        Error::Timeout {
            context: format!(
                "{} (the body of attempt {attempt} was still running at the deadline; it was \
                 aborted, so nothing of it was committed)",
                deadline_context("transaction", policy, attempt, clock.started())
            ),
            last: None,
        }
    }

    /// Commits, retrying an unknown commit result as the specification says, each try bounded
    /// by what remains of the deadline. First, a closure that returned `Ok` after one of its
    /// operations failed on the server has swallowed that error: the server has aborted the
    /// transaction, so it is reported at once, not committed and not retried.
    pub(crate) async fn commit(&mut self, policy: &RetryPolicy, clock: &mut Clock) -> Commit {
        if let Some(failure) = self.shared.take_failure() {
            self.abort().await;
            return Commit::Failed(Error::Swallowed(Box::new(Error::from_driver("", failure))));
        }
        let mut tries = 0;
        // The last answer of a try, kept for a timeout of the next one.
        let mut last: Option<mongodb::error::Error> = None;
        loop {
            tries += 1;
            let span = tracing::debug_span!("commit", try_number = tries);
            let once = async {
                let mut session = self.shared.session.lock().await;
                session.commit_transaction().await
            };
            let error = match clock.bound(instrumented(once, span)).await {
                Some(Ok(())) => {
                    self.committed();
                    return Commit::Done;
                }
                Some(Err(error)) => {
                    last = Some(error.clone());
                    Error::from(error)
                }
                None => {
                    // The try may have reached the server: its outcome is unknown.
                    self.rolled_back();
                    self.kill().await;
                    return Commit::Failed(Error::Timeout {
                        context: format!(
                            "transaction commit: try {tries} did not answer before the deadline \
                             ({:?}); the outcome is unknown, so check whether its writes are \
                             there; the session was killed, so the transaction holds no locks",
                            policy.deadline_limit().unwrap_or_default()
                        ),
                        last: last.map(|error| Box::new(Error::from(error))),
                    });
                }
            };
            let unknown = error.has_label(UNKNOWN_TRANSACTION_COMMIT_RESULT);
            if unknown && error.code() != Some(MAX_TIME_MS_EXPIRED) {
                match pause(policy, tries, clock.started(), error, "transaction commit").await {
                    Ok(()) => continue,
                    Err(error) => {
                        self.rolled_back();
                        self.kill().await;
                        return Commit::Failed(error);
                    }
                }
            }
            if error.has_label(TRANSIENT_TRANSACTION_ERROR) {
                self.rolled_back();
                return Commit::Rerun(error);
            }
            self.rolled_back();
            if unknown {
                // MaxTimeMSExpired: the commit may not have run, and may still be open.
                self.kill().await;
            }
            return Commit::Failed(error);
        }
    }
}

impl Drop for TxSession {
    fn drop(&mut self) {
        // Dropped in the middle of an attempt (the scope's future was cancelled): the versions
        // are recorded here, and the transaction is aborted on the server now, not when the
        // last repository still holding the session goes.
        if self.open {
            self.rolled_back();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let shared = self.shared.clone();
                runtime.spawn(async move {
                    let mut session = shared.session.lock().await;
                    let _ = tokio::time::timeout(CLEAN_UP, session.abort_transaction()).await;
                });
            }
        }
    }
}
