//! Transaction trees: [`TxTree`] holds the nodes (each an action on its own [`Db`], under a
//! parent or at the top), the order they run in (depth first), and the run loop: every action
//! in its deployment's transaction, then every commit (`commit`), the whole tree run again
//! after a transient error.

mod commit;

use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use self::commit::{Group, abort_all};
use super::step::{self, Action, Node, Within, erase, erase_unit};
use super::store::{NodeRef, Store, Value, owner_id};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::retry;
use crate::transaction::{Tx, TxOptions};

/// A tree of actions across clients, committed together or not at all (with compensations for
/// the window between commits). See the [module documentation](super).
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
    /// With [`Standalone::RunWithoutTransaction`](crate::Standalone::RunWithoutTransaction), a node on a standalone server writes
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
        self.nodes.push(Node::new(name, db, parent, action));
        NodeRef::new(self.owner, self.nodes.len() - 1)
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
            let outcome = step::run(&mut node.action, Within::Open(&tx), &store, span).await;
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
