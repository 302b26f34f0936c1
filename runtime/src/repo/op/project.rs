//! `.project::<Out>()`: matching documents read into a projection struct ("lean" reads): the
//! server sends only the projection's fields, and only they are decoded.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use mongodb::ClientSession;

use super::find::{CursorState, Find, advance, current};
use crate::decode::decode;
use crate::error::Result;
use crate::model::Model;
use crate::projection::Projection;
use crate::repo::Repo;
use crate::session::SessionSlot;

/// Every matching document, read into the projection `P`. Created by [`Find::project`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindProjected<'a, M: Model, P> {
    find: Find<'a, M>,
    marker: PhantomData<fn() -> P>,
}

impl<'a, M: Model> Find<'a, M> {
    /// Reads only the fields of projection `P` (a struct with `#[derive(Projection)]` and
    /// `#[projection(of = M)]`) and decodes each document into it, without building `M`. The
    /// model's after-load hooks do not run: there is no model value to run them on.
    pub fn project<P: Projection<Model = M>>(mut self) -> FindProjected<'a, M, P> {
        self.options.projection = Some(P::projection());
        FindProjected {
            find: self,
            marker: PhantomData,
        }
    }
}

impl<'a, M: Model, P: Projection<Model = M>> FindProjected<'a, M, P> {
    /// Runs the query in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.find.session = SessionSlot::Borrowed(session);
        self
    }

    /// Streams the results instead of collecting them.
    pub async fn stream(self) -> Result<BoxStream<'a, Result<P>>> {
        let repo = self.find.repo;
        let state = self.find.open().await?;
        Ok(stream::unfold(state, move |mut state| async move {
            let item = next_projected::<M, P>(repo, &mut state).await?;
            Some((item, state))
        })
        .boxed())
    }

    async fn run(self) -> Result<Vec<P>> {
        let mut results = self.stream().await?;
        let mut all = Vec::new();
        while let Some(item) = results.next().await {
            all.push(item?);
        }
        Ok(all)
    }
}

async fn next_projected<M: Model, P: Projection>(
    repo: &Repo<M>,
    state: &mut CursorState<'_>,
) -> Option<Result<P>> {
    match advance(repo, state).await? {
        Err(e) => Some(Err(e)),
        Ok(()) => Some(decode::<P>(M::COLLECTION, current(state))),
    }
}

impl<'a, M: Model, P: Projection<Model = M>> IntoFuture for FindProjected<'a, M, P> {
    type Output = Result<Vec<P>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.find.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "find_projected",
            super::trace::rows,
            self.run(),
        )
    }
}
