//! Automatic batching of concurrent `find_by_id` and `insert` calls (opt-in: [`Db::with_batching`]
//! and [`Repo::batched`]).
//!
//! The scheduling is DataLoader's, without a timer: a call that finds nothing in flight on its
//! collection yields to the scheduler once. If no other call came in that pass, its caller
//! sends it alone (a lone caller waits for nothing but that yield); otherwise they all leave
//! together. Calls that arrive while a round trip is in flight queue up and leave together
//! when it comes back. A batch is one `find({_id: {$in: [...]}})` or one unordered
//! `insertMany`, sent by a task of its own, so that no caller's cancellation strands another's
//! call. Each caller gets its own answer: its document or `None`, its own duplicate-key error.
//!
//! No batch mixes sessions. A call in a transaction joins only a batch of the same transaction
//! attempt, sent in its session (each attempt has batchers of its own, kept by the transaction);
//! a call given a session of the caller's own is never batched; a call without a session joins
//! only calls without one.
//!
//! [`Db::with_batching`]: crate::Db::with_batching
//! [`Repo::batched`]: crate::Repo::batched

use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;
use mongodb::Collection;
use mongodb::bson::{Bson, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::options::InsertManyOptions;
use tokio::sync::oneshot;

use crate::decode::raw_id;
use crate::error::{Error, Result};
use crate::session::{Bound, SessionGuard, SessionSlot, TxShared, run_in};

pub use crate::db::MAX_BATCH;

/// The batcher of one collection, shared by every batched repository of it taken from one `Db`.
pub(crate) struct Batcher {
    raw: Collection<RawDocumentBuf>,
    collection: &'static str,
    limit: usize,
    finds: Lane<FindCall>,
    inserts: Lane<InsertCall>,
    /// The transaction attempt whose calls this batcher carries, in its session; `None` for
    /// calls without a session. Weak, because the transaction keeps its batchers.
    within: Option<(Weak<TxShared>, u32)>,
}

/// The calls waiting for one kind of round trip, and whether one is in flight.
struct Lane<C> {
    state: Mutex<LaneState<C>>,
}

struct LaneState<C> {
    queue: Vec<C>,
    busy: bool,
}

impl<C> Default for Lane<C> {
    fn default() -> Self {
        Lane {
            state: Mutex::new(LaneState {
                queue: Vec::new(),
                busy: false,
            }),
        }
    }
}

struct FindCall {
    id: Bson,
    reply: oneshot::Sender<std::result::Result<Option<RawDocumentBuf>, Failure>>,
}

/// Why a batch brought its callers no answer.
#[derive(Clone)]
enum Failure {
    /// The round trip failed.
    Driver(mongodb::error::Error),
    /// The batch's transaction attempt ended before the batch was sent.
    Ended,
}

impl From<mongodb::error::Error> for Failure {
    fn from(error: mongodb::error::Error) -> Self {
        Failure::Driver(error)
    }
}

/// What became of one batched insert.
pub(crate) enum InsertOutcome {
    /// Written (and confirmed as the write concern asked).
    Written,
    /// The server refused this document (a duplicate key, a validator).
    Refused { code: i32, message: String },
    /// The whole command failed, or its write concern was not met.
    Failed(mongodb::error::Error),
    /// The batch's transaction attempt ended before the batch was sent.
    TransactionEnded,
}

struct InsertCall {
    body: RawDocumentBuf,
    reply: oneshot::Sender<InsertOutcome>,
}

/// Which lane a flusher drains.
#[derive(Clone, Copy)]
enum Kind {
    Find,
    Insert,
}

impl Batcher {
    pub(crate) fn new(
        raw: Collection<RawDocumentBuf>,
        collection: &'static str,
        limit: usize,
    ) -> Self {
        Batcher {
            raw,
            collection,
            limit: limit.max(1),
            finds: Lane::default(),
            inserts: Lane::default(),
            within: None,
        }
    }

    /// The batcher a call made in `session` joins: this one for a call without a session, the
    /// transaction attempt's own in a transaction, and none for a session of the caller's own,
    /// which is never batched.
    pub(crate) fn for_session(
        self: &Arc<Self>,
        session: &SessionSlot<'_>,
        database: &str,
    ) -> Option<Arc<Batcher>> {
        match session {
            SessionSlot::None => Some(Arc::clone(self)),
            SessionSlot::Shared(bound) => Some(self.within(bound, database)),
            SessionSlot::Borrowed(_) | SessionSlot::Ambient(..) => None,
        }
    }

    /// The batcher that carries this collection's calls made in the transaction attempt
    /// `bound`, with this one's size limit: one per attempt, database and collection, kept by
    /// the transaction.
    fn within(&self, bound: &Bound, database: &str) -> Arc<Batcher> {
        let shared = bound
            .shared
            .batcher(bound.attempt, database, self.collection, || {
                Arc::new(self.for_attempt(bound))
            });
        shared.downcast::<Batcher>().unwrap_or_else(|_| {
            // Only batchers are kept there; should anything else be, this attempt's calls
            // still go together through a batcher of their own.
            Arc::new(self.for_attempt(bound))
        })
    }

    fn for_attempt(&self, bound: &Bound) -> Batcher {
        Batcher {
            within: Some((Arc::downgrade(&bound.shared), bound.attempt)),
            ..Batcher::new(self.raw.clone(), self.collection, self.limit)
        }
    }

    /// The batch's session, locked for its round trip: the transaction's, if the batcher
    /// carries one (refused once that attempt has ended), else none.
    async fn session<'s>(
        &self,
        shared: &'s Option<Arc<TxShared>>,
    ) -> std::result::Result<SessionGuard<'s>, Failure> {
        let Some(shared) = shared else {
            return if self.within.is_some() {
                // The transaction itself is gone.
                Err(Failure::Ended)
            } else {
                Ok(SessionGuard::None)
            };
        };
        let attempt = self.within.as_ref().map_or(0, |(_, attempt)| *attempt);
        let session = shared.session.lock().await;
        if !shared.is_open(attempt) {
            return Err(Failure::Ended);
        }
        Ok(SessionGuard::Locked(session, shared))
    }

    /// The batcher's transaction, while it exists.
    fn transaction(&self) -> Option<Arc<TxShared>> {
        self.within
            .as_ref()
            .and_then(|(shared, _)| shared.upgrade())
    }

    /// The raw document with this `_id`, if there is one.
    pub(crate) async fn find(self: &Arc<Self>, id: Bson) -> Result<Option<RawDocumentBuf>> {
        let (reply, answer) = oneshot::channel();
        let call = FindCall { id, reply };
        let lead = {
            let mut state = lock(&self.finds.state);
            if state.busy {
                state.queue.push(call);
                None
            } else {
                state.busy = true;
                Some(call)
            }
        };
        if let Some(call) = lead {
            // Nothing was in flight. After one pass of the scheduler this call goes alone, sent
            // by its own caller, or, if others came in that pass, at the head of their batch,
            // which the drain task sends: no caller's cancellation strands another's call.
            let handoff = Handoff {
                batcher: self,
                kind: Kind::Find,
            };
            if let Some(call) = self.alone(&self.finds, call).await {
                self.send_finds(vec![call]).await;
            }
            drop(handoff);
        }
        match answer.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(Failure::Driver(e))) => Err(Error::from_driver(self.collection, e)),
            Ok(Err(Failure::Ended)) => Err(Error::TransactionEnded),
            Err(_) => Err(lost()),
        }
    }

    /// Inserts one prepared document (with its `_id`).
    pub(crate) async fn insert(self: &Arc<Self>, body: RawDocumentBuf) -> Result<InsertOutcome> {
        let (reply, answer) = oneshot::channel();
        let call = InsertCall { body, reply };
        let lead = {
            let mut state = lock(&self.inserts.state);
            if state.busy {
                state.queue.push(call);
                None
            } else {
                state.busy = true;
                Some(call)
            }
        };
        if let Some(call) = lead {
            let handoff = Handoff {
                batcher: self,
                kind: Kind::Insert,
            };
            if let Some(call) = self.alone(&self.inserts, call).await {
                self.send_inserts(vec![call]).await;
            }
            drop(handoff);
        }
        answer.await.map_err(|_| lost())
    }

    /// Sends the calls that queued while a round trip was in flight, batch after batch, until
    /// none is left. Runs on a task of its own, so that no caller's cancellation strands the
    /// others.
    async fn drain(self: Arc<Self>, kind: Kind) {
        loop {
            match kind {
                Kind::Find => {
                    let Some(calls) = self.next_batch(&self.finds) else {
                        return;
                    };
                    self.send_finds(calls).await;
                }
                Kind::Insert => {
                    let Some(calls) = self.next_batch(&self.inserts) else {
                        return;
                    };
                    self.send_inserts(calls).await;
                }
            }
        }
    }

    /// The leading call, back after one pass of the scheduler if no other call came in
    /// meanwhile; else `None`, and the call heads the queue that the drain task sends as one
    /// batch. The yield is DataLoader's tick, not a timer: tasks already woken (the other
    /// lookups of a `join_all`, tasks woken together) run before this one is polled again, and
    /// a lone caller is polled again at once.
    async fn alone<C>(&self, lane: &Lane<C>, lead: C) -> Option<C> {
        tokio::task::yield_now().await;
        let mut state = lock(&lane.state);
        if state.queue.is_empty() {
            return Some(lead);
        }
        state.queue.insert(0, lead);
        None
    }

    /// Up to `limit` queued calls, or `None` (and the lane idle) when none is queued.
    fn next_batch<C>(&self, lane: &Lane<C>) -> Option<Vec<C>> {
        let mut state = lock(&lane.state);
        if state.queue.is_empty() {
            state.busy = false;
            return None;
        }
        let take = state.queue.len().min(self.limit);
        Some(state.queue.drain(..take).collect())
    }

    async fn send_finds(&self, calls: Vec<FindCall>) {
        let span = tracing::debug_span!(
            "batch",
            collection = self.collection,
            operation = "find_by_id",
            size = calls.len()
        );
        let send = async {
            let mut ids: Vec<Bson> = Vec::with_capacity(calls.len());
            for call in &calls {
                if !ids.contains(&call.id) {
                    ids.push(call.id.clone());
                }
            }
            let found = self.fetch(ids).await;
            match found {
                Ok(docs) => {
                    for call in calls {
                        let doc = docs
                            .iter()
                            .find(|(id, _)| *id == call.id)
                            .map(|(_, d)| d.clone());
                        // A caller that stopped waiting needs no answer.
                        let _ = call.reply.send(Ok(doc));
                    }
                }
                Err(error) => {
                    for call in calls {
                        let _ = call.reply.send(Err(error.clone()));
                    }
                }
            }
        };
        crate::repo::trace::instrumented(send, span).await;
    }

    /// The documents with these ids, each with its `_id`.
    async fn fetch(
        &self,
        ids: Vec<Bson>,
    ) -> std::result::Result<Vec<(Bson, RawDocumentBuf)>, Failure> {
        let wanted = ids.len();
        let filter = if wanted == 1 {
            doc! { "_id": ids.into_iter().next().unwrap_or(Bson::Null) }
        } else {
            doc! { "_id": { "$in": ids } }
        };
        // At most one document per id: the server closes the cursor once it has sent them
        // (one lookup: in a single batch, as `find_one` asks). More ids keep a positive limit,
        // so that documents beyond one 16 MiB reply still come, by `getMore`.
        let limit = i64::try_from(wanted).unwrap_or(i64::MAX);
        // Made where it is sent, so that the future does not hold the driver's action (with its
        // options, over 800 bytes) across the wait for the session.
        let find = || {
            self.raw
                .find(filter)
                .limit(if wanted == 1 { -1 } else { limit })
                .batch_size(u32::try_from(wanted).unwrap_or(u32::MAX))
        };
        let mut docs = Vec::with_capacity(wanted);
        let mut keep = |current: &mongodb::bson::RawDocument| {
            if let Some(id) = raw_id(current) {
                docs.push((id, current.to_raw_document_buf()));
            }
        };
        let transaction = self.transaction();
        let mut guard = self.session(&transaction).await?;
        let read = match guard.get() {
            None => {
                async {
                    let mut cursor = find().await?;
                    while cursor.advance().await? {
                        keep(cursor.current());
                    }
                    Ok(())
                }
                .await
            }
            Some(session) => {
                async {
                    let mut cursor = find().session(&mut *session).await?;
                    while cursor.advance(&mut *session).await? {
                        keep(cursor.current());
                    }
                    Ok(())
                }
                .await
            }
        };
        // A server error aborts the transaction: its scope must hear of it.
        guard.note(&read);
        read?;
        Ok(docs)
    }

    async fn send_inserts(&self, calls: Vec<InsertCall>) {
        let span = tracing::debug_span!(
            "batch",
            collection = self.collection,
            operation = "insert",
            size = calls.len()
        );
        let send = async {
            let (bodies, replies): (Vec<_>, Vec<_>) =
                calls.into_iter().map(|c| (c.body, c.reply)).unzip();
            let transaction = self.transaction();
            let outcomes = match self.session(&transaction).await {
                Ok(mut guard) => self.insert_all(&mut guard, &bodies).await,
                Err(_) => replies
                    .iter()
                    .map(|_| InsertOutcome::TransactionEnded)
                    .collect(),
            };
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        };
        crate::repo::trace::instrumented(send, span).await;
    }

    /// Inserts the batch's documents in the held session, each with its own outcome.
    ///
    /// Without a session the command is unordered, so that one caller's duplicate key does not
    /// stop the others' documents. In a transaction it is ordered: the server stops at the first
    /// refused document (the transaction is aborted on it), so the documents after it, which
    /// were not tried, are each sent alone and get the server's own answer, as they would
    /// unbatched.
    async fn insert_all(
        &self,
        guard: &mut SessionGuard<'_>,
        bodies: &[RawDocumentBuf],
    ) -> Vec<InsertOutcome> {
        if let [body] = bodies {
            return vec![self.insert_one(guard, body).await];
        }
        let in_transaction = self.within.is_some();
        let mut options = InsertManyOptions::default();
        options.ordered = Some(in_transaction);
        let result = run_in!(
            guard,
            self.raw.insert_many(bodies.iter()).with_options(options)
        );
        let error = match result {
            Ok(_) => return bodies.iter().map(|_| InsertOutcome::Written).collect(),
            Err(error) => error,
        };
        let failure = match error.kind.as_ref() {
            ErrorKind::InsertMany(failure) => Some(failure),
            _ => None,
        };
        let mut outcomes: Vec<Option<InsertOutcome>> = bodies.iter().map(|_| None).collect();
        let write_errors = failure
            .and_then(|f| f.write_errors.as_deref())
            .unwrap_or(&[]);
        for e in write_errors {
            if let Some(slot) = outcomes.get_mut(e.index) {
                *slot = Some(InsertOutcome::Refused {
                    code: e.code,
                    message: e.message.clone(),
                });
            }
        }
        // Ordered, nothing after the first refused document was tried.
        let tried = match (in_transaction, write_errors.iter().map(|e| e.index).min()) {
            (true, Some(first)) => first + 1,
            _ => bodies.len(),
        };
        let concern_met = failure.is_some_and(|f| f.write_concern_error.is_none());
        for slot in outcomes[..tried].iter_mut().filter(|o| o.is_none()) {
            *slot = Some(if concern_met {
                InsertOutcome::Written
            } else {
                // Not a per-document failure (the connection, the write concern): every
                // caller of the batch hears of it.
                InsertOutcome::Failed(error.clone())
            });
        }
        for (slot, body) in outcomes[tried..].iter_mut().zip(&bodies[tried..]) {
            *slot = Some(self.insert_one(guard, body).await);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| InsertOutcome::Failed(error.clone())))
            .collect()
    }

    /// One document inserted alone in the held session.
    async fn insert_one(
        &self,
        guard: &mut SessionGuard<'_>,
        body: &RawDocumentBuf,
    ) -> InsertOutcome {
        match run_in!(guard, self.raw.insert_one(body)) {
            Ok(_) => InsertOutcome::Written,
            Err(error) => match error.kind.as_ref() {
                ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => {
                    InsertOutcome::Refused {
                        code: e.code,
                        message: e.message.clone(),
                    }
                }
                _ => InsertOutcome::Failed(error),
            },
        }
    }
}

/// Hands the lane over when its leading caller is done (or has stopped waiting): to a drain
/// task if calls queued meanwhile, else the lane goes idle.
struct Handoff<'b> {
    batcher: &'b Arc<Batcher>,
    kind: Kind,
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        let queued = match self.kind {
            Kind::Find => settle(&self.batcher.finds),
            Kind::Insert => settle(&self.batcher.inserts),
        };
        if !queued {
            return;
        }
        let batcher = Arc::clone(self.batcher);
        let kind = self.kind;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let drain: BoxFuture<'static, ()> = Box::pin(batcher.drain(kind));
                runtime.spawn(drain);
            }
            // Outside a runtime nothing can send them: the queued callers are told (their
            // senders are dropped here).
            Err(_) => match kind {
                Kind::Find => abandon(&batcher.finds),
                Kind::Insert => abandon(&batcher.inserts),
            },
        }
    }
}

/// Whether calls are queued; if none is, the lane goes idle.
fn settle<C>(lane: &Lane<C>) -> bool {
    let mut state = lock(&lane.state);
    if state.queue.is_empty() {
        state.busy = false;
        false
    } else {
        true
    }
}

fn abandon<C>(lane: &Lane<C>) {
    let mut state = lock(&lane.state);
    state.queue.clear();
    state.busy = false;
}

/// The lane's lock. Nothing panics while holding it, so a poisoned lock still holds a
/// consistent queue.
fn lock<C>(state: &Mutex<LaneState<C>>) -> std::sync::MutexGuard<'_, LaneState<C>> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lost() -> Error {
    Error::Custom(Box::new(std::io::Error::other(
        "the batch carrying this call was dropped before it was sent (the runtime is shutting down)",
    )))
}
