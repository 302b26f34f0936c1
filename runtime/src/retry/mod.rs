//! `RetryPolicy`: how often, how long and how patiently an operation is tried again.
//!
//! The policy is pure data plus pure arithmetic (the backoff schedule, the jitter, the deadline
//! cut-off), so it is tested without a server. The transaction scope
//! ([`Db::transaction`](crate::Db::transaction)) and optimistic-concurrency helpers run their
//! loops with it.
//!
//! The defaults follow the MongoDB convenient-transaction specification: no cap on the number of
//! attempts, an overall deadline of 120 seconds, and an exponential backoff between attempts
//! (5 ms growing by 1.5 per retry, never above 500 ms) with full jitter.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::error::{Error, Result};

/// How the random part of a backoff delay is drawn.
///
/// Jitter spreads out clients that failed together (for example on the same write conflict), so
/// that they do not collide again at the same moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// The whole delay is random: anywhere from zero up to the computed backoff.
    #[default]
    Full,
    /// Half the delay is fixed, the other half random: between half and all of the backoff.
    Equal,
    /// No randomness: exactly the computed backoff. Useful in tests, rarely in production.
    None,
}

/// How an operation is retried: how many attempts, for how long, how long to wait in between,
/// and which errors are worth another attempt.
///
/// ```
/// use std::time::Duration;
/// use mongrove::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .deadline(Duration::from_secs(10))
///     .backoff(Duration::from_millis(10), Duration::from_secs(1))
///     .multiplier(2.0)
///     .jitter(Jitter::Equal)
///     .retry_version_conflicts(true);
/// assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(10));
/// assert_eq!(policy.backoff_ceiling(3), Duration::from_millis(40));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_attempts: Option<u32>,
    deadline: Option<Duration>,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    jitter: Jitter,
    retry_version_conflicts: bool,
    retry_if: Option<RetryIf>,
}

/// The application's rule for more errors to retry (see [`RetryPolicy::retry_if`]).
#[derive(Clone)]
struct RetryIf(Arc<dyn Fn(&Error) -> bool + Send + Sync>);

impl fmt::Debug for RetryIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryIf(..)")
    }
}

impl PartialEq for RetryIf {
    /// The same predicate (one `Arc`), since closures cannot be compared.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The overall deadline of the MongoDB convenient-transaction specification.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

impl Default for RetryPolicy {
    /// No cap on attempts, a 120 s deadline, backoff from 5 ms by ×1.5 up to 500 ms, full jitter,
    /// version conflicts not retried.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: None,
            deadline: Some(DEFAULT_DEADLINE),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(500),
            multiplier: 1.5,
            jitter: Jitter::Full,
            retry_version_conflicts: false,
            retry_if: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// The attempt budget is spent.
    OutOfAttempts,
    /// Waiting for the next attempt would pass the deadline.
    PastDeadline,
}

impl RetryPolicy {
    /// The default policy (see [`RetryPolicy::default`]).
    pub fn new() -> Self {
        RetryPolicy::default()
    }

    /// A policy that never retries: one attempt.
    pub fn never() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// At most `attempts` attempts in all, the first included (0 counts as 1). Without this
    /// setter only the deadline limits retries, as the MongoDB specification prescribes.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Removes the cap on attempts (the default): only the deadline limits retries.
    pub fn unlimited_attempts(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// Stops retrying when the next attempt would start later than `deadline` after the first
    /// one started (120 s by default). The attempt that is running is never interrupted.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Removes the deadline: only [`RetryPolicy::max_attempts`] limits retries. Without an
    /// attempt cap either, a failure that keeps coming back is retried forever.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// The wait before the first retry (`initial`) and the most any wait may grow to (`max`).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How much each wait grows over the previous one (1.5 by default; values below 1.0, and
    /// values that are not finite, count as 1.0: a constant wait).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() && multiplier >= 1.0 {
            multiplier
        } else {
            1.0
        };
        self
    }

    /// How the wait is randomised (full jitter by default).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Also retry on [`Error::VersionConflict`] (off by default). In a transaction this reruns
    /// the whole closure, which then loads the document again; it is the right choice when the
    /// closure reads what it changes.
    pub fn retry_version_conflicts(mut self, retry: bool) -> Self {
        self.retry_version_conflicts = retry;
        self
    }

    /// Also retry the errors for which `predicate` returns `true` (for example
    /// [`Error::DuplicateKey`] when the operation generates a code that may collide). It adds
    /// to the errors retried anyway (`TransientTransactionError`, and version conflicts when
    /// asked); every other error stops the retries and comes back at once. A second call
    /// replaces the predicate.
    ///
    /// ```
    /// use mongrove::{Error, RetryPolicy};
    ///
    /// let policy = RetryPolicy::default()
    ///     .max_attempts(5)
    ///     .retry_if(|error| matches!(error, Error::DuplicateKey { .. }));
    /// # let _ = policy;
    /// ```
    pub fn retry_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(RetryIf(Arc::new(predicate)));
        self
    }

    /// Runs `op` until it succeeds, an error the policy does not retry comes back, the attempts
    /// run out (the last error comes back) or the deadline would pass ([`Error::Timeout`],
    /// keeping the last error): the backoff, jitter and deadline of the transaction scope, for
    /// any operation. `op` makes a fresh future for every attempt.
    ///
    /// ```no_run
    /// # use mongrove::{Db, Error, Model, RetryPolicy};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Model)]
    /// # #[model(index(keys(code = 1), unique))]
    /// # struct Coupon { #[serde(rename = "_id", skip_serializing_if = "Option::is_none")] id: Option<mongrove::bson::oid::ObjectId>, code: u32 }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let coupons = db.repo::<Coupon>();
    /// let coupon = RetryPolicy::default()
    ///     .max_attempts(10)
    ///     .retry_if(|error| matches!(error, Error::DuplicateKey { .. }))
    ///     .run(|| async {
    ///         let mut coupon = Coupon { id: None, code: rand_code() };
    ///         coupons.insert(&mut coupon).await?;
    ///         Ok(coupon)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// # fn rand_code() -> u32 { 7 }
    /// ```
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !self.retries(&error) {
                return Err(error);
            }
            pause(self, attempt, started, error, "operation").await?;
            attempt += 1;
        }
    }

    /// The attempt cap, if any.
    pub fn attempts_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The overall deadline, if any.
    pub fn deadline_limit(&self) -> Option<Duration> {
        self.deadline
    }

    /// Whether version conflicts are retried.
    pub fn retries_version_conflicts(&self) -> bool {
        self.retry_version_conflicts
    }

    /// Whether this policy retries `error`: always when it carries the
    /// `TransientTransactionError` label, on [`Error::VersionConflict`] when asked to, and
    /// whenever the [`RetryPolicy::retry_if`] predicate says so.
    pub fn retries(&self, error: &Error) -> bool {
        error.has_label(TRANSIENT_TRANSACTION_ERROR)
            || (self.retry_version_conflicts && matches!(error, Error::VersionConflict { .. }))
            || self.retry_if.as_ref().is_some_and(|retry| (retry.0)(error))
    }

    /// The longest wait before retry number `retry` (1 for the first retry), before jitter:
    /// `initial × multiplier^(retry − 1)`, capped at the maximum backoff.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(retry - 1).unwrap_or(i32::MAX);
        let factor = self.multiplier.powi(exponent);
        let max = self.max_backoff.as_secs_f64();
        let secs = self.initial_backoff.as_secs_f64() * factor;
        // `factor` may be infinite after many retries; the cap keeps the result finite.
        if secs.is_finite() && secs < max {
            Duration::from_secs_f64(secs)
        } else {
            self.max_backoff
        }
    }

    /// The wait before retry number `retry` (1 for the first) given `unit`, a random draw in
    /// `[0, 1)` (values outside are clamped): `unit × ceiling` for full jitter,
    /// `ceiling / 2 + unit × ceiling / 2` for equal jitter, the ceiling without jitter.
    pub fn backoff_with(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => ceiling.mul_f64(unit),
            Jitter::Equal => {
                let half = ceiling / 2;
                half + (ceiling - half).mul_f64(unit)
            }
        }
    }

    /// The wait before retry number `retry`, with a fresh random draw.
    pub fn backoff_for(&self, retry: u32) -> Duration {
        self.backoff_with(retry, rand::random::<f64>())
    }

    /// Decides what follows failed attempt number `attempts` (1 for the first attempt),
    /// `elapsed` after the first attempt started, given a random draw `unit`.
    ///
    /// As the MongoDB specification says, a retry is skipped when `elapsed` plus the wait
    /// reaches the deadline.
    pub(crate) fn next(&self, attempts: u32, elapsed: Duration, unit: f64) -> Next {
        if self.max_attempts.is_some_and(|max| attempts >= max) {
            return Next::OutOfAttempts;
        }
        let wait = self.backoff_with(attempts, unit);
        if self.past_deadline(elapsed + wait) {
            return Next::PastDeadline;
        }
        Next::RetryAfter(wait)
    }

    /// Whether `elapsed` has reached the deadline.
    pub(crate) fn past_deadline(&self, elapsed: Duration) -> bool {
        self.deadline.is_some_and(|deadline| elapsed >= deadline)
    }
}

/// The label of an error after which the whole transaction may be run again.
pub(crate) const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";

/// The label of a commit error whose outcome is unknown: the commit may be retried.
pub(crate) const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";

/// Says in words why retries stopped at the deadline.
pub(crate) fn deadline_context(
    what: &str,
    policy: &RetryPolicy,
    attempts: u32,
    started: Instant,
) -> String {
    let deadline = policy
        .deadline_limit()
        .map_or_else(|| "none".to_owned(), |d| format!("{d:?}"));
    format!(
        "{what}: stopped retrying after {attempts} attempt{} in {:?}, because the retry deadline \
         ({deadline}) would pass before the next attempt; the last error is kept",
        if attempts == 1 { "" } else { "s" },
        started.elapsed(),
    )
}

/// Why a retry happens, for the logs.
pub(crate) fn reason(error: &Error) -> &'static str {
    if error.has_label(TRANSIENT_TRANSACTION_ERROR) {
        TRANSIENT_TRANSACTION_ERROR
    } else if error.has_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) {
        UNKNOWN_TRANSACTION_COMMIT_RESULT
    } else if matches!(error, Error::VersionConflict { .. }) {
        "VersionConflict"
    } else {
        "retryable error"
    }
}

/// Waits before retry number `attempts`, or says why there is none: the error itself when the
/// attempts ran out, [`Error::Timeout`] keeping it when the deadline would pass.
pub(crate) async fn pause(
    policy: &RetryPolicy,
    attempts: u32,
    started: Instant,
    error: Error,
    what: &'static str,
) -> Result<()> {
    let reason = reason(&error);
    let shown = error.to_string();
    pause_or_explain(policy, attempts, started, what, reason, &shown, async {
        error
    })
    .await
}

/// [`pause`] for a failure that costs a round trip to explain (which version another writer
/// saved, or whether the document is gone): `explain` runs only when no retry follows, so that
/// the caller gets the precise error. An explanation that the document is gone
/// ([`Error::NotFound`]) comes back as it is, past the deadline too.
pub(crate) async fn pause_or_explain(
    policy: &RetryPolicy,
    attempts: u32,
    started: Instant,
    what: &'static str,
    reason: &'static str,
    shown: &str,
    explain: impl Future<Output = Error>,
) -> Result<()> {
    match policy.next(attempts, started.elapsed(), rand::random::<f64>()) {
        Next::RetryAfter(wait) => {
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let span = tracing::info_span!("retry", what, reason, attempt = attempts, wait_ms);
            async {
                tracing::info!(error = shown, "retrying after {wait_ms} ms");
                tokio::time::sleep(wait).await;
            }
            .instrument(span)
            .await;
            Ok(())
        }
        Next::OutOfAttempts => {
            let error = explain.await;
            tracing::info!(what, attempts, %error, "no attempts left");
            Err(error)
        }
        Next::PastDeadline => {
            let error = explain.await;
            if matches!(error, Error::NotFound { .. }) {
                return Err(error);
            }
            tracing::info!(what, attempts, %error, "retry deadline reached");
            Err(Error::Timeout {
                context: deadline_context(what, policy, attempts, started),
                last: Some(Box::new(error)),
            })
        }
    }
}

#[cfg(test)]
mod tests;
