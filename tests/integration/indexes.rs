//! `sync_indexes` converges on the declarations after a model changes.

use mongrove::bson::{Document, doc, oid::ObjectId};
use mongrove::{Model, bson};
use serde::{Deserialize, Serialize};

use crate::common;

mod v1 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Model)]
    #[model(
        collection = "events",
        index(keys(kind = 1, at = -1)),
        index(keys(slug = 1), unique),
        index(keys(at = 1), expire_after = 3600, name = "ttl_at")
    )]
    pub struct Event {
        #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
        pub id: Option<ObjectId>,
        pub kind: String,
        pub slug: String,
        pub at: bson::DateTime,
    }
}

mod v2 {
    use super::*;

    pub fn published_only() -> Document {
        doc! { "published": true }
    }

    #[derive(Debug, Serialize, Deserialize, Model)]
    #[model(
        collection = "events",
        // Unchanged.
        index(keys(kind = 1, at = -1)),
        // Changed: no longer unique, now sparse.
        index(keys(slug = 1), sparse),
        // New, with a partial filter; the TTL index is gone.
        index(keys(published = 1, "meta.score" = -1), partial = published_only, name = "hot"),
        index(keys(title = "text"))
    )]
    pub struct Event {
        #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
        pub id: Option<ObjectId>,
        pub kind: String,
        pub slug: String,
        pub at: bson::DateTime,
        pub published: bool,
        pub title: String,
    }
}

async fn listed(db: &mongrove::Db) -> Vec<Document> {
    let reply = db
        .database()
        .run_command(doc! { "listIndexes": "events" })
        .await
        .unwrap();
    let batch = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    let mut indexes: Vec<Document> = batch
        .iter()
        .map(|b| b.as_document().unwrap().clone())
        .collect();
    indexes.sort_by_key(|d| d.get_str("name").unwrap().to_owned());
    indexes
}

fn names(indexes: &[Document]) -> Vec<&str> {
    indexes.iter().map(|d| d.get_str("name").unwrap()).collect()
}

#[tokio::test]
async fn sync_indexes_converges_after_a_model_changes() {
    let db = common::db().await;
    let first = db.repo::<v1::Event>();
    let mut report = first.sync_indexes().await.unwrap();
    report.created.sort();
    assert_eq!(report.created, ["kind_1_at_-1", "slug_1", "ttl_at"]);
    assert!(report.dropped.is_empty() && report.unchanged.is_empty());
    let indexes = listed(&db).await;
    assert_eq!(
        names(&indexes),
        ["_id_", "kind_1_at_-1", "slug_1", "ttl_at"]
    );
    assert_eq!(indexes[2].get_bool("unique"), Ok(true));
    assert_eq!(
        indexes[3]
            .get_i32("expireAfterSeconds")
            .map(i64::from)
            .or(indexes[3].get_i64("expireAfterSeconds")),
        Ok(3600)
    );

    // Running again changes nothing.
    let again = first.sync_indexes().await.unwrap();
    assert!(again.created.is_empty() && again.dropped.is_empty());
    assert_eq!(again.unchanged.len(), 3);

    // An index created by hand that the model does not declare is dropped too.
    db.database()
        .run_command(
            doc! { "createIndexes": "events", "indexes": [{ "key": { "x": 1 }, "name": "x_1" }] },
        )
        .await
        .unwrap();

    let second = db.repo::<v2::Event>();
    let preview = second.sync_indexes().dry_run().await.unwrap();
    assert_eq!(
        names(&listed(&db).await).len(),
        5,
        "a dry run changes nothing"
    );
    let mut report = second.sync_indexes().await.unwrap();
    assert_eq!(preview, report);
    report.created.sort();
    report.dropped.sort();
    assert_eq!(report.unchanged, ["kind_1_at_-1"]);
    assert_eq!(report.dropped, ["slug_1", "ttl_at", "x_1"]);
    assert_eq!(report.created, ["hot", "slug_1", "title_text"]);
    let indexes = listed(&db).await;
    assert_eq!(
        names(&indexes),
        ["_id_", "hot", "kind_1_at_-1", "slug_1", "title_text"]
    );
    assert_eq!(
        indexes[1].get_document("partialFilterExpression").unwrap(),
        &doc! { "published": true }
    );
    assert_eq!(
        indexes[1].get_document("key").unwrap(),
        &doc! { "published": 1, "meta.score": -1 }
    );
    assert_eq!(indexes[3].get_bool("sparse"), Ok(true));
    assert!(indexes[3].get_bool("unique").is_err());

    let settled = second.sync_indexes().await.unwrap();
    assert!(
        settled.created.is_empty() && settled.dropped.is_empty(),
        "{settled:?} {:?}",
        listed(&db).await
    );
    assert_eq!(settled.unchanged.len(), 4);
}
