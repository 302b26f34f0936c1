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
//!
//! The parts: [`Store`] and [`NodeRef`] (`store`), the tree (`tree`), the saga (`saga`), and
//! the step runner both use to run an action or a compensation (`step`).
//!
//! [`Db`]: crate::Db
//! [`Db::with_database`]: crate::Db::with_database
//! [`Tx`]: crate::Tx
//! [`Error::PartiallyCommitted`]: crate::Error::PartiallyCommitted
//! [`Error::SagaFailed`]: crate::Error::SagaFailed

mod saga;
mod step;
mod store;
mod tree;

pub use self::saga::Saga;
pub use self::store::{NodeRef, Store};
pub use self::tree::TxTree;
pub use crate::error::report::{Failure, Report, Stage};
