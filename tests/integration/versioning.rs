//! Optimistic concurrency on the version key, on every write path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mongrove::bson::{DateTime, doc, oid::ObjectId};
use mongrove::{Applied, Error, Filter, Model, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: ticket
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "tickets", version = "version", timestamps)]
pub struct Ticket {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub title: String,
    pub assignee: Option<String>,
    pub edits: i64,
    pub version: i64,
    pub created_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
}
// ANCHOR_END: ticket

pub fn ticket(title: &str) -> Ticket {
    Ticket {
        id: None,
        title: title.to_owned(),
        assignee: None,
        edits: 0,
        version: 0,
        created_at: None,
        updated_at: None,
    }
}

// ANCHOR: two_editors
/// Two people load the same ticket and both save: the second save is refused.
pub async fn two_editors(db: &mongrove::Db) -> mongrove::Result<(Ticket, Error)> {
    let tickets = db.repo::<Ticket>();
    let mut created = ticket("Printer on fire");
    let id = tickets.insert(&mut created).await?;
    assert_eq!(created.version, 0);

    let mut alice = tickets.find_by_id(id).await?.expect("just inserted");
    let mut bob = tickets.find_by_id(id).await?.expect("just inserted");

    alice.assignee = Some("alice".into());
    tickets.save(&mut alice).await?; // stored version 0 -> 1
    assert_eq!(alice.version, 1);

    bob.assignee = Some("bob".into());
    let conflict = tickets
        .save(&mut bob)
        .await
        .expect_err("bob saved a stale copy");
    // Bob's copy is unchanged: he can reload, reapply his change, and save again.
    assert_eq!(bob.version, 0);

    alice.edits += 1;
    tickets.save(&mut alice).await?; // 1 -> 2
    let stored = tickets.find_by_id(id).await?.expect("still there");
    Ok((stored, conflict))
}
// ANCHOR_END: two_editors

#[tokio::test]
async fn the_second_of_two_editors_gets_a_version_conflict() {
    let db = common::db().await;
    let (stored, conflict) = two_editors(&db).await.unwrap();
    match conflict {
        Error::VersionConflict {
            collection,
            id,
            expected,
            found,
        } => {
            assert_eq!(collection, "tickets");
            assert_eq!(id, stored.id.map(mongrove::bson::Bson::ObjectId).unwrap());
            assert_eq!((expected, found), (0, 1));
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    assert_eq!(stored.assignee.as_deref(), Some("alice"));
    assert_eq!((stored.version, stored.edits), (2, 1));
}

#[tokio::test]
async fn every_write_path_raises_and_checks_the_version() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let mut t = ticket("a");
    let id = tickets.insert(&mut t).await.unwrap();
    let version = |t: Option<Ticket>| t.map(|t| t.version);

    tickets
        .update_one(f.id.eq(id), f.edits.inc(1))
        .await
        .unwrap();
    assert_eq!(version(tickets.find_by_id(id).await.unwrap()), Some(1));
    tickets
        .update_many(f.title.eq("a"), f.edits.inc(1))
        .await
        .unwrap();
    assert_eq!(version(tickets.find_by_id(id).await.unwrap()), Some(2));
    let after = tickets
        .find_one_and_update(f.id.eq(id), f.edits.inc(1))
        .return_after()
        .await
        .unwrap();
    assert_eq!(after.map(|t| (t.version, t.edits)), Some((3, 3)));

    // An explicit expected version: stale is a conflict, current applies.
    let stale = tickets
        .update_one(f.id.eq(id), f.edits.inc(1))
        .expect_version(1)
        .await;
    assert!(
        matches!(
            stale,
            Err(Error::VersionConflict {
                expected: 1,
                found: 3,
                ..
            })
        ),
        "{stale:?}"
    );
    let stale = tickets
        .find_one_and_update(f.id.eq(id), f.edits.inc(1))
        .expect_version(2)
        .await;
    assert!(
        matches!(
            stale,
            Err(Error::VersionConflict {
                expected: 2,
                found: 3,
                ..
            })
        ),
        "{stale:?}"
    );
    let current = tickets
        .update_one(f.id.eq(id), f.edits.inc(1))
        .expect_version(3)
        .await
        .unwrap();
    assert_eq!(current.modified, 1);
    // No match at all with an expected version is not a conflict.
    let nothing = tickets
        .update_one(f.id.eq(ObjectId::new()), f.edits.inc(1))
        .expect_version(0)
        .await
        .unwrap();
    assert_eq!(nothing.matched, 0);

    // An upsert whose version filter misses would insert a duplicate _id: a conflict, not E11000.
    let upsert = tickets
        .update_one(f.id.eq(id), f.edits.inc(1))
        .expect_version(0)
        .upsert(true)
        .await;
    assert!(
        matches!(
            upsert,
            Err(Error::VersionConflict {
                expected: 0,
                found: 4,
                ..
            })
        ),
        "{upsert:?}"
    );

    // replace with a loaded model: checked against its version, raised by one.
    let mut loaded = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(loaded.version, 4);
    let mut stale_copy = loaded.clone();
    loaded.title = "b".into();
    tickets.replace(f.id.eq(id), &mut loaded).await.unwrap();
    assert_eq!(loaded.version, 5);
    stale_copy.title = "c".into();
    let replaced = tickets.replace(f.id.eq(id), &mut stale_copy).await;
    assert!(
        matches!(
            replaced,
            Err(Error::VersionConflict {
                expected: 4,
                found: 5,
                ..
            })
        ),
        "a stale replace is a conflict, never a silent no-op: {replaced:?}"
    );
    assert_eq!(stale_copy.version, 4);
    let upsert = tickets
        .replace(f.id.eq(id), &mut stale_copy)
        .upsert(true)
        .await;
    assert!(
        matches!(
            upsert,
            Err(Error::VersionConflict {
                expected: 4,
                found: 5,
                ..
            })
        ),
        "{upsert:?}"
    );

    // delete of a stale copy is refused; of the current one succeeds.
    let refused = tickets.delete(&stale_copy).await;
    assert!(
        matches!(
            refused,
            Err(Error::VersionConflict {
                expected: 4,
                found: 5,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(tickets.find_by_id(id).await.unwrap().unwrap().title, "b");
    tickets.delete(&loaded).await.unwrap();
    assert!(tickets.find_by_id(id).await.unwrap().is_none());
    // Gone: saving is NotFound, not a conflict.
    assert!(matches!(
        tickets.save(&mut loaded).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn timestamps_are_set_on_insert_and_every_write() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let mut t = ticket("t");
    let id = tickets.insert(&mut t).await.unwrap();
    let created = t.created_at.expect("created_at set in memory");
    assert_eq!(t.updated_at, Some(created));
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.created_at, stored.updated_at),
        (Some(created), Some(created))
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    t.edits = 1;
    tickets.save(&mut t).await.unwrap();
    let saved = t.updated_at.unwrap();
    assert!(saved > created);
    assert_eq!(t.created_at, Some(created));

    tokio::time::sleep(Duration::from_millis(5)).await;
    tickets
        .update_one(f.id.eq(id), f.edits.inc(1))
        .await
        .unwrap();
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert!(stored.updated_at.unwrap() > saved);
    assert_eq!(stored.created_at, Some(created));
}

// ANCHOR: listener
/// A listener replaying "ticket edited" events from another service: it acknowledges an event
/// when it was applied or is stale, and asks for redelivery when it came too early.
pub async fn on_ticket_edited(
    tickets: &mongrove::Repo<Ticket>,
    id: ObjectId,
    event_version: i64,
    edits: i64,
) -> mongrove::Result<bool> {
    let f = Ticket::fields();
    let acknowledged = match tickets
        .apply_if_current(id, event_version, f.edits.set(edits))
        .await?
    {
        Applied::Applied | Applied::Stale { .. } => true,
        Applied::OutOfOrder { .. } => false,
    };
    Ok(acknowledged)
}
// ANCHOR_END: listener

#[tokio::test]
async fn update_if_current_applies_in_order_once() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    let mut t = ticket("replicated");
    let id = tickets.insert(&mut t).await.unwrap();
    tickets
        .update_one(f.id.eq(id), f.edits.set(1))
        .await
        .unwrap(); // stored version 1

    let early = tickets
        .apply_if_current(id, 10, f.edits.set(10))
        .await
        .unwrap();
    assert_eq!(early, Applied::OutOfOrder { stored: Some(1) });
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.edits),
        (1, 1),
        "an early event changes nothing"
    );

    assert_eq!(
        tickets
            .apply_if_current(id, 2, f.edits.set(2))
            .await
            .unwrap(),
        Applied::Applied
    );
    let replay = tickets
        .apply_if_current(id, 2, f.edits.set(99))
        .await
        .unwrap();
    assert_eq!(replay, Applied::Stale { stored: 2 });
    let old = tickets
        .apply_if_current(id, 1, f.edits.set(98))
        .await
        .unwrap();
    assert_eq!(old, Applied::Stale { stored: 2 });
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.edits),
        (2, 2),
        "a stale event changes nothing"
    );

    let missing = tickets
        .apply_if_current(ObjectId::new(), 1, f.edits.set(1))
        .await
        .unwrap();
    assert_eq!(missing, Applied::OutOfOrder { stored: None });

    // The listener acknowledges applied and stale events, not early ones.
    assert!(!on_ticket_edited(&tickets, id, 4, 4).await.unwrap());
    assert!(on_ticket_edited(&tickets, id, 3, 3).await.unwrap());
    assert!(on_ticket_edited(&tickets, id, 4, 4).await.unwrap());
    assert!(on_ticket_edited(&tickets, id, 4, 4).await.unwrap());
    assert_eq!(tickets.find_by_id(id).await.unwrap().unwrap().version, 4);
    // On a model without a version field `apply_if_current` does not compile
    // (tests/ui/version_apply_if_current_unversioned.rs).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_modify_loses_no_increment() {
    const TASKS: u64 = 16;
    const EACH: u64 = 100;
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let mut t = ticket("counter");
    let id = tickets.insert(&mut t).await.unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let policy =
        RetryPolicy::default().backoff(Duration::from_millis(1), Duration::from_millis(20));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let tickets = tickets.clone();
        let runs = runs.clone();
        let policy = policy.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..EACH {
                // ANCHOR: modify
                tickets
                    .modify(id, async |mut t: Ticket| {
                        runs.fetch_add(1, Ordering::Relaxed);
                        t.edits += 1;
                        Ok(t)
                    })
                    .retry(policy.clone())
                    .await?;
                // ANCHOR_END: modify
            }
            Ok::<(), Error>(())
        }));
    }
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.edits, (TASKS * EACH) as i64);
    assert_eq!(stored.version, (TASKS * EACH) as i64);
    // More closure runs than saves: conflicts happened and were retried, not lost.
    assert!(
        runs.load(Ordering::Relaxed) > TASKS * EACH,
        "no conflict was ever retried"
    );

    let missing = tickets
        .modify(ObjectId::new(), |mut t| async move {
            t.edits += 1;
            Ok(t)
        })
        .await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
    let one_try = tickets.count(Filter::all()).await.unwrap();
    assert_eq!(one_try, 1);
}

/// When every attempt of `modify` loses its race, the error after the last one says which
/// version the document is at now; when the document is deleted meanwhile, it says so.
#[tokio::test]
async fn modify_explains_the_race_it_lost_last() {
    let db = common::db().await;
    let tickets = db.repo::<Ticket>();
    let id = tickets.insert(&mut ticket("raced")).await.unwrap();
    let rival = tickets.clone();
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    // Inside every attempt another writer saves first.
    let lost = tickets
        .modify(id, async |mut t: Ticket| {
            counted.fetch_add(1, Ordering::Relaxed);
            let f = Ticket::fields();
            rival.update_one(f.id.eq(id), f.edits.inc(1)).await?;
            t.title = "mine".into();
            Ok(t)
        })
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .backoff(Duration::ZERO, Duration::ZERO),
        )
        .await;
    assert_eq!(runs.load(Ordering::Relaxed), 3);
    match lost {
        Err(Error::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (2, 3), "loaded at 2, the rival saved 3"),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let stored = tickets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!((stored.title.as_str(), stored.edits), ("raced", 3));

    // Deleted inside the attempt: the save misses, and the document is gone.
    let gone = tickets
        .modify(id, async |t: Ticket| {
            rival.delete_many(Ticket::fields().id.eq(id)).await?;
            Ok(Ticket { edits: 99, ..t })
        })
        .await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
    assert_eq!(tickets.count(Filter::all()).await.unwrap(), 0);
}
