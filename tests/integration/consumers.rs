//! The code of the guide's chapter on resumable consumers and replicas, and the tests that run it:
//! a billing consumer that survives restarts, and a mirror of another service's invoices.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mongrove::bson::oid::ObjectId;
use mongrove::bson::{Document, doc};
use mongrove::testkit::FailCommand;
use mongrove::watch::{
    BoxError, Change, FullDocumentBeforeChangeType, FullDocumentType, MongoTokenStore, OnBadEvent,
    Operation, Replica, ReplicaOutcome, ResumeToken, ResumeTokenStore, RunSummary, StopReason,
};
use mongrove::{Db, Error, Model};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::timeout;

// ANCHOR: model
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[serde(rename_all = "camelCase")]
#[model(collection = "invoices", version = "version")]
pub struct Invoice {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub customer: String,
    pub amount_cents: i64,
    pub status: String,
    pub version: i64,
}
// ANCHOR_END: model

// ANCHOR: consumer
/// Books every paid invoice into a ledger, once per invoice, and survives restarts: progress is
/// kept in the `mongrove_resume_tokens` collection under the name "billing".
pub async fn run_billing(
    db: &Db,
    shutdown: impl Future<Output = ()> + Send,
) -> mongrove::Result<RunSummary> {
    let ledger = db.database().collection::<Document>("ledger");
    let consumer = db
        .repo::<Invoice>()
        .watch()
        .operations([Operation::Update])
        .filter(Invoice::fields().status.eq("paid"))
        .full_document(FullDocumentType::UpdateLookup)
        .consumer("billing", MongoTokenStore::new(db))
        .on_bad_event(OnBadEvent::SkipAndRecord(
            db.database().collection("billing_dead_letters"),
        ));
    consumer
        .run(
            move |change: Change<Invoice>| {
                let ledger = ledger.clone();
                async move {
                    let Some(invoice) = change.document() else {
                        return Ok(());
                    };
                    // Keyed by the invoice: an event delivered twice books the same entry.
                    ledger
                        .update_one(
                            doc! { "_id": invoice.id },
                            doc! { "$set": {
                                "customer": &invoice.customer,
                                "amountCents": invoice.amount_cents,
                            } },
                        )
                        .upsert(true)
                        .await?;
                    Ok::<(), BoxError>(())
                }
            },
            shutdown,
        )
        .await
}
// ANCHOR_END: consumer

// ANCHOR: replica
/// Keeps a copy of the billing service's invoices in `copy`, applied in version order; the
/// subscription's progress is kept next to the copy.
pub async fn mirror_invoices(
    source: &Db,
    copy: &Db,
    shutdown: impl Future<Output = ()> + Send,
) -> mongrove::Result<Replica<Invoice>> {
    let mut replica = Replica::new(copy.repo::<Invoice>());
    source
        .repo::<Invoice>()
        .watch()
        // Deletes carry the version they delete, so they wait for their turn too.
        .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable)
        .consumer("invoice-mirror", MongoTokenStore::new(copy))
        .run(&mut replica, shutdown)
        .await?;
    Ok(replica)
}
// ANCHOR_END: replica

const WAIT: Duration = Duration::from_secs(30);

fn invoice(customer: &str, amount_cents: i64) -> Invoice {
    Invoice {
        id: None,
        customer: customer.to_owned(),
        amount_cents,
        status: "open".to_owned(),
        version: 0,
    }
}

async fn ledger(db: &Db) -> Vec<Document> {
    db.database()
        .collection::<Document>("ledger")
        .find(doc! {})
        .sort(doc! { "customer": 1 })
        .await
        .unwrap()
        .map(|d| d.unwrap())
        .collect()
        .await
}

async fn until_ledger_has(db: &Db, entries: usize) {
    timeout(WAIT, async {
        while ledger(db).await.len() < entries {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ledger fills up");
}

async fn until_started(db: &Db, subscription: &str) {
    let tokens = db
        .database()
        .collection::<Document>(MongoTokenStore::DEFAULT_COLLECTION);
    timeout(WAIT, async {
        while tokens
            .find_one(doc! { "_id": subscription })
            .await
            .unwrap()
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the consumer records where it starts");
}

#[tokio::test]
async fn billing_books_every_payment_across_a_restart() {
    let db = crate::common::db().await;
    let invoices = db.repo::<Invoice>();
    let f = Invoice::fields();

    let (stop, stopped) = oneshot::channel::<()>();
    let run = {
        let db = db.db().clone();
        tokio::spawn(async move {
            run_billing(&db, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    until_started(&db, "billing").await;
    let ada = invoices.insert(&mut invoice("Ada", 1200)).await.unwrap();
    invoices.insert(&mut invoice("Bob", 300)).await.unwrap();
    invoices
        .update_one(f.id.eq(ada), f.status.set("paid"))
        .await
        .unwrap();
    until_ledger_has(&db, 1).await;
    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.stopped, StopReason::Shutdown);

    // Paid while billing is down, plus an invoice another service broke.
    invoices
        .update_one(f.customer.eq("Bob"), f.status.set("paid"))
        .await
        .unwrap();
    invoices
        .collection()
        .insert_one(
            doc! { "customer": "Eve", "amountCents": "lots", "status": "open", "version": 0_i64 },
        )
        .await
        .unwrap();
    invoices
        .collection()
        .update_one(
            doc! { "customer": "Eve" },
            doc! { "$set": { "status": "paid", "version": 1_i64 } },
        )
        .await
        .unwrap();

    let (stop, stopped) = oneshot::channel::<()>();
    let run = {
        let db = db.db().clone();
        tokio::spawn(async move {
            run_billing(&db, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    until_ledger_has(&db, 2).await;
    let dead_letters = db.database().collection::<Document>("billing_dead_letters");
    timeout(WAIT, async {
        while dead_letters.count_documents(doc! {}).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broken invoice is recorded");
    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!((summary.handled, summary.skipped), (1, 1));

    let booked: Vec<(String, i64)> = ledger(&db)
        .await
        .iter()
        .map(|e| {
            (
                e.get_str("customer").unwrap().to_owned(),
                e.get_i64("amountCents").unwrap(),
            )
        })
        .collect();
    assert_eq!(booked, [("Ada".to_owned(), 1200), ("Bob".to_owned(), 300)]);
    let letter = dead_letters.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(letter.get_str("field").unwrap(), "amountCents");
}

#[tokio::test]
async fn the_mirror_ends_identical_to_the_source() {
    let source = crate::common::db().await;
    let copy = crate::common::db().await;
    let invoices = source.repo::<Invoice>();
    invoices.enable_pre_and_post_images().await.unwrap();
    let f = Invoice::fields();

    let (stop, stopped) = oneshot::channel::<()>();
    let run = {
        let (source, copy) = (source.db().clone(), copy.db().clone());
        tokio::spawn(async move {
            mirror_invoices(&source, &copy, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    until_started(&copy, "invoice-mirror").await;

    let mut ids = Vec::new();
    for (customer, amount) in [("Ada", 1200), ("Bob", 300), ("Cy", 50)] {
        ids.push(
            invoices
                .insert(&mut invoice(customer, amount))
                .await
                .unwrap(),
        );
    }
    invoices
        .update_many(f.amount_cents.lt(1000), f.amount_cents.mul(2))
        .await
        .unwrap();
    invoices
        .update_one(f.id.eq(ids[0]), f.status.set("paid"))
        .await
        .unwrap();
    let cy = invoices.find_by_id(ids[2]).await.unwrap().unwrap();
    invoices.delete(&cy).await.unwrap();

    let copied = copy.repo::<Invoice>();
    let expected = invoices.find(mongrove::Filter::all()).await.unwrap();
    timeout(WAIT, async {
        loop {
            let now = copied.find(mongrove::Filter::all()).await.unwrap();
            let versions = |all: &[Invoice]| -> Vec<(Option<ObjectId>, i64, i64, String)> {
                all.iter()
                    .map(|i| (i.id, i.version, i.amount_cents, i.status.clone()))
                    .collect()
            };
            if versions(&now) == versions(&expected) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the copy catches up");
    stop.send(()).unwrap();
    let replica = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(replica.pending(), 0);
    let source_docs: Vec<Document> = invoices
        .collection()
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .map(|d| d.unwrap())
        .collect()
        .await;
    let copy_docs: Vec<Document> = copied
        .collection()
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .map(|d| d.unwrap())
        .collect()
        .await;
    assert_eq!(copy_docs, source_docs);
}

// ---------------------------------------------------------------------------------------------
// Outages of the token store, and batched saves.

/// The ids of the invoices a handler saw, in order.
#[derive(Clone, Default)]
struct Booked(Arc<Mutex<Vec<ObjectId>>>);

impl Booked {
    fn handler(
        &self,
    ) -> impl FnMut(Change<Invoice>) -> std::future::Ready<Result<(), BoxError>> + Send + 'static
    {
        let booked = self.0.clone();
        move |change: Change<Invoice>| {
            if let Some(id) = change.id().copied() {
                booked.lock().unwrap().push(id);
            }
            std::future::ready(Ok(()))
        }
    }

    fn ids(&self) -> Vec<ObjectId> {
        self.0.lock().unwrap().clone()
    }

    async fn until_seen(&self, id: ObjectId) {
        timeout(WAIT, async {
            while !self.ids().contains(&id) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the consumer sees the event");
    }
}

/// A token store that counts its writes.
#[derive(Clone)]
struct Counting {
    inner: MongoTokenStore,
    saves: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl ResumeTokenStore for Counting {
    async fn load(&self, subscription: &str) -> mongrove::Result<Option<ResumeToken>> {
        self.inner.load(subscription).await
    }

    async fn save(&self, subscription: &str, token: &ResumeToken) -> mongrove::Result<()> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(subscription, token).await
    }

    async fn clear(&self, subscription: &str) -> mongrove::Result<()> {
        self.inner.clear(subscription).await
    }
}

type Run = tokio::task::JoinHandle<mongrove::Result<RunSummary>>;

fn spawn<S: ResumeTokenStore + Clone + 'static>(
    consumer: &mongrove::watch::Consumer<Invoice, S>,
    booked: &Booked,
) -> (oneshot::Sender<()>, Run) {
    let (stop, stopped) = oneshot::channel::<()>();
    let (consumer, handler) = (consumer.clone(), booked.handler());
    let run = tokio::spawn(async move {
        consumer
            .run(handler, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, run)
}

async fn insert_invoices(db: &Db, n: usize) -> Vec<ObjectId> {
    let invoices = db.repo::<Invoice>();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            invoices
                .insert(&mut invoice(&format!("c{i}"), 100))
                .await
                .unwrap(),
        );
    }
    ids
}

#[tokio::test]
async fn a_consumer_rides_out_lost_connections_while_it_saves_its_token() {
    let db = crate::common::db().await;
    let booked = Booked::default();
    // ANCHOR: store-outage
    let consumer = db
        .repo::<Invoice>()
        .watch()
        .consumer("billing", MongoTokenStore::new(&db))
        // How long outages of the stream or of the token store are ridden out (the default).
        .retry_for(Duration::from_secs(60));
    // ANCHOR_END: store-outage
    let (stop, run) = spawn(&consumer, &booked);
    until_started(&db, "billing").await;
    let mut written = insert_invoices(&db, 1).await;
    booked.until_seen(written[0]).await;

    // The next two `update` commands of this client (the token store's save, and the driver's
    // own retry of it) lose their connection.
    let outage = db
        .fail_point(FailCommand::new(["update"]).close_connection().times(2))
        .await
        .unwrap();
    written.extend(insert_invoices(&db, 5).await);
    booked.until_seen(written[5]).await;
    assert!(!run.is_finished(), "the consumer keeps going");
    outage.off().await.unwrap();
    stop.send(()).unwrap();
    let summary = timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.stopped, StopReason::Shutdown);
    let mut seen = booked.ids();
    seen.dedup();
    assert_eq!(seen, written, "nothing missed");

    // The last token was saved in the end: a new run starts after the last event.
    let again = Booked::default();
    let (stop, run) = spawn(&consumer, &again);
    let next = insert_invoices(&db, 1).await;
    again.until_seen(next[0]).await;
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(again.ids(), next);
}

#[tokio::test]
async fn a_token_store_that_stays_down_ends_the_run_with_an_error_naming_it() {
    let db = crate::common::db().await;
    let booked = Booked::default();
    let consumer = db
        .repo::<Invoice>()
        .watch()
        .consumer("billing", MongoTokenStore::new(&db))
        .retry_for(Duration::from_millis(500));
    let (_stop, run) = spawn(&consumer, &booked);
    until_started(&db, "billing").await;
    let outage = db
        .fail_point(FailCommand::new(["update"]).close_connection())
        .await
        .unwrap();
    let written = insert_invoices(&db, 1).await;
    let error = timeout(WAIT, run).await.unwrap().unwrap().unwrap_err();
    outage.off().await.unwrap();
    let Error::Timeout {
        last: Some(last), ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        matches!(&**last, Error::TokenStore { store, subscription, action: "save", .. }
            if store == MongoTokenStore::DEFAULT_COLLECTION && subscription == "billing"),
        "{last:?}"
    );
    assert!(
        error
            .to_string()
            .contains("resume token in the store `mongrove_resume_tokens`"),
        "{error}"
    );
    assert!(
        last.to_string()
            .starts_with("resume-token store `mongrove_resume_tokens` could not save"),
        "{last}"
    );
    assert_eq!(booked.ids(), written);

    // Its token was never saved, so the next run delivers the event again.
    let again = Booked::default();
    let (stop, run) = spawn(&consumer, &again);
    again.until_seen(written[0]).await;
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();

    // An error that is no outage is not retried.
    let refused = db
        .fail_point(FailCommand::new(["update"]).error_code(2))
        .await
        .unwrap();
    let (_stop, run) = spawn(&consumer, &Booked::default());
    insert_invoices(&db, 1).await;
    let error = timeout(WAIT, run).await.unwrap().unwrap().unwrap_err();
    refused.off().await.unwrap();
    assert!(
        matches!(&error, Error::TokenStore { action: "save", .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Some(2), "the driver error is kept");
}

#[tokio::test]
async fn batched_saves_write_less_and_redeliver_only_the_unsaved_tail_after_a_crash() {
    let db = crate::common::db().await;
    let saves = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: MongoTokenStore::new(&db),
        saves: saves.clone(),
    };
    // ANCHOR: batched
    let consumer = db
        .repo::<Invoice>()
        .watch()
        .consumer("billing", store)
        // One token write per 5 events, or per second, whichever comes first.
        .save_tokens_every(5, Duration::from_secs(1));
    // ANCHOR_END: batched
    let consumer = consumer.save_tokens_every(5, Duration::from_secs(3600));

    // A crash: the run is dropped in the middle, after 12 events.
    let booked = Booked::default();
    let (_stop, run) = spawn(&consumer, &booked);
    until_started(&db, "billing").await;
    let first = insert_invoices(&db, 12).await;
    booked.until_seen(first[11]).await;
    run.abort();
    let _ = run.await;
    let written = saves.load(Ordering::SeqCst);
    assert!(written < 12, "{written} token writes for 12 events");
    assert_eq!(booked.ids(), first);

    // The next run delivers again only what came after the last saved token.
    let again = Booked::default();
    let (stop, run) = spawn(&consumer, &again);
    let second = insert_invoices(&db, 3).await;
    again.until_seen(second[2]).await;
    let seen = again.ids();
    let redelivered = seen.len() - second.len();
    assert!(
        (1..=4).contains(&redelivered),
        "{redelivered} events redelivered"
    );
    assert_eq!(seen[..redelivered], first[12 - redelivered..]);
    assert_eq!(seen[redelivered..], second);

    // A graceful stop saves the last token, though fewer than 5 events came since the last save.
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    let last = Booked::default();
    let (stop, run) = spawn(&consumer, &last);
    let third = insert_invoices(&db, 1).await;
    last.until_seen(third[0]).await;
    stop.send(()).unwrap();
    timeout(WAIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(
        last.ids(),
        third,
        "nothing redelivered after a graceful stop"
    );
}

// ---------------------------------------------------------------------------------------------
// A replica after a restart.

#[tokio::test]
async fn a_replica_restarted_on_its_copy_converges_when_events_come_again() {
    let source = crate::common::db().await;
    let copy = crate::common::db().await;
    let invoices = source.repo::<Invoice>();
    invoices.enable_pre_and_post_images().await.unwrap();
    let f = Invoice::fields();
    let mut changes = invoices
        .watch()
        .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable)
        .await
        .unwrap();

    // Three invoices; Cy's is updated twice and deleted; the others go on changing.
    let mut ids = Vec::new();
    for (customer, amount) in [("Ada", 1200), ("Bob", 300), ("Cy", 50)] {
        ids.push(
            invoices
                .insert(&mut invoice(customer, amount))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        invoices
            .update_one(f.id.eq(*id), f.amount_cents.inc(10))
            .await
            .unwrap();
    }
    invoices
        .update_one(f.id.eq(ids[2]), f.status.set("void"))
        .await
        .unwrap();
    let cy = invoices.find_by_id(ids[2]).await.unwrap().unwrap();
    invoices.delete(&cy).await.unwrap();
    for id in &ids[..2] {
        invoices
            .update_one(f.id.eq(*id), f.status.set("paid"))
            .await
            .unwrap();
    }
    let mut events = Vec::new();
    while events.len() < 10 {
        events.push(
            timeout(WAIT, changes.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    let delete = events
        .iter()
        .position(|e| e.operation() == Operation::Delete)
        .unwrap();

    // ANCHOR: replica-restart
    // A first run applies everything up to Cy's delete, then the process stops.
    let mut replica = Replica::new(copy.repo::<Invoice>());
    for event in &events[..=delete] {
        replica.apply(event.clone()).await.unwrap();
    }
    drop(replica);

    // The next run, on the same copy, gets the events again from before the delete (its
    // consumer's last saved token), shuffled and some twice, as merged or redelivered
    // streams do: Cy's late update and delete are stale, not held for ever, and nothing
    // brings Cy back.
    let mut again: Vec<_> = events[delete - 3..].to_vec();
    again.extend(events[delete - 1..=delete].iter().cloned());
    again.extend(events[..2].iter().cloned());
    again.shuffle(&mut StdRng::seed_from_u64(7));
    let mut replica = Replica::new(copy.repo::<Invoice>());
    for event in again {
        replica.apply(event).await.unwrap();
    }
    assert_eq!(replica.pending(), 0);
    // ANCHOR_END: replica-restart
    let documents = |db: Db| async move {
        db.repo::<Invoice>()
            .collection()
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .unwrap()
            .map(|d| d.unwrap())
            .collect::<Vec<Document>>()
            .await
    };
    let expected = documents(source.db().clone()).await;
    assert_eq!(expected.len(), 2);
    assert_eq!(documents(copy.db().clone()).await, expected);

    // Held-back events survive a restart too: Ada's last update comes before the one it
    // follows, the process stops, and the next run writes it when its turn comes.
    let other = crate::common::db().await;
    let mut replica = Replica::new(other.repo::<Invoice>());
    for (event, outcome) in [
        (&events[0], ReplicaOutcome::Applied { released: 0 }),
        (&events[8], ReplicaOutcome::HeldBack),
    ] {
        assert_eq!(replica.apply(event.clone()).await.unwrap(), outcome);
    }
    drop(replica);
    let mut replica = Replica::new(other.repo::<Invoice>());
    assert_eq!(
        replica.apply(events[3].clone()).await.unwrap(),
        ReplicaOutcome::Applied { released: 1 }
    );
    assert_eq!(replica.pending(), 0);
    assert_eq!(documents(other.db().clone()).await[..], expected[..1]);
}
