//! `bulk_write`: a mixed batch of writes, sent as the server's `insert`, `update` and `delete`
//! commands.
//!
//! The driver's client-level bulk write needs MongoDB 8.0; grouping consecutive writes of one
//! kind into one command works on every server and keeps the order of the batch. A group is
//! split where the server's limits say (`maxWriteBatchSize` writes, `maxBsonObjectSize` bytes
//! per command). A write that checks a version (a replacement made from a versioned model, or
//! any write given an expected version) and the upsert of a versioned model are sent alone, so
//! that each gets its own answer; a document over the size limit is never sent.
//!
//! Versions: every write that changes a versioned document raises its version by one; an
//! upsert that inserts starts it at 0, like an insert.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, RawArrayBuf, RawDocumentBuf, doc, rawdoc};
use mongodb::options::{ReplaceOptions, UpdateOptions};

use super::insert::{insertable, too_large};
use super::update::{bookkept, for_insert, insert_only};
use crate::db::ServerLimits;
use crate::decode::{check_names, encode};
use crate::error::{BulkOutcome, Error, FailedWrite, PartialWrite, Result};
use crate::model::Model;
use crate::query::{Filter, IntoFilter, Update};
use crate::repo::Repo;
use crate::repo::occ::{self, Miss};
use crate::repo::read::{awaitable, session_setter};
use crate::session::{SessionGuard, SessionSlot, run_in};

/// One write of a [`Repo::bulk_write`] batch.
#[derive(Debug)]
pub enum WriteOp<M> {
    /// Insert a document (an `_id` is generated when it has none), at version 0.
    Insert(M),
    /// Update the first match.
    UpdateOne {
        /// Which document.
        filter: Filter<M>,
        /// What to change.
        update: Update<M>,
        /// Insert when nothing matches.
        upsert: bool,
    },
    /// Update every match.
    UpdateMany {
        /// Which documents.
        filter: Filter<M>,
        /// What to change.
        update: Update<M>,
    },
    /// Replace the first match with a document. For a versioned model the replacement is
    /// checked against the version the document claims, like [`Repo::replace`].
    ReplaceOne {
        /// Which document.
        filter: Filter<M>,
        /// The new content.
        doc: M,
        /// Insert when nothing matches.
        upsert: bool,
    },
    /// Delete the first match.
    DeleteOne(Filter<M>),
    /// Delete every match.
    DeleteMany(Filter<M>),
    /// `op` (an `UpdateOne`, `ReplaceOne` or `DeleteOne`) applied only to a document still at
    /// `version`. Made by [`WriteOp::expect_version`].
    Expect {
        /// The version the document must be at.
        version: i64,
        /// The write.
        op: Box<WriteOp<M>>,
    },
}

impl<M> WriteOp<M> {
    /// `UpdateOne` without upsert.
    pub fn update_one(filter: impl IntoFilter<M>, update: Update<M>) -> Self {
        WriteOp::UpdateOne {
            filter: filter.into(),
            update,
            upsert: false,
        }
    }

    /// `UpdateMany`.
    pub fn update_many(filter: impl IntoFilter<M>, update: Update<M>) -> Self {
        WriteOp::UpdateMany {
            filter: filter.into(),
            update,
        }
    }

    /// `ReplaceOne` without upsert.
    pub fn replace_one(filter: impl IntoFilter<M>, doc: M) -> Self {
        WriteOp::ReplaceOne {
            filter: filter.into(),
            doc,
            upsert: false,
        }
    }

    /// `DeleteOne`.
    pub fn delete_one(filter: impl IntoFilter<M>) -> Self {
        WriteOp::DeleteOne(filter.into())
    }

    /// Applies this `UpdateOne`, `ReplaceOne` or `DeleteOne` only to a document still at
    /// `version`; a document matching the filter at another version is reported as a
    /// [`Error::VersionConflict`] at this position of the batch.
    pub fn expect_version(self, version: i64) -> Self
    where
        M: crate::model::Versioned,
    {
        WriteOp::Expect {
            version,
            op: Box::new(self),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Kind::Insert => ("insert", "documents"),
            Kind::Update => ("update", "updates"),
            Kind::Delete => ("delete", "deletes"),
        }
    }
}

/// A write of the batch, encoded and ready to go.
enum Planned<M> {
    /// Sent with its neighbours of the same kind; `id` is the `_id` of an insert.
    Grouped {
        kind: Kind,
        item: RawDocumentBuf,
        id: Option<Bson>,
    },
    /// Sent alone, because its answer must be its own.
    Alone(Single<M>),
    /// Never sent (a document over the server's size limit).
    Refused(Error),
}

/// A grouped write and its position in the batch.
struct Grouped {
    index: usize,
    item: RawDocumentBuf,
    id: Option<Bson>,
}

/// A write sent on its own.
enum Single<M> {
    Update {
        filter: Document,
        update: Document,
        insert: Document,
        expected: Option<i64>,
        upsert: bool,
    },
    Replace {
        filter: Document,
        doc: Box<M>,
        expected: Option<i64>,
        upsert: bool,
    },
    Delete {
        filter: Document,
        expected: i64,
    },
}

/// What a write (or a group of them) did: counted into the outcome, or failed.
struct Progress {
    outcome: BulkOutcome,
    written: Vec<usize>,
    failed: Vec<FailedWrite>,
}

/// A mixed batch of writes. Created by [`Repo::bulk_write`].
///
/// Runs no hooks. When part of the batch fails the error is [`Error::PartialWrite`]: which
/// positions were applied, which failed and why (a duplicate key, a version conflict, a
/// document over the size limit), and which were never attempted (an ordered batch stops at
/// its first failure). Outside a transaction the applied part stays applied.
#[must_use = "an operation does nothing until it is awaited"]
pub struct BulkWrite<'a, M: Model> {
    repo: &'a Repo<M>,
    ops: Vec<WriteOp<M>>,
    ordered: bool,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> BulkWrite<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, ops: Vec<WriteOp<M>>) -> Self {
        BulkWrite {
            session: repo.session_slot(),
            repo,
            ops,
            ordered: true,
        }
    }

    /// `false` lets the batch go on after a failing write (the default stops at the first).
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Encodes every write first, so a bad value fails the batch before anything is sent.
    fn plan(
        &self,
        ops: Vec<WriteOp<M>>,
        limits: &ServerLimits,
        now: DateTime,
    ) -> Result<Vec<Planned<M>>> {
        ops.into_iter()
            .enumerate()
            .map(|(index, op)| self.plan_one(index, op, None, limits, now))
            .collect()
    }

    fn plan_one(
        &self,
        index: usize,
        op: WriteOp<M>,
        expected: Option<i64>,
        limits: &ServerLimits,
        now: DateTime,
    ) -> Result<Planned<M>> {
        let repo = self.repo;
        let filter_of = |filter: Filter<M>| repo.checked_part(filter.into_parts(), "a filter");
        let raw = |item: &Document| {
            RawDocumentBuf::from_document(item).map_err(|e| Error::Encode {
                collection: M::COLLECTION.to_owned(),
                what: format!("the write at position {index}"),
                reason: e.to_string(),
            })
        };
        let sized = |kind, item: Document, id| -> Result<Planned<M>> {
            let item = raw(&item)?;
            let size = item.as_bytes().len();
            if size > limits.max_bson_object_size {
                return Ok(Planned::Refused(too_large::<M>(index, size, limits)));
            }
            Ok(Planned::Grouped { kind, item, id })
        };
        let versioned = M::VERSION_FIELD.is_some();
        Ok(match op {
            WriteOp::Insert(doc) => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "an insert"));
                }
                let mut body = insertable(&doc, now)?;
                check_names(M::COLLECTION, "a document", &body)?;
                // The ids of the batch are reported, so they are made here, not by the server.
                let id = body
                    .get("_id")
                    .cloned()
                    .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
                body.insert("_id", id.clone());
                sized(Kind::Insert, body, Some(id))?
            }
            WriteOp::UpdateOne {
                filter,
                update,
                upsert,
            } => {
                let filter = filter_of(filter)?;
                let update = repo.checked_part(update.into_parts(), "an update")?;
                if expected.is_some() || (upsert && versioned) {
                    Planned::Alone(Single::Update {
                        filter,
                        update: bookkept::<M>(update.clone(), now),
                        insert: for_insert::<M>(update, now),
                        expected,
                        upsert,
                    })
                } else {
                    let mut u = bookkept::<M>(update, now);
                    if upsert {
                        u = for_insert::<M>(u, now);
                    }
                    let item = doc! { "q": filter, "u": u, "upsert": upsert, "multi": false };
                    sized(Kind::Update, item, None)?
                }
            }
            WriteOp::UpdateMany { filter, update } => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "an update of many documents"));
                }
                let q = filter_of(filter)?;
                let u = bookkept::<M>(repo.checked_part(update.into_parts(), "an update")?, now);
                sized(Kind::Update, doc! { "q": q, "u": u, "multi": true }, None)?
            }
            WriteOp::ReplaceOne {
                filter,
                doc,
                upsert,
            } => {
                let filter = filter_of(filter)?;
                if versioned {
                    let mut body = encode(M::COLLECTION, &doc)?;
                    check_names(M::COLLECTION, "a document", &body)?;
                    body.remove("_id");
                    let size = raw(&body)?.as_bytes().len();
                    if size > limits.max_bson_object_size {
                        return Ok(Planned::Refused(too_large::<M>(index, size, limits)));
                    }
                    Planned::Alone(Single::Replace {
                        filter,
                        doc: Box::new(doc),
                        expected,
                        upsert,
                    })
                } else {
                    let mut body = encode(M::COLLECTION, &doc)?;
                    check_names(M::COLLECTION, "a document", &body)?;
                    if matches!(body.get("_id"), Some(Bson::Null)) {
                        body.remove("_id");
                    }
                    if let Some(ts) = M::TIMESTAMPS {
                        body.insert(ts.updated, now);
                    }
                    let item = doc! { "q": filter, "u": body, "upsert": upsert, "multi": false };
                    sized(Kind::Update, item, None)?
                }
            }
            WriteOp::DeleteOne(filter) => {
                let filter = filter_of(filter)?;
                match expected {
                    Some(expected) if versioned => {
                        Planned::Alone(Single::Delete { filter, expected })
                    }
                    _ => sized(Kind::Delete, doc! { "q": filter, "limit": 1 }, None)?,
                }
            }
            WriteOp::DeleteMany(filter) => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "a delete of many documents"));
                }
                let q = filter_of(filter)?;
                sized(Kind::Delete, doc! { "q": q, "limit": 0 }, None)?
            }
            WriteOp::Expect { version, op } => {
                if !versioned {
                    return Err(Error::NotVersioned {
                        model: crate::hooks::model_name::<M>(),
                        operation: "WriteOp::expect_version",
                    });
                }
                self.plan_one(index, *op, Some(version), limits, now)?
            }
        })
    }

    async fn run(mut self) -> Result<BulkOutcome> {
        let repo = self.repo;
        let ops = std::mem::take(&mut self.ops);
        let total = ops.len();
        let limits = repo.db.server_limits().await?;
        let now = DateTime::now();
        let planned = self.plan(ops, &limits, now)?;
        let mut progress = Progress {
            outcome: BulkOutcome::default(),
            written: Vec::new(),
            failed: Vec::new(),
        };
        let mut session = std::mem::take(&mut self.session);
        let mut guard = session.lock().await?;
        let mut planned = planned.into_iter().enumerate().peekable();
        while let Some((index, write)) = planned.next() {
            if self.ordered && !progress.failed.is_empty() {
                break;
            }
            match write {
                Planned::Grouped { kind, item, id } => {
                    let mut group = vec![Grouped { index, item, id }];
                    while let Some((index, Planned::Grouped { item, id, .. })) = planned.next_if(
                        |(_, next)| matches!(next, Planned::Grouped { kind: k, .. } if *k == kind),
                    ) {
                        group.push(Grouped { index, item, id });
                    }
                    self.send_group(&mut guard, group, kind, &limits, &mut progress)
                        .await?;
                }
                Planned::Refused(error) => progress.failed.push(FailedWrite { index, error }),
                Planned::Alone(single) => {
                    match self.send_alone(&mut guard, index, single, now).await {
                        Ok(outcome) => {
                            add(&mut progress.outcome, outcome);
                            progress.written.push(index);
                        }
                        Err(error) if is_per_write(&error) => {
                            progress.failed.push(FailedWrite { index, error });
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        if progress.failed.is_empty() {
            return Ok(progress.outcome);
        }
        progress.failed.sort_by_key(|f| f.index);
        let not_attempted = (0..total)
            .filter(|i| {
                !progress.written.contains(i) && !progress.failed.iter().any(|f| f.index == *i)
            })
            .collect();
        Err(Error::PartialWrite(Box::new(PartialWrite {
            collection: M::COLLECTION.to_owned(),
            operation: "bulk_write",
            total,
            written: progress.written,
            failed: progress.failed,
            not_attempted,
            outcome: progress.outcome,
        })))
    }

    /// Sends a group of consecutive writes of one kind in as few commands as the server's
    /// limits allow.
    async fn send_group(
        &self,
        guard: &mut SessionGuard<'_>,
        group: Vec<Grouped>,
        kind: Kind,
        limits: &ServerLimits,
        progress: &mut Progress,
    ) -> Result<()> {
        let repo = self.repo;
        let mut rest = group.as_slice();
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len() && take < limits.max_write_batch_size {
                // Each item costs its bytes plus its array key and type byte.
                let cost = rest[take].item.as_bytes().len() + 16;
                if take > 0 && bytes + cost > limits.max_bson_object_size {
                    break;
                }
                bytes += cost;
                take += 1;
            }
            let (chunk, after) = rest.split_at(take);
            let (name, list) = kind.command();
            let mut items = RawArrayBuf::new();
            for write in chunk {
                items.push(write.item.clone());
            }
            let command = rawdoc! { name: M::COLLECTION, list: items, "ordered": self.ordered };
            let reply = run_in!(guard, repo.db.database().run_raw_command(command));
            let reply = reply.map_err(|e| repo.driver_error(e))?;
            self.count_reply(&reply, chunk, kind, progress);
            if self.ordered && !progress.failed.is_empty() {
                return Ok(());
            }
            rest = after;
        }
        Ok(())
    }

    /// Adds what one command did to the progress: counts, ids, and failed positions.
    fn count_reply(
        &self,
        reply: &Document,
        chunk: &[Grouped],
        kind: Kind,
        progress: &mut Progress,
    ) {
        let position = |offset: usize| chunk.get(offset).map_or(usize::MAX, |w| w.index);
        let failures: Vec<FailedWrite> = write_errors(reply)
            .map(|(offset, code, message)| {
                let index = position(offset);
                FailedWrite {
                    index,
                    error: crate::error::write_error(M::COLLECTION, index, code, &message),
                }
            })
            .collect();
        let first_failure = failures.iter().map(|f| f.index).min();
        for write in chunk {
            let failed = failures.iter().any(|f| f.index == write.index);
            let stopped = self.ordered && first_failure.is_some_and(|first| write.index > first);
            if failed || stopped {
                continue;
            }
            progress.written.push(write.index);
            if let Some(id) = &write.id {
                progress.outcome.ids.push((write.index, id.clone()));
            }
        }
        let n = count(reply, "n");
        match kind {
            Kind::Insert => progress.outcome.inserted += n,
            Kind::Update => {
                let upserted = upserted(reply);
                progress.outcome.matched += n.saturating_sub(upserted.len() as u64);
                progress.outcome.modified += count(reply, "nModified");
                progress.outcome.ids.extend(
                    upserted
                        .into_iter()
                        .map(|(offset, id)| (position(offset), id)),
                );
            }
            Kind::Delete => progress.outcome.deleted += n,
        }
        progress.outcome.ids.sort_by_key(|(i, _)| *i);
        if let Ok(concern) = reply.get_document("writeConcernError") {
            // Applied, but not as durably as asked: the batch is not reported as a success.
            let last = chunk.last().map_or(0, |w| w.index);
            progress.failed.push(FailedWrite {
                index: last,
                error: Error::WriteFailed {
                    collection: M::COLLECTION.to_owned(),
                    index: last,
                    code: concern.get_i32("code").unwrap_or(0),
                    message: format!(
                        "write concern error after the writes up to position {last} were \
                         applied: {}",
                        concern.get_str("errmsg").unwrap_or("")
                    ),
                },
            });
        }
        progress.failed.extend(failures);
    }

    /// Sends one write on its own and explains a checked write that missed.
    async fn send_alone(
        &self,
        guard: &mut SessionGuard<'_>,
        index: usize,
        single: Single<M>,
        now: DateTime,
    ) -> Result<BulkOutcome> {
        let repo = self.repo;
        let mut outcome = BulkOutcome::default();
        let failed = |e: mongodb::error::Error| repo.driver_error(e);
        match single {
            Single::Update {
                filter,
                update,
                insert,
                expected,
                upsert,
            } => {
                let checked = match (M::VERSION_FIELD, expected) {
                    (Some(field), Some(expected)) => {
                        occ::with_version(filter.clone(), field, expected)
                    }
                    _ => filter.clone(),
                };
                let result =
                    run_in!(guard, repo.docs.update_one(checked, update)).map_err(failed)?;
                if result.matched_count > 0 {
                    outcome.matched += result.matched_count;
                    outcome.modified += result.modified_count;
                    return Ok(outcome);
                }
                if let Some(expected) = expected
                    && let Miss::Conflict(error) =
                        occ::explain_miss(repo, guard, filter.clone(), expected).await?
                {
                    return Err(error);
                }
                if upsert {
                    let mut options = UpdateOptions::default();
                    options.upsert = Some(true);
                    let result = run_in!(
                        guard,
                        repo.docs
                            .update_one(insert_only(filter), insert)
                            .with_options(options)
                    )
                    .map_err(failed)?;
                    if let Some(id) = result.upserted_id {
                        outcome.ids.push((index, id));
                    }
                }
            }
            Single::Replace {
                filter,
                doc,
                expected,
                upsert,
            } => {
                let mut body = encode(M::COLLECTION, &*doc)?;
                if matches!(body.get("_id"), Some(Bson::Null)) {
                    body.remove("_id");
                }
                let expected = match (expected, doc.version(), body.get("_id").cloned()) {
                    (Some(expected), _, _) => expected,
                    (None, Some(claimed), Some(id)) => {
                        occ::expected_version(repo, guard, &id, claimed, &doc).await?
                    }
                    (None, claimed, None) => claimed.unwrap_or(0),
                    (None, None, Some(_)) => 0,
                };
                let field = M::VERSION_FIELD.unwrap_or("version");
                body.insert(field, expected + 1);
                if let Some(ts) = M::TIMESTAMPS {
                    body.insert(ts.updated, now);
                }
                let checked = occ::with_version(filter.clone(), field, expected);
                let result =
                    run_in!(guard, repo.docs.replace_one(checked, body)).map_err(failed)?;
                if result.matched_count > 0 {
                    outcome.matched += result.matched_count;
                    outcome.modified += result.modified_count;
                    return Ok(outcome);
                }
                if let Miss::Conflict(error) =
                    occ::explain_miss(repo, guard, filter.clone(), expected).await?
                {
                    return Err(error);
                }
                if upsert {
                    let mut options = ReplaceOptions::default();
                    options.upsert = Some(true);
                    let body = insertable(&*doc, now)?;
                    let result = run_in!(
                        guard,
                        repo.docs
                            .replace_one(insert_only(filter), body)
                            .with_options(options)
                    )
                    .map_err(failed)?;
                    if let Some(id) = result.upserted_id {
                        outcome.ids.push((index, id));
                    }
                }
            }
            Single::Delete { filter, expected } => {
                let field = M::VERSION_FIELD.unwrap_or("version");
                let checked = occ::with_version(filter.clone(), field, expected);
                let result = run_in!(guard, repo.docs.delete_one(checked)).map_err(failed)?;
                if result.deleted_count > 0 {
                    outcome.deleted += result.deleted_count;
                    return Ok(outcome);
                }
                if let Miss::Conflict(error) =
                    occ::explain_miss(repo, guard, filter, expected).await?
                {
                    return Err(error);
                }
            }
        }
        Ok(outcome)
    }
}

/// Errors that belong to one write of the batch (the others end the whole batch).
fn is_per_write(error: &Error) -> bool {
    matches!(
        error,
        Error::VersionConflict { .. }
            | Error::DuplicateKey { .. }
            | Error::WriteFailed { .. }
            | Error::Decode { .. }
    )
}

fn not_checkable<M: Model>(index: usize, what: &str) -> Error {
    Error::Encode {
        collection: M::COLLECTION.to_owned(),
        what: format!("the write at position {index}"),
        reason: format!(
            "`expect_version` checks one document; {what} cannot carry it (use UpdateOne, \
             ReplaceOne or DeleteOne)"
        ),
    }
}

fn add(total: &mut BulkOutcome, more: BulkOutcome) {
    total.inserted += more.inserted;
    total.matched += more.matched;
    total.modified += more.modified;
    total.deleted += more.deleted;
    total.ids.extend(more.ids);
    total.ids.sort_by_key(|(i, _)| *i);
}

fn count(reply: &Document, key: &str) -> u64 {
    match reply.get(key) {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn upserted(reply: &Document) -> Vec<(usize, Bson)> {
    let Ok(list) = reply.get_array("upserted") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let entry = entry.as_document()?;
            let index = usize::try_from(count(entry, "index")).ok()?;
            Some((index, entry.get("_id")?.clone()))
        })
        .collect()
}

fn write_errors(reply: &Document) -> impl Iterator<Item = (usize, i32, String)> + '_ {
    reply
        .get_array("writeErrors")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.as_document()?;
            let index = usize::try_from(count(entry, "index")).ok()?;
            let code = entry.get_i32("code").unwrap_or(0);
            let message = entry.get_str("errmsg").unwrap_or("").to_owned();
            Some((index, code, message))
        })
}

awaitable!(BulkWrite => BulkOutcome);
session_setter!(BulkWrite);
