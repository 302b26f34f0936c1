//! What a replica keeps across restarts, in its state collection: tombstones of the documents it
//! deleted and the events it holds back, written before they matter and read back by a new
//! [`Replica`] on its first `apply`.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, RawDocumentBuf, doc};

use super::{Replica, id_key};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::watch::Change;
use crate::watch::change::bson_to_i64;
use crate::watch::event::Event;

impl<M: Model> Replica<M> {
    /// Records a held-back event in the state collection.
    pub(super) async fn record_held(
        &self,
        id: &Bson,
        version: i64,
        change: &Change<M>,
    ) -> Result<()> {
        self.state
            .update_one(
                doc! { "_id": { "held": id.clone(), "version": version } },
                doc! { "$set": {
                    "event": Document::try_from(change.raw_event())
                        .map_err(|e| self.encode_error(&e.to_string()))?,
                    "heldAt": DateTime::now(),
                } },
            )
            .upsert(true)
            .await
            .map_err(|e| self.state_error(e))?;
        Ok(())
    }

    /// Writes the tombstone of a document about to be deleted.
    pub(super) async fn entomb(&self, id: &Bson, order: Option<i64>) -> Result<()> {
        self.state
            .update_one(
                doc! { "_id": { "deleted": id.clone() } },
                doc! { "$set": { "version": order, "deletedAt": DateTime::now() } },
            )
            .upsert(true)
            .await
            .map_err(|e| self.state_error(e))?;
        Ok(())
    }

    /// Remembers a deleted document (its tombstone is already written); whatever was held for
    /// it is stale now.
    pub(super) async fn bury(&mut self, key: Vec<u8>, id: &Bson) -> Result<()> {
        self.state
            .delete_many(doc! { "_id.held": id.clone() })
            .await
            .map_err(|e| self.state_error(e))?;
        self.held.remove(&key);
        self.deleted.insert(key);
        Ok(())
    }

    /// Forgets a held event that was written or found stale.
    pub(super) async fn unhold(&self, id: &Bson, version: i64) -> Result<()> {
        self.state
            .delete_one(doc! { "_id": { "held": id.clone(), "version": version } })
            .await
            .map_err(|e| self.state_error(e))?;
        Ok(())
    }

    /// Reads the events an earlier `Replica` of this copy held back, and writes those that
    /// have become due meanwhile (their predecessor was written just before a crash).
    pub(super) async fn load(&mut self) -> Result<()> {
        let mut found = self
            .state
            .find(doc! { "_id.held": { "$exists": true } })
            .await
            .map_err(|e| self.state_error(e))?;
        let mut ids = Vec::new();
        while let Some(stored) = found.try_next().await.map_err(|e| self.state_error(e))? {
            let state = self.state.name().to_owned();
            let decode = |field: &str, reason: String| Error::Decode {
                collection: state.clone(),
                id: stored.get("_id").cloned().map(Into::into),
                field: field.to_owned(),
                reason,
            };
            let version = stored
                .get_document("_id")
                .ok()
                .and_then(|key| key.get("version"))
                .and_then(bson_to_i64)
                .ok_or_else(|| decode("_id.version", "missing or not an integer".to_owned()))?;
            let event = stored
                .get_document("event")
                .map_err(|e| decode("event", e.to_string()))?;
            let raw =
                RawDocumentBuf::from_document(event).map_err(|e| decode("event", e.to_string()))?;
            let change = Event::parse(&state, raw)?.into_change::<M>(M::COLLECTION)?;
            let Some(id) = change.id() else {
                continue;
            };
            let id = self.id_bson(id)?;
            let key = id_key(&id);
            self.held
                .entry(key.clone())
                .or_default()
                .insert(version, change);
            ids.push((key, id));
        }
        self.loaded = true;
        for (key, id) in ids {
            self.release(&key, &id).await?;
        }
        Ok(())
    }

    /// Whether the copy deleted this document (a tombstone from this or an earlier run).
    pub(super) async fn is_buried(&self, id: &Bson) -> Result<bool> {
        let found = self
            .state
            .find_one(doc! { "_id": { "deleted": id.clone() } })
            .await
            .map_err(|e| self.state_error(e))?;
        Ok(found.is_some())
    }

    pub(super) fn state_error(&self, error: mongodb::error::Error) -> Error {
        Error::from_driver(self.state.name(), error)
    }

    pub(super) fn encode_error(&self, reason: &str) -> Error {
        Error::Encode {
            collection: self.state.name().to_owned(),
            what: "a held-back event".to_owned(),
            reason: reason.to_owned(),
        }
    }
}
