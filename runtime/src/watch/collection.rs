//! Collection streams: [`Repo::watch`] and its builder [`Watch`], the typed
//! [`ChangeStream`] it opens, and [`Repo::enable_pre_and_post_images`], which the
//! full-document modes of a collection's streams need.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use mongodb::bson::{Document, RawDocumentBuf, Timestamp, doc};

use super::event::Event;
use super::spec::{Spec, common_setters};
use super::stream::{EventStream, Target, stream_error};
use super::{
    Change, Consumer, FullDocumentBeforeChangeType, FullDocumentType, Operation, ResumeToken,
    ResumeTokenStore,
};
use crate::error::{Error, Result, server_code};
use crate::model::Model;
use crate::query::IntoFilter;
use crate::repo::Repo;

/// The server's code for "namespace not found".
const NAMESPACE_NOT_FOUND: i32 = 26;

/// A subscription to the changes of model `M`'s collection. Created by [`Repo::watch`]; opens
/// when awaited.
///
/// A change stream never runs inside a transaction (the server does not allow it), so a
/// repository bound to a transaction watches outside it: the stream sees committed changes only.
#[must_use = "a subscription does nothing until it is awaited"]
pub struct Watch<'a, M: Model> {
    repo: &'a Repo<M>,
    spec: Spec,
}

impl<M: Model> Repo<M> {
    /// Subscribes to the changes of this collection: await the returned [`Watch`] for a
    /// [`ChangeStream`], or make it a [`Consumer`] that survives restarts.
    pub fn watch(&self) -> Watch<'_, M> {
        Watch {
            repo: self,
            spec: Spec::default(),
        }
    }

    /// Makes the collection record pre- and post-images (MongoDB 6.0 and later), so that
    /// streams can ask for the document before a change
    /// ([`Watch::full_document_before_change`]) and for the exact document after an update
    /// ([`FullDocumentType::WhenAvailable`] / [`FullDocumentType::Required`]). Creates the
    /// collection when it does not exist yet. Idempotent.
    pub async fn enable_pre_and_post_images(&self) -> Result<()> {
        let database = self.db().database();
        let modified = database
            .run_command(doc! {
                "collMod": M::COLLECTION,
                "changeStreamPreAndPostImages": { "enabled": true },
            })
            .await;
        match modified {
            Ok(_) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => {
                let created = database
                    .run_command(doc! {
                        "create": M::COLLECTION,
                        "changeStreamPreAndPostImages": { "enabled": true },
                    })
                    .await;
                match created {
                    Ok(_) => Ok(()),
                    // Created by someone else in between: set the option on theirs.
                    Err(e) if server_code(&e) == Some(48) => {
                        Box::pin(self.enable_pre_and_post_images()).await
                    }
                    Err(e) => Err(Error::from_driver(M::COLLECTION, e)),
                }
            }
            Err(e) => Err(Error::from_driver(M::COLLECTION, e)),
        }
    }
}

impl<'a, M: Model> Watch<'a, M> {
    common_setters!();

    /// Only events whose document matches `filter` (typed paths of the model). Inserts and
    /// replaces are matched on their new document, updates on the full document (so set
    /// [`Watch::full_document`], or no update passes), deletes on the document before (so
    /// ask for pre-images, or no delete passes).
    pub fn filter(mut self, filter: impl IntoFilter<M>) -> Self {
        self.spec.filter = Some(filter.into().into_parts());
        self
    }

    /// Turns the subscription into a resumable consumer named `subscription` whose progress is
    /// kept in `store`.
    pub fn consumer<S: ResumeTokenStore>(
        self,
        subscription: impl Into<String>,
        store: S,
    ) -> Consumer<M, S> {
        Consumer::new(self.repo.clone(), self.spec, subscription.into(), store)
    }

    async fn run(self) -> Result<ChangeStream<M>> {
        let target = collection_target(self.repo);
        let events = EventStream::open(&target, &self.spec, M::COLLECTION, None)
            .await
            .map_err(|e| e.into_error(M::COLLECTION))?;
        Ok(ChangeStream {
            events,
            marker: PhantomData,
        })
    }
}

pub(crate) fn collection_target<M: Model>(repo: &Repo<M>) -> Target {
    Target::Collection(repo.collection().clone_with_type::<RawDocumentBuf>())
}

impl<'a, M: Model> IntoFuture for Watch<'a, M> {
    type Output = Result<ChangeStream<M>>;
    type IntoFuture = BoxFuture<'a, Result<ChangeStream<M>>>;

    fn into_future(self) -> Self::IntoFuture {
        crate::repo::trace::traced(
            self.repo.db().name(),
            M::COLLECTION,
            "watch",
            crate::repo::trace::nothing,
            self.run(),
        )
    }
}

/// An open change stream of model `M`: a `Stream` of `Result<Change<M>>`.
///
/// It holds at most one batch of events in memory. Resumable errors (a lost connection, a new
/// primary) are ridden out by the driver, which resumes once after each; other errors, and a
/// document that does not decode ([`Error::Decode`]), are yielded as items and the stream goes
/// on. Dropping it closes the server-side cursor.
pub struct ChangeStream<M: Model> {
    events: EventStream,
    marker: PhantomData<fn() -> M>,
}

impl<M: Model> ChangeStream<M> {
    /// Waits for at most one round trip: the next event, or `None` when the server's batch came
    /// back empty (then [`ChangeStream::resume_token`] has moved on anyway).
    pub async fn next_if_any(&mut self) -> Result<Option<Change<M>>> {
        match self.events.next_if_any().await {
            Ok(Some(raw)) => Event::parse(M::COLLECTION, raw)
                .and_then(|event| event.into_change::<M>(M::COLLECTION))
                .map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(stream_error(M::COLLECTION, e)),
        }
    }

    /// The token to resume after everything returned so far; it advances on empty batches too,
    /// so storing it keeps a quiet subscription's position recent.
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.events.resume_token()
    }

    /// Whether more events can come (false after an invalidate event).
    pub fn is_alive(&self) -> bool {
        self.events.is_alive()
    }
}

impl<M: Model> Stream for ChangeStream<M> {
    type Item = Result<Change<M>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.events
            .poll_event(cx)
            .map(|item| item.map(|event| event.and_then(|e| e.into_change::<M>(M::COLLECTION))))
    }
}

impl<M: Model> std::fmt::Debug for ChangeStream<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("collection", &M::COLLECTION)
            .field("alive", &self.events.is_alive())
            .finish()
    }
}
