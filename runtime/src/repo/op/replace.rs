//! `save` and `replace`: a whole model written over a stored document. For a versioned model
//! the write happens only at the version the model is based on, and raises it by one.

use std::future::IntoFuture;

use mongodb::bson::{Bson, DateTime, Document, RawBsonRef, doc};
use mongodb::options::ReplaceOptions;

use super::bookkeeping::insert_only;
use super::insert::{insertable, inserted};
use super::update::UpdateOutcome;
use super::{awaitable, session_setter};
use crate::decode::raw_id;
use crate::error::Result;
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::EncodeProblem;
use crate::raw_fields::encode_with_fields;
use crate::repo::occ::{self, Miss, Missed};
use crate::repo::{Repo, lifecycle};
use crate::session::{SessionGuard, SessionSlot, VersionWrite, run_in};
use futures_util::future::BoxFuture;
use mongodb::ClientSession;

/// What [`replace_checked`] did.
struct Replaced {
    outcome: UpdateOutcome,
    /// The version the write required.
    expected: Option<i64>,
    /// The versioned write, when it happened in a transaction scope (so an abort can tell its
    /// models apart).
    write: Option<VersionWrite>,
}

/// Replaces one document with a model, checking and raising the version of a versioned model.
/// The in-memory model changes only when the server accepted the write.
async fn replace_checked<M: Model>(
    repo: &Repo<M>,
    guard: &mut SessionGuard<'_>,
    filter: Document,
    doc: &mut M,
    in_transaction: bool,
) -> Result<Replaced> {
    let now = DateTime::now();
    // The bytes are made for the version the model claims; in the rare case that the ledger
    // says the write must be based on another, they are made again.
    let versioned = M::VERSION_FIELD.zip(doc.version());
    // At most two fields, on the stack.
    let mut set = [("", RawBsonRef::Null); 2];
    let mut count = 0;
    if let Some((field, claimed)) = versioned {
        set[count] = (field, RawBsonRef::Int64(claimed + 1));
        count += 1;
    }
    if let Some(ts) = M::TIMESTAMPS {
        set[count] = (ts.updated, RawBsonRef::DateTime(now));
        count += 1;
    }
    let mut body = encode_with_fields(M::COLLECTION, "the document", &*doc, None, &set[..count])?;
    let id = raw_id(&body).filter(|id| *id != Bson::Null);
    let (filter, expected) = match versioned {
        Some((field, claimed)) => {
            let expected = match &id {
                Some(id) => occ::expected_version(repo, guard, id, claimed, doc).await?,
                None => claimed,
            };
            if expected != claimed {
                set[0] = (field, RawBsonRef::Int64(expected + 1));
                body =
                    encode_with_fields(M::COLLECTION, "the document", &*doc, None, &set[..count])?;
            }
            (occ::with_version(filter, field, expected), Some(expected))
        }
        None => (filter, None),
    };
    let recorded = in_transaction.then(|| body.clone());
    let result = run_in!(guard, repo.raw.replace_one(filter, body));
    let outcome = UpdateOutcome::from(result.map_err(|e| repo.driver_error(e))?);
    let mut write = None;
    if outcome.matched > 0 {
        if let Some(expected) = expected {
            doc.__set_version(expected + 1);
            if let Some(id) = id {
                crate::session::ledger().observed(repo.db.name(), M::COLLECTION, &id, expected + 1);
                write = recorded.map(|body| VersionWrite {
                    database: repo.db.name().to_owned(),
                    collection: M::COLLECTION,
                    id,
                    before: expected,
                    after: expected + 1,
                    body,
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

/// Replaces the first match with a model. Created by [`Repo::replace`].
///
/// For a versioned model the replacement happens only if the matching document is still at
/// the model's version; a document that matches the filter at another version is
/// [`Error::VersionConflict`](crate::Error::VersionConflict). When no document matches the filter at all, the outcome says
/// `matched: 0` (or, with `.upsert(true)`, the model is inserted as `insert` would store it).
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
            session: repo.session_slot(),
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
        let filter = std::mem::replace(&mut self.filter, Ok(Document::new()));
        let filter = repo.checked_part(filter, "the filter")?;
        lifecycle::hook_mut(
            repo,
            &mut self.session,
            self.doc,
            HookPoint::BeforeSave,
            "replace",
        )
        .await?;
        lifecycle::validate(repo, &mut self.session, self.doc, "replace").await?;
        let in_transaction = self.session.is_shared();
        let mut outcome = {
            let mut guard = self.session.lock().await?;
            let replaced =
                replace_checked(repo, &mut guard, filter.clone(), self.doc, in_transaction).await?;
            if replaced.outcome.matched == 0
                && let Some(expected) = replaced.expected
                && let Miss::Conflict(error) =
                    occ::explain_miss(repo, &mut guard, filter.clone(), expected).await?
            {
                return Err(error);
            }
            if let Some(write) = replaced.write {
                drop(guard);
                self.session.record(write);
            }
            replaced.outcome
        };
        if outcome.matched == 0 && self.upsert {
            outcome = self.insert(filter).await?;
        }
        if outcome.matched > 0 || outcome.upserted_id.is_some() {
            lifecycle::hook_ref(
                repo,
                &mut self.session,
                self.doc,
                HookPoint::AfterSave,
                "replace",
            )
            .await?;
        }
        Ok(outcome)
    }

    /// The insert of an upsert: nothing matched, so the model goes in as a new document.
    async fn insert(&mut self, filter: Document) -> Result<UpdateOutcome> {
        let repo = self.repo;
        let now = DateTime::now();
        let body = insertable(self.doc, now)?;
        let mut options = ReplaceOptions::default();
        options.upsert = Some(true);
        let result = {
            let mut guard = self.session.lock().await?;
            run_in!(
                guard,
                repo.raw
                    .replace_one(insert_only(filter), body)
                    .with_options(options)
            )
        };
        let outcome = UpdateOutcome::from(result.map_err(|e| repo.driver_error(e))?);
        if let Some(id) = &outcome.upserted_id {
            inserted(self.doc, id.clone(), now)?;
        }
        Ok(outcome)
    }
}

awaitable!(Replace => UpdateOutcome, "replace", super::trace::update);
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
            session: repo.session_slot(),
            repo,
            doc,
        }
    }

    async fn run(mut self) -> Result<()> {
        match self.attempt().await? {
            None => Ok(()),
            Some(missed) => Err(missed.explain(self.repo, &mut self.session).await),
        }
    }

    /// The save, with a miss handed back unexplained, traced as `save`: for `modify`, which
    /// loads the document again after a lost race anyway, and explains a miss only when it
    /// will not try again.
    pub(crate) async fn or_missed(mut self) -> Result<Option<Missed>> {
        let repo = self.repo;
        super::trace::traced(
            repo.db().name(),
            M::COLLECTION,
            "save",
            super::trace::nothing,
            async move { self.attempt().await },
        )
        .await
    }

    /// Writes the model if the stored document is still at its version; `Some` when nothing
    /// matched.
    async fn attempt(&mut self) -> Result<Option<Missed>> {
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
        let in_transaction = self.session.is_shared();
        let write = {
            let mut guard = self.session.lock().await?;
            let filter = doc! { "_id": id.clone() };
            let replaced =
                replace_checked(repo, &mut guard, filter, self.doc, in_transaction).await?;
            if replaced.outcome.matched == 0 {
                return Ok(Some(Missed {
                    id,
                    expected: replaced.expected,
                }));
            }
            replaced.write
        };
        if let Some(write) = write {
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
        Ok(None)
    }
}

awaitable!(Save => (), "save");
session_setter!(Save);
