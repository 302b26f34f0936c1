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

mod plan;
mod send;

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::DateTime;

use super::{awaitable, session_setter};
use crate::error::{BulkOutcome, Error, FailedWrite, PartialWrite, Result};
use crate::model::Model;
use crate::query::{Filter, IntoFilter, Update};
use crate::repo::Repo;
use crate::session::SessionSlot;
use plan::Planned;
use send::{Grouped, Progress, add, is_per_write, may_have_applied};

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

/// A mixed batch of writes. Created by [`Repo::bulk_write`].
///
/// Runs no hooks. When part of the batch fails the error is [`Error::PartialWrite`]: which
/// positions were applied, which failed and why (a duplicate key, a version conflict, a
/// document over the size limit), and which were never attempted (an ordered batch stops at
/// its first failure). Outside a transaction the applied part stays applied. A batch cut off
/// by a lost connection after part of it was written lists the positions that connection left
/// in doubt ([`PartialWrite::uncertain`]).
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
            in_flight: Vec::new(),
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
                    let sent = self
                        .send_group(&mut guard, group, kind, &limits, &mut progress)
                        .await;
                    if let Err(error) = sent {
                        let in_session = guard.may_be_in_transaction();
                        return Err(self.cut_off(error, progress, total, in_session));
                    }
                }
                Planned::Refused(error) => progress.failed.push(FailedWrite { index, error }),
                Planned::Alone(single) => {
                    progress.in_flight = vec![index];
                    match self.send_alone(&mut guard, index, single, now).await {
                        Ok(outcome) => {
                            add(&mut progress.outcome, outcome);
                            progress.written.push(index);
                        }
                        Err(error) if is_per_write(&error) => {
                            progress.failed.push(FailedWrite { index, error });
                        }
                        Err(error) => {
                            let in_session = guard.may_be_in_transaction();
                            return Err(self.cut_off(error, progress, total, in_session));
                        }
                    }
                    progress.in_flight.clear();
                }
            }
        }
        if progress.failed.is_empty() {
            return Ok(progress.outcome);
        }
        Err(self.partial(progress, total))
    }

    /// The error of a batch cut off by an error about no one write (a lost connection, a
    /// closed session). Before anything was written, or in a session (a transaction's abort
    /// takes the written part with it, and its retry must see the error itself; the driver
    /// does not say whether a caller's own session is in one), that error as it is; otherwise
    /// a report that says what was written before it, which positions it left in doubt, and
    /// which were never sent.
    fn cut_off(
        &self,
        error: Error,
        mut progress: Progress,
        total: usize,
        in_session: bool,
    ) -> Error {
        let nothing_yet = progress.written.is_empty() && progress.failed.is_empty();
        let Some(&first) = progress.in_flight.first() else {
            return error;
        };
        if in_session || nothing_yet {
            return error;
        }
        if !may_have_applied(&error) {
            // Refused as a whole, or never sent: nothing of it was applied.
            progress.in_flight.clear();
        }
        progress.failed.push(FailedWrite {
            index: first,
            error,
        });
        self.partial(progress, total)
    }

    fn partial(&self, mut progress: Progress, total: usize) -> Error {
        progress.failed.sort_by_key(|f| f.index);
        let uncertain = progress.in_flight;
        // Marked rather than searched: a batch may hold 100,000 positions.
        let mut accounted = vec![false; total];
        let failed = progress.failed.iter().map(|f| &f.index);
        for &i in progress.written.iter().chain(failed).chain(&uncertain) {
            if let Some(seen) = accounted.get_mut(i) {
                *seen = true;
            }
        }
        let not_attempted = (0..total).filter(|&i| !accounted[i]).collect();
        Error::PartialWrite(Box::new(PartialWrite {
            collection: M::COLLECTION.to_owned(),
            operation: "bulk_write",
            total,
            written: progress.written,
            failed: progress.failed,
            not_attempted,
            uncertain,
            outcome: progress.outcome,
        }))
    }
}

awaitable!(BulkWrite => BulkOutcome, "bulk_write", crate::repo::op::trace::bulk);
session_setter!(BulkWrite);
