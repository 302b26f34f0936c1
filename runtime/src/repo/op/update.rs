//! `update_one`, `update_many` and `find_one_and_update`: one core for the three.
//!
//! Every update raises the version of a versioned model by one and sets the `updated`
//! timestamp. An upsert that inserts stores what `insert` would: version 0 and both
//! timestamps. For a versioned model that takes two steps, because one update cannot both
//! `$inc` the version of a found document and `$setOnInsert` it on a new one: first the update
//! without upsert, then, when nothing matched, an upsert whose filter matches no document, so
//! it can only insert. The first step leaves out the caller's `$setOnInsert`: it cannot insert,
//! so those values would do nothing, and leaving them out lets the `updated` timestamp be set
//! even when the caller gives it an insert-only value.
//!
//! Before anything is sent, the values that typed paths `set` (and `set_on_insert`) are checked
//! against the field's `#[model(validate(...))]` rules (`skip_validation` turns that off); a
//! raw update is sent as it is.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument, UpdateOptions};

use crate::decode::{check_names, decode_document};
use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::{ArrayFilter, EncodeProblem, Sort, Update};
use crate::repo::occ::{self, Miss};
use crate::repo::{Repo, lifecycle};
use crate::session::{SessionSlot, run_in};

pub(crate) use super::bookkeeping::{bookkept, for_insert, insert_only};

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

/// How often a versioned upsert goes back to its update step after its insert step met a
/// document inserted meanwhile (a duplicate `_id` or unique key).
const UPSERT_ROUNDS: usize = 3;

/// What the three operations share: the filter, the update, the expected version, upsert.
struct Core<'a, M: Model> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    update: Result<Document, EncodeProblem>,
    /// The values typed paths set, by stored path, for the validation rules.
    typed_values: Vec<(String, Bson)>,
    validate: bool,
    array_filters: Vec<Result<Document, EncodeProblem>>,
    expected_version: Option<i64>,
    upsert: bool,
    session: SessionSlot<'a>,
}

/// The documents of an update, ready to send.
struct Prepared {
    /// The caller's filter (after `before_update`), without the version condition; `None` when
    /// neither a conflict check nor an upsert's insert step will need it.
    filter: Option<Document>,
    /// The filter sent: with the version condition when one is expected (taken by the round
    /// that sends it; see [`Prepared::round`]).
    checked: Option<Document>,
    /// The update sent to a found document (likewise).
    update: Option<Document>,
    /// The update of the insert step of an upsert (`None` without one).
    insert: Option<Document>,
    /// The update's `arrayFilters`, if it has any.
    array_filters: Option<Vec<Document>>,
}

impl Prepared {
    /// The filter and update of one round of the update step: moved out when no round can
    /// follow, copied when one can (an upsert comes back after its insert step lost a race).
    fn round(&mut self, again: bool) -> (Document, Document) {
        let (filter, update) = if again {
            (self.checked.clone(), self.update.clone())
        } else {
            (self.checked.take(), self.update.take())
        };
        (filter.unwrap_or_default(), update.unwrap_or_default())
    }
}

impl<'a, M: Model> Core<'a, M> {
    fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>, update: Update<M>) -> Self {
        let (update, typed_values) = update.into_typed_parts();
        Core {
            session: repo.session_slot(),
            repo,
            filter,
            update,
            typed_values,
            validate: true,
            array_filters: Vec::new(),
            expected_version: None,
            upsert: false,
        }
    }

    /// The failures of the field rules for the values typed paths set, as `Error::Validation`.
    fn check_values(&self) -> Result<()> {
        if !self.validate {
            return Ok(());
        }
        let mut failures = Vec::new();
        for (path, value) in &self.typed_values {
            M::__check_set(path, value, &mut failures);
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Validation {
            model: crate::hooks::model_name::<M>(),
            failures,
        })
    }

    async fn prepare(&mut self, operation: &'static str) -> Result<Prepared> {
        let repo = self.repo;
        self.check_values()?;
        let array_filters = std::mem::take(&mut self.array_filters)
            .into_iter()
            .map(|part| repo.checked_part(part, "an array filter"))
            .collect::<Result<Vec<_>>>()?;
        // `prepare` runs once per operation, so the parts taken here are never read again; the
        // placeholder left behind allocates nothing (a `Document` would draw a hash seed).
        let placeholder = || {
            Err(EncodeProblem {
                what: String::new(),
                reason: String::new(),
            })
        };
        let mut filter = repo.checked_part(
            std::mem::replace(&mut self.filter, placeholder()),
            "the filter",
        )?;
        let mut update = repo.checked_part(
            std::mem::replace(&mut self.update, placeholder()),
            "the update",
        )?;
        lifecycle::before_update(repo, &mut self.session, &mut filter, &mut update, operation)
            .await?;
        let now = DateTime::now();
        // Copies are made only for the steps that need them: the caller's filter again for a
        // conflict check or an upsert's insert step, the update for that insert step.
        let keep_filter = self.expected_version.is_some() || self.upsert;
        let (filter, checked) = match (M::VERSION_FIELD, self.expected_version) {
            (Some(field), Some(expected)) => (
                Some(filter.clone()),
                occ::with_version(filter, field, expected),
            ),
            _ if keep_filter => (Some(filter.clone()), filter),
            _ => (None, filter),
        };
        let insert = (self.upsert && !self.upsert_in_one_step())
            .then(|| for_insert::<M>(update.clone(), now));
        let mut found = update;
        if M::VERSION_FIELD.is_some() {
            // The update step of a versioned model never inserts (an upsert's insert is its own
            // step), so insert-only values would do nothing here; the version's `$inc` keeps
            // the update from being empty.
            found.remove("$setOnInsert");
        }
        let mut found = bookkept::<M>(found, now);
        if self.upsert_in_one_step() {
            // One step: `$setOnInsert` of the creation time does not collide with anything.
            found = for_insert::<M>(found, now);
        }
        Ok(Prepared {
            filter,
            checked: Some(checked),
            update: Some(found),
            insert,
            array_filters: (!array_filters.is_empty()).then_some(array_filters),
        })
    }

    /// One step does it unless the model is versioned and the caller asked for an upsert.
    fn upsert_in_one_step(&self) -> bool {
        self.upsert && M::VERSION_FIELD.is_none()
    }

    /// After a checked update matched nothing: a document matching the filter at another
    /// version is a conflict.
    async fn conflict(&mut self, filter: Option<&Document>) -> Result<()> {
        let (Some(expected), Some(filter)) = (self.expected_version, filter) else {
            return Ok(());
        };
        let mut guard = self.session.lock().await?;
        match occ::explain_miss(self.repo, &mut guard, filter.clone(), expected).await? {
            Miss::Conflict(error) => Err(error),
            Miss::NoMatch => Ok(()),
        }
    }

    async fn update(mut self, many: bool) -> Result<UpdateOutcome> {
        let repo = self.repo;
        let operation = if many { "update_many" } else { "update_one" };
        let mut prepared = self.prepare(operation).await?;
        let mut rounds = 0;
        let outcome = loop {
            rounds += 1;
            // Options only when there is one to send, as a hand-written call would.
            let options = (self.upsert || prepared.array_filters.is_some()).then(|| {
                let mut options = UpdateOptions::default();
                options.upsert = Some(self.upsert_in_one_step());
                options.array_filters = prepared.array_filters.clone();
                options
            });
            let result = {
                let mut guard = self.session.lock().await?;
                let (filter, update) = prepared.round(self.upsert);
                if many {
                    run_in!(
                        guard,
                        repo.docs.update_many(filter, update).with_options(options)
                    )
                } else {
                    run_in!(
                        guard,
                        repo.docs.update_one(filter, update).with_options(options)
                    )
                }
            };
            let outcome = UpdateOutcome::from(result.map_err(|e| repo.driver_error(e))?);
            if outcome.matched > 0 || outcome.upserted_id.is_some() {
                break outcome;
            }
            self.conflict(prepared.filter.as_ref()).await?;
            if !self.upsert || self.upsert_in_one_step() {
                break outcome;
            }
            let mut options = UpdateOptions::default();
            options.upsert = Some(true);
            options.array_filters = prepared.array_filters.clone();
            let inserted = {
                let mut guard = self.session.lock().await?;
                let (filter, update) = (
                    insert_only(prepared.filter.clone().unwrap_or_default()),
                    prepared.insert.clone().unwrap_or_default(),
                );
                run_in!(
                    guard,
                    repo.docs.update_one(filter, update).with_options(options)
                )
            };
            match inserted.map_err(|e| repo.driver_error(e)) {
                Ok(result) => break UpdateOutcome::from(result),
                Err(Error::DuplicateKey { .. }) if rounds < UPSERT_ROUNDS => continue,
                Err(error) => return Err(error),
            }
        };
        lifecycle::after_update(repo, &mut self.session, operation).await?;
        Ok(outcome)
    }
}

macro_rules! update_builder {
    ($(#[$doc:meta])* $op:ident, $many:expr) => {
        $(#[$doc])*
        #[must_use = "an operation does nothing until it is awaited"]
        pub struct $op<'a, M: Model> {
            core: Core<'a, M>,
        }

        impl<'a, M: Model> $op<'a, M> {
            pub(crate) fn new(
                repo: &'a Repo<M>,
                filter: Result<Document, EncodeProblem>,
                update: Update<M>,
            ) -> Self {
                $op { core: Core::new(repo, filter, update) }
            }

            /// Adds an entry to the update's `arrayFilters`: the condition on the elements a
            /// `$[name]` path updates, from [`Filtered::when`](crate::query::Filtered::when).
            pub fn array_filter(mut self, filter: ArrayFilter<M>) -> Self {
                self.core.array_filters.push(filter.into_parts());
                self
            }

            /// Sends the values that typed paths `set` without checking them against the
            /// fields' `#[model(validate(...))]` rules (they are checked by default).
            pub fn skip_validation(mut self) -> Self {
                self.core.validate = false;
                self
            }

            /// Applies the update only to documents still at `version` (a document stored
            /// without the version field is at version 0); when the filter matches a document
            /// at another version the result is [`Error::VersionConflict`].
            pub fn expect_version(mut self, version: i64) -> Self
            where
                M: crate::model::Versioned,
            {
                self.core.expected_version = Some(version);
                self
            }

            /// Inserts a document built from the filter's equality conditions and the update
            /// when nothing matches. It is stored as `insert` would store it: version 0 and
            /// both timestamps.
            pub fn upsert(mut self, upsert: bool) -> Self {
                self.core.upsert = upsert;
                self
            }

            /// Runs the operation in `session` (for example inside a transaction you manage).
            pub fn session(mut self, session: &'a mut ClientSession) -> Self {
                self.core.session = SessionSlot::Borrowed(session);
                self
            }
        }

        impl<'a, M: Model> IntoFuture for $op<'a, M> {
            type Output = Result<UpdateOutcome>;
            type IntoFuture = BoxFuture<'a, Result<UpdateOutcome>>;

            fn into_future(self) -> Self::IntoFuture {
                let repo = self.core.repo;
                super::trace::traced(
                    repo.db().name(),
                    M::COLLECTION,
                    if $many { "update_many" } else { "update_one" },
                    super::trace::update,
                    self.core.update($many),
                )
            }
        }
    };
}

// The two builders differ only in their name and target; a macro keeps their option setters
// (and their docs) from being written twice.
update_builder!(
    /// Updates the first match. Created by [`Repo::update_one`].
    UpdateOne,
    false
);
update_builder!(
    /// Updates every match. Created by [`Repo::update_many`].
    UpdateMany,
    true
);

/// Updates the first match and returns it. Created by [`Repo::find_one_and_update`].
///
/// If the returned document does not decode into the model, the error is [`Error::Decode`]
/// and its reason says that the update **was applied**: do not retry it.
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindOneAndUpdate<'a, M: Model> {
    core: Core<'a, M>,
    options: FindOneAndUpdateOptions,
}

impl<'a, M: Model> FindOneAndUpdate<'a, M> {
    pub(crate) fn new(
        repo: &'a Repo<M>,
        filter: Result<Document, EncodeProblem>,
        update: Update<M>,
    ) -> Self {
        FindOneAndUpdate {
            core: Core::new(repo, filter, update),
            options: FindOneAndUpdateOptions::default(),
        }
    }

    /// Adds an entry to the update's `arrayFilters`: the condition on the elements a
    /// `$[name]` path updates, from [`Filtered::when`](crate::query::Filtered::when).
    pub fn array_filter(mut self, filter: ArrayFilter<M>) -> Self {
        self.core.array_filters.push(filter.into_parts());
        self
    }

    /// Sends the values that typed paths `set` without checking them against the
    /// fields' `#[model(validate(...))]` rules (they are checked by default).
    pub fn skip_validation(mut self) -> Self {
        self.core.validate = false;
        self
    }

    /// Applies the update only when the document is still at `version`; when the filter
    /// matches it at another version the result is [`Error::VersionConflict`].
    pub fn expect_version(mut self, version: i64) -> Self
    where
        M: crate::model::Versioned,
    {
        self.core.expected_version = Some(version);
        self
    }

    /// Returns the document as it is after the update (the default is before).
    pub fn return_after(mut self) -> Self {
        self.options.return_document = Some(ReturnDocument::After);
        self
    }

    /// Inserts a document when nothing matches, stored as `insert` would store it (version 0,
    /// both timestamps).
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.core.upsert = upsert;
        self
    }

    /// Which document is updated when several match.
    pub fn sort(mut self, sort: Sort<M>) -> Self {
        self.options.sort = Some(sort.into_document());
        self
    }

    /// Runs the operation in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.core.session = SessionSlot::Borrowed(session);
        self
    }

    async fn run(mut self) -> Result<Option<M>> {
        let operation = "find_one_and_update";
        let repo = self.core.repo;
        let mut prepared = self.core.prepare(operation).await?;
        if let Some(sort) = &self.options.sort {
            check_names(M::COLLECTION, "the sort", sort)?;
        }
        let mut rounds = 0;
        let found = loop {
            rounds += 1;
            let one_step = self.core.upsert_in_one_step();
            let mut options = self.options.clone();
            options.upsert = Some(one_step);
            options.array_filters = prepared.array_filters.clone();
            let found = {
                let mut guard = self.core.session.lock().await?;
                let (filter, update) = prepared.round(self.core.upsert);
                run_in!(
                    guard,
                    repo.docs
                        .find_one_and_update(filter, update)
                        .with_options(options)
                )
            };
            let found = found.map_err(|e| repo.driver_error(e))?;
            let inserted = one_step
                && found.is_none()
                && !matches!(self.options.return_document, Some(ReturnDocument::After));
            if found.is_some() || inserted {
                break found;
            }
            self.core.conflict(prepared.filter.as_ref()).await?;
            if !self.core.upsert || self.core.upsert_in_one_step() {
                break None;
            }
            let mut options = self.options.clone();
            options.upsert = Some(true);
            options.array_filters = prepared.array_filters.clone();
            let inserted = {
                let mut guard = self.core.session.lock().await?;
                let (filter, update) = (
                    insert_only(prepared.filter.clone().unwrap_or_default()),
                    prepared.insert.clone().unwrap_or_default(),
                );
                run_in!(
                    guard,
                    repo.docs
                        .find_one_and_update(filter, update)
                        .with_options(options)
                )
            };
            match inserted.map_err(|e| repo.driver_error(e)) {
                Ok(found) => break found,
                Err(Error::DuplicateKey { .. }) if rounds < UPSERT_ROUNDS => continue,
                Err(error) => return Err(error),
            }
        };
        lifecycle::after_update(repo, &mut self.core.session, operation).await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let mut doc: M = decode_document(M::COLLECTION, found).map_err(applied_anyway)?;
        lifecycle::hook_mut(
            repo,
            &mut self.core.session,
            &mut doc,
            HookPoint::AfterLoad,
            operation,
        )
        .await?;
        Ok(Some(doc))
    }
}

/// A document returned by a write that does not decode: the write happened all the same.
fn applied_anyway(error: Error) -> Error {
    match error {
        Error::Decode {
            collection,
            id,
            field,
            reason,
        } => Error::Decode {
            collection,
            id,
            field,
            reason: format!(
                "{reason} (the update WAS applied; only the returned document could not be \
                 decoded, so do not retry the update)"
            ),
        },
        other => other,
    }
}

impl<'a, M: Model> IntoFuture for FindOneAndUpdate<'a, M> {
    type Output = Result<Option<M>>;
    type IntoFuture = BoxFuture<'a, Result<Option<M>>>;

    fn into_future(self) -> Self::IntoFuture {
        super::trace::traced(
            self.core.repo.db().name(),
            M::COLLECTION,
            "find_one_and_update",
            super::trace::row,
            self.run(),
        )
    }
}
