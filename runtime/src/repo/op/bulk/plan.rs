//! Encoding a batch before anything is sent: which writes go grouped, which alone (checked
//! writes and versioned upserts), and which are refused (over the server's size limit).

use mongodb::bson::{Bson, DateTime, Document, RawBsonRef, RawDocumentBuf, doc};

use super::{BulkWrite, WriteOp};
use crate::db::ServerLimits;
use crate::decode::encode_raw;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::query::Filter;
use crate::raw_fields::encode_with_fields;
use crate::repo::op::bookkeeping::{bookkept, for_insert};
use crate::repo::op::insert::{insertable_with_id, too_large};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    pub(super) fn command(self) -> (&'static str, &'static str) {
        match self {
            Kind::Insert => ("insert", "documents"),
            Kind::Update => ("update", "updates"),
            Kind::Delete => ("delete", "deletes"),
        }
    }
}

/// A write of the batch, encoded and ready to go.
pub(super) enum Planned<M> {
    /// Sent with its neighbours of the same kind; `id` is the `_id` of an insert.
    Grouped {
        kind: Kind,
        item: RawDocumentBuf,
        id: Option<Bson>,
    },
    /// Sent alone, because its answer must be its own.
    Alone(Single<M>),
    /// Never sent (a document over the server's size limit).
    Refused(Error),
}

/// A write sent on its own.
pub(super) enum Single<M> {
    Update {
        filter: Document,
        update: Document,
        insert: Document,
        expected: Option<i64>,
        upsert: bool,
    },
    Replace {
        filter: Document,
        doc: Box<M>,
        expected: Option<i64>,
        upsert: bool,
    },
    Delete {
        filter: Document,
        expected: i64,
    },
}

impl<'a, M: Model> BulkWrite<'a, M> {
    /// Encodes every write first, so a bad value fails the batch before anything is sent.
    pub(super) fn plan(
        &self,
        ops: Vec<WriteOp<M>>,
        limits: &ServerLimits,
        now: DateTime,
    ) -> Result<Vec<Planned<M>>> {
        ops.into_iter()
            .enumerate()
            .map(|(index, op)| self.plan_one(index, op, None, limits, now))
            .collect()
    }

    fn plan_one(
        &self,
        index: usize,
        op: WriteOp<M>,
        expected: Option<i64>,
        limits: &ServerLimits,
        now: DateTime,
    ) -> Result<Planned<M>> {
        let repo = self.repo;
        let filter_of = |filter: Filter<M>| repo.checked_part(filter.into_parts(), "a filter");
        let raw = |item: &Document| {
            RawDocumentBuf::from_document(item).map_err(|e| Error::Encode {
                collection: M::COLLECTION.to_owned(),
                what: format!("the write at position {index}"),
                reason: e.to_string(),
            })
        };
        let sized_raw = |kind, item: RawDocumentBuf, id| -> Result<Planned<M>> {
            let size = item.as_bytes().len();
            if size > limits.max_bson_object_size {
                return Ok(Planned::Refused(too_large::<M>(index, size, limits)));
            }
            Ok(Planned::Grouped { kind, item, id })
        };
        let sized = |kind, item: Document, id| sized_raw(kind, raw(&item)?, id);
        let versioned = M::VERSION_FIELD.is_some();
        Ok(match op {
            WriteOp::Insert(doc) => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "an insert"));
                }
                // The ids of the batch are reported, so they are made here, not by the server.
                let (body, id) = insertable_with_id(&doc, now)?;
                sized_raw(Kind::Insert, body, Some(id))?
            }
            WriteOp::UpdateOne {
                filter,
                update,
                upsert,
            } => {
                let filter = filter_of(filter)?;
                let update = repo.checked_part(update.into_parts(), "an update")?;
                if expected.is_some() || (upsert && versioned) {
                    Planned::Alone(Single::Update {
                        filter,
                        update: bookkept::<M>(update.clone(), now),
                        insert: for_insert::<M>(update, now),
                        expected,
                        upsert,
                    })
                } else {
                    let mut u = bookkept::<M>(update, now);
                    if upsert {
                        u = for_insert::<M>(u, now);
                    }
                    let item = doc! { "q": filter, "u": u, "upsert": upsert, "multi": false };
                    sized(Kind::Update, item, None)?
                }
            }
            WriteOp::UpdateMany { filter, update } => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "an update of many documents"));
                }
                let q = filter_of(filter)?;
                let u = bookkept::<M>(repo.checked_part(update.into_parts(), "an update")?, now);
                sized(Kind::Update, doc! { "q": q, "u": u, "multi": true }, None)?
            }
            WriteOp::ReplaceOne {
                filter,
                doc,
                upsert,
            } => {
                let filter = filter_of(filter)?;
                if versioned {
                    let size = encode_raw(M::COLLECTION, "a document", &doc)?
                        .as_bytes()
                        .len();
                    if size > limits.max_bson_object_size {
                        return Ok(Planned::Refused(too_large::<M>(index, size, limits)));
                    }
                    Planned::Alone(Single::Replace {
                        filter,
                        doc: Box::new(doc),
                        expected,
                        upsert,
                    })
                } else {
                    let updated = M::TIMESTAMPS.map(|ts| (ts.updated, RawBsonRef::DateTime(now)));
                    let set = updated.as_slice();
                    let body = encode_with_fields(M::COLLECTION, "a document", &doc, None, set)?;
                    let mut item = RawDocumentBuf::new();
                    item.append("q", raw(&filter)?);
                    item.append("u", body);
                    item.append("upsert", upsert);
                    item.append("multi", false);
                    sized_raw(Kind::Update, item, None)?
                }
            }
            WriteOp::DeleteOne(filter) => {
                let filter = filter_of(filter)?;
                match expected {
                    Some(expected) if versioned => {
                        Planned::Alone(Single::Delete { filter, expected })
                    }
                    _ => sized(Kind::Delete, doc! { "q": filter, "limit": 1 }, None)?,
                }
            }
            WriteOp::DeleteMany(filter) => {
                if expected.is_some() {
                    return Err(not_checkable::<M>(index, "a delete of many documents"));
                }
                let q = filter_of(filter)?;
                sized(Kind::Delete, doc! { "q": q, "limit": 0 }, None)?
            }
            WriteOp::Expect { version, op } => {
                if !versioned {
                    return Err(Error::NotVersioned {
                        model: crate::hooks::model_name::<M>(),
                        operation: "WriteOp::expect_version",
                    });
                }
                self.plan_one(index, *op, Some(version), limits, now)?
            }
        })
    }
}

fn not_checkable<M: Model>(index: usize, what: &str) -> Error {
    Error::Encode {
        collection: M::COLLECTION.to_owned(),
        what: format!("the write at position {index}"),
        reason: format!(
            "`expect_version` checks one document; {what} cannot carry it (use UpdateOne, \
             ReplaceOne or DeleteOne)"
        ),
    }
}
