//! Sagas: [`Saga`] runs steps that each commit on their own, in the order they were added, and
//! when one fails compensates the completed ones in reverse order ([`Error::SagaFailed`]).

use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;
use std::sync::Arc;

use tracing::Instrument;

use super::step::{self, Node, Within, erase, erase_unit};
use super::store::{NodeRef, Store, owner_id};
use crate::db::Db;
use crate::error::report::{Failure, Report, Stage};
use crate::error::{Error, Result};
use crate::transaction::{Tx, TxOptions};

/// Steps that each commit on their own, undone in reverse order when a later one fails.
///
/// Each step runs in its own transaction on its [`Db`] (retried like any transaction); a step
/// registered with [`Saga::compensate`] is undone by its compensation, also in a transaction,
/// when a later step fails.
///
/// ```no_run
/// # use mongrove::{Db, Saga};
/// # async fn demo(inventory: &Db, payments: &Db) -> mongrove::Result<()> {
/// let mut saga = Saga::new();
/// let reservation = saga.step("reserve stock", inventory, move |tx, _| async move {
///     // ... decrement the stock, return the reservation id ...
///     Ok(7_u32)
/// });
/// saga.compensate(reservation, move |tx, store| async move {
///     let id = *store.get(&reservation)?;
///     // ... put the stock of reservation `id` back ...
///     Ok(())
/// });
/// saga.step("charge", payments, move |tx, store| async move {
///     // ... fails: the reservation is compensated, then `run` returns Error::SagaFailed ...
///     Ok(())
/// });
/// saga.run().await?;
/// # Ok(()) }
/// ```
pub struct Saga<'a> {
    owner: u64,
    steps: Vec<Node<'a>>,
    options: TxOptions,
    problem: Option<String>,
}

impl fmt::Debug for Saga<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<_> = self.steps.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("Saga").field("steps", &steps).finish()
    }
}

impl Default for Saga<'_> {
    fn default() -> Self {
        Saga::new()
    }
}

impl<'a> Saga<'a> {
    /// An empty saga.
    pub fn new() -> Self {
        Saga {
            owner: owner_id(),
            steps: Vec::new(),
            options: TxOptions::default(),
            problem: None,
        }
    }

    /// Options of every step's and compensation's transaction, with their retry policy.
    pub fn options(mut self, options: TxOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a step: `action` runs in a transaction on `db` after the steps before it, and may
    /// read their results from the store.
    pub fn step<T, F, Fut>(&mut self, name: impl Into<String>, db: &Db, action: F) -> NodeRef<T>
    where
        F: FnMut(Tx, Store) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
        T: Send + Sync + 'static,
    {
        self.steps
            .push(Node::new(name.into(), db, None, erase(action)));
        NodeRef::new(self.owner, self.steps.len() - 1)
    }

    /// Registers how to undo `step` when a later step fails. It runs in its own transaction on
    /// the step's database and gets the store of the results so far.
    pub fn compensate<T, F, Fut>(&mut self, step: NodeRef<T>, compensation: F)
    where
        F: FnMut(Tx, Store) -> Fut + Send + 'a,
        Fut: Future<Output = Result<()>> + Send + 'a,
    {
        match self.steps.get_mut(step.index) {
            Some(target) if step.owner == self.owner => {
                target.compensation = Some(erase_unit(compensation));
            }
            _ => {
                self.problem.get_or_insert_with(|| {
                    "a compensation was registered for a step of another saga".to_owned()
                });
            }
        }
    }

    /// Runs the steps in order. When one fails, the completed steps are compensated in reverse
    /// order and the result is [`Error::SagaFailed`], whose report lists the completed, the
    /// compensated and the failed steps. When a step panics, the completed steps are
    /// compensated and the panic continues.
    pub async fn run(mut self) -> Result<Store> {
        if let Some(problem) = self.problem.take() {
            return Err(Error::custom(problem));
        }
        let names = Arc::new(self.steps.iter().map(|n| n.name.clone()).collect());
        let mut store = Store::new(self.owner, names);
        let span = tracing::info_span!("saga", steps = self.steps.len());
        async {
            for index in 0..self.steps.len() {
                let Some(step) = self.steps.get_mut(index) else {
                    continue;
                };
                let name = step.name.clone();
                let span = tracing::info_span!("step", step = name.as_str());
                let within = Within::Own(&step.db, &self.options);
                let outcome = step::run(&mut step.action, within, &store, span).await;
                let error = match outcome {
                    Ok(Ok(value)) => {
                        store.insert(index, value);
                        continue;
                    }
                    Ok(Err(error)) => Some(error),
                    Err(panic) => {
                        self.undo(index, &store, None).await;
                        resume_unwind(panic)
                    }
                };
                return Err(Error::SagaFailed(Box::new(
                    self.undo(index, &store, error).await,
                )));
            }
            Ok(store)
        }
        .instrument(span)
        .await
    }

    /// Compensates the steps before `failed` in reverse order.
    async fn undo(&mut self, failed: usize, store: &Store, error: Option<Error>) -> Report {
        let mut report = Report {
            committed: self.steps[..failed.min(self.steps.len())]
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            ..Report::default()
        };
        if let Some(step) = self.steps.get(failed) {
            report.aborted.push(step.name.clone());
            if let Some(error) = error {
                report.failures.push(Failure {
                    node: step.name.clone(),
                    stage: Stage::Action,
                    error,
                });
            }
        }
        step::compensate(
            &mut self.steps,
            0..failed,
            store,
            &self.options,
            &mut report,
        )
        .await;
        report
    }
}
