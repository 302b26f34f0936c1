//! Where a consumer keeps its position: a resume token per subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use mongodb::Collection;
use mongodb::bson::{self, Bson, DateTime, Document, doc};

use super::ResumeToken;
use crate::db::Db;
use crate::error::{Error, Result};

/// Durable progress of change-stream consumers: the resume token of the last event each
/// subscription has finished with.
///
/// A [`Consumer`](super::Consumer) saves a token only after its handler succeeded, and loads it
/// when it starts, so what a store keeps decides what survives a restart: [`MemoryTokenStore`]
/// survives a restart of the consumer inside one process (tests, supervisors), and
/// [`MongoTokenStore`] a restart of the process. Implement it to keep tokens elsewhere (in the
/// same transaction as the handler's own writes, for example).
// ANCHOR: store-trait
#[async_trait]
pub trait ResumeTokenStore: Send + Sync {
    /// The last saved token of `subscription`, if any.
    async fn load(&self, subscription: &str) -> Result<Option<ResumeToken>>;
    /// Records that `subscription` has finished with everything up to `token`.
    async fn save(&self, subscription: &str, token: &ResumeToken) -> Result<()>;
    /// Forgets `subscription`'s position: its next run starts from the present.
    async fn clear(&self, subscription: &str) -> Result<()>;
    /// Where the tokens are kept, for error messages ([`Error::TokenStore`]): a collection
    /// name, a file, ... By default the store's type name.
    fn describe(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }
}
// ANCHOR_END: store-trait

#[async_trait]
impl<S: ResumeTokenStore + ?Sized> ResumeTokenStore for Arc<S> {
    async fn load(&self, subscription: &str) -> Result<Option<ResumeToken>> {
        (**self).load(subscription).await
    }

    async fn save(&self, subscription: &str, token: &ResumeToken) -> Result<()> {
        (**self).save(subscription, token).await
    }

    async fn clear(&self, subscription: &str) -> Result<()> {
        (**self).clear(subscription).await
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Tokens kept in memory. Clones share the same map, so a consumer started again with a clone
/// continues where the last one stopped; nothing survives the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryTokenStore {
    tokens: Arc<Mutex<HashMap<String, ResumeToken>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, ResumeToken>) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut tokens)
    }
}

#[async_trait]
impl ResumeTokenStore for MemoryTokenStore {
    async fn load(&self, subscription: &str) -> Result<Option<ResumeToken>> {
        Ok(self.with(|tokens| tokens.get(subscription).cloned()))
    }

    async fn save(&self, subscription: &str, token: &ResumeToken) -> Result<()> {
        self.with(|tokens| tokens.insert(subscription.to_owned(), token.clone()));
        Ok(())
    }

    async fn clear(&self, subscription: &str) -> Result<()> {
        self.with(|tokens| tokens.remove(subscription));
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

/// Tokens kept in a MongoDB collection, one document per subscription:
/// `{ _id: <subscription>, token: <resume token>, savedAt: <date> }`.
#[derive(Debug, Clone)]
pub struct MongoTokenStore {
    collection: Collection<Document>,
}

impl MongoTokenStore {
    /// The default collection name.
    pub const DEFAULT_COLLECTION: &'static str = "mongrove_resume_tokens";

    /// Tokens in the collection `mongrove_resume_tokens` of `db`.
    pub fn new(db: &Db) -> Self {
        Self::in_collection(db.database().collection(Self::DEFAULT_COLLECTION))
    }

    /// Tokens in a collection of your choice.
    pub fn in_collection(collection: Collection<Document>) -> Self {
        MongoTokenStore { collection }
    }

    /// The collection the tokens are kept in.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    fn error(&self, error: mongodb::error::Error) -> Error {
        Error::from_driver(self.collection.name(), error)
    }
}

#[async_trait]
impl ResumeTokenStore for MongoTokenStore {
    async fn load(&self, subscription: &str) -> Result<Option<ResumeToken>> {
        let found = self
            .collection
            .find_one(doc! { "_id": subscription })
            .await
            .map_err(|e| self.error(e))?;
        let Some(stored) = found else {
            return Ok(None);
        };
        let decode_error = |reason: String| Error::Decode {
            collection: self.collection.name().to_owned(),
            id: Some(Bson::String(subscription.to_owned()).into()),
            field: "token".to_owned(),
            reason,
        };
        let token = stored
            .get("token")
            .cloned()
            .ok_or_else(|| decode_error("missing field `token`".to_owned()))?;
        bson::from_bson(token)
            .map(Some)
            .map_err(|e| decode_error(e.to_string()))
    }

    async fn save(&self, subscription: &str, token: &ResumeToken) -> Result<()> {
        let token = bson::to_bson(token).map_err(|e| Error::Encode {
            collection: self.collection.name().to_owned(),
            what: "the resume token".to_owned(),
            reason: e.to_string(),
        })?;
        self.collection
            .update_one(
                doc! { "_id": subscription },
                doc! { "$set": { "token": token, "savedAt": DateTime::now() } },
            )
            .upsert(true)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn clear(&self, subscription: &str) -> Result<()> {
        self.collection
            .delete_one(doc! { "_id": subscription })
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The collection's name.
    fn describe(&self) -> String {
        self.collection.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_through_bson() {
        let token: ResumeToken =
            mongodb::bson::from_bson(Bson::Document(doc! { "_data": "8263A1" })).unwrap();
        let stored = mongodb::bson::to_bson(&token).unwrap();
        assert_eq!(stored, Bson::Document(doc! { "_data": "8263A1" }));
        let back: ResumeToken = mongodb::bson::from_bson(stored).unwrap();
        assert_eq!(back, token);
    }
}
