//! Values that look like operators (`{"$ne": 1}`, `{"$where": ..}`, `{"$each": ..}`) given to
//! typed paths are compared, stored and removed as themselves: nothing beyond the literal match
//! is read, deleted or updated.

use std::collections::HashMap;

use mongrove::bson::{self, Bson, Document, doc};
use mongrove::{Filter, Model, Repo};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Wrapper {
    pub extra: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(collection = "notes")]
pub struct Note {
    #[serde(rename = "_id")]
    pub id: i32,
    pub extra: Value,
    pub items: Vec<Value>,
    pub meta: HashMap<String, Bson>,
    #[model(nested)]
    pub inner: Wrapper,
}

/// The one value that document 3 stores literally, in every field.
fn stored() -> Value {
    json!({ "$ne": 1 })
}

fn hostile_values() -> Vec<Value> {
    vec![
        json!({ "$ne": 1 }),
        json!({ "$gt": "" }),
        json!({ "$where": "true" }),
        json!({ "$expr": { "$eq": [1, 1] } }),
        json!({ "$exists": true }),
        json!({ "$regex": ".*" }),
        json!({ "$in": [1, "x"] }),
        json!({ "$elemMatch": { "$ne": 1 } }),
        json!({ "$each": [1, 2], "$slice": 0 }),
        json!({ "a": { "$ne": 1 } }),
    ]
}

fn note(id: i32, value: Value, items: Vec<Value>) -> Note {
    let meta = match bson::to_bson(&value) {
        Ok(Bson::Document(doc)) => doc.into_iter().collect(),
        _ => HashMap::new(),
    };
    Note {
        id,
        extra: value.clone(),
        items,
        meta,
        inner: Wrapper { extra: value },
    }
}

/// Documents 1 and 2 hold ordinary values; document 3 holds `{"$ne": 1}` literally.
async fn seed(notes: &Repo<Note>) {
    notes.delete_many(Filter::all()).await.unwrap();
    let mut docs = vec![
        note(1, json!(1), vec![json!(1), json!(2), json!({ "a": 1 })]),
        note(2, json!("x"), vec![json!("x")]),
        note(3, stored(), vec![json!(1), stored()]),
    ];
    notes.insert_many(&mut docs).await.unwrap();
}

/// How many of the seeded documents store `value` literally.
fn literal_matches(value: &Value) -> u64 {
    u64::from(*value == stored())
}

#[tokio::test]
async fn typed_filters_match_hostile_values_literally() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    seed(&notes).await;
    let f = Note::fields();
    for value in hostile_values() {
        let literal = literal_matches(&value);
        let meta: HashMap<String, Bson> = note(0, value.clone(), vec![]).meta;
        let cases: Vec<(&str, Filter<Note>, u64)> = vec![
            ("eq", f.extra.eq(value.clone()), literal),
            ("ne", f.extra.ne(value.clone()), 3 - literal),
            ("in_", f.extra.in_([value.clone(), json!(42)]), literal),
            ("nin", f.extra.nin([value.clone()]), 3 - literal),
            ("contains", f.items.contains(value.clone()), literal),
            (
                "contains_all",
                f.items.contains_all([value.clone()]),
                literal,
            ),
            ("sub-path eq", f.inner.extra.eq(value.clone()), literal),
            (
                "whole nested value",
                f.inner.field().eq(Wrapper {
                    extra: value.clone(),
                }),
                literal,
            ),
            ("map eq", f.meta.eq(meta), literal),
            ("and", f.extra.eq(value.clone()).and(f.id.gt(0)), literal),
        ];
        for (what, filter, expected) in cases {
            let filter_doc = filter.document().clone();
            let count = notes.count(filter.clone()).await.unwrap();
            assert_eq!(count, expected, "{what} {value} as {filter_doc}");
            let found = notes.find(filter).await.unwrap();
            assert_eq!(found.len() as u64, expected, "{what} {value}");
        }
    }
}

#[tokio::test]
async fn typed_filters_delete_and_update_only_literal_matches() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let f = Note::fields();
    for value in hostile_values() {
        let literal = literal_matches(&value);
        seed(&notes).await;
        let outcome = notes
            .update_many(f.extra.eq(value.clone()), f.items.set(vec![json!("hit")]))
            .await
            .unwrap();
        assert_eq!(outcome.matched, literal, "update_many {value}");
        let changed = notes
            .find_one_and_update(f.inner.extra.eq(value.clone()), f.meta.set(HashMap::new()))
            .await
            .unwrap();
        assert_eq!(
            changed.is_some(),
            literal == 1,
            "find_one_and_update {value}"
        );
        let deleted = notes.delete_many(f.extra.eq(value.clone())).await.unwrap();
        assert_eq!(deleted, literal, "delete_many {value}");
        assert_eq!(notes.count(Filter::all()).await.unwrap(), 3 - literal);
    }
}

/// The document as stored, without decoding.
async fn raw(db: &mongrove::Db, id: i32) -> Document {
    db.database()
        .collection::<Document>("notes")
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn typed_updates_store_and_remove_hostile_values_literally() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let f = Note::fields();
    for value in hostile_values() {
        let as_bson = bson::to_bson(&value).unwrap();
        seed(&notes).await;

        // `$set` and `$setOnInsert` store the value as it is (MongoDB 5.0+ accepts `$` keys
        // below the top level).
        notes
            .update_one(f.id.eq(1), f.extra.set(value.clone()))
            .await
            .unwrap();
        assert_eq!(
            raw(&db, 1).await.get("extra"),
            Some(&as_bson),
            "set {value}"
        );
        notes
            .update_one(f.id.eq(9), f.extra.set_on_insert(value.clone()))
            .upsert(true)
            .await
            .unwrap();
        assert_eq!(
            raw(&db, 9).await.get("extra"),
            Some(&as_bson),
            "setOnInsert {value}"
        );

        // `$push` and `$addToSet` append one element, even `{"$each": [..], "$slice": 0}`.
        notes
            .update_one(f.id.eq(2), f.items.push(value.clone()))
            .await
            .unwrap();
        notes
            .update_one(f.id.eq(2), f.items.add_to_set(value.clone()))
            .await
            .unwrap();
        notes
            .update_one(f.id.eq(2), f.items.push_each([value.clone()]))
            .await
            .unwrap();
        let items = notes.find_by_id(2).await.unwrap().unwrap().items;
        assert_eq!(
            items,
            [json!("x"), value.clone(), value.clone()],
            "push {value}"
        );
        notes
            .update_one(f.id.eq(1), f.items.add_to_set(value.clone()))
            .await
            .unwrap();
        let items = notes.find_by_id(1).await.unwrap().unwrap().items;
        assert_eq!(
            items,
            [json!(1), json!(2), json!({ "a": 1 }), value.clone()],
            "addToSet {value}"
        );

        // `$pull` and `$pullAll` remove equal elements only: document 3 keeps its `1`, and
        // loses `{"$ne": 1}` only when that is the value pulled.
        let before = notes.find_by_id(3).await.unwrap().unwrap().items;
        notes
            .update_one(f.id.eq(3), f.items.pull(value.clone()))
            .await
            .unwrap();
        let after_pull = notes.find_by_id(3).await.unwrap().unwrap().items;
        let expected: Vec<Value> = before.iter().filter(|v| **v != value).cloned().collect();
        assert_eq!(after_pull, expected, "pull {value}");
        seed(&notes).await;
        notes
            .update_many(Filter::all(), f.items.pull_all([value.clone()]))
            .await
            .unwrap();
        let all = notes.find(Filter::all()).await.unwrap();
        let lengths: Vec<usize> = all.iter().map(|n| n.items.len()).collect();
        let literal = usize::from(value == stored());
        assert_eq!(lengths, [3, 1, 2 - literal], "pullAll {value}");
    }
}

#[tokio::test]
async fn an_operator_shaped_value_is_only_a_value() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    seed(&notes).await;
    // ANCHOR: literal
    let f = Note::fields();
    // `{"$ne": 1}` is a value here, not an operator: the filter sent is
    // `{"extra": {"$eq": {"$ne": 1}}}`, which matches only documents storing exactly that.
    let filter = f.extra.eq(json!({ "$ne": 1 }));
    assert_eq!(
        filter.document(),
        &doc! { "extra": { "$eq": { "$ne": 1_i64 } } }
    );
    let deleted = notes.delete_many(filter).await.unwrap();
    assert_eq!(deleted, 1);
    // ANCHOR_END: literal
    assert_eq!(notes.count(Filter::all()).await.unwrap(), 2);
}
