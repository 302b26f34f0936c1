//! Writing a due event to the copy: conditional on the copy's version, so that a concurrent
//! writer shows up as no match and the decision is taken again.

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::options::FindOneOptions;

use super::{RACE_ATTEMPTS, Replica, Step, decide};
use crate::error::{Error, Result, server_code};
use crate::model::Model;
use crate::watch::change::bson_to_i64;
use crate::watch::{Change, ChangeKind};

impl<M: Model> Replica<M> {
    /// Decides and, when due, writes. Conditional writes (filtered on the expected version)
    /// make a concurrent writer visible as no match, and the decision is taken again.
    pub(super) async fn try_apply(
        &self,
        change: &Change<M>,
        id: &Bson,
        order: Option<i64>,
    ) -> Result<Step> {
        for _ in 0..RACE_ATTEMPTS {
            let local = self.local_version(id).await?;
            // A document the copy lacks may have been deleted by an earlier run: its late or
            // repeated events are stale (a tombstone is only looked up here, where it matters).
            if local.is_none() && self.is_buried(id).await? {
                return Ok(Step::Buried);
            }
            let step = decide(&change.kind, local, order);
            if !matches!(step, Step::Write) {
                return Ok(step);
            }
            if self.write(change, id, local, order).await? {
                return Ok(Step::Write);
            }
        }
        Ok(Step::Hold)
    }

    /// Writes one due event; `false` when the copy changed under it.
    async fn write(
        &self,
        change: &Change<M>,
        id: &Bson,
        local: Option<i64>,
        order: Option<i64>,
    ) -> Result<bool> {
        let field = M::VERSION_FIELD.unwrap_or("version");
        let docs = self.target.collection();
        let raw = docs.clone_with_type::<RawDocumentBuf>();
        let at_local = match local {
            Some(version) => doc! { "_id": id.clone(), field: version },
            None => doc! { "_id": id.clone() },
        };
        let driver = |e| Error::from_driver(M::COLLECTION, e);
        match &change.kind {
            ChangeKind::Insert { .. } if local.is_none() => {
                let document = self.full_document(change, id)?;
                match raw.insert_one(document).await {
                    Ok(_) => Ok(true),
                    // Inserted by a concurrent applier: decide again.
                    Err(e) if server_code(&e) == Some(11000) => Ok(false),
                    Err(e) => Err(driver(e)),
                }
            }
            ChangeKind::Insert { .. } | ChangeKind::Replace { .. } => {
                let document = self.full_document(change, id)?;
                let result = raw.replace_one(at_local, document).await.map_err(driver)?;
                Ok(result.matched_count == 1)
            }
            ChangeKind::Update { description, .. } => {
                for (path, len) in &description.truncated_arrays {
                    docs.update_one(
                        at_local.clone(),
                        doc! { "$push": { path: { "$each": [], "$slice": i64::from(*len) } } },
                    )
                    .await
                    .map_err(driver)?;
                }
                let mut update = Document::new();
                if !description.updated_fields.is_empty() {
                    update.insert("$set", description.updated_fields.clone());
                }
                if !description.removed_fields.is_empty() {
                    let removed: Document = description
                        .removed_fields
                        .iter()
                        .map(|path| (path.clone(), Bson::String(String::new())))
                        .collect();
                    update.insert("$unset", removed);
                }
                if update.is_empty() {
                    return Ok(true);
                }
                let result = docs.update_one(at_local, update).await.map_err(driver)?;
                Ok(result.matched_count == 1)
            }
            ChangeKind::Delete { .. } => {
                // The tombstone first: should the process stop between the two writes, the
                // document is still there and the event (its token not recorded) comes again.
                // A tombstone is only consulted when the copy lacks the document, so one
                // written ahead of a delete that then waits changes nothing.
                self.entomb(id, order).await?;
                let filter = match order {
                    Some(_) => at_local,
                    None => doc! { "_id": id.clone() },
                };
                let result = docs.delete_one(filter).await.map_err(driver)?;
                Ok(result.deleted_count == 1 || order.is_none())
            }
            _ => Ok(true),
        }
    }

    /// The source's bytes of the document an insert or replace carries.
    fn full_document(&self, change: &Change<M>, id: &Bson) -> Result<RawDocumentBuf> {
        match change.raw_event().get_document("fullDocument") {
            Ok(document) => Ok(document.to_raw_document_buf()),
            Err(e) => Err(Error::Decode {
                collection: M::COLLECTION.to_owned(),
                id: Some(id.clone().into()),
                field: "fullDocument".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The copy's version of the document; `None` when the copy does not have it.
    pub(super) async fn local_version(&self, id: &Bson) -> Result<Option<i64>> {
        let field = M::VERSION_FIELD.unwrap_or("version");
        let mut options = FindOneOptions::default();
        options.projection = Some(doc! { field: 1 });
        let found = self
            .target
            .collection()
            .find_one(doc! { "_id": id.clone() })
            .with_options(options)
            .await
            .map_err(|e| Error::from_driver(M::COLLECTION, e))?;
        Ok(found.map(|doc| doc.get(field).and_then(bson_to_i64).unwrap_or(0)))
    }
}
