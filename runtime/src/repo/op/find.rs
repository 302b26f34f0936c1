//! `find_one`, `find_by_id` and `find`: documents decoded into models, collected or streamed.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use mongodb::bson::{Bson, Document, RawDocument, RawDocumentBuf};
use mongodb::options::FindOptions;
use mongodb::{ClientSession, Cursor, SessionCursor};

use super::{awaitable, session_setter};
use crate::decode::decode;
use crate::error::Result;
use crate::hooks::HookPoint;
use crate::model::Model;
use crate::query::{EncodeProblem, Sort};
use crate::repo::Repo;
use crate::session::{SessionSlot, SharedSession};

/// The first matching document. Created by [`Repo::find_one`] and [`Repo::find_by_id`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindOne<'a, M: Model> {
    pub(super) repo: &'a Repo<M>,
    pub(super) filter: Result<Document, EncodeProblem>,
    pub(super) options: FindShape,
    pub(super) session: SessionSlot<'a>,
    /// The id looked up, when the repository batches `find_by_id`.
    pub(super) by_id: Option<Bson>,
}

impl<'a, M: Model> FindOne<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        FindOne {
            session: repo.session_slot(),
            repo,
            filter,
            options: FindShape::default(),
            by_id: None,
        }
    }

    /// Marks the lookup as one by `_id` that may join a batch.
    pub(crate) fn by_id(mut self, id: Option<Bson>) -> Self {
        self.by_id = id;
        self
    }

    /// The batched lookup, when this one can take part in a batch: a `find_by_id` of a
    /// batching repository, without a projection, outside any session or in a transaction
    /// (whose own batcher it then joins).
    async fn batched(&mut self) -> Result<Option<Option<M>>> {
        let (Some(batcher), Some(id)) = (&self.repo.batcher, &self.by_id) else {
            return Ok(None);
        };
        if self.options.projection.is_some() || self.options.skip.is_some() {
            return Ok(None);
        }
        self.session.resolve().await?;
        let Some(batcher) = batcher.for_session(&self.session, self.repo.db.name()) else {
            return Ok(None);
        };
        let Some(raw) = batcher.find(id.clone()).await? else {
            return Ok(Some(None));
        };
        let mut doc = decode::<M>(M::COLLECTION, &raw)?;
        if M::HAS_HOOKS {
            crate::repo::lifecycle::hook_mut(
                self.repo,
                &mut self.session,
                &mut doc,
                HookPoint::AfterLoad,
                "find",
            )
            .await?;
        }
        Ok(Some(Some(doc)))
    }

    /// Which document comes first when several match.
    pub fn sort(mut self, sort: Sort<M>) -> Self {
        self.options.sort = Some(sort.into_document());
        self
    }

    /// Skips this many matches.
    pub fn skip(mut self, skip: u64) -> Self {
        self.options.skip = Some(skip);
        self
    }

    /// Returns only some fields; the others must have serde defaults to decode.
    pub fn projection(mut self, projection: Document) -> Self {
        self.options.projection = Some(projection);
        self
    }

    pub(super) async fn run(mut self) -> Result<Option<M>> {
        if let Some(found) = self.batched().await? {
            return Ok(found);
        }
        let filter = self.repo.checked_part(self.filter, "the filter")?;
        let mut options = self.options;
        options.limit = Some(-1);
        let find = Find {
            repo: self.repo,
            filter: Ok(filter),
            options,
            session: self.session,
        };
        // The cursor is read in place: a one-document lookup needs no boxed stream.
        let mut state = find.open().await?;
        next_document::<M>(self.repo, &mut state).await.transpose()
    }
}

awaitable!(FindOne => Option<M>, "find_one", super::trace::row);
session_setter!(FindOne);

/// Every matching document. Created by [`Repo::find`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Find<'a, M: Model> {
    pub(super) repo: &'a Repo<M>,
    pub(super) filter: Result<Document, EncodeProblem>,
    pub(super) options: FindShape,
    pub(super) session: SessionSlot<'a>,
}

/// The options mongrove sets on a `find`. The driver's `FindOptions` (over 800 bytes) is made
/// from them only when the query is sent, so that an operation's future does not carry copies
/// of it across its awaits: each lookup in flight is a heap allocation of that future.
#[derive(Debug, Clone, Default)]
pub(super) struct FindShape {
    pub(super) sort: Option<Document>,
    pub(super) skip: Option<u64>,
    pub(super) limit: Option<i64>,
    pub(super) projection: Option<Document>,
    pub(super) batch_size: Option<u32>,
}

impl From<FindShape> for FindOptions {
    fn from(shape: FindShape) -> Self {
        let mut options = FindOptions::default();
        options.sort = shape.sort;
        options.skip = shape.skip;
        options.limit = shape.limit;
        options.projection = shape.projection;
        options.batch_size = shape.batch_size;
        options
    }
}

/// A cursor together with the session it must be advanced in.
pub(super) enum CursorState<'a> {
    Plain(Cursor<RawDocumentBuf>),
    Borrowed(SessionCursor<RawDocumentBuf>, &'a mut ClientSession),
    Shared(SessionCursor<RawDocumentBuf>, SharedSession),
}

impl<'a, M: Model> Find<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>, filter: Result<Document, EncodeProblem>) -> Self {
        Find {
            session: repo.session_slot(),
            repo,
            filter,
            options: FindShape::default(),
        }
    }

    /// The order of the results.
    pub fn sort(mut self, sort: Sort<M>) -> Self {
        self.options.sort = Some(sort.into_document());
        self
    }

    /// Skips this many matches.
    pub fn skip(mut self, skip: u64) -> Self {
        self.options.skip = Some(skip);
        self
    }

    /// Returns at most this many documents.
    pub fn limit(mut self, limit: u32) -> Self {
        self.options.limit = Some(i64::from(limit));
        self
    }

    /// Returns only some fields; the others must have serde defaults to decode.
    pub fn projection(mut self, projection: Document) -> Self {
        self.options.projection = Some(projection);
        self
    }

    /// How many documents the server sends per round trip.
    pub fn batch_size(mut self, size: u32) -> Self {
        self.options.batch_size = Some(size);
        self
    }

    /// Streams the results instead of collecting them: memory stays at one batch.
    ///
    /// The operation's span covers opening the cursor (the first batch); the documents read
    /// after that are the caller's.
    pub async fn stream(self) -> Result<BoxStream<'a, Result<M>>> {
        let repo = self.repo;
        super::trace::traced(
            repo.db().name(),
            M::COLLECTION,
            "find",
            super::trace::nothing,
            self.open_stream(),
        )
        .await
    }

    /// The results as a stream, without a span of their own (`run` is traced as a whole).
    async fn open_stream(self) -> Result<BoxStream<'a, Result<M>>> {
        let repo = self.repo;
        let state = self.open().await?;
        Ok(stream::unfold(state, move |mut state| async move {
            let item = next_document::<M>(repo, &mut state).await?;
            Some((item, state))
        })
        .boxed())
    }

    /// Sends the query and returns the cursor with the session it must be advanced in.
    pub(super) async fn open(self) -> Result<CursorState<'a>> {
        let repo = self.repo;
        let filter = repo.checked_part(self.filter, "the filter")?;
        for (what, part) in [
            ("the sort", &self.options.sort),
            ("the projection", &self.options.projection),
        ] {
            if let Some(part) = part {
                crate::decode::check_names(M::COLLECTION, what, part)?;
            }
        }
        let mut slot = self.session;
        // Decides the session now (joining the task's transaction, if any) and checks that a
        // bound transaction is still open.
        drop(slot.lock().await?);
        // The driver's action (with its options, over 800 bytes) is made right where it is
        // sent, so that this future does not hold it across another wait.
        let options = self.options;
        let find = || {
            repo.raw
                .find(filter)
                .with_options(FindOptions::from(options))
        };
        Ok(match slot {
            SessionSlot::None | SessionSlot::Ambient(..) => {
                CursorState::Plain(find().await.map_err(|e| repo.driver_error(e))?)
            }
            SessionSlot::Borrowed(session) => {
                let cursor = find()
                    .session(&mut *session)
                    .await
                    .map_err(|e| repo.driver_error(e))?;
                CursorState::Borrowed(cursor, session)
            }
            SessionSlot::Shared(bound) => {
                let cursor = {
                    let mut session = bound.shared.session.lock().await;
                    let opened = find().session(&mut *session).await;
                    if let Err(error) = &opened {
                        bound.shared.note_failure(error);
                    }
                    opened.map_err(|e| repo.driver_error(e))?
                };
                CursorState::Shared(cursor, bound.shared)
            }
        })
    }

    pub(super) async fn run(self) -> Result<Vec<M>> {
        let mut results = self.open_stream().await?;
        let mut all = Vec::new();
        while let Some(item) = results.next().await {
            all.push(item?);
        }
        Ok(all)
    }
}

/// Moves the cursor to its next document: `None` at the end.
pub(super) async fn advance<M: Model>(
    repo: &Repo<M>,
    state: &mut CursorState<'_>,
) -> Option<Result<()>> {
    let advanced = match state {
        CursorState::Plain(cursor) => cursor.advance().await,
        CursorState::Borrowed(cursor, session) => cursor.advance(session).await,
        // Locked per batch, so the transaction's other repositories can write between batches.
        CursorState::Shared(cursor, shared) => {
            let advanced = cursor.advance(&mut *shared.session.lock().await).await;
            if let Err(error) = &advanced {
                shared.note_failure(error);
            }
            advanced
        }
    };
    match advanced {
        Ok(false) => None,
        Err(e) => Some(Err(repo.driver_error(e))),
        Ok(true) => Some(Ok(())),
    }
}

/// The document the cursor is on.
pub(super) fn current<'s>(state: &'s CursorState<'_>) -> &'s RawDocument {
    match state {
        CursorState::Plain(cursor) => cursor.current(),
        CursorState::Borrowed(cursor, _) | CursorState::Shared(cursor, _) => cursor.current(),
    }
}

async fn next_document<M: Model>(repo: &Repo<M>, state: &mut CursorState<'_>) -> Option<Result<M>> {
    match advance(repo, state).await? {
        Err(e) => Some(Err(e)),
        Ok(()) => {
            let mut doc = match decode::<M>(M::COLLECTION, current(state)) {
                Ok(doc) => doc,
                Err(e) => return Some(Err(e)),
            };
            if M::HAS_HOOKS {
                let mut slot = match state {
                    CursorState::Plain(_) => SessionSlot::None,
                    CursorState::Borrowed(_, session) => SessionSlot::Borrowed(session),
                    // After-load hooks of a cursor's documents run without the transaction's
                    // session check: the cursor itself is bound to it.
                    CursorState::Shared(_, shared) => SessionSlot::Shared(crate::session::Bound {
                        shared: shared.clone(),
                        attempt: shared.current_attempt(),
                    }),
                };
                let loaded = crate::repo::lifecycle::hook_mut(
                    repo,
                    &mut slot,
                    &mut doc,
                    HookPoint::AfterLoad,
                    "find",
                )
                .await;
                if let Err(e) = loaded {
                    return Some(Err(e));
                }
            }
            Some(Ok(doc))
        }
    }
}

awaitable!(Find => Vec<M>, "find", super::trace::rows);
session_setter!(Find);

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, crate::Model)]
    #[model(crate = "crate", collection = "lookups")]
    struct Lookup {
        #[serde(rename = "_id")]
        id: ObjectId,
    }

    /// Every lookup in flight is one heap allocation of its future, so its size is memory per
    /// concurrent call. It once held four copies of the driver's `FindOptions` (848 bytes
    /// each) and was 5,432 bytes; the driver's own `find_one` is about 1,440.
    #[tokio::test]
    async fn a_lookup_in_flight_holds_no_copy_of_the_drivers_options() {
        // Made without a server: nothing here is sent.
        let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:1")
            .await
            .unwrap();
        let repo = crate::Db::new(client, "sizes").repo::<Lookup>();
        let options = std::mem::size_of::<mongodb::options::FindOptions>();
        let one = repo.find_by_id(ObjectId::new()).run();
        let all = repo.find(crate::Filter::all()).run();
        for (what, size) in [
            ("find_by_id", std::mem::size_of_val(&one)),
            ("find", std::mem::size_of_val(&all)),
        ] {
            assert!(
                size <= 3 * 1024,
                "{what}'s future is {size} bytes (FindOptions: {options})"
            );
        }
    }
}
