//! `insert` and `insert_many`: a new document starts at version 0 with both timestamps.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, RawBsonRef, RawDocumentBuf};
use mongodb::error::ErrorKind;
use mongodb::options::InsertManyOptions;

use super::{awaitable, session_setter};
use crate::db::ServerLimits;
use crate::decode::raw_id;
use crate::error::{BulkOutcome, Error, FailedWrite, PartialWrite, Result};
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::raw_fields::encode_with_fields;
use crate::repo::batch::InsertOutcome;
use crate::repo::{Repo, lifecycle};
use crate::session::{SessionSlot, run_in};

/// Prepares a model for an upsert's insert, straight to raw BSON: version 0, both timestamps,
/// and no `_id` when the model has none (the server takes it from the filter, or makes one).
pub(crate) fn insertable<M: Model>(doc: &M, now: DateTime) -> Result<RawDocumentBuf> {
    prepared(doc, now, None)
}

/// Prepares a new document and says its `_id`: the model's own, or one made here and written
/// first (where the server stores it), so that the caller knows it whatever the server does.
pub(crate) fn insertable_with_id<M: Model>(
    doc: &M,
    now: DateTime,
) -> Result<(RawDocumentBuf, Bson)> {
    let made = doc.id().is_none().then(ObjectId::new);
    if let Some(made) = made {
        made_id_fits::<M>(made)?;
    }
    let body = prepared(doc, now, made)?;
    // The body has an `_id` now: the model's own, or the made one.
    let id = raw_id(&body);
    match (id, made) {
        (Some(id), _) => Ok((body, id)),
        (None, Some(made)) => Ok((body, Bson::ObjectId(made))),
        (None, None) => Err(Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: "the document".to_owned(),
            reason: "the model says it has an id, but its `_id` serializes as null or not \
                     at all"
                .to_owned(),
        }),
    }
}

/// Refuses, before anything is written, a model without an id whose id type cannot hold the
/// `ObjectId` mongrove makes for it: the document would be stored, and its model could not say
/// under which id.
fn made_id_fits<M: Model>(made: ObjectId) -> Result<()> {
    match crate::value::from_bson::<M::Id>(Bson::ObjectId(made)) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: "the _id".to_owned(),
            reason: format!(
                "the model has no id, and its id type `{}` cannot hold the ObjectId mongrove \
                 makes for such a model ({e}); set the id before inserting, or make its type \
                 ObjectId (or Option<ObjectId>)",
                std::any::type_name::<M::Id>()
            ),
        }),
    }
}

fn prepared<M: Model>(doc: &M, now: DateTime, id: Option<ObjectId>) -> Result<RawDocumentBuf> {
    // At most three fields, on the stack.
    let mut set = [("", RawBsonRef::Null); 3];
    let mut count = 0;
    if let Some(version) = M::VERSION_FIELD {
        set[count] = (version, RawBsonRef::Int64(0));
        count += 1;
    }
    if let Some(ts) = M::TIMESTAMPS {
        set[count] = (ts.created, RawBsonRef::DateTime(now));
        set[count + 1] = (ts.updated, RawBsonRef::DateTime(now));
        count += 2;
    }
    encode_with_fields(M::COLLECTION, "the document", doc, id, &set[..count])
}

/// Applies a successful insert (or an upsert that inserted) to the in-memory model.
pub(crate) fn inserted<M: Model>(doc: &mut M, id: Bson, now: DateTime) -> Result<M::Id> {
    // The document is stored whether or not its id decodes: the version and timestamps are
    // the stored ones either way.
    if M::VERSION_FIELD.is_some() {
        doc.__set_version(0);
    }
    doc.__touch(true, now);
    let id: M::Id = crate::value::from_bson(id.clone()).map_err(|e| Error::Decode {
        collection: M::COLLECTION.to_owned(),
        id: Some(id.into()),
        field: "_id".to_owned(),
        reason: e.to_string(),
    })?;
    if doc.id().is_none() {
        doc.__set_id(id.clone());
    }
    Ok(id)
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
            session: repo.session_slot(),
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
        let (body, id) = insertable_with_id(self.doc, now)?;
        let id = match self.batched(body, id).await? {
            Batched::Sent(id) => id,
            Batched::Not(body) => {
                let result = {
                    let mut guard = self.session.lock().await?;
                    run_in!(guard, repo.raw.insert_one(body))
                };
                result.map_err(|e| repo.driver_error(e))?.inserted_id
            }
        };
        let id = inserted(self.doc, id, now)?;
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

/// Whether an insert went through the batcher.
enum Batched {
    /// Written, under this `_id`.
    Sent(Bson),
    /// Not batched: the body, to send alone.
    Not(RawDocumentBuf),
}

impl<M: Model> Insert<'_, M> {
    /// Sends the document through the repository's batcher when it has one and the insert
    /// runs outside any session, or through the transaction's batcher when it runs in one.
    async fn batched(&mut self, body: RawDocumentBuf, id: Bson) -> Result<Batched> {
        let Some(batcher) = &self.repo.batcher else {
            return Ok(Batched::Not(body));
        };
        self.session.resolve().await?;
        let Some(batcher) = batcher.for_session(&self.session, self.repo.db.name()) else {
            return Ok(Batched::Not(body));
        };
        // A document over the size limit would fail its whole batch: it goes alone, and the
        // server's refusal is its own.
        let limits = self.repo.db.server_limits().await?;
        if body.as_bytes().len() > limits.max_bson_object_size {
            return Ok(Batched::Not(body));
        }
        match batcher.insert(body).await? {
            InsertOutcome::Written => Ok(Batched::Sent(id)),
            InsertOutcome::Refused { code, message } => {
                Err(crate::error::write_error(M::COLLECTION, 0, code, &message))
            }
            InsertOutcome::Failed(error) => Err(self.repo.driver_error(error)),
            InsertOutcome::TransactionEnded => Err(Error::TransactionEnded),
        }
    }
}

awaitable!(Insert => M::Id, "insert");
session_setter!(Insert);

/// Inserts several documents. Created by [`Repo::insert_many`].
///
/// When part of the batch fails (a duplicate key at position k, a document over the server's
/// size limit), the written documents keep their ids and versions in memory, and the error is
/// [`Error::PartialWrite`], which lists the written positions and each failed one with its cause.
/// A batch larger than one command takes goes as several; cut off by a lost connection after
/// the first of them, the report says which positions were written and which are in doubt
/// ([`PartialWrite::uncertain`](crate::PartialWrite::uncertain)).
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
            session: repo.session_slot(),
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
        let limits = repo.db.server_limits().await?;
        let now = DateTime::now();
        // Ids are made here rather than by the driver, so that a batch that fails part-way can
        // still say which documents are stored under which id. Each document is prepared as
        // soon as its hooks and validation pass (one pass over the models); nothing is sent
        // until every one has.
        let mut ids = Vec::with_capacity(self.docs.len());
        let mut bodies = Vec::with_capacity(self.docs.len());
        let mut oversized = Vec::new();
        for (index, doc) in self.docs.iter_mut().enumerate() {
            lifecycle::hook_mut(
                repo,
                &mut self.session,
                doc,
                HookPoint::BeforeInsert,
                "insert_many",
            )
            .await?;
            lifecycle::validate(repo, &mut self.session, doc, "insert_many").await?;
            let (raw, id) = insertable_with_id(doc, now)?;
            if raw.as_bytes().len() > limits.max_bson_object_size {
                oversized.push(FailedWrite {
                    index,
                    error: too_large::<M>(index, raw.as_bytes().len(), &limits),
                });
            }
            ids.push(id);
            bodies.push(Some(raw));
        }
        // An oversized document is never sent: an ordered batch stops before it, an unordered
        // one goes on without it.
        let mut send: Vec<usize> = match (self.ordered, oversized.first()) {
            (true, Some(first)) => (0..first.index).collect(),
            _ => (0..bodies.len())
                .filter(|i| !oversized.iter().any(|f| f.index == *i))
                .collect(),
        };
        let mut failed = oversized;
        if self.ordered {
            failed.truncate(1);
        }
        let mut sent_failures = Vec::new();
        if !send.is_empty() {
            let mut options = InsertManyOptions::default();
            options.ordered = Some(self.ordered);
            let mut guard = self.session.lock().await?;
            // Sent in chunks the driver sends as one command each, so that a batch cut off
            // part-way can say which chunks were answered.
            let mut answered = 0;
            while answered < send.len() {
                let chunk =
                    &send[answered..answered + chunk_len(&send[answered..], &bodies, &limits)];
                // Moved, not copied: nothing reads a body once it is sent.
                let batch: Vec<RawDocumentBuf> =
                    chunk.iter().filter_map(|&i| bodies[i].take()).collect();
                let result = run_in!(
                    guard,
                    repo.raw.insert_many(batch).with_options(options.clone())
                );
                let Err(error) = result else {
                    answered += chunk.len();
                    continue;
                };
                let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
                    // Not about one document (the connection, a closed session): whether
                    // this chunk was written is unknown.
                    let in_session = guard.may_be_in_transaction();
                    let nothing_yet = answered == 0 && failed.is_empty();
                    if in_session || nothing_yet {
                        return Err(repo.driver_error(error));
                    }
                    let cut_off = CutOff {
                        positions: chunk.to_vec(),
                        error: repo.driver_error(error),
                    };
                    let answered = send[..answered].to_vec();
                    drop(guard);
                    let partial =
                        self.partial(ids, answered, Some(cut_off), failed, sent_failures, now);
                    return Err(partial);
                };
                let Some(errors) = failure.write_errors.as_ref().filter(|e| !e.is_empty()) else {
                    // Only a write concern error: the chunk is written, but the server did not
                    // confirm what was asked. Nothing more is sent.
                    answered += chunk.len();
                    drop(guard);
                    let whole = answered == send.len() && failed.is_empty();
                    if whole && sent_failures.is_empty() {
                        // The written models get their ids all the same.
                        self.written(&ids, &send, now);
                        return Err(repo.driver_error(error));
                    }
                    let last = chunk[chunk.len() - 1];
                    let concern = failure.write_concern_error.as_ref();
                    failed.push(FailedWrite {
                        index: last,
                        error: Error::WriteFailed {
                            collection: M::COLLECTION.to_owned(),
                            index: last,
                            code: concern.map_or(0, |c| c.code),
                            message: format!(
                                "write concern error after the documents up to position {last} \
                                 were written: {}",
                                concern.map_or("", |c| c.message.as_str())
                            ),
                        },
                    });
                    let answered = send[..answered].to_vec();
                    return Err(self.partial(ids, answered, None, failed, sent_failures, now));
                };
                sent_failures.extend(errors.iter().filter_map(|e| {
                    let index = *chunk.get(e.index)?;
                    let error = crate::error::write_error(M::COLLECTION, index, e.code, &e.message);
                    Some(FailedWrite { index, error })
                }));
                answered += chunk.len();
                if self.ordered {
                    break;
                }
            }
            send.truncate(answered);
        }
        if failed.is_empty() && sent_failures.is_empty() {
            // Every model gets its id, version and timestamps before any hook runs or an
            // undecodable id is reported: all of them are written.
            let mut decoded = Vec::with_capacity(ids.len());
            let mut undecodable = None;
            for (doc, id) in self.docs.iter_mut().zip(ids) {
                match inserted(doc, id, now) {
                    Ok(id) => decoded.push(id),
                    Err(error) => {
                        undecodable.get_or_insert(error);
                    }
                }
            }
            if M::HAS_HOOKS {
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
            }
            return match undecodable {
                Some(error) => Err(error),
                None => Ok(decoded),
            };
        }
        Err(self.partial(ids, send, None, failed, sent_failures, now))
    }

    /// Gives the written models their ids, versions and timestamps.
    fn written(&mut self, ids: &[Bson], positions: &[usize], now: DateTime) {
        for &index in positions {
            if let (Some(doc), Some(id)) = (self.docs.get_mut(index), ids.get(index)) {
                // A written document whose id does not decode into the model's id type is
                // still written; its model keeps no id, and the report has the id.
                let _ = inserted(doc, id.clone(), now);
            }
        }
    }

    /// The report of a batch written in part: `sent` are the positions whose commands were
    /// answered, `cut_off` the chunk an error about no one document left in doubt.
    fn partial(
        &mut self,
        ids: Vec<Bson>,
        sent: Vec<usize>,
        cut_off: Option<CutOff>,
        mut failed: Vec<FailedWrite>,
        sent_failures: Vec<FailedWrite>,
        now: DateTime,
    ) -> Error {
        let total = self.docs.len();
        let first_sent_failure = sent_failures.iter().map(|f| f.index).min();
        // Positions marked rather than searched: a batch may hold 100,000 of them, and an
        // unordered one as many failures.
        let mut refused = vec![false; total];
        for failure in &sent_failures {
            if let Some(mark) = refused.get_mut(failure.index) {
                *mark = true;
            }
        }
        let written: Vec<usize> = sent
            .iter()
            .copied()
            .filter(|&i| !refused[i])
            // Ordered: the server stops at its first failure.
            .filter(|i| !self.ordered || first_sent_failure.is_none_or(|first| *i < first))
            .collect();
        self.written(&ids, &written, now);
        failed.extend(sent_failures);
        let uncertain = match cut_off {
            Some(CutOff { positions, error }) => {
                if let Some(&index) = positions.first() {
                    failed.push(FailedWrite { index, error });
                }
                positions
            }
            None => Vec::new(),
        };
        failed.sort_by_key(|f| f.index);
        if self.ordered {
            failed.truncate(1);
        }
        let mut accounted = vec![false; total];
        let failed_positions = failed.iter().map(|f| &f.index);
        for &i in written.iter().chain(failed_positions).chain(&uncertain) {
            if let Some(mark) = accounted.get_mut(i) {
                *mark = true;
            }
        }
        let not_attempted = (0..total).filter(|&i| !accounted[i]).collect();
        let outcome = BulkOutcome {
            inserted: written.len() as u64,
            ids: written.iter().map(|&i| (i, ids[i].clone())).collect(),
            ..BulkOutcome::default()
        };
        Error::PartialWrite(Box::new(PartialWrite {
            collection: M::COLLECTION.to_owned(),
            operation: "insert_many",
            total,
            written,
            failed,
            not_attempted,
            uncertain,
            outcome,
        }))
    }
}

/// A chunk of an `insert_many` whose command failed in a way that does not say whether the
/// server wrote it (the connection went), after earlier chunks were written.
struct CutOff {
    positions: Vec<usize>,
    error: Error,
}

/// How many of `positions` (the next ones to send) go in one command: at most the server's
/// `maxWriteBatchSize` documents, and what fits in one message with room for the command.
fn chunk_len(
    positions: &[usize],
    bodies: &[Option<RawDocumentBuf>],
    limits: &ServerLimits,
) -> usize {
    // The command's own fields and the message's headers.
    const ROOM: usize = 64 * 1024;
    let budget = limits.max_message_size.saturating_sub(ROOM);
    let mut bytes = 0;
    let mut take = 0;
    while take < positions.len() && take < limits.max_write_batch_size {
        let size = bodies[positions[take]]
            .as_ref()
            .map_or(0, |b| b.as_bytes().len());
        if take > 0 && bytes + size > budget {
            break;
        }
        bytes += size;
        take += 1;
    }
    take.max(1)
}

/// The failure of a document over the server's size limit, found before sending it.
pub(crate) fn too_large<M: Model>(index: usize, size: usize, limits: &ServerLimits) -> Error {
    Error::WriteFailed {
        collection: M::COLLECTION.to_owned(),
        index,
        code: BSON_OBJECT_TOO_LARGE,
        message: format!(
            "the document is {size} bytes, over the server's limit of {} bytes \
             (maxBsonObjectSize); it was not sent",
            limits.max_bson_object_size
        ),
    }
}

/// The server's code for a document over `maxBsonObjectSize`.
const BSON_OBJECT_TOO_LARGE: i32 = 10334;

awaitable!(InsertMany => Vec<M::Id>, "insert_many", super::trace::inserted);
session_setter!(InsertMany);
