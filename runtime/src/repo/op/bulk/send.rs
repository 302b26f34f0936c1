//! Sending a planned batch: groups in as few commands as the server's limits allow, single
//! writes one by one, and what each reply says about each position.

use mongodb::bson::{Bson, DateTime, Document, RawArrayBuf, RawBsonRef, rawdoc};
use mongodb::options::{ReplaceOptions, UpdateOptions};

use super::BulkWrite;
use super::plan::{Kind, Single};
use crate::db::ServerLimits;
use crate::decode::raw_id;
use crate::error::{BulkOutcome, Error, FailedWrite, Result};
use crate::model::Model;
use crate::raw_fields::encode_with_fields;
use crate::repo::occ::{self, Miss};
use crate::repo::op::bookkeeping::insert_only;
use crate::repo::op::insert::insertable;
use crate::session::{SessionGuard, run_in};

/// A grouped write and its position in the batch.
pub(super) struct Grouped {
    pub(super) index: usize,
    pub(super) item: mongodb::bson::RawDocumentBuf,
    pub(super) id: Option<Bson>,
}

/// What a write (or a group of them) did: counted into the outcome, or failed.
pub(super) struct Progress {
    pub(super) outcome: BulkOutcome,
    pub(super) written: Vec<usize>,
    pub(super) failed: Vec<FailedWrite>,
    /// The positions of the command on its way to the server: the ones whose fate an error
    /// about no one write leaves open.
    pub(super) in_flight: Vec<usize>,
}

impl<'a, M: Model> BulkWrite<'a, M> {
    /// Sends a group of consecutive writes of one kind in as few commands as the server's
    /// limits allow.
    pub(super) async fn send_group(
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
            progress.in_flight.clear();
            progress.in_flight.extend(chunk.iter().map(|w| w.index));
            let reply = run_in!(guard, repo.db.database().run_raw_command(command));
            let reply = reply.map_err(|e| repo.driver_error(e))?;
            progress.in_flight.clear();
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
        // Searched in order: a chunk may hold 100,000 writes, and as many failures.
        let mut failed_positions: Vec<usize> = failures.iter().map(|f| f.index).collect();
        failed_positions.sort_unstable();
        for write in chunk {
            let failed = failed_positions.binary_search(&write.index).is_ok();
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
    pub(super) async fn send_alone(
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
                let field = M::VERSION_FIELD.unwrap_or("version");
                // Made for the version the model claims; again if the write needs another.
                let claimed = expected.or(doc.version()).unwrap_or(0);
                let mut set = [
                    (field, RawBsonRef::Int64(claimed + 1)),
                    ("", RawBsonRef::Null),
                ];
                let mut count = 1;
                if let Some(ts) = M::TIMESTAMPS {
                    set[1] = (ts.updated, RawBsonRef::DateTime(now));
                    count = 2;
                }
                let mut body =
                    encode_with_fields(M::COLLECTION, "a document", &*doc, None, &set[..count])?;
                let id = raw_id(&body).filter(|id| *id != Bson::Null);
                let expected = match (expected, doc.version(), id) {
                    (Some(expected), _, _) => expected,
                    (None, Some(claimed), Some(id)) => {
                        occ::expected_version(repo, guard, &id, claimed, &doc).await?
                    }
                    (None, claimed, None) => claimed.unwrap_or(0),
                    (None, None, Some(_)) => 0,
                };
                if expected != claimed {
                    set[0] = (field, RawBsonRef::Int64(expected + 1));
                    body = encode_with_fields(
                        M::COLLECTION,
                        "a document",
                        &*doc,
                        None,
                        &set[..count],
                    )?;
                }
                let checked = occ::with_version(filter.clone(), field, expected);
                let result = run_in!(guard, repo.raw.replace_one(checked, body)).map_err(failed)?;
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
                        repo.raw
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
pub(super) fn is_per_write(error: &Error) -> bool {
    matches!(
        error,
        Error::VersionConflict { .. }
            | Error::DuplicateKey { .. }
            | Error::WriteFailed { .. }
            | Error::Decode { .. }
    )
}

/// Whether a failed command may have been applied all the same: the connection went before
/// the answer came. A server's refusal, or a server never reached, applied nothing.
pub(super) fn may_have_applied(error: &Error) -> bool {
    use mongodb::error::ErrorKind;
    match error {
        Error::Driver(e) => !matches!(
            e.kind.as_ref(),
            ErrorKind::Command(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::InvalidArgument { .. }
        ),
        _ => false,
    }
}

pub(super) fn add(total: &mut BulkOutcome, more: BulkOutcome) {
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
