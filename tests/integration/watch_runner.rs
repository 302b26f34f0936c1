//! The resumable consumer (`watch().consumer(..)`), the token stores and the replica helper.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mongrove::bson::oid::ObjectId;
use mongrove::bson::{self, Bson, Document, doc};
use mongrove::testkit::FailCommand;
use mongrove::watch::{
    BoxError, Change, ChangeKind, Consumer, FullDocumentBeforeChangeType, MemoryTokenStore,
    MongoTokenStore, OnBadEvent, OnInvalidate, Operation, Replica, ReplicaOutcome,
    ResumeTokenStore, StopReason,
};
use mongrove::{Db, Error, Model};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::watch::{Parcel, ancient};

const WAIT: Duration = Duration::from_secs(30);

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Waits (bounded) until the consumer has recorded a position, so that it is watching.
async fn until_watching<M: Model, S: ResumeTokenStore>(consumer: &Consumer<M, S>) {
    timeout(WAIT, async {
        while consumer.position().await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the consumer records its starting point");
}

/// Spawns a run that ends when the returned sender fires (or is dropped).
fn spawn_run<M: Model, S: ResumeTokenStore + Clone + 'static>(
    consumer: &Consumer<M, S>,
    handler: impl mongrove::watch::Handler<M> + 'static,
) -> (
    oneshot::Sender<()>,
    JoinHandle<mongrove::Result<mongrove::watch::RunSummary>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = consumer.clone();
    let run = tokio::spawn(async move {
        consumer
            .run(handler, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, run)
}

/// Records the operations and ids a handler sees.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

type Sighting = (Operation, Option<ObjectId>);

impl Seen {
    fn handler(
        &self,
    ) -> impl FnMut(Change<Parcel>) -> futures_util::future::Ready<Result<(), BoxError>> + Send + 'static
    {
        let seen = self.0.clone();
        move |change: Change<Parcel>| {
            let mut seen = seen.lock().unwrap();
            seen.push((change.operation(), change.id().copied()));
            futures_util::future::ready(Ok(()))
        }
    }

    fn operations(&self) -> Vec<Operation> {
        self.0.lock().unwrap().iter().map(|(op, _)| *op).collect()
    }

    fn ids(&self) -> Vec<ObjectId> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, id)| *id)
            .collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "ticks", version = "version")]
struct Tick {
    #[serde(rename = "_id")]
    id: i64,
    n: i64,
    version: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_dropped_at_random_points_misses_none_of_1000_writes() {
    let db = crate::common::db().await;
    let ticks = db.repo::<Tick>();
    let consumer = ticks.watch().consumer("ticks", MongoTokenStore::new(&db));

    // What the handler has seen: (id, version) -> deliveries.
    let seen: Arc<Mutex<HashMap<(i64, i64), u32>>> = Arc::default();
    let distinct = Arc::new(AtomicUsize::new(0));
    let handler = || {
        let seen = seen.clone();
        let distinct = distinct.clone();
        move |change: Change<Tick>| {
            let key = (*change.id().unwrap(), change.version().unwrap());
            let mut seen = seen.lock().unwrap();
            let count = seen.entry(key).or_insert(0);
            if *count == 0 {
                distinct.fetch_add(1, Ordering::SeqCst);
            }
            *count += 1;
            futures_util::future::ready(Ok::<(), BoxError>(()))
        }
    };

    // The first run records its starting point before anything is written.
    let first = {
        let consumer = consumer.clone();
        let handler = handler();
        tokio::spawn(async move { consumer.run(handler, std::future::pending()).await })
    };
    until_watching(&consumer).await;

    // 1,000 writes: 500 inserts and 500 updates, in 100 round trips, while the consumer crashes.
    let writer = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            let f = Tick::fields();
            for batch in 0..50_i64 {
                let mut docs: Vec<Tick> = (0..10)
                    .map(|i| Tick {
                        id: batch * 10 + i,
                        n: 0,
                        version: 0,
                    })
                    .collect();
                ticks.insert_many(&mut docs).await.unwrap();
                let ids: Vec<i64> = docs.iter().map(|t| t.id).collect();
                ticks.update_many(f.id.in_(ids), f.n.inc(1)).await.unwrap();
            }
        })
    };

    // ANCHOR: crash-loop
    let mut rng = StdRng::seed_from_u64(0x6d6f_6e67_726f_7665);
    let mut running = first;
    let mut crashes = 0;
    while crashes < 12 {
        // Crash after a random number of new events, at a random moment after that.
        let target = distinct.load(Ordering::SeqCst) + rng.random_range(20..90);
        let distinct_now = distinct.clone();
        until("the consumer reaches its crash point", || {
            distinct_now.load(Ordering::SeqCst) >= target.min(1000)
        })
        .await;
        if rng.random_bool(0.5) {
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..3000))).await;
        }
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        crashes += 1;
        let consumer = consumer.clone();
        let handler = handler();
        running = tokio::spawn(async move { consumer.run(handler, std::future::pending()).await });
    }
    // ANCHOR_END: crash-loop
    running.abort();
    let _ = running.await;
    writer.await.unwrap();

    // A last run from the stored token sees the rest, then stops gracefully.
    let (stop, last) = spawn_run(&consumer, handler());
    let distinct_now = distinct.clone();
    until("every write has been seen", || {
        distinct_now.load(Ordering::SeqCst) == 1000
    })
    .await;
    stop.send(()).unwrap();
    let summary = timeout(WAIT, last).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.stopped, StopReason::Shutdown);

    let seen = seen.lock().unwrap().clone();
    for id in 0..500 {
        for version in [0, 1] {
            assert!(
                seen.contains_key(&(id, version)),
                "missing write ({id}, v{version})"
            );
        }
    }
    assert_eq!(seen.len(), 1000, "nothing but the writes");
    let deliveries: u32 = seen.values().sum();
    assert!(crashes >= 10);
    println!(
        "{crashes} crashes: 1000 writes, {deliveries} deliveries ({} repeated)",
        deliveries - 1000
    );
    // The killed consumers' cursors are closed by driver tasks in the background; let them
    // finish before this runtime stops, so that none is cut off mid-request on another thread.
    drop(consumer);
    timeout(WAIT, db.client().clone().shutdown()).await.unwrap();
}

#[tokio::test]
async fn after_a_drop_the_consumer_continues_with_the_new_collection() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let consumer = parcels.watch().consumer("parcels", MemoryTokenStore::new());
    let seen = Seen::default();
    let (stop, run) = spawn_run(&consumer, seen.handler());
    until_watching(&consumer).await;

    let a = parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    parcels.collection().drop().await.unwrap();
    let b = parcels.insert(&mut Parcel::new("b", 1)).await.unwrap();
    until("four events", || seen.len() == 4).await;
    assert_eq!(
        seen.operations(),
        [
            Operation::Insert,
            Operation::Drop,
            Operation::Invalidate,
            Operation::Insert
        ]
    );
    assert_eq!(seen.ids(), [a, b]);

    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.stopped, StopReason::Shutdown);
    assert_eq!(summary.handled, 4);
    assert!(summary.reopened >= 1);
}

#[tokio::test]
async fn told_to_stop_on_invalidate_the_consumer_stops_and_later_continues_after_it() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let store = MemoryTokenStore::new();
    let consumer = parcels
        .watch()
        .consumer("parcels", store.clone())
        .on_invalidate(OnInvalidate::Stop);
    let seen = Seen::default();
    let (_stop, run) = spawn_run(&consumer, seen.handler());
    until_watching(&consumer).await;

    parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    parcels.collection().drop().await.unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.stopped, StopReason::Invalidated);
    assert_eq!(
        seen.operations(),
        [Operation::Insert, Operation::Drop, Operation::Invalidate]
    );

    // Written while nobody watches; the next run starts after the invalidate event.
    let c = parcels.insert(&mut Parcel::new("c", 1)).await.unwrap();
    let again = Seen::default();
    let (stop, run) = spawn_run(&consumer, again.handler());
    until("the insert after the drop", || again.len() == 1).await;
    assert_eq!(again.ids(), [c]);
    stop.send(()).unwrap();
    assert_eq!(
        timeout(WAIT, run).await.unwrap().unwrap().unwrap().stopped,
        StopReason::Shutdown
    );
}

#[tokio::test]
async fn a_bad_event_stops_the_consumer_unless_it_is_told_to_skip_and_record() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let store = MemoryTokenStore::new();
    let consumer = parcels.watch().consumer("parcels", store.clone());
    let seen = Seen::default();
    let (_stop, run) = spawn_run(&consumer, seen.handler());
    until_watching(&consumer).await;
    let start = consumer.position().await.unwrap();

    let bad = ObjectId::new();
    parcels
        .collection()
        .insert_one(doc! { "_id": bad, "label": "odd", "weight": "heavy", "version": 0_i64 })
        .await
        .unwrap();
    let good = parcels.insert(&mut Parcel::new("fine", 1)).await.unwrap();

    // Stop (the default): the error names the document, nothing was handled or recorded.
    let error = timeout(WAIT, run).await.unwrap().unwrap().unwrap_err();
    match &error {
        Error::Decode {
            collection,
            id,
            field,
            ..
        } => {
            assert_eq!(collection, "parcels");
            assert_eq!(id.as_deref(), Some(&Bson::ObjectId(bad)));
            assert_eq!(field, "weight");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(seen.len(), 0);
    assert_eq!(consumer.position().await.unwrap(), start);

    // Skip and record: the bad event goes to the dead letters, the good one to the handler.
    let dead_letters = db.database().collection::<Document>("dead_letters");
    let dead_lettering = consumer
        .clone()
        .on_bad_event(OnBadEvent::SkipAndRecord(dead_letters.clone()));
    let (stop, run) = spawn_run(&dead_lettering, seen.handler());
    until("the good event", || seen.len() == 1).await;
    assert_eq!(seen.ids(), [good]);
    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!((summary.handled, summary.skipped), (1, 1));

    let letters: Vec<Document> = dead_letters
        .find(doc! {})
        .await
        .unwrap()
        .map(|d| d.unwrap())
        .collect()
        .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.get_str("subscription").unwrap(), "parcels");
    assert_eq!(letter.get("documentId"), Some(&Bson::ObjectId(bad)));
    assert_eq!(letter.get_str("field").unwrap(), "weight");
    assert!(letter.get_str("error").unwrap().contains("weight"));
    assert_eq!(
        letter
            .get_document("event")
            .unwrap()
            .get_str("operationType")
            .unwrap(),
        "insert"
    );
}

#[tokio::test]
async fn a_failing_handler_stops_the_run_and_its_event_comes_again() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let consumer = parcels.watch().consumer("parcels", MemoryTokenStore::new());
    let failing = |_change: Change<Parcel>| async { Err::<(), _>("the ledger is down") };
    let (_stop, run) = spawn_run(&consumer, failing);
    until_watching(&consumer).await;
    let a = parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    let error = timeout(WAIT, run).await.unwrap().unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Handler { subscription, source } if subscription == "parcels" && source.to_string() == "the ledger is down"),
        "{error:?}"
    );

    let seen = Seen::default();
    let (stop, run) = spawn_run(&consumer, seen.handler());
    until("the event again", || seen.len() == 1).await;
    assert_eq!(seen.ids(), [a]);
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_running_handler_finish_and_records_its_event() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let consumer = parcels.watch().consumer("parcels", MemoryTokenStore::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (entered, release) = (entered.clone(), release.clone());
        move |change: Change<Parcel>| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                let _ = change;
                Ok::<(), BoxError>(())
            }
        }
    };
    let (stop, run) = spawn_run(&consumer, handler);
    until_watching(&consumer).await;
    parcels.insert(&mut Parcel::new("slow", 1)).await.unwrap();
    timeout(WAIT, entered.notified()).await.unwrap();

    // Shutdown while the handler is busy: the run waits for it, then stops.
    stop.send(()).unwrap();
    tokio::task::yield_now().await;
    assert!(!run.is_finished(), "the handler has not finished yet");
    release.notify_one();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(
        (summary.stopped, summary.handled),
        (StopReason::Shutdown, 1)
    );

    // Its token was recorded: a new run does not see the event again.
    let seen = Seen::default();
    let (stop, run) = spawn_run(&consumer, seen.handler());
    let next = parcels.insert(&mut Parcel::new("next", 1)).await.unwrap();
    until("the next event", || seen.len() == 1).await;
    assert_eq!(seen.ids(), [next]);
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn the_consumer_rides_out_resumable_errors() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let consumer = parcels.watch().consumer("parcels", MemoryTokenStore::new());
    let seen = Seen::default();
    let (stop, run) = spawn_run(&consumer, seen.handler());
    until_watching(&consumer).await;
    let mut written = vec![parcels.insert(&mut Parcel::new("0", 1)).await.unwrap()];
    until("the first event", || seen.len() == 1).await;

    // The next getMore fails, and so do the aggregates that try to resume the stream: the
    // driver's own resume gives up, and the consumer reopens from its token.
    let fail = db
        .fail_point(
            FailCommand::new(["getMore", "aggregate"])
                .error_code(9001)
                .error_labels(["ResumableChangeStreamError"])
                .times(4),
        )
        .await
        .unwrap();
    for i in 1..=10 {
        written.push(
            parcels
                .insert(&mut Parcel::new(&i.to_string(), 1))
                .await
                .unwrap(),
        );
    }
    until("every event", || seen.len() >= written.len()).await;
    fail.off().await.unwrap();
    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert!(summary.reopened >= 1, "{summary:?}");
    let mut ids = seen.ids();
    ids.dedup();
    assert_eq!(ids, written);
}

#[tokio::test]
async fn a_stored_token_that_fell_off_the_oplog_is_a_clear_error() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();
    parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    let event = timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let store = MemoryTokenStore::new();
    store.save("parcels", &ancient(&event.token)).await.unwrap();
    let consumer = parcels.watch().consumer("parcels", store);
    let error = timeout(
        WAIT,
        consumer.run(Seen::default().handler(), std::future::pending()),
    )
    .await
    .expect("the consumer gives up at once")
    .unwrap_err();
    assert!(
        matches!(error, Error::ChangeHistoryLost { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("clear the stored resume token"),
        "{error}"
    );
}

#[tokio::test]
async fn history_lost_is_not_retried() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let store = MemoryTokenStore::new();
    let consumer = parcels.watch().consumer("parcels", store.clone());
    // Record a real position, then come back after the server has dropped it from its oplog:
    // the server answers `aggregate` with ChangeStreamHistoryLost (286), as after a long outage.
    let (stop, run) = spawn_run(&consumer, Seen::default().handler());
    until_watching(&consumer).await;
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    let position = consumer.position().await.unwrap();

    let _lost = db
        .fail_point(FailCommand::new(["aggregate"]).error_code(286))
        .await
        .unwrap();
    let error = timeout(
        WAIT,
        consumer.run(Seen::default().handler(), std::future::pending()),
    )
    .await
    .expect("the consumer gives up at once")
    .unwrap_err();
    assert!(
        matches!(&error, Error::ChangeHistoryLost { collection, .. } if collection == "parcels"),
        "{error:?}"
    );
    assert_eq!(
        consumer.position().await.unwrap(),
        position,
        "the position is kept"
    );
}

#[tokio::test]
async fn token_stores_keep_one_token_per_subscription() {
    let db = crate::common::db().await;
    let parcels = db.repo::<Parcel>();
    let mut changes = parcels.watch().await.unwrap();
    parcels.insert(&mut Parcel::new("a", 1)).await.unwrap();
    parcels.insert(&mut Parcel::new("b", 1)).await.unwrap();
    let a = timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .token;
    let b = timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .token;

    let mongo = MongoTokenStore::new(&db);
    let stores: [&dyn ResumeTokenStore; 2] = [&MemoryTokenStore::new(), &mongo];
    for store in stores {
        assert_eq!(store.load("x").await.unwrap(), None);
        store.save("x", &a).await.unwrap();
        store.save("y", &a).await.unwrap();
        store.save("x", &b).await.unwrap();
        assert_eq!(store.load("x").await.unwrap(), Some(b.clone()));
        assert_eq!(store.load("y").await.unwrap(), Some(a.clone()));
        store.clear("x").await.unwrap();
        assert_eq!(store.load("x").await.unwrap(), None);
    }
    // One document per subscription, readable by anyone.
    let stored = mongo
        .collection()
        .find_one(doc! { "_id": "y" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get("token"), Some(&bson::to_bson(&a).unwrap()));
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "accounts", version = "version")]
struct Account {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    owner: String,
    balance: i64,
    tags: Vec<String>,
    nickname: Option<String>,
    version: i64,
}

async fn all_documents(db: &Db) -> BTreeMap<String, Document> {
    db.repo::<Account>()
        .collection()
        .find(doc! {})
        .await
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (d.get_object_id("_id").unwrap().to_hex(), d)
        })
        .collect()
        .await
}

#[tokio::test]
async fn a_replica_built_from_shuffled_events_ends_identical_to_the_source() {
    let db = crate::common::db().await;
    let copy = Db::new(db.client().clone(), &format!("{}_copy", db.name()));
    let accounts = db.repo::<Account>();
    accounts.enable_pre_and_post_images().await.unwrap();
    let mut changes = accounts
        .watch()
        .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable)
        .await
        .unwrap();

    // The source: 10 accounts, 150 random updates, 2 deletes.
    let mut rng = StdRng::seed_from_u64(42);
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut account = Account {
            id: None,
            owner: format!("owner {i}"),
            balance: 100,
            tags: vec!["new".into()],
            nickname: None,
            version: 0,
        };
        ids.push(accounts.insert(&mut account).await.unwrap());
    }
    let f = Account::fields();
    for _ in 0..150 {
        let id = ids[rng.random_range(0..ids.len())];
        let update = match rng.random_range(0..5) {
            0 => f.balance.inc(rng.random_range(-20..50)),
            1 => f.tags.push(format!("t{}", rng.random_range(0..100))),
            2 => f.nickname.set(format!("n{}", rng.random_range(0..100))),
            3 => f.nickname.unset(),
            _ => f.tags.pop(false),
        };
        accounts.update_one(f.id.eq(id), update).await.unwrap();
    }
    for id in &ids[..2] {
        let doomed = accounts.find_by_id(*id).await.unwrap().unwrap();
        accounts.delete(&doomed).await.unwrap();
    }

    let mut events = Vec::new();
    while events.len() < 162 {
        events.push(
            timeout(WAIT, changes.next())
                .await
                .expect("every event")
                .unwrap()
                .unwrap(),
        );
    }
    // Delivered out of order, and 20 of them twice.
    for _ in 0..20 {
        let again = events[rng.random_range(0..162)].clone();
        events.push(again);
    }
    events.shuffle(&mut rng);

    let mut replica = Replica::new(copy.repo::<Account>());
    let (mut written, mut held, mut stale) = (0, 0, 0);
    for event in events {
        match replica.apply(event).await.unwrap() {
            ReplicaOutcome::Applied { released } => written += 1 + released,
            ReplicaOutcome::HeldBack => held += 1,
            ReplicaOutcome::Stale => stale += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(replica.pending(), 0, "nothing left waiting");
    assert_eq!(written, 162, "each event written exactly once");
    assert!(held > 0 && stale > 0, "held {held}, stale {stale}");

    let source = all_documents(&db).await;
    assert_eq!(source.len(), 8);
    assert_eq!(
        all_documents(&copy).await,
        source,
        "identical, versions included"
    );
    copy.database().drop().await.unwrap();
}

#[tokio::test]
async fn events_applied_in_order_are_never_held_and_repeats_are_stale() {
    let db = crate::common::db().await;
    let copy = Db::new(db.client().clone(), &format!("{}_copy", db.name()));
    let accounts = db.repo::<Account>();
    let mut changes = accounts.watch().await.unwrap();
    let mut account = Account {
        id: None,
        owner: "o".into(),
        balance: 1,
        tags: Vec::new(),
        nickname: Some("n".into()),
        version: 0,
    };
    let id = accounts.insert(&mut account).await.unwrap();
    let f = Account::fields();
    accounts
        .update_one(f.id.eq(id), f.balance.inc(1))
        .await
        .unwrap();
    let mut replica = Replica::new(copy.repo::<Account>());
    let insert = timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let update = timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(insert.kind, ChangeKind::Insert { .. }));
    for event in [insert.clone(), update.clone()] {
        assert_eq!(
            replica.apply(event).await.unwrap(),
            ReplicaOutcome::Applied { released: 0 }
        );
    }
    for event in [update, insert] {
        assert_eq!(replica.apply(event).await.unwrap(), ReplicaOutcome::Stale);
    }
    let copied = copy
        .repo::<Account>()
        .find_by_id(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((copied.balance, copied.version), (2, 1));
    copy.database().drop().await.unwrap();
}
