//! The promise that a typed repository never loses or corrupts data, tried the way a user would
//! break it: stale copies after aborted, retried and cancelled transactions, documents written
//! by other services, upserts, hostile input, and batches that fail half-way.

use std::collections::HashMap;
use std::time::Duration;

use mongrove::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongrove::testkit::FailCommand;
use mongrove::{Applied, Error, Filter, Model, PartialWrite, WriteOp};
use serde::{Deserialize, Serialize};

use crate::common;
use crate::versioning::{Ticket, ticket};

async fn load(db: &mongrove::Db, id: ObjectId) -> Ticket {
    db.repo::<Ticket>()
        .find_by_id(id)
        .await
        .expect("find")
        .expect("the ticket exists")
}

/// A ticket loaded at version 0, changed and saved inside a transaction that then aborts: its
/// in-memory version says 1, the server's 0.
async fn stale_after_abort(db: &mongrove::Db) -> (ObjectId, Ticket) {
    // ANCHOR: abort
    let tickets = db.repo::<Ticket>();
    let id = tickets.insert(&mut ticket("printer")).await.unwrap();
    let mut stale = load(db, id).await;
    let aborted: mongrove::Result<()> = db
        .transaction(async |tx| {
            stale.title = "aborted change".into();
            tx.repo::<Ticket>().save(&mut stale).await?;
            Err(Error::custom("changed my mind"))
        })
        .await;
    assert!(matches!(aborted, Err(Error::Custom(_))), "{aborted:?}");
    assert_eq!(
        stale.version, 1,
        "the save inside the attempt claimed version 1"
    );
    assert_eq!(
        load(db, id).await.version,
        0,
        "the abort rolled the save back"
    );
    // ANCHOR_END: abort
    (id, stale)
}

#[tokio::test]
async fn after_an_abort_a_fresh_copy_saves_and_the_stale_copy_conflicts() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let (id, mut stale) = stale_after_abort(&db).await;
    // ANCHOR: fresh_first
    // Another writer gives the document version 1 for real.
    let f = Ticket::fields();
    tickets
        .update_one(f.id.eq(id), f.assignee.set(Some("carol".to_owned())))
        .await
        .unwrap();
    let mut fresh = load(&db, id).await;
    assert_eq!(fresh.version, 1);
    fresh.edits = 5;
    tickets
        .save(&mut fresh)
        .await
        .expect("a current copy never conflicts");
    assert_eq!(fresh.version, 2);

    match tickets.save(&mut stale).await {
        Err(Error::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (1, 2)),
        other => panic!("the stale copy must conflict, got {other:?}"),
    }
    let stored = load(&db, id).await;
    assert_eq!(
        (
            stored.title.as_str(),
            stored.assignee.as_deref(),
            stored.edits,
            stored.version
        ),
        ("printer", Some("carol"), 5, 2),
        "nothing of the later writes was lost"
    );
    // ANCHOR_END: fresh_first
}

#[tokio::test]
async fn after_an_abort_the_stale_copy_conflicts_even_when_it_saves_first() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let (id, mut stale) = stale_after_abort(&db).await;
    let f = Ticket::fields();
    tickets
        .update_one(f.id.eq(id), f.assignee.set(Some("carol".to_owned())))
        .await
        .unwrap();
    // ANCHOR: stale_first
    // The stale copy claims version 1, and the server is at 1 too, by another write.
    match tickets.save(&mut stale).await {
        Err(Error::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (0, 1)),
        other => panic!("the stale copy must conflict, got {other:?}"),
    }
    // Edited further after the abort: still based on version 0.
    stale.edits = 9;
    assert!(matches!(
        tickets.save(&mut stale).await,
        Err(Error::VersionConflict { .. })
    ));
    let mut fresh = load(&db, id).await;
    fresh.edits = 1;
    tickets
        .save(&mut fresh)
        .await
        .expect("the fresh copy saves");
    let stored = load(&db, id).await;
    assert_eq!(stored.assignee.as_deref(), Some("carol"));
    assert_eq!((stored.edits, stored.version), (1, 2));
    // ANCHOR_END: stale_first
}

#[tokio::test]
async fn a_copy_saved_in_an_aborted_transaction_saves_when_nobody_else_wrote() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let (id, mut stale) = stale_after_abort(&db).await;
    // Nobody wrote since: the copy is based on the stored version 0 and saves over it.
    tickets
        .save(&mut stale)
        .await
        .expect("no spurious conflict");
    assert_eq!(stale.version, 1);
    let stored = load(&db, id).await;
    assert_eq!(
        (stored.title.as_str(), stored.version),
        ("aborted change", 1)
    );
    // And keeps saving normally.
    stale.edits += 1;
    tickets.save(&mut stale).await.unwrap();
    assert_eq!(load(&db, id).await.version, 2);
}

#[tokio::test]
async fn a_retried_transaction_saves_its_model_again_without_a_conflict() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let id = tickets.insert(&mut ticket("retry")).await.unwrap();
    let mut loaded = load(&db, id).await;
    // The first commit fails transiently: the closure runs again with the model it already
    // saved once (claiming version 1 while the server is back at 0).
    let _fault = db
        .fail_point(FailCommand::transient(["commitTransaction"]).times(1))
        .await
        .unwrap();
    let mut runs = 0;
    db.transaction(async |tx| {
        runs += 1;
        loaded.edits += 1;
        tx.repo::<Ticket>().save(&mut loaded).await?;
        Ok(())
    })
    .await
    .expect("the second attempt commits");
    assert_eq!(runs, 2);
    assert_eq!(loaded.version, 1);
    let stored = load(&db, id).await;
    assert_eq!((stored.edits, stored.version), (2, 1));
    loaded.edits += 1;
    tickets
        .save(&mut loaded)
        .await
        .expect("the committed model saves on");
    assert_eq!(load(&db, id).await.version, 2);
}

#[tokio::test]
async fn a_cancelled_transaction_leaves_no_stale_copy_able_to_overwrite() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let id = tickets.insert(&mut ticket("cancelled")).await.unwrap();
    let mut stale = load(&db, id).await;
    let scope = db.transaction(async |tx| {
        stale.title = "never committed".into();
        tx.repo::<Ticket>().save(&mut stale).await?;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), scope)
            .await
            .is_err()
    );
    assert_eq!(stale.version, 1);
    let f = Ticket::fields();
    // The server drops the cancelled transaction's lock when the session ends; wait for it.
    let mut unblocked = false;
    for _ in 0..100 {
        match tickets.update_one(f.id.eq(id), f.edits.inc(7)).await {
            Ok(outcome) if outcome.modified == 1 => {
                unblocked = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(unblocked, "the cancelled transaction was aborted");
    assert!(matches!(
        tickets.save(&mut stale).await,
        Err(Error::VersionConflict { .. })
    ));
    let stored = load(&db, id).await;
    assert_eq!((stored.title.as_str(), stored.edits), ("cancelled", 7));
}

#[tokio::test]
async fn replace_of_a_stale_copy_is_a_version_conflict() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let id = tickets.insert(&mut ticket("replace")).await.unwrap();
    let mut stale = load(&db, id).await;
    let mut current = load(&db, id).await;
    current.edits = 1;
    tickets.save(&mut current).await.unwrap();
    let f = Ticket::fields();
    stale.title = "overwrite".into();
    match tickets.replace(f.id.eq(id), &mut stale).await {
        Err(Error::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (0, 1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(load(&db, id).await.title, "replace");
    // A filter that matches nothing at all is no conflict: nothing was there to lose.
    let outcome = tickets
        .replace(f.title.eq("no such ticket"), &mut current)
        .await
        .unwrap();
    assert_eq!(outcome.matched, 0);
    // The current copy replaces, and the version goes on.
    current.title = "replaced".into();
    tickets.replace(f.id.eq(id), &mut current).await.unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(load(&db, id).await.version, 2);
}

/// A model read from documents another service wrote without any version field.
// ANCHOR: legacy
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "legacy", version = "version")]
struct Legacy {
    #[serde(rename = "_id")]
    id: ObjectId,
    name: String,
    #[serde(default)]
    version: i64,
}
// ANCHOR_END: legacy

#[tokio::test]
async fn documents_stored_without_a_version_are_version_zero() {
    let db = common::db().await;
    let repo = db.repo::<Legacy>();
    let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::new()).collect();
    for id in &ids {
        repo.collection()
            .insert_one(doc! { "_id": id, "name": "from elsewhere" })
            .await
            .unwrap();
    }
    let mut loaded = repo.find_by_id(ids[0]).await.unwrap().unwrap();
    assert_eq!(loaded.version, 0);
    loaded.name = "saved".into();
    repo.save(&mut loaded)
        .await
        .expect("version 0 matches a missing field");
    assert_eq!(loaded.version, 1);
    assert_eq!(repo.find_by_id(ids[0]).await.unwrap().unwrap().version, 1);

    let f = Legacy::fields();
    let applied = repo
        .apply_if_current(ids[1], 1, f.name.set("event 1"))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Applied);
    assert_eq!(repo.find_by_id(ids[1]).await.unwrap().unwrap().version, 1);

    let modified = repo
        .modify(ids[2], |mut doc| async move {
            doc.name = "modified".into();
            Ok(doc)
        })
        .await
        .unwrap();
    assert_eq!(modified.version, 1);

    let outcome = repo
        .update_one(f.id.eq(ids[3]), f.name.set("checked"))
        .expect_version(0)
        .await
        .unwrap();
    assert_eq!(outcome.modified, 1);

    // A version that is not an integer is named as such, never read as 0.
    let odd = ObjectId::new();
    repo.collection()
        .insert_one(doc! { "_id": odd, "name": "odd", "version": "seven" })
        .await
        .unwrap();
    let mut copy = Legacy {
        id: odd,
        name: "x".into(),
        version: 0,
    };
    match repo.save(&mut copy).await {
        Err(Error::Decode { field, reason, .. }) => {
            assert_eq!(field, "version");
            assert!(reason.contains("not an integer"), "{reason}");
        }
        other => panic!("expected a decode error naming the version, got {other:?}"),
    }
}

/// Timestamps that are not `Option`s: a document without them does not decode.
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "counters", version = "version", timestamps)]
struct Counter {
    #[serde(rename = "_id")]
    id: String,
    hits: i64,
    version: i64,
    created_at: DateTime,
    updated_at: DateTime,
}

#[tokio::test]
async fn an_upserted_document_looks_exactly_like_an_inserted_one() {
    let db = common::db().await;
    let counters = db.repo::<Counter>();
    let f = Counter::fields();
    let outcome = counters
        .update_one(f.id.eq("a".to_owned()), f.hits.inc(1))
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(outcome.upserted_id, Some(Bson::String("a".into())));
    let a = counters
        .find_by_id("a".to_owned())
        .await
        .expect("it decodes")
        .unwrap();
    assert_eq!((a.hits, a.version), (1, 0));
    assert_eq!(a.created_at, a.updated_at);
    // The same upsert now updates: version 1, creation time kept.
    counters
        .update_one(f.id.eq("a".to_owned()), f.hits.inc(1))
        .upsert(true)
        .await
        .unwrap();
    let again = counters.find_by_id("a".to_owned()).await.unwrap().unwrap();
    assert_eq!((again.hits, again.version), (2, 1));
    assert_eq!(again.created_at, a.created_at);

    let returned = counters
        .find_one_and_update(f.id.eq("b".to_owned()), f.hits.inc(5))
        .upsert(true)
        .return_after()
        .await
        .unwrap()
        .expect("return_after gives the inserted document");
    assert_eq!((returned.hits, returned.version), (5, 0));

    let mut c = Counter {
        id: "c".into(),
        hits: 3,
        version: 0,
        created_at: DateTime::from_millis(0),
        updated_at: DateTime::from_millis(0),
    };
    let outcome = counters
        .replace(f.id.eq("c".to_owned()), &mut c)
        .upsert(true)
        .await
        .unwrap();
    assert!(outcome.upserted_id.is_some());
    let stored = counters.find_by_id("c".to_owned()).await.unwrap().unwrap();
    assert_eq!(stored.version, 0);
    assert!(stored.created_at.timestamp_millis() > 0);
    assert_eq!(c.version, 0);
}

#[tokio::test]
async fn bulk_writes_version_every_change_and_check_replacements() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let a = tickets.insert(&mut ticket("a")).await.unwrap();
    let b = tickets.insert(&mut ticket("b")).await.unwrap();
    // ANCHOR: bulk_versions
    let mut current = load(&db, a).await;
    let stale_b = load(&db, b).await;
    tickets
        .update_one(f.id.eq(b), f.edits.inc(1))
        .await
        .unwrap();
    current.title = "replaced in bulk".into();
    let outcome = tickets
        .bulk_write(vec![
            WriteOp::replace_one(f.id.eq(a), current.clone()),
            WriteOp::update_many(Filter::all(), f.edits.inc(10)),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (3, 3));
    let stored = load(&db, a).await;
    assert_eq!(
        (stored.title.as_str(), stored.version),
        ("replaced in bulk", 2)
    );
    // ANCHOR_END: bulk_versions

    // ANCHOR: bulk_conflicts
    // A stale replacement, unordered: reported at its position; the rest is applied.
    let mut stale_b = stale_b;
    stale_b.title = "lost update".into();
    let result = tickets
        .bulk_write(vec![
            WriteOp::update_one(f.id.eq(a), f.edits.inc(1)),
            WriteOp::replace_one(f.id.eq(b), stale_b),
            WriteOp::update_one(f.id.eq(a), f.edits.inc(1)).expect_version(3),
            WriteOp::update_one(f.id.eq(a), f.edits.inc(1)).expect_version(99),
            WriteOp::Insert(ticket("c")),
        ])
        .ordered(false)
        .await;
    let report = partial(result);
    assert_eq!(report.written, [0, 2, 4]);
    let conflicts: Vec<(usize, i64, i64)> = report
        .failed
        .iter()
        .map(|f| match &f.error {
            Error::VersionConflict {
                expected, found, ..
            } => (f.index, *expected, *found),
            other => panic!("expected conflicts, got {other}"),
        })
        .collect();
    assert_eq!(conflicts, [(1, 0, 2), (3, 99, 4)]);
    assert_eq!(report.outcome.inserted, 1);
    assert_eq!(load(&db, b).await.title, "b");
    assert_eq!(load(&db, a).await.version, 4);

    // Ordered: stops at the conflict, and says so.
    let report = partial(
        tickets
            .bulk_write(vec![
                WriteOp::update_one(f.id.eq(a), f.edits.inc(1)),
                WriteOp::update_one(f.id.eq(a), f.edits.inc(1)).expect_version(0),
                WriteOp::update_one(f.id.eq(a), f.edits.inc(1)),
            ])
            .await,
    );
    assert_eq!(report.written, [0]);
    assert_eq!(report.failed[0].index, 1);
    assert_eq!(report.not_attempted, [2]);
    assert_eq!(load(&db, a).await.version, 5);
    // ANCHOR_END: bulk_conflicts
}

// ANCHOR: partial
fn partial<T: std::fmt::Debug>(result: mongrove::Result<T>) -> Box<PartialWrite> {
    match result {
        Err(Error::PartialWrite(report)) => report,
        other => panic!("expected a partial write, got {other:?}"),
    }
}
// ANCHOR_END: partial

/// A model with free-form parts, as users write them.
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "blobs")]
struct Blob {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    name: String,
    #[serde(default)]
    attrs: HashMap<String, i32>,
    #[serde(default)]
    payload: Option<Bson>,
    #[serde(default)]
    data: String,
}

fn blob(name: &str) -> Blob {
    Blob {
        id: None,
        name: name.to_owned(),
        attrs: HashMap::new(),
        payload: None,
        data: String::new(),
    }
}

fn nested(depth: usize) -> Document {
    let mut inner = doc! { "leaf": true };
    for _ in 1..depth {
        inner = doc! { "n": inner };
    }
    inner
}

#[tokio::test]
async fn a_deeply_nested_document_is_a_decode_error_not_a_crash() {
    let db = common::db().await;
    let blobs = db.repo::<Blob>();
    // ANCHOR: deep
    let id = ObjectId::new();
    // 120 levels below the payload: more than mongrove decodes, less than the server stores.
    blobs
        .collection()
        .insert_one(doc! { "_id": id, "name": "deep", "payload": nested(120) })
        .await
        .expect("the server stores it");
    match blobs.find_by_id(id).await {
        Err(Error::Decode { field, reason, .. }) => {
            assert!(field.starts_with("payload.n.n"), "{field}");
            assert!(reason.contains("nested more than"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(matches!(
        blobs.find(Filter::all()).await,
        Err(Error::Decode { .. })
    ));
    // What the guide promises still decodes.
    let fine = ObjectId::new();
    blobs
        .collection()
        .insert_one(doc! { "_id": fine, "name": "fine", "payload": nested(50) })
        .await
        .unwrap();
    assert!(blobs.find_by_id(fine).await.unwrap().is_some());
    // ANCHOR_END: deep
}

#[tokio::test]
async fn nul_bytes_in_names_are_an_encode_error_before_anything_is_sent() {
    let db = common::db().await;
    let blobs = db.repo::<Blob>();
    // ANCHOR: nul
    let mut bad = blob("nul");
    bad.attrs.insert("a\0b".into(), 1);
    match blobs.insert(&mut bad).await {
        Err(Error::Encode { what, reason, .. }) => {
            assert!(what.contains("attrs.a\\0b"), "{what}");
            assert!(reason.contains("NUL"), "{reason}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(matches!(
        blobs.insert_many(&mut [blob("ok"), bad.clone()]).await,
        Err(Error::Encode { .. })
    ));
    assert_eq!(
        blobs.count(Filter::all()).await.unwrap(),
        0,
        "nothing was sent"
    );
    let f = Blob::fields();
    let sorted = blobs
        .find(Filter::all())
        .sort(mongrove::Sort::from(doc! { "na\0me": 1 }))
        .await;
    assert!(matches!(sorted, Err(Error::Encode { ref what, .. }) if what.contains("sort")));
    let projected = blobs
        .find(Filter::all())
        .projection(doc! { "x\0": 1 })
        .await;
    assert!(
        matches!(projected, Err(Error::Encode { ref what, .. }) if what.contains("projection"))
    );
    // ANCHOR_END: nul
    let regex = blobs.find(f.name.matches("a\0", "")).await;
    assert!(
        matches!(regex, Err(Error::Encode { ref reason, .. }) if reason.contains("regular expression"))
    );
    let filter = blobs.count(Filter::raw(doc! { "attrs.a\0": 1 })).await;
    assert!(matches!(filter, Err(Error::Encode { .. })));
    let update = blobs
        .update_many(
            Filter::all(),
            mongrove::Update::raw(doc! { "$set": { "a\0": 1 } }),
        )
        .await;
    assert!(matches!(update, Err(Error::Encode { .. })));
}

fn emails(names: &[&str]) -> Vec<crate::repo::Person> {
    names
        .iter()
        .map(|name| crate::repo::person(&format!("{name}@x.org"), 1, "C"))
        .collect()
}

#[tokio::test]
async fn insert_many_that_fails_part_way_says_what_was_written() {
    let db = common::db().await;
    // ANCHOR: insert_many
    let people = db.repo::<crate::repo::Person>();
    people.sync_indexes().await.unwrap();
    people
        .insert(&mut emails(&["dup"])[0].clone())
        .await
        .unwrap();

    // Ordered: positions before the duplicate are written and get their ids; after it, nothing.
    let mut batch = emails(&["a", "b", "dup", "c"]);
    let report = partial(people.insert_many(&mut batch).await);
    assert_eq!(report.written, [0, 1]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].index, 2);
    assert!(matches!(report.failed[0].error, Error::DuplicateKey { .. }));
    assert_eq!(report.not_attempted, [3]);
    assert!(batch[0].id.is_some() && batch[1].id.is_some());
    assert!(batch[2].id.is_none() && batch[3].id.is_none());
    let stored = people
        .find_by_id(batch[1].id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.email_address, "b@x.org");

    // Unordered: everything but the duplicate is written.
    let mut batch = emails(&["d", "dup", "e"]);
    let report = partial(people.insert_many(&mut batch).ordered(false).await);
    assert_eq!(report.written, [0, 2]);
    assert_eq!(report.failed[0].index, 1);
    assert!(report.not_attempted.is_empty());
    assert!(batch[2].id.is_some());
    assert_eq!(people.count(Filter::all()).await.unwrap(), 5);
    assert!(report.to_string().contains("wrote 2 of 3"), "{report}");
    // ANCHOR_END: insert_many

    // ANCHOR: oversized
    // An oversized document is never sent; the ordered batch stops before it.
    let blobs = db.repo::<Blob>();
    let mut big = blob("big");
    big.data = "x".repeat(17 * 1024 * 1024);
    let mut batch = vec![blob("one"), big.clone(), blob("two")];
    let report = partial(blobs.insert_many(&mut batch).await);
    assert_eq!(
        (report.written.as_slice(), report.failed[0].index),
        (&[0][..], 1)
    );
    assert!(
        report.failed[0]
            .error
            .to_string()
            .contains("maxBsonObjectSize")
    );
    assert_eq!(report.not_attempted, [2]);
    let mut batch = vec![blob("three"), big, blob("four")];
    let report = partial(blobs.insert_many(&mut batch).ordered(false).await);
    assert_eq!(report.written, [0, 2]);
    assert_eq!(blobs.count(Filter::all()).await.unwrap(), 3);
    // ANCHOR_END: oversized
}

#[tokio::test]
async fn bulk_write_splits_batches_by_the_servers_limits() {
    let db = common::db().await;
    let blobs = db.repo::<Blob>();
    let seven_mib = "y".repeat(7 * 1024 * 1024);
    let ops: Vec<WriteOp<Blob>> = (0..3)
        .map(|i| {
            let mut b = blob(&format!("big {i}"));
            b.data = seven_mib.clone();
            WriteOp::Insert(b)
        })
        .collect();
    let outcome = blobs.bulk_write(ops).await.expect("three 7 MiB inserts");
    assert_eq!(outcome.inserted, 3);

    let f = Blob::fields();
    let mut ops: Vec<WriteOp<Blob>> = (0..100_001)
        .map(|i| WriteOp::Insert(blob(&i.to_string())))
        .collect();
    ops.push(WriteOp::update_many(
        f.name.eq("7"),
        mongrove::Update::raw(doc! { "$set": { "data": "seven" } }),
    ));
    let outcome = blobs
        .bulk_write(ops)
        .await
        .expect("more writes than one command takes");
    assert_eq!((outcome.inserted, outcome.matched), (100_001, 1));
    assert_eq!(outcome.ids.len(), 100_001);

    // A later sub-batch fails after earlier ones were applied: the error says what was.
    let people = db.repo::<crate::repo::Person>();
    people.sync_indexes().await.unwrap();
    let mut ops: Vec<WriteOp<crate::repo::Person>> = emails(&["p0", "p1"])
        .into_iter()
        .map(WriteOp::Insert)
        .collect();
    let mut huge = crate::repo::person("huge@x.org", 1, "C");
    huge.display_name = "z".repeat(17 * 1024 * 1024);
    ops.push(WriteOp::Insert(huge));
    ops.push(WriteOp::Insert(emails(&["p3"]).remove(0)));
    let report = partial(people.bulk_write(ops).await);
    assert_eq!(report.written, [0, 1]);
    assert_eq!(report.failed[0].index, 2);
    assert_eq!(report.not_attempted, [3]);
    assert_eq!(people.count(Filter::all()).await.unwrap(), 2);
}

#[tokio::test]
async fn find_one_and_update_that_cannot_decode_says_the_update_was_applied() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    // ANCHOR: applied
    let id = ObjectId::new();
    // `title` is required by the model; this document has none.
    tickets
        .collection()
        .insert_one(doc! { "_id": id, "edits": 0_i64, "version": 0_i64 })
        .await
        .unwrap();
    let f = Ticket::fields();
    match tickets
        .find_one_and_update(f.id.eq(id), f.edits.inc(1))
        .await
    {
        Err(Error::Decode { reason, .. }) => {
            assert!(reason.contains("WAS applied"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    let stored = tickets
        .collection()
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_i64("edits").unwrap(), 1, "the update happened");
    // ANCHOR_END: applied
}

/// An upserting replace of a model without an id, filtered on an `_id`, stores the document
/// under that `_id` (the server takes it from the filter), in a replace and in a bulk write.
#[tokio::test]
async fn an_upsert_without_an_id_stores_the_document_under_the_filters_id() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let wanted = ObjectId::new();
    let mut fresh = ticket("from the filter");
    let outcome = tickets
        .replace(f.id.eq(wanted), &mut fresh)
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(outcome.upserted_id, Some(Bson::ObjectId(wanted)));
    assert_eq!(fresh.id, Some(wanted));
    let stored = load(&db, wanted).await;
    assert_eq!(
        (stored.title.as_str(), stored.version),
        ("from the filter", 0)
    );
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 1);

    let other = ObjectId::new();
    tickets
        .bulk_write(vec![WriteOp::ReplaceOne {
            filter: f.id.eq(other),
            doc: ticket("bulk"),
            upsert: true,
        }])
        .await
        .unwrap();
    assert_eq!(load(&db, other).await.title, "bulk");
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 2);
}

/// A batch cut off after part of it was written says so: what was written, which positions the
/// lost connection left in doubt, which were never sent.
#[tokio::test]
async fn a_bulk_write_cut_off_half_way_reports_what_was_written() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let batch = || {
        vec![
            WriteOp::Insert(ticket("a")),
            WriteOp::Insert(ticket("b")),
            WriteOp::delete_one(f.title.eq("nothing")),
            WriteOp::Insert(ticket("c")),
        ]
    };

    // The connection goes while the delete is on its way: it may or may not have been applied.
    let lost = db
        .fail_point(FailCommand::new(["delete"]).close_connection().times(1))
        .await
        .unwrap();
    let report = partial(tickets.bulk_write(batch()).await);
    assert_eq!(report.written, [0, 1]);
    assert_eq!(report.uncertain, [2]);
    assert_eq!(report.not_attempted, [3]);
    assert_eq!((report.failed.len(), report.failed[0].index), (1, 2));
    assert_eq!(report.failed[0].error.kind(), "Driver");
    assert_eq!(report.outcome.inserted, 2);
    assert!(report.to_string().contains("outcome unknown"), "{report}");
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 2);

    lost.off().await.unwrap();

    // Refused by the server as a whole: nothing of it was applied, nothing is in doubt.
    let refused = db
        .fail_point(FailCommand::new(["delete"]).error_code(2).times(1))
        .await
        .unwrap();
    let report = partial(tickets.bulk_write(batch()).await);
    assert_eq!(report.written, [0, 1]);
    assert!(report.uncertain.is_empty());
    assert_eq!(report.failed[0].error.code(), Some(2));
    assert_eq!(report.not_attempted, [3]);
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 4);

    refused.off().await.unwrap();

    // Cut off before anything was written: the error as it is.
    let first = db
        .fail_point(FailCommand::new(["insert"]).error_code(2).times(1))
        .await
        .unwrap();
    let error = tickets.bulk_write(batch()).await.unwrap_err();
    assert_eq!(error.code(), Some(2), "{error}");

    first.off().await.unwrap();

    // In a transaction, the error as it is too: the abort takes the written part with it.
    let _in_tx = db
        .fail_point(FailCommand::new(["delete"]).error_code(2).times(1))
        .await
        .unwrap();
    let error = db
        .transaction(async |tx| {
            tx.repo::<Ticket>().bulk_write(batch()).await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(2), "{error}");
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 4);
}

/// An `insert_many` of more documents than one command takes goes as several commands; cut off
/// after the first, it says which documents were written and which are in doubt.
#[tokio::test]
async fn an_insert_many_cut_off_between_commands_reports_what_was_written() {
    let db = common::db().await;
    let blobs = db.repo::<Blob>();
    // One more than the server's `maxWriteBatchSize`: two commands.
    let total = 100_001;
    let mut batch: Vec<Blob> = (0..total).map(|i| blob(&i.to_string())).collect();

    // The first command is answered; the connection goes under the second (and under the
    // driver's retry of it).
    let lost = db
        .fail_point(FailCommand::new(["insert"]).close_connection().skip(1))
        .await
        .unwrap();
    let report = partial(blobs.insert_many(&mut batch).await);
    lost.off().await.unwrap();
    assert_eq!(report.written, (0..100_000).collect::<Vec<_>>());
    assert_eq!(report.uncertain, [100_000]);
    assert_eq!(report.failed[0].index, 100_000);
    assert!(report.not_attempted.is_empty());
    assert_eq!(report.outcome.inserted, 100_000);
    assert!(batch[..100_000].iter().all(|b| b.id.is_some()));
    assert_eq!(batch[100_000].id, None);
    assert_eq!(blobs.count(Filter::all()).await.unwrap(), 100_000);

    // Without the fault, the same batch goes through whole.
    let mut again: Vec<Blob> = (0..total).map(|i| blob(&i.to_string())).collect();
    blobs.insert_many(&mut again).await.unwrap();
    assert!(again.iter().all(|b| b.id.is_some()));
    assert_eq!(blobs.count(Filter::all()).await.unwrap(), 200_001);

    // The first command is written but not confirmed as asked: nothing more is sent, and the
    // report says so.
    let unconfirmed = db
        .fail_point(
            FailCommand::new(["insert"])
                .write_concern_error(
                    doc! { "code": 64, "errmsg": "waiting for replication timed out" },
                )
                .times(1),
        )
        .await
        .unwrap();
    let mut third: Vec<Blob> = (0..total).map(|i| blob(&i.to_string())).collect();
    let report = partial(blobs.insert_many(&mut third).await);
    unconfirmed.off().await.unwrap();
    assert_eq!(report.written.len(), 100_000);
    assert_eq!(report.failed[0].index, 99_999);
    assert_eq!(report.failed[0].error.code(), Some(64));
    assert!(report.failed[0].error.to_string().contains("were written"));
    assert_eq!(report.not_attempted, [100_000]);
    assert!(report.uncertain.is_empty());
    assert!(third[99_999].id.is_some() && third[100_000].id.is_none());
    assert_eq!(blobs.count(Filter::all()).await.unwrap(), 300_001);
}
