//! What a consumer calls for each event: the [`Handler`] trait, implemented for async
//! closures and for [`Replica`].

use std::future::Future;

use futures_util::TryFutureExt;
use futures_util::future::BoxFuture;

use crate::model::Model;
use crate::watch::{Change, Replica};

/// An error a handler returns: anything that converts into a boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`Consumer`](super::Consumer) calls for each event.
///
/// Implemented for closures `FnMut(Change<M>) -> impl Future<Output = Result<(), E>>` whose
/// future owns what it uses (clone shared state into it: `move |change| { let db = db.clone();
/// async move { ... } }`), with `E` any error that converts into [`BoxError`], and for [`Replica`] (also
/// `&mut Replica`, to look at it after the run), which applies each event to its copy.
pub trait Handler<M: Model>: Send {
    /// Handles one event. An error stops the run; the event is delivered again next time.
    //
    // A boxed future rather than `impl Future`: with an opaque type the compiler has to prove
    // the implementation's bounds for every lifetime when it checks that a run is `Send`, which
    // fails for `E = Box<dyn Error>` (rust-lang/rust#64552 and friends).
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>>;
}

impl<M, F, Fut, E> Handler<M> for F
where
    M: Model,
    F: FnMut(Change<M>) -> Fut + Send,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self(change).map_err(Into::into))
    }
}

impl<M: Model> Handler<M> for Replica<M> {
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.apply(change).await?;
            Ok(())
        })
    }
}

impl<M: Model> Handler<M> for &mut Replica<M> {
    fn handle(&mut self, change: Change<M>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.apply(change).await?;
            Ok(())
        })
    }
}
