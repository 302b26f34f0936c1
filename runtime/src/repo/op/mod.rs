//! One operation per file, each a builder that runs when awaited, like the driver's `action`
//! folder: `users.find(filter).limit(10).await`.

mod aggregate;
mod apply_if_current;
pub(crate) mod bookkeeping;
pub(crate) mod bulk;
mod count;
pub(crate) mod delete;
mod distinct;
mod find;
mod indexes;
pub(crate) mod insert;
mod lock;
mod modify;
mod page;
mod populate;
mod project;
pub(crate) mod replace;
pub(crate) mod trace;
pub(crate) mod update;

pub use aggregate::{Acc, Aggregate, AggregateAs, RefersTo, Summable};
pub use apply_if_current::{Applied, ApplyIfCurrent};
pub use bulk::{BulkWrite, WriteOp};
pub use count::{Count, Exists};
pub use delete::{Delete, DeleteMany};
pub use distinct::Distinct;
pub use find::{Find, FindOne};
pub use indexes::{IndexReport, SyncIndexes};
pub use insert::{Insert, InsertMany};
pub use lock::{FindForUpdate, FindOneForUpdate, LOCK_FIELD};
pub use modify::Modify;
pub use page::{FindPage, Page, PageCursor};
pub use populate::{FindOnePopulated, FindPopulated, FindPopulatedThen};
pub use project::FindProjected;
pub use replace::{Replace, Save};
pub use update::{FindOneAndUpdate, UpdateMany, UpdateOne, UpdateOutcome};

// Every operation is its own type, and `IntoFuture` cannot be implemented once for all of them
// (a blanket impl of a foreign trait), so these two macros write the same few lines per type.

/// Implements `IntoFuture` for an operation with an `async fn run(self)` and a `repo` field:
/// the operation runs in its `tracing` span (see [`trace`]), named `$name`, which records the
/// outcome with `$record` (a function of [`trace`]; nothing but success by default).
macro_rules! awaitable {
    ($op:ident => $out:ty, $name:literal) => {
        $crate::repo::op::awaitable!($op => $out, $name, $crate::repo::op::trace::nothing);
    };
    ($op:ident => $out:ty, $name:literal, $record:path) => {
        impl<'a, M: Model> IntoFuture for $op<'a, M> {
            type Output = Result<$out>;
            type IntoFuture = BoxFuture<'a, Result<$out>>;

            fn into_future(self) -> Self::IntoFuture {
                $crate::repo::op::trace::traced(
                    self.repo.db().name(),
                    M::COLLECTION,
                    $name,
                    $record,
                    self.run(),
                )
            }
        }
    };
}
pub(crate) use awaitable;

/// Adds `.session(&mut session)` to an operation with a `session: SessionSlot<'a>` field.
macro_rules! session_setter {
    ($op:ident) => {
        impl<'a, M: Model> $op<'a, M> {
            /// Runs the operation in `session` (for example inside a transaction you manage).
            pub fn session(mut self, session: &'a mut ClientSession) -> Self {
                self.session = SessionSlot::Borrowed(session);
                self
            }
        }
    };
}
pub(crate) use session_setter;
