//! `.populate(path)`: the documents a `Ref` field points at, loaded with one `$in` query per
//! populated path after the documents themselves, never one query per document.

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, doc};

use super::find::{Find, FindOne};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::query::Field;
use crate::relation::{Populated, Reference, Resolved, id_key, ids_at};
use crate::repo::Repo;
use crate::session::SessionSlot;

/// Every matching document with the documents one of its `Ref` fields points at. Created by
/// [`Find::populate`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindPopulated<'a, M: Model, T: Model> {
    find: Find<'a, M>,
    path: String,
    strict: bool,
    marker: std::marker::PhantomData<fn() -> T>,
}

/// The first matching document with the documents one of its `Ref` fields points at. Created by
/// [`FindOne::populate`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindOnePopulated<'a, M: Model, T: Model> {
    find: FindOne<'a, M>,
    path: String,
    strict: bool,
    marker: std::marker::PhantomData<fn() -> T>,
}

impl<'a, M: Model> Find<'a, M> {
    /// Loads the documents the reference field `path` points at (a `Ref<T>`,
    /// `Option<Ref<T>>` or `Vec<Ref<T>>` field), with one `$in` query for all the results,
    /// and returns each document with them ([`Populated`]). A reference to a document that does
    /// not exist comes back as [`Resolved::Dangling`], or as [`Error::DanglingRef`] with
    /// [`FindPopulated::strict`].
    pub fn populate<R: Reference>(self, path: Field<M, R>) -> FindPopulated<'a, M, R::Target> {
        FindPopulated {
            find: self,
            path: path.path().to_owned(),
            strict: false,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'a, M: Model> FindOne<'a, M> {
    /// Loads the documents the reference field `path` points at, like [`Find::populate`].
    pub fn populate<R: Reference>(self, path: Field<M, R>) -> FindOnePopulated<'a, M, R::Target> {
        FindOnePopulated {
            find: self,
            path: path.path().to_owned(),
            strict: false,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'a, M: Model, T: Model> FindPopulated<'a, M, T> {
    /// Fails with [`Error::DanglingRef`] when a reference names no document, instead of
    /// returning it as [`Resolved::Dangling`].
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// Runs both queries in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.find.session = SessionSlot::Borrowed(session);
        self
    }

    async fn run(self) -> Result<Vec<Populated<M, T>>> {
        let Find {
            repo,
            filter,
            options,
            session,
        } = self.find;
        let mut slot = session;
        let docs = Find {
            repo,
            filter,
            options,
            session: slot.reborrow(),
        }
        .run()
        .await?;
        resolve(repo, &mut slot, docs, &self.path, self.strict).await
    }
}

impl<'a, M: Model, T: Model> FindOnePopulated<'a, M, T> {
    /// Fails with [`Error::DanglingRef`] when a reference names no document.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// Runs both queries in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.find.session = SessionSlot::Borrowed(session);
        self
    }

    async fn run(self) -> Result<Option<Populated<M, T>>> {
        let FindOne {
            repo,
            filter,
            options,
            session,
            by_id,
        } = self.find;
        let mut slot = session;
        let doc = FindOne {
            repo,
            filter,
            options,
            session: slot.reborrow(),
            by_id,
        }
        .run()
        .await?;
        let docs: Vec<M> = doc.into_iter().collect();
        let mut populated = resolve(repo, &mut slot, docs, &self.path, self.strict).await?;
        Ok(populated.pop())
    }
}

impl<'a, M: Model, T: Model> IntoFuture for FindPopulated<'a, M, T> {
    type Output = Result<Vec<Populated<M, T>>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.find.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "find_populated",
            super::trace::rows,
            self.run(),
        )
    }
}

impl<'a, M: Model, T: Model> IntoFuture for FindOnePopulated<'a, M, T> {
    type Output = Result<Option<Populated<M, T>>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.find.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "find_one_populated",
            super::trace::row,
            self.run(),
        )
    }
}

/// Loads, with one `$in` query, the `T` documents that `docs` refer to at `path`.
pub(crate) async fn resolve<M: Model, T: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    docs: Vec<M>,
    path: &str,
    strict: bool,
) -> Result<Vec<Populated<M, T>>> {
    let loaded = load::<M, T>(repo, slot, docs, path).await?;
    let found = loaded
        .targets
        .into_iter()
        .filter_map(|target| key_of(&target).map(|key| (key, Arc::new(target))))
        .collect();
    attach(loaded.per_doc, found, path, strict)
}

/// The documents with the ids they refer to, and the referenced documents that exist.
struct Loaded<M, T> {
    per_doc: Vec<(M, Option<Bson>, Vec<Bson>)>,
    targets: Vec<T>,
}

/// The key a loaded document is found under: its `_id` as [`id_key`] writes it.
fn key_of<T: Model>(target: &T) -> Option<Vec<u8>> {
    target
        .id()
        .and_then(|id| crate::value::to_bson(&id).ok())
        .map(|id| id_key(&id))
}

async fn load<M: Model, T: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    docs: Vec<M>,
    path: &str,
) -> Result<Loaded<M, T>> {
    // The ids are read from the document as it is stored, so that the path (with its serde
    // renames) means what it means in a filter.
    let mut per_doc = Vec::with_capacity(docs.len());
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for doc in docs {
        let stored = crate::decode::encode(M::COLLECTION, &doc)?;
        let ids = ids_at(&stored, path);
        for id in &ids {
            if seen.insert(id_key(id)) {
                wanted.push(id.clone());
            }
        }
        per_doc.push((doc, stored.get("_id").cloned(), ids));
    }
    // No ids, no query: an empty `$in` would match nothing at the cost of a round trip.
    let targets = if wanted.is_empty() {
        Vec::new()
    } else {
        let targets = Repo::<T>::new(repo.db.clone(), repo.bound.clone());
        Find {
            repo: &targets,
            filter: Ok(doc! { "_id": { "$in": wanted } }),
            options: Default::default(),
            session: slot.reborrow(),
        }
        .run()
        .await?
    };
    Ok(Loaded { per_doc, targets })
}

/// Pairs each document with what its ids resolved to in `found`.
fn attach<M: Model, T: Model, D>(
    per_doc: Vec<(M, Option<Bson>, Vec<Bson>)>,
    found: HashMap<Vec<u8>, Arc<D>>,
    path: &str,
    strict: bool,
) -> Result<Vec<Populated<M, T, D>>> {
    let mut out = Vec::with_capacity(per_doc.len());
    for (doc, own_id, ids) in per_doc {
        let mut refs = Vec::with_capacity(ids.len());
        for id in ids {
            match found.get(&id_key(&id)) {
                Some(target) => refs.push(Resolved::Found(target.clone())),
                None if strict => {
                    return Err(Error::DanglingRef {
                        collection: M::COLLECTION.to_owned(),
                        id: own_id.map(Into::into),
                        path: path.to_owned(),
                        target: T::COLLECTION.to_owned(),
                        missing: id.into(),
                    });
                }
                None => {
                    let typed =
                        crate::value::from_bson::<T::Id>(id).map_err(|e| Error::Decode {
                            collection: M::COLLECTION.to_owned(),
                            id: own_id.clone().map(Into::into),
                            field: path.to_owned(),
                            reason: e.to_string(),
                        })?;
                    refs.push(Resolved::Dangling(typed));
                }
            }
        }
        out.push(Populated { doc, refs });
    }
    Ok(out)
}

/// Every matching document with the documents its `Ref` field points at, each with the
/// documents one of *their* `Ref` fields points at. Created by [`FindPopulated::then`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindPopulatedThen<'a, M: Model, T: Model, U: Model> {
    first: FindPopulated<'a, M, T>,
    path: String,
    marker: std::marker::PhantomData<fn() -> U>,
}

impl<'a, M: Model, T: Model> FindPopulated<'a, M, T> {
    /// Populates a reference field of the populated documents too (`orders → customer →
    /// referrer`): one more `$in` query, for all of them at once. Each found reference then
    /// holds a `Populated<T, U>`. `.strict()` applies to both levels.
    pub fn then<R: Reference>(self, path: Field<T, R>) -> FindPopulatedThen<'a, M, T, R::Target> {
        FindPopulatedThen {
            first: self,
            path: path.path().to_owned(),
            marker: std::marker::PhantomData,
        }
    }
}

impl<'a, M: Model, T: Model, U: Model> FindPopulatedThen<'a, M, T, U> {
    async fn run(self) -> Result<Vec<Populated<M, T, Populated<T, U>>>> {
        let strict = self.first.strict;
        let Find {
            repo,
            filter,
            options,
            session,
        } = self.first.find;
        let mut slot = session;
        let docs = Find {
            repo,
            filter,
            options,
            session: slot.reborrow(),
        }
        .run()
        .await?;
        let loaded = load::<M, T>(repo, &mut slot, docs, &self.first.path).await?;
        let keys: Vec<Option<Vec<u8>>> = loaded.targets.iter().map(key_of).collect();
        let targets = Repo::<T>::new(repo.db.clone(), repo.bound.clone());
        let inner =
            resolve::<T, U>(&targets, &mut slot, loaded.targets, &self.path, strict).await?;
        let found = keys
            .into_iter()
            .zip(inner)
            .filter_map(|(key, populated)| key.map(|key| (key, Arc::new(populated))))
            .collect();
        attach(loaded.per_doc, found, &self.first.path, strict)
    }
}

impl<'a, M: Model, T: Model, U: Model> IntoFuture for FindPopulatedThen<'a, M, T, U> {
    type Output = Result<Vec<Populated<M, T, Populated<T, U>>>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.first.find.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "find_populated",
            super::trace::rows,
            self.run(),
        )
    }
}
