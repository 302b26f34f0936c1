//! The typed results of a tree or a saga: [`Store`] holds what the nodes (or steps) that ran
//! so far returned, type-erased; a [`NodeRef`], handed out when a node is added, reads one back
//! with its type. Each tree and saga has its own owner id, so that a `NodeRef` of another one
//! is refused rather than read.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A result stored by a node, type-erased.
pub(super) type Value = Arc<dyn Any + Send + Sync>;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A fresh owner id for a new tree or saga.
pub(super) fn owner_id() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// A typed handle on the result of a tree node or a saga step, to read it from a [`Store`].
pub struct NodeRef<T> {
    pub(super) owner: u64,
    pub(super) index: usize,
    marker: PhantomData<fn() -> T>,
}

impl<T> NodeRef<T> {
    /// The handle on node `index` of the tree or saga `owner`.
    pub(super) fn new(owner: u64, index: usize) -> Self {
        NodeRef {
            owner,
            index,
            marker: PhantomData,
        }
    }
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
    pub(super) fn new(owner: u64, names: Arc<Vec<String>>) -> Store {
        Store {
            owner,
            names,
            values: Arc::default(),
        }
    }

    pub(super) fn insert(&mut self, index: usize, value: Value) {
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
