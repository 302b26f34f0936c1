//! Writing: insert, update, replace, save, delete. Versioned models get their version set on
//! insert, raised by one on every write, and checked where the caller holds a loaded document.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::{
    DeleteOptions, FindOneAndUpdateOptions, InsertManyOptions, ReplaceOptions, ReturnDocument,
    UpdateOptions,
};

use super::read::{awaitable, session_setter};
use super::{Repo, lifecycle};
use crate::decode::{decode_document, encode};
use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::EncodeProblem;
use crate::session::{SessionGuard, SessionSlot, VersionWrite, run_in};

/// What an update or replacement did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// Documents that matched the filter.
    pub matched: u64,
    /// Documents actually changed.
    pub modified: u64,
    /// The `_id` of a document inserted by an upsert.
    pub upserted_id: Option<Bson>,
}

impl From<mongodb::results::UpdateResult> for UpdateOutcome {
    fn from(result: mongodb::results::UpdateResult) -> Self {
        UpdateOutcome {
            matched: result.matched_count,
            modified: result.modified_count,
            upserted_id: result.upserted_id,
        }
    }
}

/// Prepares a model for insertion: encoded, `_id: null` dropped, version 0, both timestamps.
pub(super) fn insertable<M: Model>(doc: &M, now: DateTime) -> Result<Document> {
    let mut body = encode(M::COLLECTION, doc)?;
    // An `Option` id that serde wrote as null would be stored as a real `_id: null`.
    if matches!(body.get("_id"), Some(Bson::Null)) {
        body.remove("_id");
    }
    if let Some(version) = M::VERSION_FIELD {
        body.insert(version, 0_i64);
    }
    if let Some(ts) = M::TIMESTAMPS {
        body.insert(ts.created, now);
        body.insert(ts.updated, now);
    }
    Ok(body)
}

/// Applies a successful insert to the in-memory model.
fn inserted<M: Model>(doc: &mut M, id: Bson, now: DateTime) -> Result<M::Id> {
    let id: M::Id = bson::from_bson(id.clone()).map_err(|e| Error::Decode {
        collection: M::COLLECTION.to_owned(),
        id: Some(id),
        field: "_id".to_owned(),
        reason: e.to_string(),
    })?;
    if doc.id().is_none() {
        doc.__set_id(id.clone());
    }
    if M::VERSION_FIELD.is_some() {
        doc.__set_version(0);
    }
    doc.__touch(true, now);
    Ok(id)
}

/// Adds the version increment and the `updated` timestamp to an update document.
pub(super) fn bookkept<M: Model>(mut update: Document, now: DateTime) -> Document {
    if let Some(version) = M::VERSION_FIELD {
        add_operator(&mut update, "$inc", version, Bson::Int64(1));
    }
    if let Some(ts) = M::TIMESTAMPS {
        add_operator(&mut update, "$set", ts.updated, Bson::DateTime(now));
    }
    update
}

fn add_operator(update: &mut Document, op: &str, path: &str, value: Bson) {
    match update.get_mut(op) {
        Some(Bson::Document(fields)) => {
            // A caller who sets the field explicitly keeps their value.
            if !fields.contains_key(path) {
                fields.insert(path, value);
            }
        }
        _ => {
            update.insert(op, doc! { path: value });
        }
    }
}

/// Inserts one document. Created by [`Repo::insert`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Insert<'a, M: Model> {
    repo: &'a Repo<M>,
    doc: &'a mut M,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Insert<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, doc: &'a mut M) -> Self {
        Insert {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            doc,
        }
    }

    async fn run(mut self) -> Result<M::Id> {
        let repo = self.repo;
        lifecycle::hook_mut(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeInsert,
            "insert",
        )
        .await?;
        lifecycle::validate(repo, &mut self.session, self.doc, "insert").await?;
        let now = DateTime::now();
        let body = insertable(self.doc, now)?;
        let result = {
            let mut guard = self.session.lock().await;
            run_in!(guard, repo.docs.insert_one(body))
        };
        let result = result.map_err(|e| repo.driver_error(e))?;
        let id = inserted(self.doc, result.inserted_id, now)?;
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::AfterInsert,
            "insert",
        )
        .await?;
        Ok(id)
    }
}

awaitable!(Insert => M::Id);
session_setter!(Insert);

/// Inserts several documents. Created by [`Repo::insert_many`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct InsertMany<'a, M: Model> {
    repo: &'a Repo<M>,
    docs: &'a mut [M],
    ordered: bool,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> InsertMany<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, docs: &'a mut [M]) -> Self {
        InsertMany {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            docs,
            ordered: true,
        }
    }

    /// `false` lets the server go on after a failing document (the default stops at the first).
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    async fn run(mut self) -> Result<Vec<M::Id>> {
        if self.docs.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self.repo;
        for doc in self.docs.iter_mut() {
            lifecycle::hook_mut(
                repo,
                &mut self.session,
                doc,
                HookPoint::BeforeInsert,
                "insert_many",
            )
            .await?;
            lifecycle::validate(repo, &mut self.session, doc, "insert_many").await?;
        }
        let now = DateTime::now();
        let bodies = self
            .docs
            .iter()
            .map(|doc| insertable(doc, now))
            .collect::<Result<Vec<_>>>()?;
        let mut options = InsertManyOptions::default();
        options.ordered = Some(self.ordered);
        let result = {
            let mut guard = self.session.lock().await;
            run_in!(guard, repo.docs.insert_many(bodies).with_options(options))
        };
        let result = result.map_err(|e| repo.driver_error(e))?;
        let mut ids = Vec::with_capacity(self.docs.len());
        for (index, doc) in self.docs.iter_mut().enumerate() {
            if let Some(id) = result.inserted_ids.get(&index) {
                ids.push(inserted(doc, id.clone(), now)?);
            }
        }
        for doc in self.docs.iter() {
            lifecycle::hook_ref(
                repo,
                &mut self.session,
                doc,
                HookPoint::AfterInsert,
                "insert_many",
            )
            .await?;
        }
        Ok(ids)
    }
}

awaitable!(InsertMany => Vec<M::Id>);
session_setter!(InsertMany);

macro_rules! update_op {
    ($(#[$doc:meta])* $op:ident, $method:ident) => {
        $(#[$doc])*
        #[must_use = "an operation does nothing until it is awaited"]
        pub struct $op<'a, M: Model> {
            repo: &'a Repo<M>,
            filter: Result<Document, EncodeProblem>,
            update: Result<Document, EncodeProblem>,
            options: UpdateOptions,
            expected_version: Option<i64>,
            session: SessionSlot<'a>,
        }

        impl<'a, M: Model> $op<'a, M> {
            pub(crate) fn new(
                repo: &'a Repo<M>,
                filter: Result<Document, EncodeProblem>,
                update: Result<Document, EncodeProblem>,
            ) -> Self {
                $op {
                    session: SessionSlot::from_shared(repo.session.as_ref()),
                    repo,
                    filter,
                    update,
                    options: UpdateOptions::default(),
                    expected_version: None,
                }
            }

            /// Applies the update only to documents still at `version` (for versioned models);
            /// when the filter matches a document at another version the result is
            /// [`Error::VersionConflict`].
            pub fn expect_version(mut self, version: i64) -> Self
            where
                M: crate::model::Versioned,
            {
                self.expected_version = Some(version);
                self
            }

            /// Inserts a document built from the filter and the update when nothing matches.
            pub fn upsert(mut self, upsert: bool) -> Self {
                self.options.upsert = Some(upsert);
                self
            }

            async fn run(mut self) -> Result<UpdateOutcome> {
                let repo = self.repo;
                let operation = stringify!($method);
                let mut filter = self.filter.map_err(|p| repo.encode_problem(p))?;
                let mut update = self.update.map_err(|p| repo.encode_problem(p))?;
                lifecycle::before_update(repo, &mut self.session, &mut filter, &mut update, operation).await?;
                let update = bookkept::<M>(update, DateTime::now());
                let (checked, original) = with_expected_version::<M>(filter, self.expected_version);
                let outcome = {
                    let mut guard = self.session.lock().await;
                    let result = run_in!(guard, repo.docs.$method(checked, update).with_options(self.options));
                    match result {
                        Ok(result) => UpdateOutcome::from(result),
                        Err(e) => {
                            return Err(version_or_driver_error(repo, &mut guard, e, original, self.expected_version).await)
                        }
                    }
                };
                if outcome.matched == 0 && outcome.upserted_id.is_none() {
                    if let (Some(expected), Some(original)) = (self.expected_version, original) {
                        let mut guard = self.session.lock().await;
                        if let Some(conflict) = conflict_for_filter(repo, &mut guard, original, expected).await {
                            return Err(conflict);
                        }
                    }
                }
                lifecycle::after_update(repo, &mut self.session, operation).await?;
                Ok(outcome)
            }
        }

        awaitable!($op => UpdateOutcome);
        session_setter!($op);
    };
}

update_op!(
    /// Updates the first match. Created by [`Repo::update_one`].
    UpdateOne,
    update_one
);
update_op!(
    /// Updates every match. Created by [`Repo::update_many`].
    UpdateMany,
    update_many
);

/// Updates the first match and returns it. Created by [`Repo::find_one_and_update`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindOneAndUpdate<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    update: Result<Document, EncodeProblem>,
    options: FindOneAndUpdateOptions,
    expected_version: Option<i64>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> FindOneAndUpdate<'a, M> {
    pub(crate) fn new(
        repo: &'a Repo<M>,
        filter: Result<Document, EncodeProblem>,
        update: Result<Document, EncodeProblem>,
    ) -> Self {
        FindOneAndUpdate {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            filter,
            update,
            options: FindOneAndUpdateOptions::default(),
            expected_version: None,
        }
    }

    /// Applies the update only when the document is still at `version`; when the filter
    /// matches it at another version the result is [`Error::VersionConflict`].
    pub fn expect_version(mut self, version: i64) -> Self
    where
        M: crate::model::Versioned,
    {
        self.expected_version = Some(version);
        self
    }

    /// Returns the document as it is after the update (the default is before).
    pub fn return_after(mut self) -> Self {
        self.options.return_document = Some(ReturnDocument::After);
        self
    }

    /// Inserts a document when nothing matches.
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.options.upsert = Some(upsert);
        self
    }

    /// Which document is updated when several match.
    pub fn sort(mut self, sort: crate::query::Sort<M>) -> Self {
        self.options.sort = Some(sort.into_document());
        self
    }

    async fn run(mut self) -> Result<Option<M>> {
        let repo = self.repo;
        let operation = "find_one_and_update";
        let mut filter = self.filter.map_err(|p| repo.encode_problem(p))?;
        let mut update = self.update.map_err(|p| repo.encode_problem(p))?;
        lifecycle::before_update(repo, &mut self.session, &mut filter, &mut update, operation)
            .await?;
        let update = bookkept::<M>(update, DateTime::now());
        let (checked, original) = with_expected_version::<M>(filter, self.expected_version);
        let found = {
            let mut guard = self.session.lock().await;
            let result = run_in!(
                guard,
                repo.docs
                    .find_one_and_update(checked, update)
                    .with_options(self.options)
            );
            match result {
                Ok(found) => found,
                Err(e) => {
                    return Err(version_or_driver_error(
                        repo,
                        &mut guard,
                        e,
                        original,
                        self.expected_version,
                    )
                    .await);
                }
            }
        };
        let Some(found) = found else {
            if let (Some(expected), Some(original)) = (self.expected_version, original) {
                let mut guard = self.session.lock().await;
                if let Some(conflict) =
                    conflict_for_filter(repo, &mut guard, original, expected).await
                {
                    return Err(conflict);
                }
            }
            return Ok(None);
        };
        lifecycle::after_update(repo, &mut self.session, operation).await?;
        let mut doc: M = decode_document(M::COLLECTION, found)?;
        lifecycle::hook_mut(
            repo,
            &mut self.session,
            &mut doc,
            HookPoint::AfterLoad,
            operation,
        )
        .await?;
        Ok(Some(doc))
    }
}

awaitable!(FindOneAndUpdate => Option<M>);
session_setter!(FindOneAndUpdate);

/// The result of [`replace_checked`].
struct Replaced {
    outcome: UpdateOutcome,
    /// The version the write required, after correcting a version left by an aborted transaction.
    expected: Option<i64>,
    /// The versioned write to remember, when it happened in a transaction scope.
    write: Option<VersionWrite>,
}

/// Replaces one document with a model, checking and raising the version of versioned models.
/// Shared by [`Replace`] and [`Save`].
async fn replace_checked<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    mut filter: Document,
    doc: &mut M,
    upsert: bool,
) -> Result<Replaced> {
    let now = DateTime::now();
    let mut body = encode(M::COLLECTION, &*doc)?;
    if matches!(body.get("_id"), Some(Bson::Null)) {
        body.remove("_id");
    }
    let id = body.get("_id").cloned();
    let original = filter.clone();
    let expected = match (M::VERSION_FIELD, doc.version()) {
        (Some(field), Some(claimed)) => {
            let version = match &id {
                Some(id) => repo
                    .db
                    .ledger()
                    .correct(repo.db.name(), M::COLLECTION, id, claimed),
                None => claimed,
            };
            if version != claimed {
                doc.__set_version(version);
            }
            filter.insert(field, version);
            body.insert(field, version + 1);
            Some(version)
        }
        _ => None,
    };
    if let Some(ts) = M::TIMESTAMPS {
        body.insert(ts.updated, now);
    }
    let mut options = ReplaceOptions::default();
    options.upsert = Some(upsert);
    let result = run_in!(
        guard,
        repo.docs.replace_one(filter, body).with_options(options)
    );
    let outcome = match result {
        Ok(result) => UpdateOutcome::from(result),
        Err(e) => {
            return Err(version_or_driver_error(repo, guard, e, Some(original), expected).await);
        }
    };
    let mut write = None;
    if outcome.matched > 0 || outcome.upserted_id.is_some() {
        if let Some(version) = expected {
            doc.__set_version(version + 1);
            if let Some(id) = id.or_else(|| outcome.upserted_id.clone()) {
                repo.db.ledger().forget(repo.db.name(), M::COLLECTION, &id);
                write = Some(VersionWrite {
                    database: repo.db.name().to_owned(),
                    collection: M::COLLECTION,
                    id,
                    before: version,
                    after: version + 1,
                });
            }
        }
        doc.__touch(false, now);
    }
    Ok(Replaced {
        outcome,
        expected,
        write,
    })
}

/// Explains why a write addressed to `id` matched nothing: the document is gone, or another
/// writer moved its version on.
async fn missing_or_conflict<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    id: Bson,
    expected: Option<i64>,
) -> Error {
    let not_found = |id| Error::NotFound {
        collection: M::COLLECTION.to_owned(),
        id: Some(id),
    };
    let (Some(field), Some(expected)) = (M::VERSION_FIELD, expected) else {
        return not_found(id);
    };
    let mut options = mongodb::options::FindOneOptions::default();
    options.projection = Some(doc! { field: 1 });
    let stored = run_in!(
        guard,
        repo.docs
            .find_one(doc! { "_id": id.clone() })
            .with_options(options)
    );
    match stored {
        Err(e) => repo.driver_error(e),
        Ok(None) => not_found(id),
        Ok(Some(stored)) => Error::VersionConflict {
            collection: M::COLLECTION.to_owned(),
            id,
            expected,
            found: stored_version(&stored, field),
        },
    }
}

/// Adds the expected version to a filter; returns the filter to send and the original one, kept
/// to explain a miss.
fn with_expected_version<M: Model>(
    filter: Document,
    expected: Option<i64>,
) -> (Document, Option<Document>) {
    match (M::VERSION_FIELD, expected) {
        (Some(field), Some(version)) => {
            let mut checked = filter.clone();
            checked.insert(field, version);
            (checked, Some(filter))
        }
        _ => (filter, None),
    }
}

/// When a version-checked write matched nothing: a document matching the filter at another
/// version is a conflict.
async fn conflict_for_filter<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    filter: Document,
    expected: i64,
) -> Option<Error> {
    let field = M::VERSION_FIELD?;
    let mut options = mongodb::options::FindOneOptions::default();
    options.projection = Some(doc! { field: 1 });
    let stored = run_in!(guard, repo.docs.find_one(filter).with_options(options));
    match stored {
        Err(e) => Some(repo.driver_error(e)),
        Ok(None) => None,
        Ok(Some(stored)) => Some(Error::VersionConflict {
            collection: M::COLLECTION.to_owned(),
            id: stored.get("_id").cloned().unwrap_or(Bson::Null),
            expected,
            found: stored_version(&stored, field),
        }),
    }
}

/// An upsert whose version filter missed tries to insert a second document with the same `_id`;
/// the server's E11000 on `_id_` then means "someone else changed it": a version conflict.
async fn version_or_driver_error<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    error: mongodb::error::Error,
    original: Option<Document>,
    expected: Option<i64>,
) -> Error {
    let error = repo.driver_error(error);
    match (&error, original, expected) {
        (Error::DuplicateKey { index, .. }, Some(original), Some(expected)) if index == "_id_" => {
            conflict_for_filter(repo, guard, original, expected)
                .await
                .unwrap_or(error)
        }
        _ => error,
    }
}

pub(super) fn stored_version(doc: &Document, field: &str) -> i64 {
    match doc.get(field) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        // A document written around mongrove without a version counts as version 0.
        _ => 0,
    }
}

/// Replaces the first match with a model. Created by [`Repo::replace`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Replace<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    doc: &'a mut M,
    upsert: bool,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Replace<'a, M> {
    pub(crate) fn new(
        repo: &'a Repo<M>,
        filter: Result<Document, EncodeProblem>,
        doc: &'a mut M,
    ) -> Self {
        Replace {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            filter,
            doc,
            upsert: false,
        }
    }

    /// Inserts the model when nothing matches.
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.upsert = upsert;
        self
    }

    async fn run(mut self) -> Result<UpdateOutcome> {
        let repo = self.repo;
        let filter = self.filter.map_err(|p| repo.encode_problem(p))?;
        lifecycle::hook_mut(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeSave,
            "replace",
        )
        .await?;
        lifecycle::validate(repo, &mut self.session, self.doc, "replace").await?;
        let replaced = {
            let mut guard = self.session.lock().await;
            replace_checked(repo, &mut guard, filter, self.doc, self.upsert).await?
        };
        if let Some(write) = replaced.write {
            self.session.record(write);
        }
        if replaced.outcome.matched > 0 || replaced.outcome.upserted_id.is_some() {
            lifecycle::hook_ref(
                repo,
                &mut self.session,
                self.doc,
                HookPoint::AfterSave,
                "replace",
            )
            .await?;
        }
        Ok(replaced.outcome)
    }
}

awaitable!(Replace => UpdateOutcome);
session_setter!(Replace);

/// Writes a loaded model back. Created by [`Repo::save`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Save<'a, M: Model> {
    repo: &'a Repo<M>,
    doc: &'a mut M,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Save<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, doc: &'a mut M) -> Self {
        Save {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            doc,
        }
    }

    async fn run(mut self) -> Result<()> {
        let repo = self.repo;
        let id = repo.id_bson(self.doc, "save")?;
        lifecycle::hook_mut(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeSave,
            "save",
        )
        .await?;
        lifecycle::validate(repo, &mut self.session, self.doc, "save").await?;
        let replaced = {
            let mut guard = self.session.lock().await;
            let filter = doc! { "_id": id.clone() };
            let replaced = replace_checked(repo, &mut guard, filter, self.doc, false).await?;
            if replaced.outcome.matched == 0 {
                return Err(missing_or_conflict(repo, &mut guard, id, replaced.expected).await);
            }
            replaced
        };
        if let Some(write) = replaced.write {
            self.session.record(write);
        }
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::AfterSave,
            "save",
        )
        .await?;
        Ok(())
    }
}

awaitable!(Save => ());
session_setter!(Save);

/// Deletes a loaded model. Created by [`Repo::delete`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Delete<'a, M: Model> {
    repo: &'a Repo<M>,
    doc: &'a M,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Delete<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, doc: &'a M) -> Self {
        Delete {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            doc,
        }
    }

    async fn run(mut self) -> Result<()> {
        let repo = self.repo;
        let id = repo.id_bson(self.doc, "delete")?;
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeDelete,
            "delete",
        )
        .await?;
        let mut filter = doc! { "_id": id.clone() };
        let expected = self.doc.version().map(|claimed| {
            repo.db
                .ledger()
                .correct(repo.db.name(), M::COLLECTION, &id, claimed)
        });
        if let (Some(field), Some(version)) = (M::VERSION_FIELD, expected) {
            filter.insert(field, version);
        }
        {
            let mut guard = self.session.lock().await;
            let result = run_in!(guard, repo.docs.delete_one(filter));
            let result = result.map_err(|e| repo.driver_error(e))?;
            if result.deleted_count == 0 {
                return Err(missing_or_conflict(repo, &mut guard, id, expected).await);
            }
        }
        lifecycle::hook_ref(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::AfterDelete,
            "delete",
        )
        .await?;
        Ok(())
    }
}

awaitable!(Delete => ());
session_setter!(Delete);

/// Deletes every match. Created by [`Repo::delete_many`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct DeleteMany<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> DeleteMany<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        DeleteMany {
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            filter,
        }
    }

    async fn run(mut self) -> Result<u64> {
        let filter = self.filter.map_err(|p| self.repo.encode_problem(p))?;
        let mut guard = self.session.lock().await;
        let result = run_in!(
            guard,
            self.repo
                .docs
                .delete_many(filter)
                .with_options(DeleteOptions::default())
        );
        result
            .map(|r| r.deleted_count)
            .map_err(|e| self.repo.driver_error(e))
    }
}

awaitable!(DeleteMany => u64);
session_setter!(DeleteMany);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_keeps_an_explicit_value() {
        let mut update = doc! { "$inc": { "version": 5 } };
        add_operator(&mut update, "$inc", "version", Bson::Int64(1));
        add_operator(&mut update, "$set", "updated_at", Bson::Int32(1));
        assert_eq!(
            update,
            doc! { "$inc": { "version": 5 }, "$set": { "updated_at": 1 } }
        );
    }

    #[test]
    fn stored_version_reads_both_integer_widths() {
        assert_eq!(stored_version(&doc! { "v": 3 }, "v"), 3);
        assert_eq!(stored_version(&doc! { "v": 4_i64 }, "v"), 4);
        assert_eq!(stored_version(&doc! {}, "v"), 0);
    }
}
