//! `repo.process_in_chunks(filter, chunk_size, handler)`: a large batch, a chunk per
//! transaction, keyset-paged by `_id`, with the items that fail recorded and left out rather
//! than losing their chunk.

use std::future::{Future, IntoFuture};

use futures_util::future::BoxFuture;
use mongodb::bson::{Bson, Document, doc};

use super::{Tx, TxOptions, transaction_loop};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::query::{EncodeProblem, Filter, IntoFilter, Sort};
use crate::repo::Repo;
use crate::retry::TRANSIENT_TRANSACTION_ERROR;

/// What [`Repo::process_in_chunks`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ChunkReport {
    /// Items whose chunk committed with them (handled without error).
    pub processed: u64,
    /// Items left out, in the order they failed, with their ids and errors.
    pub failed: Vec<FailedItem>,
    /// Chunks committed.
    pub chunks: u64,
    /// Extra runs of a chunk: after an item the server rejected was left out, and after a
    /// transient error (a write conflict, a failover) made the transaction run again.
    pub retries: u64,
    /// The `_id` of the last item of the last committed chunk: pass it to
    /// [`ProcessInChunks::resume_after`] to go on from there.
    pub last_id: Option<Bson>,
}

/// An item that [`Repo::process_in_chunks`] left out.
#[derive(Debug)]
#[non_exhaustive]
pub struct FailedItem {
    /// The item's `_id`.
    pub id: Bson,
    /// Why it was left out.
    pub error: Error,
    /// Who rejected it.
    pub rejected_by: RejectedBy,
}

/// Who rejected an item of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectedBy {
    /// The handler returned an error. The chunk went on in the same transaction, so whatever
    /// the handler wrote for this item before returning it is committed with the chunk: reject
    /// an item before writing for it.
    Handler,
    /// A write for the item failed on the server (a duplicate key, a validation rule): the server
    /// aborted the chunk's transaction, and the chunk ran again without the item.
    Server,
}

impl<M: Model + Clone> Repo<M> {
    /// Runs `handler` on every document matching `filter`, `chunk_size` documents at a time, each
    /// chunk in its own transaction (with the scope's retries on transient errors). Documents
    /// are read in `_id` order, each chunk after the last `_id` of the one before (keyset
    /// paging, never `skip`), so a chunk costs the same at the end as at the start.
    ///
    /// The handler gets the chunk's [`Tx`] (write with `tx.repo()`, or any `db.repo()` on the
    /// same task) and the document. An item it rejects (returns `Err`) is recorded and
    /// skipped, and the chunk goes on. An item whose write the server rejects (the server then
    /// aborts the whole transaction) is found (the first operation that failed on the server
    /// belongs to the item being handled), recorded, and the chunk runs again without it. The
    /// returned [`ChunkReport`] counts what was processed, failed and retried; progress is
    /// logged with `tracing` after every chunk, and given to [`ProcessInChunks::on_progress`].
    ///
    /// Call it on a repository outside any transaction: inside one, every chunk would join it.
    /// A chunk runs the handler again on a rerun, so keep side effects that cannot be repeated
    /// out of it. An error that is neither (the chunk's read failing, the deadline) stops the
    /// run; the chunks before it stay committed, and [`ChunkReport::last_id`] from the last
    /// progress report says where to resume.
    pub fn process_in_chunks<H, Fut>(
        &self,
        filter: impl IntoFilter<M>,
        chunk_size: u32,
        handler: H,
    ) -> ProcessInChunks<'_, M, H>
    where
        H: FnMut(Tx, M) -> Fut + Send,
        Fut: Future<Output = Result<()>> + Send,
    {
        ProcessInChunks {
            repo: self,
            filter: filter.into().into_parts(),
            chunk_size: chunk_size.max(1),
            handler,
            resume_after: None,
            options: TxOptions::default(),
            progress: None,
        }
    }
}

/// The callback given the report after every committed chunk.
type Progress<'a> = Box<dyn FnMut(&ChunkReport) + Send + 'a>;

/// A batch run in chunks. Created by [`Repo::process_in_chunks`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct ProcessInChunks<'a, M: Model, H> {
    repo: &'a Repo<M>,
    filter: Result<Document, EncodeProblem>,
    chunk_size: u32,
    handler: H,
    resume_after: Option<Bson>,
    options: TxOptions,
    progress: Option<Progress<'a>>,
}

impl<'a, M, H, Fut> ProcessInChunks<'a, M, H>
where
    M: Model + Clone,
    H: FnMut(Tx, M) -> Fut + Send + 'a,
    Fut: Future<Output = Result<()>> + Send,
{
    /// Starts after the document with this `_id` (the [`ChunkReport::last_id`] of an earlier
    /// run): only documents with a greater `_id` are processed.
    pub fn resume_after(mut self, id: impl Into<Bson>) -> Self {
        self.resume_after = Some(id.into());
        self
    }

    /// The options of every chunk's transaction (concerns, retry policy, maximum commit time).
    pub fn transaction_options(mut self, options: TxOptions) -> Self {
        self.options = options;
        self
    }

    /// Called with the report so far after every committed chunk (for a progress bar, or to
    /// store [`ChunkReport::last_id`] somewhere a restart can find it).
    pub fn on_progress(mut self, progress: impl FnMut(&ChunkReport) + Send + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    async fn run(mut self) -> Result<ChunkReport> {
        let repo = self.repo;
        let db = repo.db().clone();
        let filter = repo.checked_part(self.filter, "the filter")?;
        let mut report = ChunkReport {
            last_id: self.resume_after.take(),
            ..ChunkReport::default()
        };
        loop {
            let page = match &report.last_id {
                Some(last) => doc! { "$and": [filter.clone(), { "_id": { "$gt": last.clone() } }] },
                None => filter.clone(),
            };
            let docs = repo
                .find(Filter::raw(page))
                .sort(Sort::from(doc! { "_id": 1 }))
                .limit(self.chunk_size)
                .await?;
            let Some(last) = docs.last() else {
                return Ok(report);
            };
            let last = repo.id_bson(last, "process_in_chunks")?;
            let ids = docs
                .iter()
                .map(|doc| repo.id_bson(doc, "process_in_chunks"))
                .collect::<Result<Vec<_>>>()?;
            let mut left_out: Vec<usize> = Vec::new();
            loop {
                let mut state = Attempt::default();
                let outcome = run_chunk(
                    &db,
                    &self.options,
                    &docs,
                    &left_out,
                    &mut self.handler,
                    &mut state,
                )
                .await;
                report.retries += u64::from(state.attempt.saturating_sub(1));
                match (outcome, state.culprit) {
                    (Ok(()), _) => {
                        let rejected = state.rejected.len();
                        for (index, error) in state.rejected {
                            report.failed.push(FailedItem {
                                id: ids[index].clone(),
                                error,
                                rejected_by: RejectedBy::Handler,
                            });
                        }
                        report.processed += (docs.len() - left_out.len() - rejected) as u64;
                        break;
                    }
                    (Err(error), Some(index)) => {
                        tracing::debug!(id = %ids[index], %error, "the server rejected an item; running its chunk again without it");
                        left_out.push(index);
                        report.failed.push(FailedItem {
                            id: ids[index].clone(),
                            error,
                            rejected_by: RejectedBy::Server,
                        });
                        report.retries += 1;
                    }
                    (Err(error), None) => return Err(error),
                }
            }
            report.chunks += 1;
            report.last_id = Some(last);
            tracing::info!(
                collection = M::COLLECTION,
                chunks = report.chunks,
                processed = report.processed,
                failed = report.failed.len(),
                retries = report.retries,
                "chunk committed"
            );
            if let Some(progress) = &mut self.progress {
                progress(&report);
            }
        }
    }
}

/// What one run of a chunk found.
#[derive(Default)]
struct Attempt {
    /// The transaction attempt (1, 2 ... after transient errors).
    attempt: u32,
    /// Items the handler rejected, by index in the chunk.
    rejected: Vec<(usize, Error)>,
    /// The item whose write the server rejected, by index in the chunk.
    culprit: Option<usize>,
}

/// Runs one chunk in a transaction. A function (with the scope's loop) so that its future is
/// `Send` for the compiler to see (rust-lang/rust#96865).
async fn run_chunk<M, H, Fut>(
    db: &Db,
    options: &TxOptions,
    docs: &[M],
    left_out: &[usize],
    handler: &mut H,
    state: &mut Attempt,
) -> Result<()>
where
    M: Model + Clone,
    H: FnMut(Tx, M) -> Fut + Send,
    Fut: Future<Output = Result<()>> + Send,
{
    transaction_loop!(db, options, |tx| chunk_attempt(
        tx, docs, left_out, handler, state
    ))
}

/// One attempt of a chunk: every item not left out, in order; stops at the first item the
/// server rejected.
fn chunk_attempt<'b, M, H, Fut>(
    tx: &'b Tx,
    docs: &'b [M],
    left_out: &'b [usize],
    handler: &'b mut H,
    state: &'b mut Attempt,
) -> BoxFuture<'b, Result<()>>
where
    M: Model + Clone,
    H: FnMut(Tx, M) -> Fut + Send,
    Fut: Future<Output = Result<()>> + Send,
{
    Box::pin(async move {
        *state = Attempt {
            attempt: tx.attempt(),
            ..Attempt::default()
        };
        for (index, doc) in docs.iter().enumerate() {
            if left_out.contains(&index) {
                continue;
            }
            let outcome = handler(tx.clone(), doc.clone()).await;
            if let Some(failure) = tx.server_failure() {
                // The server aborted the transaction on this item's write: nothing more of the
                // attempt can commit.
                state.culprit = Some(index);
                return Err(match outcome {
                    Err(error) => error,
                    Ok(()) => {
                        Error::Swallowed(Box::new(Error::from_driver(M::COLLECTION, failure)))
                    }
                });
            }
            match outcome {
                Ok(()) => {}
                Err(error) if error.has_label(TRANSIENT_TRANSACTION_ERROR) => return Err(error),
                Err(error) => state.rejected.push((index, error)),
            }
        }
        Ok(())
    })
}

impl<'a, M, H, Fut> IntoFuture for ProcessInChunks<'a, M, H>
where
    M: Model + Clone,
    H: FnMut(Tx, M) -> Fut + Send + 'a,
    Fut: Future<Output = Result<()>> + Send + 'a,
{
    type Output = Result<ChunkReport>;
    type IntoFuture = BoxFuture<'a, Result<ChunkReport>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
