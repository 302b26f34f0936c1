//! `repo.watch()`: typed change events, filters, full-document modes, start points,
//! transaction identity, database-wide streams, invalidation and bad documents.

use std::time::Duration;

use futures_util::StreamExt;
use mongrove::bson::oid::ObjectId;
use mongrove::bson::{self, Bson, doc};
use mongrove::watch::{
    Change, ChangeKind, ChangeStream, FullDocumentBeforeChangeType, FullDocumentType, Operation,
    ResumeToken,
};
use mongrove::{Error, Model};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(collection = "parcels", version = "version")]
pub struct Parcel {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub label: String,
    pub weight: i64,
    pub note: Option<String>,
    pub version: i64,
}

impl Parcel {
    pub fn new(label: &str, weight: i64) -> Parcel {
        Parcel {
            id: None,
            label: label.to_owned(),
            weight,
            note: None,
            version: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "crates")]
struct Crate {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    name: String,
}

/// The next item of a stream, within the test's timeout.
async fn next_item<M: Model>(stream: &mut ChangeStream<M>) -> mongrove::Result<Change<M>> {
    timeout(WAIT, stream.next())
        .await
        .expect("an event within the timeout")
        .expect("the stream goes on")
}

async fn next<M: Model>(stream: &mut ChangeStream<M>) -> Change<M> {
    next_item(stream).await.expect("a decodable event")
}

#[tokio::test]
async fn events_are_typed_with_pre_and_post_images() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    // ANCHOR: images
    parcels.enable_pre_and_post_images().await.unwrap();
    let mut changes = parcels
        .watch()
        .full_document(FullDocumentType::Required)
        .full_document_before_change(FullDocumentBeforeChangeType::Required)
        .await
        .unwrap();
    // ANCHOR_END: images

    let f = Parcel::fields();
    let mut parcel = Parcel::new("books", 12);
    parcel.note = Some("fragile".into());
    let id = parcels.insert(&mut parcel).await.unwrap();
    parcels
        .update_one(f.id.eq(id), f.weight.set(7).and(f.note.unset()))
        .await
        .unwrap();
    let mut replacement = Parcel::new("records", 3);
    replacement.id = Some(id);
    replacement.version = 1; // the version it replaces: replace is version-checked
    parcels
        .replace(f.id.eq(id), &mut replacement)
        .await
        .unwrap();
    let current = parcels.find_by_id(id).await.unwrap().unwrap();
    parcels.delete(&current).await.unwrap();

    let inserted = next(&mut changes).await;
    assert_eq!(inserted.operation(), Operation::Insert);
    assert_eq!(inserted.id(), Some(&id));
    assert_eq!(inserted.version(), Some(0));
    assert!(inserted.cluster_time.is_some() && inserted.transaction.is_none());
    assert_eq!(
        inserted
            .namespace
            .as_ref()
            .and_then(|ns| ns.collection.as_deref()),
        Some("parcels")
    );
    let ChangeKind::Insert { document, .. } = &inserted.kind else {
        panic!("{inserted:?}")
    };
    assert_eq!(document, &parcel);

    // ANCHOR: update-event
    let updated = next(&mut changes).await;
    let ChangeKind::Update {
        description,
        document,
        before,
        ..
    } = &updated.kind
    else {
        panic!("{updated:?}")
    };
    assert_eq!(
        description.updated_fields.get("weight"),
        Some(&Bson::Int64(7))
    );
    assert_eq!(description.removed_fields, vec!["note".to_owned()]);
    assert_eq!(updated.version(), Some(1));
    // ANCHOR_END: update-event
    let after = document.as_ref().expect("the post-image");
    assert_eq!(
        (after.weight, after.note.as_deref(), after.version),
        (7, None, 1)
    );
    let before = before.as_ref().expect("the pre-image");
    assert_eq!(
        (before.weight, before.note.as_deref(), before.version),
        (12, Some("fragile"), 0)
    );

    let replaced = next(&mut changes).await;
    let ChangeKind::Replace {
        document, before, ..
    } = &replaced.kind
    else {
        panic!("{replaced:?}")
    };
    assert_eq!(document.label, "records");
    assert_eq!(replaced.version(), Some(document.version));
    assert_eq!(before.as_ref().map(|b| b.weight), Some(7));

    let deleted = next(&mut changes).await;
    let ChangeKind::Delete { id: gone, before } = &deleted.kind else {
        panic!("{deleted:?}")
    };
    assert_eq!(gone, &id);
    assert_eq!(before.as_ref(), Some(&current));
    assert_eq!(deleted.before(), Some(&current));
    assert_eq!(deleted.version(), None);

    // Tokens are distinct and in order of the events.
    let tokens = [
        &inserted.token,
        &updated.token,
        &replaced.token,
        &deleted.token,
    ];
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[tokio::test]
async fn updates_carry_the_document_only_when_asked() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut plain = parcels.watch().await.unwrap();
    let mut looked_up = parcels
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .await
        .unwrap();

    let f = Parcel::fields();
    let id = parcels.insert(&mut Parcel::new("lamp", 2)).await.unwrap();
    parcels
        .update_one(f.id.eq(id), f.weight.inc(1))
        .await
        .unwrap();

    for stream in [&mut plain, &mut looked_up] {
        assert_eq!(next(stream).await.operation(), Operation::Insert);
    }
    let update = next(&mut plain).await;
    assert!(update.document().is_none() && update.before().is_none());
    assert_eq!(update.version(), Some(1));
    let update = next(&mut looked_up).await;
    assert_eq!(
        update.document().map(|p| (p.weight, p.version)),
        Some((3, 1))
    );
}

#[tokio::test]
async fn filters_by_operation_and_typed_field_paths() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let f = Parcel::fields();
    // ANCHOR: filters
    let mut heavy_inserts = parcels
        .watch()
        .operations([Operation::Insert])
        .filter(f.weight.gte(10))
        .await
        .unwrap();
    let mut relabelled = parcels
        .watch()
        .operations([Operation::Update])
        .full_document(FullDocumentType::UpdateLookup)
        .filter(f.label.eq("express"))
        .await
        .unwrap();
    // ANCHOR_END: filters

    let light = parcels.insert(&mut Parcel::new("light", 1)).await.unwrap();
    let heavy = parcels.insert(&mut Parcel::new("heavy", 20)).await.unwrap();
    parcels
        .update_one(f.id.eq(heavy), f.weight.set(25))
        .await
        .unwrap();
    parcels
        .update_one(f.id.eq(light), f.label.set("express"))
        .await
        .unwrap();
    let last = parcels.insert(&mut Parcel::new("last", 30)).await.unwrap();
    parcels
        .update_one(f.id.eq(last), f.label.set("express"))
        .await
        .unwrap();

    // Only the heavy inserts pass, in order: the light insert and the updates were filtered out
    // on the server.
    assert_eq!(next(&mut heavy_inserts).await.id(), Some(&heavy));
    assert_eq!(next(&mut heavy_inserts).await.id(), Some(&last));
    // Only the updates whose looked-up document has the label pass.
    let first = next(&mut relabelled).await;
    assert_eq!(
        (first.operation(), first.id()),
        (Operation::Update, Some(&light))
    );
    let second = next(&mut relabelled).await;
    assert_eq!(second.id(), Some(&last));
}

#[tokio::test]
async fn a_document_that_does_not_decode_names_collection_id_and_field() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();

    let bad_id = ObjectId::new();
    parcels
        .collection()
        .insert_one(doc! { "_id": bad_id, "label": "odd", "weight": "heavy", "version": 0_i64 })
        .await
        .unwrap();
    let good = parcels.insert(&mut Parcel::new("fine", 1)).await.unwrap();

    // ANCHOR: decode-error
    match next_item(&mut changes).await {
        Err(Error::Decode {
            collection,
            id,
            field,
            reason,
        }) => {
            assert_eq!(collection, "parcels");
            assert_eq!(id.as_deref(), Some(&Bson::ObjectId(bad_id)));
            assert_eq!(field, "weight");
            assert!(reason.contains("string"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // The stream goes on with the next event.
    assert_eq!(next(&mut changes).await.id(), Some(&good));
    // ANCHOR_END: decode-error
}

#[tokio::test]
async fn a_document_nested_too_deep_is_a_decode_error_and_the_stream_goes_on() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();

    let mut deep = doc! { "leaf": true };
    for _ in 0..120 {
        deep = doc! { "n": deep };
    }
    let deep_id = ObjectId::new();
    parcels
        .collection()
        .insert_one(doc! { "_id": deep_id, "label": "deep", "weight": 1_i64, "version": 0_i64, "note": deep })
        .await
        .unwrap();
    let good = parcels.insert(&mut Parcel::new("fine", 1)).await.unwrap();

    // The event's metadata decodes (its documents are checked on their own), so the error
    // names the document, as for any document that does not fit the model.
    match next_item(&mut changes).await {
        Err(Error::Decode {
            id, field, reason, ..
        }) => {
            assert_eq!(id.as_deref(), Some(&Bson::ObjectId(deep_id)));
            assert!(field.starts_with("note.n.n"), "{field}");
            assert!(reason.contains("nested more than"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(next(&mut changes).await.id(), Some(&good));
}

#[tokio::test]
async fn starts_at_an_operation_time_or_after_a_token() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();
    let a = parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    let b = parcels.insert(&mut Parcel::new("b", 1)).await.unwrap();
    let first = next(&mut changes).await;
    assert_eq!(first.id(), Some(&a));
    assert_eq!(next(&mut changes).await.id(), Some(&b));

    // ANCHOR: start-points
    let mut resumed = parcels
        .watch()
        .resume_after(first.token.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.id(), Some(&b));

    let mut started_after = parcels
        .watch()
        .start_after(first.token.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut started_after).await.id(), Some(&b));

    let mut from_time = parcels
        .watch()
        .start_at_operation_time(first.cluster_time.unwrap())
        .await
        .unwrap();
    assert_eq!(next(&mut from_time).await.id(), Some(&a));
    assert_eq!(next(&mut from_time).await.id(), Some(&b));
    // ANCHOR_END: start-points

    // The stream's own token moves with what it returned.
    assert!(from_time.resume_token().is_some());
}

#[tokio::test]
async fn updates_of_one_transaction_share_its_identity() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let f = Parcel::fields();
    let x = parcels.insert(&mut Parcel::new("x", 1)).await.unwrap();
    let y = parcels.insert(&mut Parcel::new("y", 1)).await.unwrap();
    let mut changes = parcels
        .watch()
        .operations([Operation::Update])
        .await
        .unwrap();

    // ANCHOR: transaction
    let mut session = db.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    parcels
        .update_one(f.id.eq(x), f.weight.set(2))
        .session(&mut session)
        .await
        .unwrap();
    parcels
        .update_one(f.id.eq(y), f.weight.set(2))
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    parcels
        .update_one(f.id.eq(x), f.weight.set(3))
        .await
        .unwrap();

    let first = next(&mut changes).await;
    let second = next(&mut changes).await;
    let outside = next(&mut changes).await;
    assert_eq!((first.id(), second.id()), (Some(&x), Some(&y)));
    let tx = first.transaction.clone().expect("a transaction identity");
    assert_eq!(second.transaction.as_ref(), Some(&tx));
    assert_eq!(
        first.cluster_time, second.cluster_time,
        "one commit, one time"
    );
    assert_eq!(outside.transaction, None);
    assert_ne!(outside.cluster_time, first.cluster_time);
    // ANCHOR_END: transaction
}

#[tokio::test]
async fn a_database_wide_stream_types_each_collection() {
    let db = crate::common::db().await;
    // ANCHOR: database
    let mut everything = db.watch().await.unwrap();
    let mut parcels_only = db.watch().collections(["parcels"]).await.unwrap();
    // ANCHOR_END: database

    let mut crate_ = Crate {
        id: None,
        name: "tea".into(),
    };
    db.repo::<Crate>().insert(&mut crate_).await.unwrap();
    let parcel = db
        .repo::<Parcel>()
        .insert(&mut Parcel::new("p", 1))
        .await
        .unwrap();

    let first = timeout(WAIT, everything.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.collection(), Some("crates"));
    assert_eq!(first.operation, Operation::Insert);
    // ANCHOR: database-typed
    assert!(first.typed::<Parcel>().is_none());
    let typed = first.typed::<Crate>().unwrap().unwrap();
    assert_eq!(typed.document().map(|c| c.name.as_str()), Some("tea"));
    // ANCHOR_END: database-typed
    let second = timeout(WAIT, everything.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.collection(), Some("parcels"));

    let only = timeout(WAIT, parcels_only.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(only.collection(), Some("parcels"));
    let typed = only.typed::<Parcel>().unwrap().unwrap();
    assert_eq!(typed.id(), Some(&parcel));
}

#[tokio::test]
async fn dropping_the_collection_invalidates_the_stream() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    parcels.insert(&mut Parcel::new("first", 1)).await.unwrap();
    let mut changes = parcels.watch().await.unwrap();

    parcels.insert(&mut Parcel::new("second", 1)).await.unwrap();
    parcels.collection().drop().await.unwrap();

    assert_eq!(next(&mut changes).await.operation(), Operation::Insert);
    // ANCHOR: invalidate
    assert_eq!(next(&mut changes).await.operation(), Operation::Drop);
    let invalidate = next(&mut changes).await;
    assert!(matches!(invalidate.kind, ChangeKind::Invalidate));
    assert!(
        timeout(WAIT, changes.next()).await.unwrap().is_none(),
        "the stream ends"
    );
    assert!(!changes.is_alive());

    // A new stream can start after the invalidate event and follow the collection created again.
    let mut again = parcels
        .watch()
        .start_after(invalidate.token.clone())
        .await
        .unwrap();
    let third = parcels.insert(&mut Parcel::new("third", 1)).await.unwrap();
    assert_eq!(next(&mut again).await.id(), Some(&third));
    // ANCHOR_END: invalidate
}

/// A token for a moment before anything in the oplog: a real token with its cluster time set to
/// (1, 1). (A resume token's `_data` is hex: `82`, then the 8 bytes of its cluster time.)
pub fn ancient(token: &ResumeToken) -> ResumeToken {
    let stored = bson::to_document(token).unwrap();
    let data = stored.get_str("_data").unwrap();
    let forged = format!("82{}{}{}", "00000001", "00000001", &data[18..]);
    bson::from_document(doc! { "_data": forged }).unwrap()
}

#[tokio::test]
async fn a_resume_point_missing_from_the_oplog_is_a_clear_error() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();
    parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    let event = next(&mut changes).await;

    let opened = parcels.watch().resume_after(ancient(&event.token)).await;
    let error = match opened {
        Err(e) => e,
        Ok(mut stream) => next_item(&mut stream).await.expect_err("history lost"),
    };
    assert!(
        matches!(error, Error::ChangeHistoryLost { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("no longer in the oplog"),
        "{error}"
    );
}
