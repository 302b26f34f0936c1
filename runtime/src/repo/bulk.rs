//! Mixed batches of writes, sent as the server's `insert`, `update` and `delete` commands.
//!
//! The driver's client-level bulk write needs MongoDB 8.0; grouping consecutive operations of one
//! kind into a single command works on every server and keeps the order of the batch.

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use super::Repo;
use super::read::{awaitable, session_setter};
use crate::decode::encode;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::query::{Filter, IntoFilter, Update};
use crate::session::{SessionSlot, run_in};

/// One write of a [`Repo::bulk_write`] batch.
#[derive(Debug)]
pub enum WriteOp<M> {
    /// Insert a document (an `_id` is generated when it has none).
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
    /// Replace the first match with a document.
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
}

/// What a bulk write did, summed over the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkOutcome {
    /// Documents inserted.
    pub inserted: u64,
    /// Documents matched by updates and replacements.
    pub matched: u64,
    /// Documents changed by updates and replacements.
    pub modified: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// `(position in the batch, _id)` of every inserted or upserted document.
    pub ids: Vec<(usize, Bson)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Kind::Insert => ("insert", "documents"),
            Kind::Update => ("update", "updates"),
            Kind::Delete => ("delete", "deletes"),
        }
    }
}

/// A mixed batch of writes. Created by [`Repo::bulk_write`].
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
            session: SessionSlot::from_shared(repo.session.as_ref()),
            repo,
            ops,
            ordered: true,
        }
    }

    /// `false` lets the server go on after a failing write within one command.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Encodes every operation first, so a bad value fails the batch before anything is sent.
    fn encode_all(&self, ops: Vec<WriteOp<M>>) -> Result<Vec<(Kind, Document, Option<Bson>)>> {
        let repo = self.repo;
        let now = DateTime::now();
        let problem = |p| repo.encode_problem(p);
        ops.into_iter()
            .map(|op| {
                Ok(match op {
                    WriteOp::Insert(doc) => {
                        let mut body = super::write::insertable(&doc, now)?;
                        // The ids of the batch are reported, so they are made here, not by the server.
                        let id = body
                            .get("_id")
                            .cloned()
                            .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
                        body.insert("_id", id.clone());
                        (Kind::Insert, body, Some(id))
                    }
                    WriteOp::UpdateOne {
                        filter,
                        update,
                        upsert,
                    } => {
                        let u =
                            super::write::bookkept::<M>(update.into_parts().map_err(problem)?, now);
                        let q = filter.into_parts().map_err(problem)?;
                        (
                            Kind::Update,
                            doc! { "q": q, "u": u, "upsert": upsert, "multi": false },
                            None,
                        )
                    }
                    WriteOp::UpdateMany { filter, update } => {
                        let u =
                            super::write::bookkept::<M>(update.into_parts().map_err(problem)?, now);
                        let q = filter.into_parts().map_err(problem)?;
                        (Kind::Update, doc! { "q": q, "u": u, "multi": true }, None)
                    }
                    WriteOp::ReplaceOne {
                        filter,
                        doc,
                        upsert,
                    } => {
                        let mut body = encode(M::COLLECTION, &doc)?;
                        if matches!(body.get("_id"), Some(Bson::Null)) {
                            body.remove("_id");
                        }
                        if let Some(ts) = M::TIMESTAMPS {
                            body.insert(ts.updated, now);
                        }
                        let q = filter.into_parts().map_err(problem)?;
                        (
                            Kind::Update,
                            doc! { "q": q, "u": body, "upsert": upsert, "multi": false },
                            None,
                        )
                    }
                    WriteOp::DeleteOne(filter) => {
                        let q = filter.into_parts().map_err(problem)?;
                        (Kind::Delete, doc! { "q": q, "limit": 1 }, None)
                    }
                    WriteOp::DeleteMany(filter) => {
                        let q = filter.into_parts().map_err(problem)?;
                        (Kind::Delete, doc! { "q": q, "limit": 0 }, None)
                    }
                })
            })
            .collect()
    }

    async fn run(mut self) -> Result<BulkOutcome> {
        let ops = std::mem::take(&mut self.ops);
        let encoded = self.encode_all(ops)?;
        let repo = self.repo;
        let mut outcome = BulkOutcome::default();
        let mut guard = self.session.lock().await;
        let mut start = 0;
        while start < encoded.len() {
            let kind = encoded[start].0;
            let end = encoded[start..]
                .iter()
                .position(|(k, _, _)| *k != kind)
                .map_or(encoded.len(), |n| start + n);
            let (name, list) = kind.command();
            let items: Vec<Document> = encoded[start..end]
                .iter()
                .map(|(_, d, _)| d.clone())
                .collect();
            let command = doc! { name: M::COLLECTION, list: items, "ordered": self.ordered };
            let reply = run_in!(guard, repo.db.database().run_command(command));
            let reply = reply.map_err(|e| repo.driver_error(e))?;
            let n = count(&reply, "n");
            match kind {
                Kind::Insert => {
                    outcome.inserted += n;
                    let failed: Vec<usize> = write_errors(&reply).map(|(i, _, _)| i).collect();
                    for (offset, (_, _, id)) in encoded[start..end].iter().enumerate() {
                        if let (Some(id), false) = (id, failed.contains(&offset)) {
                            outcome.ids.push((start + offset, id.clone()));
                        }
                    }
                }
                Kind::Update => {
                    let upserted = upserted(&reply);
                    outcome.matched += n.saturating_sub(upserted.len() as u64);
                    outcome.modified += count(&reply, "nModified");
                    outcome
                        .ids
                        .extend(upserted.into_iter().map(|(i, id)| (start + i, id)));
                }
                Kind::Delete => outcome.deleted += n,
            }
            if let Some((index, code, message)) = write_errors(&reply).next() {
                let collection = M::COLLECTION.to_owned();
                return Err(if code == 11000 {
                    let (index, key) = crate::error::parse_duplicate_key(&message);
                    Error::DuplicateKey {
                        collection,
                        index,
                        key,
                    }
                } else {
                    Error::WriteFailed {
                        collection,
                        index: start + index,
                        code,
                        message,
                    }
                });
            }
            start = end;
        }
        Ok(outcome)
    }
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

awaitable!(BulkWrite => BulkOutcome);
session_setter!(BulkWrite);

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

    /// `DeleteOne`.
    pub fn delete_one(filter: impl IntoFilter<M>) -> Self {
        WriteOp::DeleteOne(filter.into())
    }
}
