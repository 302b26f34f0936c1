//! The step runner shared by trees and sagas.
//!
//! A [`Node`] is a tree node or a saga step: a name, a [`Db`], a boxed action and an optional
//! compensation. [`run`] runs an action with a snapshot of the [`Store`], in the caller's span,
//! catching a panic so that the caller can abort or compensate before the panic continues:
//! inside a transaction the caller opened (a tree node, committed later with its group) or in a
//! transaction of its own (a saga step, a compensation). [`compensate`] undoes completed nodes
//! in reverse order, each in its own transaction, and records what it did in a [`Report`].

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either};
use tracing::{Instrument, Span};

use super::store::{Store, Value};
use crate::db::Db;
use crate::error::Result;
use crate::error::report::{Failure, Report, Stage};
use crate::session::ambient;
use crate::transaction::{Tx, TxOptions, transaction_loop};

/// An action: called with the transaction and the results so far.
pub(super) type Action<'a, T> = Box<dyn FnMut(Tx, Store) -> BoxFuture<'a, Result<T>> + Send + 'a>;

/// What running an action gave: its result, or the payload of its panic.
pub(super) type Outcome<T> = std::result::Result<Result<T>, Box<dyn Any + Send>>;

/// Boxes a node's action, erasing the type of its result.
pub(super) fn erase<'a, T, F, Fut>(mut action: F) -> Action<'a, Value>
where
    F: FnMut(Tx, Store) -> Fut + Send + 'a,
    Fut: Future<Output = Result<T>> + Send + 'a,
    T: Send + Sync + 'static,
{
    Box::new(move |tx, store| {
        let future = action(tx, store);
        Box::pin(async move { future.await.map(|value| Arc::new(value) as Value) })
    })
}

/// Boxes a compensation.
pub(super) fn erase_unit<'a, F, Fut>(mut action: F) -> Action<'a, ()>
where
    F: FnMut(Tx, Store) -> Fut + Send + 'a,
    Fut: Future<Output = Result<()>> + Send + 'a,
{
    Box::new(move |tx, store| Box::pin(action(tx, store)))
}

/// A node of a tree or a step of a saga.
pub(super) struct Node<'a> {
    pub(super) name: String,
    pub(super) db: Db,
    /// The parent node of a tree node; `None` for a root and a saga step.
    pub(super) parent: Option<usize>,
    pub(super) action: Action<'a, Value>,
    pub(super) compensation: Option<Action<'a, ()>>,
}

impl<'a> Node<'a> {
    pub(super) fn new(
        name: String,
        db: &Db,
        parent: Option<usize>,
        action: Action<'a, Value>,
    ) -> Self {
        Node {
            name,
            db: db.clone(),
            parent,
            action,
            compensation: None,
        }
    }
}

/// Where [`run`] runs an action.
pub(super) enum Within<'t> {
    /// In a transaction the caller opened and commits (a tree node in its group).
    Open(&'t Tx),
    /// In a transaction of its own on this database, retried like any transaction (a saga step,
    /// a compensation).
    Own(&'t Db, &'t TxOptions),
}

/// Runs `action` with a snapshot of `store`, instrumented with `span`, catching a panic.
pub(super) async fn run<T>(
    action: &mut Action<'_, T>,
    within: Within<'_>,
    store: &Store,
    span: Span,
) -> Outcome<T> {
    let future = match within {
        Within::Open(tx) => Either::Left(ambient::within(
            tx.scope(),
            action(tx.clone(), store.clone()),
        )),
        Within::Own(db, options) => Either::Right(in_own_transaction(db, options, action, store)),
    };
    AssertUnwindSafe(future)
        .catch_unwind()
        .instrument(span)
        .await
}

/// Runs a boxed action in a transaction on `db` (retried like any transaction), handing it the
/// store snapshot.
async fn in_own_transaction<'a, T>(
    db: &Db,
    options: &TxOptions,
    action: &mut Action<'a, T>,
    store: &Store,
) -> Result<T> {
    transaction_loop!(db, options, |tx| action(tx.clone(), store.clone()))
}

/// Runs the compensations of the nodes `done` (indices, in the order they ran or committed) in
/// reverse order, each in its own transaction on its node's database; records each one,
/// compensated or failed, in `report`. A panicking compensation panics here.
pub(super) async fn compensate(
    nodes: &mut [Node<'_>],
    done: impl DoubleEndedIterator<Item = usize>,
    store: &Store,
    options: &TxOptions,
    report: &mut Report,
) {
    for index in done.rev() {
        let Some(node) = nodes.get_mut(index) else {
            continue;
        };
        let Some(compensation) = node.compensation.as_mut() else {
            continue;
        };
        let span = tracing::info_span!("compensation", node = node.name.as_str());
        let within = Within::Own(&node.db, options);
        match run(compensation, within, store, span).await {
            Ok(Ok(())) => report.compensated.push(node.name.clone()),
            Ok(Err(error)) => {
                tracing::error!(node = node.name.as_str(), %error, "compensation failed");
                report.failures.push(Failure {
                    node: node.name.clone(),
                    stage: Stage::Compensation,
                    error,
                });
            }
            Err(panic) => resume_unwind(panic),
        }
    }
}
