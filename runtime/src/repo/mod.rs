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

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use mongodb::Collection;
use mongodb::bson::{self, Bson, Document, RawDocumentBuf, doc};

pub use batch::MAX_BATCH;
pub use op::{
    Applied, ApplyIfCurrent, BulkWrite, Count, Delete, DeleteMany, Exists, Find, FindOne,
    FindOneAndUpdate, IndexReport, Insert, InsertMany, Modify, Replace, Save, SyncIndexes,
    UpdateMany, UpdateOne, UpdateOutcome, WriteOp,
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
        let raw: Collection<RawDocumentBuf> = database.collection(M::COLLECTION);
        // A repository bound to a transaction never batches (see `batch`).
        let batcher = match (&bound, db.batching()) {
            (None, Some(batching)) => {
                let shared = batching.get_or_insert(database.name(), M::COLLECTION, || {
                    Arc::new(batch::Batcher::new(
                        raw.clone(),
                        M::COLLECTION,
                        batching.limit,
                    ))
                });
                shared.downcast::<batch::Batcher>().ok()
            }
            _ => None,
        };
        Repo {
            docs: database.collection(M::COLLECTION),
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
    /// only through the same batcher. A repository of a `Db` with batching on already batches;
    /// one bound to a transaction never does.
    pub fn batched(&self) -> Repo<M> {
        let mut repo = self.clone();
        if repo.batcher.is_none() && repo.bound.is_none() {
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
    pub fn insert<'a>(&'a self, doc: &'a mut M) -> Insert<'a, M> {
        Insert::new(self, doc)
    }

    /// Inserts several documents in one round trip (ordered unless told otherwise).
    pub fn insert_many<'a>(&'a self, docs: &'a mut [M]) -> InsertMany<'a, M> {
        InsertMany::new(self, docs)
    }

    /// The document with this `_id`, if there is one.
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
    pub fn find_one(&self, filter: impl IntoFilter<M>) -> FindOne<'_, M> {
        FindOne::new(self, filter.into().into_parts())
    }

    /// Every document matching `filter`; await it for a `Vec`, or call `.stream()`.
    pub fn find(&self, filter: impl IntoFilter<M>) -> Find<'_, M> {
        Find::new(self, filter.into().into_parts())
    }

    /// How many documents match `filter`.
    pub fn count(&self, filter: impl IntoFilter<M>) -> Count<'_, M> {
        Count::new(self, filter.into().into_parts())
    }

    /// Whether any document matches `filter`.
    pub fn exists(&self, filter: impl IntoFilter<M>) -> Exists<'_, M> {
        Exists::new(self, filter.into().into_parts())
    }

    /// Applies `update` to the first document matching `filter`.
    pub fn update_one(&self, filter: impl IntoFilter<M>, update: Update<M>) -> UpdateOne<'_, M> {
        UpdateOne::new(self, filter.into().into_parts(), update.into_parts())
    }

    /// Applies `update` to every document matching `filter`.
    pub fn update_many(&self, filter: impl IntoFilter<M>, update: Update<M>) -> UpdateMany<'_, M> {
        UpdateMany::new(self, filter.into().into_parts(), update.into_parts())
    }

    /// Applies `update` to the first match and returns it, as it was before (the default) or
    /// after the update.
    pub fn find_one_and_update(
        &self,
        filter: impl IntoFilter<M>,
        update: Update<M>,
    ) -> FindOneAndUpdate<'_, M> {
        FindOneAndUpdate::new(self, filter.into().into_parts(), update.into_parts())
    }

    /// Replaces the first document matching `filter` with `doc`.
    pub fn replace<'a>(&'a self, filter: impl IntoFilter<M>, doc: &'a mut M) -> Replace<'a, M> {
        Replace::new(self, filter.into().into_parts(), doc)
    }

    /// Writes `doc` back over the stored document with its id. For a versioned model the write
    /// succeeds only when the stored version is still the loaded one, and the version goes up by
    /// one; otherwise [`Error::VersionConflict`].
    pub fn save<'a>(&'a self, doc: &'a mut M) -> Save<'a, M> {
        Save::new(self, doc)
    }

    /// Deletes `doc` (by its id). [`Error::NotFound`] when it is already gone.
    pub fn delete<'a>(&'a self, doc: &'a M) -> Delete<'a, M> {
        Delete::new(self, doc)
    }

    /// Deletes every document matching `filter` and returns how many went.
    pub fn delete_many(&self, filter: impl IntoFilter<M>) -> DeleteMany<'_, M> {
        DeleteMany::new(self, filter.into().into_parts())
    }

    /// Runs a mix of inserts, updates, replacements and deletes in as few round trips as the
    /// server allows, in order.
    pub fn bulk_write(&self, ops: Vec<WriteOp<M>>) -> BulkWrite<'_, M> {
        BulkWrite::new(self, ops)
    }

    /// Makes the collection's indexes match the model's declarations: creates what is missing,
    /// drops what is no longer declared or has changed, and reports what it did.
    pub fn sync_indexes(&self) -> SyncIndexes<'_, M> {
        SyncIndexes::new(self)
    }

    pub(crate) fn id_filter(&self, id: &M::Id) -> Result<Document, EncodeProblem> {
        match bson::to_bson(id) {
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
        bson::to_bson(&id).map_err(|e| Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: "the _id".to_owned(),
            reason: e.to_string(),
        })
    }
}
