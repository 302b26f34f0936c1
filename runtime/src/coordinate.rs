//! Work across clients: transaction trees and sagas.
//!
//! A MongoDB transaction lives in one deployment. When one piece of business work writes to
//! several deployments (two clusters, or a cluster and a standalone archive), no transaction
//! covers it all. This module offers the two usual answers:
//!
//! - [`TxTree`]: a tree of actions, each in a transaction on its own [`Db`]. Every action runs
//!   (a parent before its children, siblings in the order they were added), each able to read
//!   the results of those before it from the [`Store`]; if any fails, every transaction is
//!   aborted and nothing is written anywhere. Only when all succeeded are the transactions
//!   committed, one deployment after the other. The window that remains (a commit failing after
//!   another already committed) is not hidden: the compensations registered for the committed
//!   nodes run, and [`Error::PartiallyCommitted`] lists what committed, what was compensated,
//!   what was aborted and what failed.
//! - [`Saga`]: steps that each commit on their own, each with a compensating action; when a step
//!   fails, the completed steps are compensated in reverse order ([`Error::SagaFailed`]).
//!
//! Nodes of a tree on the same deployment (clones of one [`Db`], or made with
//! [`Db::with_database`]) share one transaction.
//!
//! Actions are closures returning futures, `move |tx, store| async move { ... }`, given an owned
//! [`Tx`] and an owned snapshot of the [`Store`]; they may run more than once (a tree is run
//! again after a transient error; a saga step is retried like any transaction), so they are
//! `FnMut` and should clone what they capture into the future.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::Instrument;

use crate::db::Db;
pub use crate::error::report::{Failure, Report, Stage};
use crate::error::{Error, Result};
use crate::retry;
use crate::session::ambient;
use crate::transaction::{Clock, Commit, Standalone, Tx, TxOptions, TxSession, transaction_loop};

/// A result stored by a node, type-erased.
type Value = Arc<dyn Any + Send + Sync>;

/// An action: called with the transaction and the results so far.
type Action<'a, T> = Box<dyn FnMut(Tx, Store) -> BoxFuture<'a, Result<T>> + Send + 'a>;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A typed handle on the result of a tree node or a saga step, to read it from a [`Store`].
pub struct NodeRef<T> {
    owner: u64,
    index: usize,
    marker: PhantomData<fn() -> T>,
}

impl<T> Clone for NodeRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NodeRef<T> {}

impl<T> fmt::Debug for NodeRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRef")
            .field("index", &self.index)
            .finish()
    }
}

/// The results of the nodes (or steps) that have run so far, read with typed [`NodeRef`]s.
/// Cheap to clone: an action gets a snapshot.
#[derive(Clone)]
pub struct Store {
    owner: u64,
    names: Arc<Vec<String>>,
    values: Arc<HashMap<usize, Value>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ready: Vec<_> = self.values.keys().copied().collect();
        ready.sort_unstable();
        let ready: Vec<_> = ready
            .into_iter()
            .filter_map(|i| self.names.get(i))
            .collect();
        f.debug_struct("Store").field("results", &ready).finish()
    }
}

impl Store {
    fn new(owner: u64, names: Arc<Vec<String>>) -> Store {
        Store {
            owner,
            names,
            values: Arc::default(),
        }
    }

    fn insert(&mut self, index: usize, value: Value) {
        Arc::make_mut(&mut self.values).insert(index, value);
    }

    /// The result of `node`. [`Error::MissingResult`] when that node has not run before the
    /// caller (it is neither an ancestor nor an earlier sibling), or belongs to another tree.
    pub fn get<T: Any>(&self, node: &NodeRef<T>) -> Result<&T> {
        let found = if node.owner == self.owner {
            self.values
                .get(&node.index)
                .and_then(|value| value.downcast_ref::<T>())
        } else {
            None
        };
        found.ok_or_else(|| Error::MissingResult {
            node: self.name(node),
        })
    }

    /// Whether the result of `node` is available.
    pub fn contains<T: Any>(&self, node: &NodeRef<T>) -> bool {
        self.get(node).is_ok()
    }

    fn name<T>(&self, node: &NodeRef<T>) -> String {
        match self.names.get(node.index) {
            Some(name) if node.owner == self.owner => name.clone(),
            _ => "(a node of another tree or saga)".to_owned(),
        }
    }
}

fn erase<'a, T, F, Fut>(mut action: F) -> Action<'a, Value>
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

fn erase_unit<'a, F, Fut>(mut action: F) -> Action<'a, ()>
where
    F: FnMut(Tx, Store) -> Fut + Send + 'a,
    Fut: Future<Output = Result<()>> + Send + 'a,
{
    Box::new(move |tx, store| Box::pin(action(tx, store)))
}

/// Runs a boxed action in a transaction on `db` (retried like any transaction), handing it the
/// store snapshot.
async fn run_action<'a, T>(
    db: &Db,
    options: &TxOptions,
    action: &mut Action<'a, T>,
    store: &Store,
) -> Result<T> {
    transaction_loop!(db, options, |tx| action(tx.clone(), store.clone()))
}

/// A node of a tree or a step of a saga.
struct Node<'a> {
    name: String,
    db: Db,
    parent: Option<usize>,
    action: Action<'a, Value>,
    compensation: Option<Action<'a, ()>>,
}

/// Runs the compensations of `nodes` (indices, in the order given), each in its own
/// transaction on its node's database; fills `report`.
async fn compensate(
    nodes: &mut [Node<'_>],
    order: impl Iterator<Item = usize>,
    store: &Store,
    options: &TxOptions,
    report: &mut Report,
) {
    for index in order {
        let Some(node) = nodes.get_mut(index) else {
            continue;
        };
        let Some(compensation) = node.compensation.as_mut() else {
            continue;
        };
        let span = tracing::info_span!("compensation", node = node.name.as_str());
        let outcome = run_action(&node.db, options, compensation, store)
            .instrument(span)
            .await;
        match outcome {
            Ok(()) => report.compensated.push(node.name.clone()),
            Err(error) => {
                tracing::error!(node = node.name.as_str(), %error, "compensation failed");
                report.failures.push(Failure {
                    node: node.name.clone(),
                    stage: Stage::Compensation,
                    error,
                });
            }
        }
    }
}

fn owner_id() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// A tree of actions across clients, committed together or not at all (with compensations for
/// the window between commits). See the [module documentation](self).
///
/// ```no_run
/// # use mongrove::{Db, Error, TxTree};
/// # async fn demo(shop: &Db, billing: &Db) -> mongrove::Result<()> {
/// let mut tree = TxTree::new();
/// let order = tree.root("order", shop, move |tx, _store| async move {
///     // ... insert the order with tx.repo::<Order>() ...
///     Ok(42_u64)
/// });
/// tree.child(order, "invoice", billing, move |tx, store| async move {
///     let order_id = *store.get(&order)?;
///     // ... insert the invoice for order_id ...
///     Ok(())
/// });
/// tree.compensate(order, move |tx, store| async move {
///     let order_id = *store.get(&order)?;
///     // ... cancel order_id ...
///     Ok(())
/// });
/// let results = tree.run().await?;
/// assert_eq!(*results.get(&order)?, 42);
/// # Ok(()) }
/// ```
pub struct TxTree<'a> {
    owner: u64,
    nodes: Vec<Node<'a>>,
    options: TxOptions,
    problem: Option<String>,
}

impl fmt::Debug for TxTree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<_> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("TxTree").field("nodes", &nodes).finish()
    }
}

impl Default for TxTree<'_> {
    fn default() -> Self {
        TxTree::new()
    }
}

impl<'a> TxTree<'a> {
    /// An empty tree.
    pub fn new() -> Self {
        TxTree {
            owner: owner_id(),
            nodes: Vec::new(),
            options: TxOptions::default(),
            problem: None,
        }
    }

    /// Options of every node's transaction (concerns, commit time, standalone mode), and the
    /// retry policy of the tree: a transient error before any commit runs the whole tree again.
    /// With [`Standalone::RunWithoutTransaction`], a node on a standalone server writes
    /// directly: its writes stay when another node fails.
    pub fn options(mut self, options: TxOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a top-level node: `action` runs in a transaction on `db`. Top-level nodes run in the
    /// order they were added, each followed by its subtree.
    pub fn root<T, F, Fut>(&mut self, name: impl Into<String>, db: &Db, action: F) -> NodeRef<T>
    where
        F: FnMut(Tx, Store) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
        T: Send + Sync + 'static,
    {
        self.add(None, name.into(), db, erase(action))
    }

    /// Adds a child of `parent`: it runs after its parent (and after the parent's earlier
    /// children and their subtrees), and may read their results from the store.
    pub fn child<P, T, F, Fut>(
        &mut self,
        parent: NodeRef<P>,
        name: impl Into<String>,
        db: &Db,
        action: F,
    ) -> NodeRef<T>
    where
        F: FnMut(Tx, Store) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
        T: Send + Sync + 'static,
    {
        let name = name.into();
        if parent.owner != self.owner || parent.index >= self.nodes.len() {
            self.problem.get_or_insert_with(|| {
                format!("the parent given for node `{name}` belongs to another tree")
            });
        }
        self.add(Some(parent.index), name, db, erase(action))
    }

    /// Registers how to undo `node` after it committed, if a later commit fails. It runs in its
    /// own transaction on the node's database and gets the store of all results.
    pub fn compensate<T, F, Fut>(&mut self, node: NodeRef<T>, compensation: F)
    where
        F: FnMut(Tx, Store) -> Fut + Send + 'a,
        Fut: Future<Output = Result<()>> + Send + 'a,
    {
        match self.nodes.get_mut(node.index) {
            Some(target) if node.owner == self.owner => {
                target.compensation = Some(erase_unit(compensation));
            }
            _ => {
                self.problem.get_or_insert_with(|| {
                    "a compensation was registered for a node of another tree".to_owned()
                });
            }
        }
    }

    fn add<T>(
        &mut self,
        parent: Option<usize>,
        name: String,
        db: &Db,
        action: Action<'a, Value>,
    ) -> NodeRef<T> {
        self.nodes.push(Node {
            name,
            db: db.clone(),
            parent,
            action,
            compensation: None,
        });
        NodeRef {
            owner: self.owner,
            index: self.nodes.len() - 1,
            marker: PhantomData,
        }
    }

    /// The nodes in the order they run: depth first, parents before children, siblings in the
    /// order they were added.
    fn order(&self) -> Vec<usize> {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        let mut roots = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            match node.parent.and_then(|p| children.get_mut(p)) {
                Some(siblings) => siblings.push(index),
                None => roots.push(index),
            }
        }
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<usize> = roots.into_iter().rev().collect();
        while let Some(index) = stack.pop() {
            order.push(index);
            if let Some(kids) = children.get(index) {
                stack.extend(kids.iter().rev());
            }
        }
        order
    }

    /// Runs the tree: every action, then every commit. Returns the store of all results.
    ///
    /// - An action fails (or the first commit fails before anything committed): every
    ///   transaction is aborted and the result is [`Error::TreeAborted`] naming the node. An
    ///   error labelled `TransientTransactionError` first runs the whole tree again, within the
    ///   retry policy.
    /// - A commit fails after another committed: compensations run for the committed nodes,
    ///   and the result is [`Error::PartiallyCommitted`].
    /// - An action panics: every transaction is aborted and the panic continues.
    pub async fn run(mut self) -> Result<Store> {
        if let Some(problem) = self.problem.take() {
            return Err(Error::TreeAborted {
                node: "(tree)".to_owned(),
                source: Box::new(Error::custom(problem)),
            });
        }
        let order = self.order();
        let names = Arc::new(self.nodes.iter().map(|n| n.name.clone()).collect());
        let span = tracing::info_span!("transaction_tree", nodes = self.nodes.len());
        async {
            let started = Instant::now();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let span = tracing::debug_span!("attempt", number = attempt);
                let outcome = self.attempt(&order, &names, attempt).instrument(span).await;
                match outcome {
                    Ok(store) => return Ok(store),
                    Err(TreeFailure::Final(error)) => return Err(error),
                    Err(TreeFailure::Retryable { node, error }) => {
                        let policy = self.options.retry_policy();
                        if let Err(error) =
                            retry::pause(policy, attempt, started, error, "transaction tree").await
                        {
                            return Err(Error::TreeAborted {
                                node,
                                source: Box::new(error),
                            });
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn attempt(
        &mut self,
        order: &[usize],
        names: &Arc<Vec<String>>,
        attempt: u32,
    ) -> Result<Store, TreeFailure> {
        let mut store = Store::new(self.owner, names.clone());
        let mut groups: Vec<Group> = Vec::new();
        let driver_options = self.options.driver_options();
        for &index in order {
            let Some(node) = self.nodes.get_mut(index) else {
                continue;
            };
            let name = node.name.clone();
            let group = match groups.iter().position(|g| g.db.same_deployment(&node.db)) {
                Some(group) => group,
                None => {
                    match Group::open(&node.db, &self.options, &driver_options, attempt).await {
                        Ok(group) => groups.push(group),
                        Err(error) => {
                            abort_all(&mut groups).await;
                            return Err(TreeFailure::classify(name, error, &self.options));
                        }
                    }
                    groups.len() - 1
                }
            };
            let Some(current) = groups.get_mut(group) else {
                continue;
            };
            current.nodes.push(index);
            let tx = current.tx(attempt);
            let span = tracing::debug_span!("node", node = name.as_str());
            let future = (node.action)(tx.clone(), store.clone());
            let outcome = AssertUnwindSafe(ambient::within(tx.scope(), future))
                .catch_unwind()
                .instrument(span)
                .await;
            match outcome {
                Ok(Ok(value)) => store.insert(index, value),
                Ok(Err(error)) => {
                    abort_all(&mut groups).await;
                    return Err(TreeFailure::classify(name, error, &self.options));
                }
                Err(panic) => {
                    abort_all(&mut groups).await;
                    resume_unwind(panic)
                }
            }
        }
        self.commit_all(groups, store).await
    }

    async fn commit_all(
        &mut self,
        mut groups: Vec<Group>,
        store: Store,
    ) -> Result<Store, TreeFailure> {
        let policy = self.options.retry_policy().clone();
        let clock = Clock::start(&policy);
        let mut report = Report::default();
        let mut committed: Vec<usize> = Vec::new();
        let count = groups.len();
        for position in 0..count {
            let Some(group) = groups.get_mut(position) else {
                continue;
            };
            let first = group
                .nodes
                .first()
                .and_then(|&i| self.nodes.get(i))
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let span = tracing::debug_span!("commit", node = first.as_str());
            let outcome = match group.session.as_mut() {
                Some(session) => session.commit(&policy, &clock).instrument(span).await,
                None => Commit::Done,
            };
            let (error, definite) = match outcome {
                Commit::Done => {
                    committed.extend(group.nodes.iter().copied());
                    continue;
                }
                Commit::Rerun(error) => (error, true),
                Commit::Failed(error) => {
                    let definite = !error.has_label(retry::UNKNOWN_TRANSACTION_COMMIT_RESULT);
                    (error, definite)
                }
            };
            let failed_nodes: Vec<usize> = group.nodes.clone();
            let mut rest = groups.split_off(position + 1);
            abort_all(&mut rest).await;
            if committed.is_empty() && definite {
                return Err(TreeFailure::classify(first, error, &self.options));
            }
            // Another deployment already committed: undo what can be undone, and say it all.
            tracing::error!(node = first.as_str(), %error, "commit failed after other commits");
            report.committed = self.names_of(&committed);
            if definite {
                report.aborted = self.names_of(&failed_nodes);
            } else {
                report.uncertain = self.names_of(&failed_nodes);
            }
            let later: Vec<usize> = rest.iter().flat_map(|g| g.nodes.iter().copied()).collect();
            report.aborted.extend(self.names_of(&later));
            report.failures.push(Failure {
                node: first,
                stage: Stage::Commit,
                error,
            });
            compensate(
                &mut self.nodes,
                committed.iter().rev().copied(),
                &store,
                &self.options,
                &mut report,
            )
            .await;
            return Err(TreeFailure::Final(Error::PartiallyCommitted(Box::new(
                report,
            ))));
        }
        Ok(store)
    }

    fn names_of(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .filter_map(|&i| self.nodes.get(i))
            .map(|n| n.name.clone())
            .collect()
    }
}

/// Why an attempt of a tree failed.
enum TreeFailure {
    /// Every transaction was aborted; running the tree again may succeed.
    Retryable { node: String, error: Error },
    /// Give up with this error.
    Final(Error),
}

impl TreeFailure {
    fn classify(node: String, error: Error, options: &TxOptions) -> TreeFailure {
        if options.retry_policy().retries(&error) {
            TreeFailure::Retryable { node, error }
        } else {
            TreeFailure::Final(Error::TreeAborted {
                node,
                source: Box::new(error),
            })
        }
    }
}

/// The transaction of the tree's nodes on one deployment.
struct Group {
    db: Db,
    /// `None` on a standalone server with [`Standalone::RunWithoutTransaction`].
    session: Option<TxSession>,
    nodes: Vec<usize>,
}

impl Group {
    async fn open(
        db: &Db,
        options: &TxOptions,
        driver_options: &mongodb::options::TransactionOptions,
        attempt: u32,
    ) -> Result<Group> {
        let session = if db.supports_transactions().await? {
            let mut session = TxSession::new(db).await?;
            session.start(attempt, driver_options).await?;
            Some(session)
        } else if options.standalone_mode() == Standalone::RunWithoutTransaction {
            tracing::warn!(
                db = db.name(),
                "the deployment does not support transactions: this tree node runs without one"
            );
            None
        } else {
            return Err(Error::TransactionsUnsupported);
        };
        Ok(Group {
            db: db.clone(),
            session,
            nodes: Vec::new(),
        })
    }

    fn tx(&self, attempt: u32) -> Tx {
        match &self.session {
            Some(session) => session.tx(attempt),
            None => Tx::new(self.db.clone(), None),
        }
    }
}

async fn abort_all(groups: &mut [Group]) {
    for group in groups {
        if let Some(session) = group.session.as_mut() {
            session.abort().await;
        }
    }
}

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
        self.steps.push(Node {
            name: name.into(),
            db: db.clone(),
            parent: None,
            action: erase(action),
            compensation: None,
        });
        NodeRef {
            owner: self.owner,
            index: self.steps.len() - 1,
            marker: PhantomData,
        }
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
                let step_run = run_action(&step.db, &self.options, &mut step.action, &store);
                let outcome = AssertUnwindSafe(step_run)
                    .catch_unwind()
                    .instrument(span)
                    .await;
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
        compensate(
            &mut self.steps,
            (0..failed).rev(),
            store,
            &self.options,
            &mut report,
        )
        .await;
        report
    }
}
