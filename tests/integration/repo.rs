//! Every repository operation against the real server, with and without a session.

use futures_util::TryStreamExt;
use mongrove::bson::{Bson, Document, doc, oid::ObjectId};
use mongrove::{Error, Filter, Model, WriteOp};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: person
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Address {
    pub city: String,
    #[serde(rename = "postCode")]
    pub zip: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[serde(rename_all = "camelCase")]
#[model(collection = "people", index(keys(email_address = 1), unique))]
pub struct Person {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[serde(rename = "mail")]
    pub email_address: String,
    pub display_name: String,
    pub age: i32,
    pub tags: Vec<String>,
    #[model(nested)]
    pub address: Address,
    #[model(nested)]
    pub previous: Vec<Address>,
    #[serde(skip)]
    pub cache_hits: u32,
    #[serde(default)]
    pub nickname: Option<String>,
}
// ANCHOR_END: person

pub fn person(email: &str, age: i32, city: &str) -> Person {
    Person {
        id: None,
        email_address: email.to_owned(),
        display_name: email.split('@').next().unwrap_or(email).to_owned(),
        age,
        tags: Vec::new(),
        address: Address {
            city: city.to_owned(),
            zip: "00000".to_owned(),
        },
        previous: Vec::new(),
        cache_hits: 7,
        nickname: None,
    }
}

#[tokio::test]
async fn stored_names_are_serdes_and_typed_paths_use_them() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let mut ada = person("ada@example.com", 36, "London");
    ada.previous.push(Address {
        city: "Paris".into(),
        zip: "75001".into(),
    });
    let id = people.insert(&mut ada).await.unwrap();
    assert_eq!(ada.id, Some(id));

    let raw: Document = db
        .database()
        .collection::<Document>("people")
        .find_one(doc! {})
        .await
        .unwrap()
        .expect("the document is stored");
    let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "_id",
            "mail",
            "displayName",
            "age",
            "tags",
            "address",
            "previous",
            "nickname"
        ]
    );
    assert_eq!(
        raw.get_document("address").unwrap(),
        &doc! { "city": "London", "postCode": "00000" }
    );

    // ANCHOR: paths
    let f = Person::fields();
    assert_eq!(f.email_address.path(), "mail");
    assert_eq!(f.address.city.path(), "address.city");
    assert_eq!(f.address.zip.path(), "address.postCode");
    assert_eq!(f.previous.city.path(), "previous.city");
    let found = people
        .find_one(f.email_address.eq("ada@example.com"))
        .await
        .unwrap();
    assert_eq!(found.as_ref().map(|p| p.display_name.as_str()), Some("ada"));
    // serde skips the field: it is not stored and comes back as its default.
    assert_eq!(found.map(|p| p.cache_hits), Some(0));
    assert!(people.exists(f.address.city.eq("London")).await.unwrap());
    assert!(people.exists(f.previous.city.eq("Paris")).await.unwrap());
    assert!(!people.exists(f.address.city.eq("Paris")).await.unwrap());
    // ANCHOR_END: paths
}

#[tokio::test]
async fn insert_find_count_and_stream() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let mut batch: Vec<Person> = (0..25)
        .map(|i| person(&format!("p{i}@x.org"), 20 + i, "Oslo"))
        .collect();
    let ids = people.insert_many(&mut batch).await.unwrap();
    assert_eq!(ids.len(), 25);
    assert!(batch.iter().all(|p| p.id.is_some()));
    assert!(people.insert_many(&mut []).await.unwrap().is_empty());

    let f = Person::fields();
    let by_id = people.find_by_id(ids[3]).await.unwrap().unwrap();
    assert_eq!(by_id.age, 23);
    assert_eq!(people.find_by_id(ObjectId::new()).await.unwrap(), None);

    let page = people
        .find(f.age.gte(30))
        .sort(f.age.desc())
        .skip(2)
        .limit(3)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|p| p.age).collect::<Vec<_>>(), [42, 41, 40]);

    let streamed: Vec<Person> = people
        .find(f.age.lt(25).or(f.age.gt(43)))
        .batch_size(2)
        .stream()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 6);

    let projected = people
        .find(f.age.in_([20, 21]))
        .projection(
            doc! { "mail": 1, "displayName": 1, "age": 1, "tags": 1, "address": 1, "previous": 1 },
        )
        .sort(f.age.asc())
        .await
        .unwrap();
    assert_eq!(projected.len(), 2);

    assert_eq!(people.count(Filter::all()).await.unwrap(), 25);
    assert_eq!(people.count(f.age.nin([20, 21, 22])).await.unwrap(), 22);
    assert_eq!(people.count(Filter::all()).limit(5).await.unwrap(), 5);
    assert_eq!(
        people
            .count(doc! { "age": { "$mod": [2, 0] } })
            .await
            .unwrap(),
        13
    );
}

#[tokio::test]
async fn updates_replace_save_and_delete() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let f = Person::fields();
    let mut batch = vec![
        person("a@x.org", 30, "Rome"),
        person("b@x.org", 40, "Rome"),
        person("c@x.org", 50, "Bern"),
    ];
    people.insert_many(&mut batch).await.unwrap();

    let one = people
        .update_one(
            f.email_address.eq("a@x.org"),
            f.age.inc(1).and(f.tags.push("vip")),
        )
        .await
        .unwrap();
    assert_eq!((one.matched, one.modified), (1, 1));
    let many = people
        .update_many(
            f.address.city.eq("Rome"),
            f.tags
                .add_to_set("italy")
                .and(f.nickname.set(Some("r".into()))),
        )
        .await
        .unwrap();
    assert_eq!(many.modified, 2);
    let a = people
        .find_one(f.email_address.eq("a@x.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.age, a.tags.clone(), a.nickname.clone()),
        (31, vec!["vip".into(), "italy".into()], Some("r".into()))
    );

    let pulled = people
        .update_one(
            f.email_address.eq("a@x.org"),
            f.tags.pull("vip").and(f.nickname.unset()),
        )
        .await
        .unwrap();
    assert_eq!(pulled.modified, 1);
    let a = people.find_by_id(a.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (a.tags.clone(), a.nickname.clone()),
        (vec!["italy".to_owned()], None)
    );

    let before = people
        .find_one_and_update(f.email_address.eq("b@x.org"), f.age.set(41))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.age, 40);
    let after = people
        .find_one_and_update(f.email_address.eq("b@x.org"), f.age.inc(1))
        .return_after()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.age, 42);
    assert_eq!(
        people
            .find_one_and_update(f.age.gt(1000), f.age.inc(1))
            .await
            .unwrap(),
        None
    );

    let upserted = people
        .update_one(
            f.email_address.eq("new@x.org"),
            f.age
                .set(1)
                .and(f.display_name.set("new"))
                .and(f.tags.set(vec![]))
                .and(f.address.field().set(Address {
                    city: "Nice".into(),
                    zip: "1".into(),
                }))
                .and(f.previous.field().set(vec![])),
        )
        .upsert(true)
        .await
        .unwrap();
    assert!(upserted.upserted_id.is_some());
    assert_eq!(
        people
            .find_one(f.email_address.eq("new@x.org"))
            .await
            .unwrap()
            .unwrap()
            .address
            .city,
        "Nice"
    );

    let mut c = people
        .find_one(f.email_address.eq("c@x.org"))
        .await
        .unwrap()
        .unwrap();
    c.age = 51;
    people.save(&mut c).await.unwrap();
    assert_eq!(
        people.find_by_id(c.id.unwrap()).await.unwrap().unwrap().age,
        51
    );

    let mut replacement = person("c2@x.org", 52, "Bern");
    let replaced = people
        .replace(f.email_address.eq("c@x.org"), &mut replacement)
        .await
        .unwrap();
    assert_eq!(replaced.matched, 1);
    assert_eq!(
        people
            .find_by_id(c.id.unwrap())
            .await
            .unwrap()
            .unwrap()
            .email_address,
        "c2@x.org"
    );

    people.delete(&c).await.unwrap();
    match people.delete(&c).await {
        Err(Error::NotFound { collection, id }) => {
            assert_eq!(collection, "people");
            assert_eq!(id.as_deref(), c.id.map(Bson::ObjectId).as_ref());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    match people.save(&mut c).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    let mut no_id = person("z@x.org", 1, "X");
    assert!(matches!(
        people.save(&mut no_id).await,
        Err(Error::MissingId { .. })
    ));
    assert_eq!(
        people.delete_many(f.address.city.eq("Rome")).await.unwrap(),
        2
    );
    assert_eq!(people.count(Filter::all()).await.unwrap(), 1);
}

#[tokio::test]
async fn bulk_write_mixes_operations_in_order() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    people.sync_indexes().await.unwrap();
    let f = Person::fields();
    let outcome = people
        .bulk_write(vec![
            WriteOp::Insert(person("a@x.org", 1, "A")),
            WriteOp::Insert(person("b@x.org", 2, "B")),
            WriteOp::update_one(f.email_address.eq("a@x.org"), f.age.inc(10)),
            WriteOp::update_many(f.age.lt(100), f.tags.push("bulk")),
            WriteOp::ReplaceOne {
                filter: f.email_address.eq("b@x.org"),
                doc: person("b2@x.org", 3, "B"),
                upsert: false,
            },
            WriteOp::Insert(person("c@x.org", 4, "C")),
            WriteOp::delete_one(f.email_address.eq("c@x.org")),
        ])
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 3);
    assert_eq!(outcome.matched, 4);
    assert_eq!(outcome.modified, 4);
    assert_eq!(outcome.deleted, 1);
    assert_eq!(
        outcome.ids.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1, 5]
    );
    let a = people
        .find_one(f.email_address.eq("a@x.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.age, a.tags), (11, vec!["bulk".to_owned()]));

    let duplicate = people
        .bulk_write(vec![
            WriteOp::Insert(person("d@x.org", 5, "D")),
            WriteOp::Insert(person("a@x.org", 6, "A")),
        ])
        .await;
    match duplicate {
        Err(Error::PartialWrite(report)) => {
            assert_eq!(report.written, [0]);
            assert_eq!(report.failed[0].index, 1);
            match &report.failed[0].error {
                Error::DuplicateKey { index, key, .. } => {
                    assert_eq!(index, "mail_1");
                    assert!(key.contains("a@x.org"), "{key}");
                }
                other => panic!("expected DuplicateKey, got {other:?}"),
            }
        }
        other => panic!("expected a partial write, got {other:?}"),
    }
    // Ordered: the write before the duplicate happened, nothing after it.
    assert!(people.exists(f.email_address.eq("d@x.org")).await.unwrap());
}

#[tokio::test]
async fn a_unique_index_rejects_a_duplicate_with_duplicate_key() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let report = people.sync_indexes().await.unwrap();
    assert_eq!(report.created, ["mail_1"]);
    people
        .insert(&mut person("dup@x.org", 1, "A"))
        .await
        .unwrap();
    for attempt in 0..2 {
        let result = if attempt == 0 {
            people
                .insert(&mut person("dup@x.org", 2, "B"))
                .await
                .map(|_| ())
        } else {
            // Part of the batch is written; the failed position carries the duplicate key.
            match people
                .insert_many(&mut [person("other@x.org", 3, "C"), person("dup@x.org", 4, "D")])
                .await
            {
                Err(Error::PartialWrite(report)) => {
                    assert_eq!(report.written, [0]);
                    Err(report.failed.into_iter().next().expect("one failure").error)
                }
                other => other.map(|_| ()),
            }
        };
        match result {
            Err(Error::DuplicateKey {
                collection,
                index,
                key,
            }) => {
                assert_eq!((collection.as_str(), index.as_str()), ("people", "mail_1"));
                assert_eq!(key, r#"{ mail: "dup@x.org" }"#);
            }
            other => panic!("expected DuplicateKey, got {other:?}"),
        }
    }
    let f = Person::fields();
    let taken = people
        .update_one(
            f.email_address.eq("other@x.org"),
            f.email_address.set("dup@x.org"),
        )
        .await;
    assert!(
        matches!(taken, Err(Error::DuplicateKey { .. })),
        "{taken:?}"
    );
    let taken = people
        .find_one_and_update(
            f.email_address.eq("other@x.org"),
            f.email_address.set("dup@x.org"),
        )
        .await;
    assert!(
        matches!(taken, Err(Error::DuplicateKey { .. })),
        "{taken:?}"
    );
}

#[tokio::test]
async fn a_malformed_stored_document_is_a_decode_error_naming_the_field() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let raw = db.database().collection::<Document>("people");
    let mut good = person("good@x.org", 1, "A");
    people.insert(&mut good).await.unwrap();
    let bad_id = ObjectId::new();
    raw.insert_one(doc! {
        "_id": bad_id, "mail": "bad@x.org", "displayName": "bad", "age": "forty",
        "tags": [], "address": { "city": "A", "postCode": "1" }, "previous": [],
    })
    .await
    .unwrap();
    let missing_id = ObjectId::new();
    raw.insert_one(doc! { "_id": missing_id, "mail": "m@x.org", "age": 3, "tags": [], "address": { "city": "A", "postCode": "1" }, "previous": [] })
        .await
        .unwrap();
    let nested_id = ObjectId::new();
    raw.insert_one(doc! {
        "_id": nested_id, "mail": "n@x.org", "displayName": "n", "age": 3, "tags": [],
        "address": { "city": "A", "postCode": "1" }, "previous": [{ "city": "B", "postCode": 5 }],
    })
    .await
    .unwrap();

    let cases = [
        (bad_id, "age", "string"),
        (missing_id, "displayName", "missing field"),
        (nested_id, "previous[0].postCode", "integer"),
    ];
    for (id, expected_field, expected_reason) in cases {
        match people.find_by_id(id).await {
            Err(Error::Decode {
                collection,
                id: Some(found),
                field,
                reason,
            }) => {
                assert_eq!(collection, "people");
                assert_eq!(found, Bson::ObjectId(id));
                assert_eq!(field, expected_field);
                assert!(reason.contains(expected_reason), "{reason}");
            }
            other => panic!("expected Decode for {expected_field}, got {other:?}"),
        }
    }
    // The good document still reads, and nothing was lost or changed by the failed reads.
    assert_eq!(
        people
            .find_by_id(good.id.unwrap())
            .await
            .unwrap()
            .unwrap()
            .age,
        1
    );
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 4);
    let all = people.find(Filter::all()).await;
    assert!(matches!(all, Err(Error::Decode { .. })));
    let f = Person::fields();
    let after = people
        .find_one_and_update(f.email_address.eq("bad@x.org"), f.tags.push("x"))
        .return_after()
        .await;
    assert!(
        matches!(after, Err(Error::Decode { ref field, .. }) if field == "age"),
        "{after:?}"
    );
}

#[tokio::test]
async fn values_that_cannot_be_encoded_are_errors_before_anything_is_sent() {
    #[derive(Debug, Serialize, Deserialize, Model)]
    #[model(collection = "counters")]
    struct Counter {
        #[serde(rename = "_id")]
        name: String,
        hits: u64,
    }
    let db = common::db().await;
    let counters = db.repo::<Counter>();
    let f = Counter::fields();
    match counters.count(f.hits.eq(u64::MAX)).await {
        Err(Error::Encode {
            collection, what, ..
        }) => {
            assert_eq!(collection, "counters");
            assert_eq!(what, "the value for `hits`");
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    let mut huge = Counter {
        name: "x".into(),
        hits: u64::MAX,
    };
    assert!(matches!(
        counters.insert(&mut huge).await,
        Err(Error::Encode { .. })
    ));
    assert_eq!(counters.count(Filter::all()).await.unwrap(), 0);
}

#[tokio::test]
async fn an_oversized_document_is_refused_and_nothing_is_written() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let mut big = person("big@x.org", 1, "A");
    big.tags = vec!["x".repeat(1024 * 1024); 17];
    let result = people.insert(&mut big).await;
    assert!(result.is_err(), "a 17 MiB document must be refused");
    assert_eq!(big.id, None);
    assert_eq!(people.count(Filter::all()).await.unwrap(), 0);
}

mod ids {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "by_name")]
    pub struct ByName {
        #[model(id)]
        #[serde(rename = "_id")]
        pub name: String,
        pub n: i64,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    pub struct SkuId(pub i64);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    pub struct Sku {
        #[serde(rename = "_id")]
        pub id: SkuId,
        pub label: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "log_lines")]
    pub struct LogLine {
        pub text: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "forgetful")]
    pub struct Forgetful {
        // No `skip_serializing_if`: serde writes `_id: null`, which must not be stored.
        #[serde(rename = "_id")]
        pub id: Option<ObjectId>,
        pub text: String,
    }

    /// Serialized through a map (`flatten`): mongrove's fields go in after the model is encoded.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "loose", version = "version", timestamps)]
    pub struct Loose {
        #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
        pub id: Option<ObjectId>,
        pub version: i64,
        pub created_at: Option<mongrove::bson::DateTime>,
        pub updated_at: Option<mongrove::bson::DateTime>,
        #[serde(flatten)]
        pub extra: std::collections::BTreeMap<String, i64>,
    }

    /// A plain struct with a null `_id`, a version of another integer type and timestamps:
    /// mongrove's fields go in while it is encoded.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "tight", version = "version", timestamps)]
    pub struct Tight {
        pub text: String,
        #[serde(rename = "_id")]
        pub id: Option<ObjectId>,
        pub version: i32,
        pub created_at: Option<mongrove::bson::DateTime>,
        pub updated_at: Option<mongrove::bson::DateTime>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
    #[model(collection = "labels")]
    pub struct Label {
        #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
        pub text: String,
    }

    /// A model whose id type cannot hold the `ObjectId` mongrove would make is refused before
    /// anything is written: stored, it could not be told apart by its model.
    #[tokio::test]
    async fn an_id_mongrove_cannot_make_is_refused_before_writing() {
        let db = common::db().await;
        let labels = db.repo::<Label>();
        let label = |id: Option<&str>| Label {
            id: id.map(str::to_owned),
            text: "t".into(),
        };
        let error = labels.insert(&mut label(None)).await.unwrap_err();
        let Error::Encode { what, reason, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(what, "the _id");
        assert!(
            reason.contains("String") && reason.contains("set the id"),
            "{reason}"
        );
        let mut two = vec![label(Some("a")), label(None)];
        let error = labels.insert_many(&mut two).await.unwrap_err();
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
        assert_eq!(labels.count(Filter::all()).await.unwrap(), 0);
        assert_eq!(two[1].id, None);

        two[1].id = Some("b".into());
        assert_eq!(labels.insert_many(&mut two).await.unwrap(), ["a", "b"]);
        assert_eq!(labels.count(Filter::all()).await.unwrap(), 2);
    }

    /// Every way a model can be encoded stores the same: one `_id` (made, first), mongrove's
    /// version and timestamps in the model's own fields, and the model's other fields as they are.
    #[tokio::test]
    async fn every_shape_of_model_is_stored_with_mongroves_fields() {
        let db = common::db().await;
        let stored = |name: &'static str| db.database().collection::<Document>(name);

        let loose = db.repo::<Loose>();
        let extra: std::collections::BTreeMap<String, i64> =
            [("a".to_owned(), 1), ("b".to_owned(), 2)].into();
        let mut one = Loose {
            id: None,
            version: 7,
            created_at: None,
            updated_at: None,
            extra,
        };
        let mut many = vec![one.clone(), one.clone()];
        let id = loose.insert(&mut one).await.unwrap();
        loose.insert_many(&mut many).await.unwrap();
        for model in std::iter::once(&one).chain(&many) {
            let raw = stored("loose")
                .find_one(doc! { "_id": model.id })
                .await
                .unwrap()
                .unwrap();
            let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["_id", "version", "created_at", "updated_at", "a", "b"]
            );
            assert_eq!(raw.get_i64("version").unwrap(), 0);
            assert_eq!(model.version, 0);
            assert!(raw.get_datetime("created_at").is_ok());
        }
        one.extra.insert("c".into(), 3);
        loose.save(&mut one).await.unwrap();
        let back = loose.find_by_id(id).await.unwrap().unwrap();
        assert_eq!((back.version, back.extra.get("c")), (1, Some(&3)));
        assert_eq!(back, one);

        let tight = db.repo::<Tight>();
        let mut one = Tight {
            text: "x".into(),
            id: None,
            version: 5,
            created_at: None,
            updated_at: None,
        };
        let mut many = vec![one.clone(), one.clone()];
        let id = tight.insert(&mut one).await.unwrap();
        tight.insert_many(&mut many).await.unwrap();
        for model in std::iter::once(&one).chain(&many) {
            let raw = stored("tight")
                .find_one(doc! { "_id": model.id })
                .await
                .unwrap()
                .unwrap();
            let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
            assert_eq!(keys, ["_id", "text", "version", "created_at", "updated_at"]);
            assert_eq!(raw.get_i64("version").unwrap(), 0);
            assert_eq!(model.version, 0);
        }
        one.text = "y".into();
        tight.save(&mut one).await.unwrap();
        let raw = stored("tight")
            .find_one(doc! { "_id": id })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(raw.get_i64("version").unwrap(), 1);
        assert_eq!(tight.find_by_id(id).await.unwrap().unwrap(), one);
        assert_eq!(db.repo::<Tight>().count(Filter::all()).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn custom_and_missing_ids_work() {
        let db = common::db().await;
        let names = db.repo::<ByName>();
        let id = names
            .insert(&mut ByName {
                name: "alpha".into(),
                n: 1,
            })
            .await
            .unwrap();
        assert_eq!(id, "alpha");
        assert_eq!(names.find_by_id("alpha").await.unwrap().unwrap().n, 1);
        assert!(
            matches!(names.insert(&mut ByName { name: "alpha".into(), n: 2 }).await, Err(Error::DuplicateKey { ref index, .. }) if index == "_id_")
        );
        assert_eq!(
            names
                .count(ByName::fields().name.in_(["alpha", "beta"]))
                .await
                .unwrap(),
            1
        );

        assert_eq!(Sku::COLLECTION, "skus");
        let skus = db.repo::<Sku>();
        let mut sku = Sku {
            id: SkuId(42),
            label: "bolt".into(),
        };
        assert_eq!(skus.insert(&mut sku).await.unwrap(), SkuId(42));
        sku.label = "nut".into();
        skus.save(&mut sku).await.unwrap();
        assert_eq!(
            skus.find_by_id(SkuId(42)).await.unwrap().unwrap().label,
            "nut"
        );
        assert_eq!(skus.count(Sku::fields().id.gt(SkuId(41))).await.unwrap(), 1);

        let lines = db.repo::<LogLine>();
        let generated: ObjectId = lines
            .insert(&mut LogLine {
                text: "hello".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            lines.find_by_id(generated).await.unwrap().unwrap().text,
            "hello"
        );
        let mut line = LogLine { text: "x".into() };
        assert!(matches!(
            lines.save(&mut line).await,
            Err(Error::MissingId { .. })
        ));

        let forgetful = db.repo::<Forgetful>();
        let mut doc = Forgetful {
            id: None,
            text: "t".into(),
        };
        let id = forgetful.insert(&mut doc).await.unwrap();
        assert_eq!(doc.id, Some(id));
        let mut second = Forgetful {
            id: None,
            text: "u".into(),
        };
        forgetful.insert(&mut second).await.unwrap();
        assert_ne!(second.id, doc.id);
        assert_eq!(forgetful.count(doc! { "_id": null }).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn every_operation_runs_in_a_session() {
    let db = common::db().await;
    let people = db.repo::<Person>();
    let f = Person::fields();
    // Create the collection first: a transaction cannot create one on this server version.
    let mut seed = person("seed@x.org", 99, "S");
    people.insert(&mut seed).await.unwrap();

    let mut session = db.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let mut a = person("a@x.org", 1, "A");
    people.insert(&mut a).session(&mut session).await.unwrap();
    people
        .insert_many(&mut [person("b@x.org", 2, "B"), person("c@x.org", 3, "C")])
        .session(&mut session)
        .await
        .unwrap();
    // Reads in the session see the transaction's writes; reads outside do not.
    assert!(
        people
            .find_by_id(a.id.unwrap())
            .session(&mut session)
            .await
            .unwrap()
            .is_some()
    );
    assert!(people.find_by_id(a.id.unwrap()).await.unwrap().is_none());
    assert_eq!(
        people
            .count(Filter::all())
            .session(&mut session)
            .await
            .unwrap(),
        4
    );
    assert!(
        people
            .exists(f.email_address.eq("b@x.org"))
            .session(&mut session)
            .await
            .unwrap()
    );
    let streamed: Vec<Person> = people
        .find(f.age.lt(10))
        .session(&mut session)
        .stream()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 3);
    assert_eq!(
        people
            .find(f.age.lt(10))
            .session(&mut session)
            .await
            .unwrap()
            .len(),
        3
    );
    people
        .update_one(f.email_address.eq("a@x.org"), f.age.inc(1))
        .session(&mut session)
        .await
        .unwrap();
    people
        .update_many(f.age.lt(10), f.tags.push("t"))
        .session(&mut session)
        .await
        .unwrap();
    people
        .find_one_and_update(f.email_address.eq("b@x.org"), f.age.inc(1))
        .session(&mut session)
        .await
        .unwrap();
    people
        .replace(
            f.email_address.eq("c@x.org"),
            &mut person("c2@x.org", 4, "C"),
        )
        .session(&mut session)
        .await
        .unwrap();
    seed.age = 100;
    people.save(&mut seed).session(&mut session).await.unwrap();
    people
        .bulk_write(vec![WriteOp::update_one(
            f.email_address.eq("a@x.org"),
            f.age.inc(1),
        )])
        .session(&mut session)
        .await
        .unwrap();
    people.delete(&a).session(&mut session).await.unwrap();
    people
        .delete_many(f.age.lt(10))
        .session(&mut session)
        .await
        .unwrap();
    assert_eq!(
        people
            .count(Filter::all())
            .session(&mut session)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        people
            .find_one(Filter::all())
            .session(&mut session)
            .await
            .unwrap()
            .unwrap()
            .age,
        100
    );
    session.abort_transaction().await.unwrap();

    // Every write above ran in the aborted transaction: the collection is as it was.
    let all = people.find(Filter::all()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].age, 99);
}

#[tokio::test]
async fn each_database_keeps_its_own_collection_handles() {
    let db = common::db().await;
    let other = db.with_database(&format!("{}_elsewhere", db.name()));
    // The same model through both, each used twice: a handle made for one database is never
    // handed to a repository of the other.
    for round in 0..2 {
        db.repo::<Person>()
            .insert(&mut person(&format!("here{round}@x.org"), 1, "A"))
            .await
            .unwrap();
        other
            .clone()
            .repo::<Person>()
            .insert(&mut person(&format!("there{round}@x.org"), 1, "B"))
            .await
            .unwrap();
    }
    for db in [&db, &other] {
        let people = db.database().collection::<Document>("people");
        assert_eq!(people.count_documents(doc! {}).await.unwrap(), 2);
    }
    assert_eq!(db.repo::<Person>().collection().namespace().db, db.name());
    assert_eq!(
        other.repo::<Person>().collection().namespace().db,
        other.name()
    );
    other.database().drop().await.unwrap();
}
