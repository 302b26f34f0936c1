//! The options of a transaction scope.

use std::time::Duration;

use mongodb::options::{
    ReadConcern, ReadPreference, SelectionCriteria, TransactionOptions, WriteConcern,
};

use crate::retry::RetryPolicy;
#[allow(unused_imports)] // for the docs
use crate::{db::Db, error::Error};

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
