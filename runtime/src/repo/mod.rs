//! `Repo<M>`: typed operations on the collection of one model.
//!
//! Every operation is a value with option setters that runs when awaited, like the driver's own
//! actions: `tickets.find(filter).sort(sort).limit(10).await`. Each takes
//! `.session(&mut session)`; a repository handed out by a transaction scope uses its session
//! without being told.

pub(crate) mod batch;
mod lifecycle;
pub(crate) mod occ;
mod op;

pub(crate) use op::trace;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use mongodb::Collection;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};

pub use batch::MAX_BATCH;
pub use op::{
    Acc, Aggregate, AggregateAs, Applied, ApplyIfCurrent, BulkWrite, Count, Delete, DeleteMany,
    Distinct, Exists, Find, FindForUpdate, FindOne, FindOneAndUpdate, FindOneForUpdate,
    FindOnePopulated, FindPage, FindPopulated, FindPopulatedThen, FindProjected, IndexReport,
    Insert, InsertMany, LOCK_FIELD, Modify, Page, PageCursor, RefersTo, Replace, Save, Summable,
    SyncIndexes, UpdateMany, UpdateOne, UpdateOutcome, WriteOp,
};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::hook_context::HookContext;
use crate::model::Model;
use crate::query::{EncodeProblem, IntoFilter, Update};
use crate::session::{Bound, SessionSlot};

impl Db {
    /// The typed repository of model `M`.
    ///
    /// The repository is not tied to a session when it is made: each of its operations, when it
    /// runs, joins the transaction scope running on the current task if that scope belongs to
    /// this `Db` (a clone, one made with [`Db::with_database`]) or to the same driver client
    /// (`Db::new(db.client().clone(), ...)`), exactly as a repository from
    /// [`Tx::repo`](crate::Tx::repo) would. A repository kept in a service struct and used
    /// inside `db.transaction(...)` therefore writes inside the transaction: a forgotten
    /// session cannot write outside it. Elsewhere it runs without a session.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        Repo::new(self.clone(), None)
    }
}

impl HookContext<'_> {
    /// A repository that writes in the caller's transaction scope, if there is one.
    pub fn repo<X: Model>(&self) -> Repo<X> {
        Repo::new(self.db().clone(), self.shared.clone())
    }
}

/// The typed repository of model `M`, from [`Db::repo`].
///
/// Cheap to clone; keep one in a service struct. Each operation is a builder that runs when
/// awaited, and joins the transaction running on the task, if any.
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
/// let orders = db.repo::<Order>();
/// let o = Order::fields();
/// let recent = orders.find(o.status.eq("new")).sort(o.total.desc()).limit(10).await?;
/// orders.update_many(o.status.eq("new"), o.status.set("open")).await?;
/// # Ok(()) }
/// ```
pub struct Repo<M> {
    db: Db,
    docs: Collection<Document>,
    raw: Collection<RawDocumentBuf>,
    /// The transaction the repository was taken from (`tx.repo()`), if any.
    bound: Option<Bound>,
    /// The collection's batcher, when this repository batches `find_by_id` and `insert`.
    batcher: Option<Arc<batch::Batcher>>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Repo<M> {
    fn clone(&self) -> Self {
        Repo {
            db: self.db.clone(),
            docs: self.docs.clone(),
            raw: self.raw.clone(),
            bound: self.bound.clone(),
            batcher: self.batcher.clone(),
            marker: PhantomData,
        }
    }
}

impl<M: Model> fmt::Debug for Repo<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo")
            .field("database", &self.db.name())
            .field("collection", &M::COLLECTION)
            .field("bound_to_transaction", &self.bound.is_some())
            .field("batched", &self.batcher.is_some())
            .finish()
    }
}

impl<M: Model> Repo<M> {
    pub(crate) fn new(db: Db, bound: Option<Bound>) -> Self {
        let database = db.database();
        let raw = db.collection(M::COLLECTION);
        // A repository bound to a transaction keeps the `Db`'s batcher too: its calls go
        // through the transaction's own batcher of the collection, with its limit (see `batch`).
        let batcher = match db.batching() {
            Some(batching) => {
                let shared = batching.get_or_insert(database.name(), M::COLLECTION, || {
                    Arc::new(batch::Batcher::new(
                        raw.clone(),
                        M::COLLECTION,
                        batching.limit,
                    ))
                });
                shared.downcast::<batch::Batcher>().ok()
            }
            None => None,
        };
        Repo {
            // One handle, two views: `collection()` would copy the database's options again.
            docs: raw.clone_with_type(),
            raw,
            db,
            bound,
            batcher,
            marker: PhantomData,
        }
    }

    /// This repository with automatic batching of concurrent [`find_by_id`](Repo::find_by_id)
    /// and [`insert`](Repo::insert) calls, as [`Db::with_batching`] describes. Keep the
    /// returned repository and share it (its clones share one batcher): calls batch together
    /// only through the same batcher. A repository of a `Db` with batching on already batches.
    /// Calls in a transaction batch only with calls of the same transaction, in its session.
    pub fn batched(&self) -> Repo<M> {
        let mut repo = self.clone();
        if repo.batcher.is_none() {
            let batcher = batch::Batcher::new(self.raw.clone(), M::COLLECTION, MAX_BATCH);
            repo.batcher = Some(Arc::new(batcher));
        }
        repo
    }

    /// Whether `find_by_id` and `insert` of this repository are batched.
    pub fn is_batched(&self) -> bool {
        self.batcher.is_some()
    }

    /// The collection name.
    pub fn collection_name(&self) -> &'static str {
        M::COLLECTION
    }

    /// The driver's collection, for anything mongrove does not wrap. Writes made through it skip
    /// hooks, validation and the version check.
    pub fn collection(&self) -> &Collection<Document> {
        &self.docs
    }

    /// The database this repository belongs to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts `doc` and fills in its id when the server or driver generated one.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let mut order = order("ada", 1200);
    /// orders.insert(&mut order).await?;
    /// assert!(order.id.is_some());
    /// # Ok(()) }
    /// ```
    pub fn insert<'a>(&'a self, doc: &'a mut M) -> Insert<'a, M> {
        Insert::new(self, doc)
    }

    /// Inserts several documents in one round trip (ordered unless told otherwise).
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let mut batch = vec![order("ada", 100), order("grace", 200)];
    /// // `ordered(false)`: go on after a failing document; failures come back as a PartialWrite.
    /// let ids = orders.insert_many(&mut batch).ordered(false).await?;
    /// assert_eq!(ids.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn insert_many<'a>(&'a self, docs: &'a mut [M]) -> InsertMany<'a, M> {
        InsertMany::new(self, docs)
    }

    /// The document with this `_id`, if there is one.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// # let id = mongrove::bson::oid::ObjectId::new();
    /// match orders.find_by_id(id).await? {
    ///     Some(order) => println!("{} owes {}", order.customer, order.total),
    ///     None => println!("no order {id}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn find_by_id(&self, id: impl Into<M::Id>) -> FindOne<'_, M> {
        let id = id.into();
        let filter = self.id_filter(&id);
        let batched = match (&self.batcher, &filter) {
            (Some(_), Ok(filter)) => filter.get("_id").cloned(),
            _ => None,
        };
        FindOne::new(self, filter).by_id(batched)
    }

    /// The first document matching `filter`.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let first = orders
    ///     .find_one(o.customer.eq("ada"))
    ///     .sort(o.total.desc())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn find_one(&self, filter: impl IntoFilter<M>) -> FindOne<'_, M> {
        FindOne::new(self, filter.into().into_parts())
    }

    /// Every document matching `filter`; await it for a `Vec`, or call `.stream()`.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let big = orders
    ///     .find(o.total.gte(1000).and(o.status.ne("cancelled")))
    ///     .sort(o.total.desc())
    ///     .skip(20)
    ///     .limit(10)
    ///     .await?;
    /// // Or one batch in memory at a time:
    /// use futures_util::TryStreamExt;
    /// let mut all = orders.find(mongrove::Filter::all()).stream().await?;
    /// while let Some(order) = all.try_next().await? {
    ///     println!("{}", order.customer);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn find(&self, filter: impl IntoFilter<M>) -> Find<'_, M> {
        Find::new(self, filter.into().into_parts())
    }

    /// An aggregation pipeline on this collection, built from typed stages; await it for raw
    /// documents or `.decode::<Out>()` it. Inside a transaction it runs in its session, like
    /// every other operation.
    pub fn aggregate(&self) -> Aggregate<'_, M> {
        Aggregate::new(self)
    }

    /// How many documents match `filter`.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let open = orders.count(o.status.eq("new")).await?;
    /// # Ok(()) }
    /// ```
    pub fn count(&self, filter: impl IntoFilter<M>) -> Count<'_, M> {
        Count::new(self, filter.into().into_parts())
    }

    /// The distinct values of `field`, decoded as the field's type (`Vec<String>` for a
    /// `String` field); `.filter(..)` narrows the documents. For a `Vec` field, where the
    /// server returns the distinct elements, use [`Repo::distinct_elements`].
    pub fn distinct<T>(&self, field: crate::query::Field<M, T>) -> Distinct<'_, M, T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        Distinct::new(self, field.path())
    }

    /// The distinct elements of the array field `field` (`Vec<String>` for a `Vec<String>`
    /// field), across every matching document.
    pub fn distinct_elements<T>(
        &self,
        field: crate::query::Field<M, T>,
    ) -> Distinct<'_, M, T::Element>
    where
        T: crate::query::Array,
        T::Element: serde::de::DeserializeOwned + Send + 'static,
    {
        Distinct::new(self, field.path())
    }

    /// Whether any document matches `filter`.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// if orders.exists(o.customer.eq("ada")).await? {
    ///     println!("ada has ordered before");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn exists(&self, filter: impl IntoFilter<M>) -> Exists<'_, M> {
        Exists::new(self, filter.into().into_parts())
    }

    /// Applies `update` to the first document matching `filter`.
    ///
    /// The values typed paths `set` (and `set_on_insert`) are first checked against the
    /// fields' `#[model(validate(...))]` rules: a failure is [`Error::Validation`] and nothing
    /// is sent (`.skip_validation()` turns the check off; a raw update is never checked).
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// // Pay order `id` only if nobody changed it since version 3 was read.
    /// # let id = mongrove::bson::oid::ObjectId::new();
    /// let outcome = orders
    ///     .update_one(o.id.eq(id), o.status.set("paid"))
    ///     .expect_version(3)
    ///     .await?;
    /// assert_eq!(outcome.modified, 1);
    /// # Ok(()) }
    /// ```
    pub fn update_one(&self, filter: impl IntoFilter<M>, update: Update<M>) -> UpdateOne<'_, M> {
        UpdateOne::new(self, filter.into().into_parts(), update)
    }

    /// Applies `update` to every document matching `filter`.
    ///
    /// The values typed paths `set` (and `set_on_insert`) are first checked against the
    /// fields' `#[model(validate(...))]` rules: a failure is [`Error::Validation`] and nothing
    /// is sent (`.skip_validation()` turns the check off; a raw update is never checked).
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let outcome = orders
    ///     .update_many(o.status.eq("new"), o.status.set("expired"))
    ///     .await?;
    /// println!("{} orders expired", outcome.modified);
    /// # Ok(()) }
    /// ```
    pub fn update_many(&self, filter: impl IntoFilter<M>, update: Update<M>) -> UpdateMany<'_, M> {
        UpdateMany::new(self, filter.into().into_parts(), update)
    }

    /// Applies `update` to the first match and returns it, as it was before (the default) or
    /// after the update.
    ///
    /// The values typed paths `set` (and `set_on_insert`) are first checked against the
    /// fields' `#[model(validate(...))]` rules: a failure is [`Error::Validation`] and nothing
    /// is sent (`.skip_validation()` turns the check off; a raw update is never checked).
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let paid = orders
    ///     .find_one_and_update(o.status.eq("new"), o.status.set("processing"))
    ///     .sort(o.total.desc())
    ///     .return_after()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn find_one_and_update(
        &self,
        filter: impl IntoFilter<M>,
        update: Update<M>,
    ) -> FindOneAndUpdate<'_, M> {
        FindOneAndUpdate::new(self, filter.into().into_parts(), update)
    }

    /// Replaces the first document matching `filter` with `doc`.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// # let id = mongrove::bson::oid::ObjectId::new();
    /// let mut stored = orders.find_by_id(id).await?.ok_or(mongrove::Error::custom("gone"))?;
    /// stored.total = 0;
    /// stored.status = "void".into();
    /// orders.replace(o.id.eq(id), &mut stored).await?;
    /// # Ok(()) }
    /// ```
    pub fn replace<'a>(&'a self, filter: impl IntoFilter<M>, doc: &'a mut M) -> Replace<'a, M> {
        Replace::new(self, filter.into().into_parts(), doc)
    }

    /// Writes `doc` back over the stored document with its id. For a versioned model the write
    /// succeeds only when the stored version is still the loaded one, and the version goes up by
    /// one; otherwise [`Error::VersionConflict`].
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// # let id = mongrove::bson::oid::ObjectId::new();
    /// let mut order = orders.find_by_id(id).await?.ok_or(mongrove::Error::custom("gone"))?;
    /// order.status = "shipped".into();
    /// match orders.save(&mut order).await {
    ///     Ok(()) => {}
    ///     // Someone saved it first: reload and decide again.
    ///     Err(mongrove::Error::VersionConflict { found, .. }) => println!("now at version {found}"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn save<'a>(&'a self, doc: &'a mut M) -> Save<'a, M> {
        Save::new(self, doc)
    }

    /// Deletes `doc` (by its id). [`Error::NotFound`] when it is already gone.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// # let id = mongrove::bson::oid::ObjectId::new();
    /// if let Some(order) = orders.find_by_id(id).await? {
    ///     orders.delete(&order).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn delete<'a>(&'a self, doc: &'a M) -> Delete<'a, M> {
        Delete::new(self, doc)
    }

    /// Deletes every document matching `filter` and returns how many went.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let gone = orders.delete_many(o.status.eq("expired")).await?;
    /// # Ok(()) }
    /// ```
    pub fn delete_many(&self, filter: impl IntoFilter<M>) -> DeleteMany<'_, M> {
        DeleteMany::new(self, filter.into().into_parts())
    }

    /// Runs a mix of inserts, updates, replacements and deletes in as few round trips as the
    /// server allows, in order.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// use mongrove::WriteOp;
    /// let outcome = orders
    ///     .bulk_write(vec![
    ///         WriteOp::Insert(order("ada", 100)),
    ///         WriteOp::update_many(o.status.eq("new"), o.status.set("open")),
    ///         WriteOp::DeleteOne(o.customer.eq("mallory")),
    ///     ])
    ///     .await?;
    /// println!("{} inserted, {} changed", outcome.inserted, outcome.modified);
    /// # Ok(()) }
    /// ```
    pub fn bulk_write(&self, ops: Vec<WriteOp<M>>) -> BulkWrite<'_, M> {
        BulkWrite::new(self, ops)
    }

    /// Makes the collection's indexes match the model's declarations: creates what is missing,
    /// drops what is no longer declared or has changed, and reports what it did.
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
    /// #     version: i64,
    /// # }
    /// # fn order(customer: &str, total: i64) -> Order {
    /// #     Order { id: None, customer: customer.into(), total, status: "new".into(), version: 0 }
    /// # }
    /// # async fn demo(db: &Db) -> mongrove::Result<()> {
    /// let orders = db.repo::<Order>();
    /// let o = Order::fields();
    /// let report = orders.sync_indexes().await?;
    /// println!("{report:?}");
    /// # Ok(()) }
    /// ```
    pub fn sync_indexes(&self) -> SyncIndexes<'_, M> {
        SyncIndexes::new(self)
    }

    pub(crate) fn id_filter(&self, id: &M::Id) -> Result<Document, EncodeProblem> {
        match crate::value::to_bson(id) {
            Ok(id) => Ok(doc! { "_id": id }),
            Err(e) => Err(EncodeProblem {
                what: "the _id".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The session slot an operation of this repository starts with: its transaction's, or
    /// the one decided when the operation runs.
    pub(crate) fn session_slot(&self) -> SessionSlot<'_> {
        match &self.bound {
            Some(bound) => SessionSlot::Shared(bound.clone()),
            None => SessionSlot::Ambient(self.db.database(), self.db.lineage()),
        }
    }

    /// A filter, update, sort or projection ready to send: built without encoding problems,
    /// and holding no name that BSON cannot carry.
    pub(crate) fn checked_part(
        &self,
        part: Result<Document, EncodeProblem>,
        what: &str,
    ) -> Result<Document> {
        let part = part.map_err(|p| self.encode_problem(p))?;
        crate::decode::check_names(M::COLLECTION, what, &part)?;
        Ok(part)
    }

    pub(crate) fn encode_problem(&self, problem: EncodeProblem) -> Error {
        Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: problem.what,
            reason: problem.reason,
        }
    }

    pub(crate) fn driver_error(&self, error: mongodb::error::Error) -> Error {
        Error::from_driver(M::COLLECTION, error)
    }

    pub(crate) fn id_bson(&self, doc: &M, operation: &'static str) -> Result<Bson> {
        let id = doc.id().ok_or_else(|| Error::MissingId {
            collection: M::COLLECTION.to_owned(),
            operation,
        })?;
        crate::value::to_bson(&id).map_err(|e| Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: "the _id".to_owned(),
            reason: e.to_string(),
        })
    }
}
