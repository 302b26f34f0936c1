//! `Tx`: the running transaction, handed to the closure of `Db::transaction`.

use std::fmt;
use std::future::Future;

use mongodb::ClientSession;
use tokio::sync::MutexGuard;

use crate::db::Db;
use crate::model::Model;
use crate::repo::Repo;
use crate::session::Bound;
use crate::session::ambient::{self, Scope};

/// The running transaction, handed to the closure of [`Db::transaction`].
///
/// Cheap to clone. Its repositories (and every `db.repo()` of the same client used on the
/// task while the closure runs) write in the transaction. Once the attempt is over (committed,
/// aborted, or replaced by a retry) they refuse to run, with
/// [`Error::TransactionEnded`](crate::Error::TransactionEnded): nothing can slip outside the
/// transaction by being kept too long.
///
/// ```no_run
/// # use mongrove::{Db, Model};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Model)]
/// # #[model(collection = "orders", version = "version")]
/// # struct Order {
/// #     #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
/// #     id: Option<mongrove::bson::oid::ObjectId>,
/// #     customer: String,
/// #     total: i64,
/// #     status: String,
/// #     tags: Vec<String>,
/// #     version: i64,
/// # }
/// # async fn demo(db: &Db) -> mongrove::Result<()> {
/// let o = Order::fields();
/// db.transaction(async |tx| {
///     let orders = tx.repo::<Order>();
///     orders.update_one(o.customer.eq("ada"), o.status.set("paid")).await?;
///     orders.delete_many(o.status.eq("expired")).await?;
///     Ok(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tx {
    db: Db,
    bound: Option<Bound>,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("database", &self.db.name())
            .field("in_transaction", &self.bound.is_some())
            .field("attempt", &self.attempt())
            .finish()
    }
}

impl Tx {
    pub(crate) fn new(db: Db, bound: Option<Bound>) -> Tx {
        Tx { db, bound }
    }

    /// The scope this transaction puts on the task while its closure runs.
    pub(crate) fn scope(&self) -> Scope {
        Scope {
            db: self.db.clone(),
            bound: self.bound.clone(),
        }
    }

    /// The server error that has aborted the running attempt, if one of its operations met one.
    pub(crate) fn server_failure(&self) -> Option<mongodb::error::Error> {
        self.bound.as_ref().and_then(|bound| bound.shared.failure())
    }

    /// The repository of model `M`, bound to this transaction.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        Repo::new(self.db.clone(), self.bound.clone())
    }

    /// The repository of model `M` in another database of the same deployment, bound to this
    /// transaction (a transaction may span the databases of one replica set).
    pub fn repo_in<M: Model>(&self, database: &str) -> Repo<M> {
        Repo::new(self.db.with_database(database), self.bound.clone())
    }

    /// The database the transaction was started on.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Which run of the closure this is: 1, then 2 and more after transient errors.
    pub fn attempt(&self) -> u32 {
        self.bound.as_ref().map_or(1, |bound| bound.attempt)
    }

    /// Whether a real transaction runs (`false` only with
    /// [`Standalone::RunWithoutTransaction`](crate::Standalone::RunWithoutTransaction) on a
    /// standalone server).
    pub fn in_transaction(&self) -> bool {
        self.bound.is_some()
    }

    /// Runs `future` inside this transaction, wherever it is polled: for work spawned from the
    /// closure (`tokio::spawn(tx.bind(async move { ... }))`), whose `db.repo()` operations
    /// would otherwise run outside the transaction (a task-local transaction does not follow
    /// a spawned task). Await the spawned task before the closure returns: after the attempt
    /// ends, the bound work's operations fail with
    /// [`Error::TransactionEnded`](crate::Error::TransactionEnded) and send nothing.
    ///
    /// ```no_run
    /// # use mongrove::{Db, Model};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Model)]
    /// # struct Line { #[serde(rename = "_id")] id: String }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// db.transaction(async |tx| {
    ///     let lines = tx.db().repo::<Line>();
    ///     let task = tokio::spawn(tx.bind(async move {
    ///         lines.insert(&mut Line { id: "a".into() }).await
    ///     }));
    ///     task.await.map_err(mongrove::Error::custom)??;
    ///     Ok(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn bind<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        ambient::within(self.scope(), future)
    }

    /// The transaction's driver session, for driver calls mongrove does not wrap (pass it with
    /// `.session(&mut *guard)`). Other operations of the transaction wait while it is held, so
    /// drop it before awaiting them. `None` without a transaction.
    pub async fn session(&self) -> Option<MutexGuard<'_, ClientSession>> {
        match &self.bound {
            Some(bound) => Some(bound.shared.session.lock().await),
            None => None,
        }
    }
}
