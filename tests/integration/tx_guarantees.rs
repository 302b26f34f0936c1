//! The ways a user could step outside a transaction's guarantees, closed: a repository made
//! before the transaction, a `Db` on a clone of the client, spawned work, a repository kept
//! after the transaction, a swallowed error, a commit given up on, and a body that runs past
//! the deadline.

use std::time::{Duration, Instant};

use mongrove::bson::{doc, oid::ObjectId};
use mongrove::testkit::FailCommand;
use mongrove::{Db, Error, Filter, Model, Repo, RetryPolicy, TxOptions};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders", index(keys(code = 1), unique))]
pub struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub code: String,
    pub total: i64,
}

fn order(code: &str, total: i64) -> Order {
    Order {
        id: None,
        code: code.to_owned(),
        total,
    }
}

// ANCHOR: service
/// A service that keeps its repository, made once at start-up: the usual way to hold one.
#[derive(Clone)]
pub struct OrderService {
    orders: Repo<Order>,
}

impl OrderService {
    pub fn new(db: &Db) -> Self {
        OrderService {
            orders: db.repo::<Order>(),
        }
    }

    pub async fn place(&self, code: &str, total: i64) -> mongrove::Result<()> {
        self.orders.insert(&mut order(code, total)).await.map(drop)
    }
}
// ANCHOR_END: service

async fn codes(db: &Db) -> Vec<String> {
    let mut codes: Vec<String> = db
        .repo::<Order>()
        .find(Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.code)
        .collect();
    codes.sort();
    codes
}

#[tokio::test]
async fn a_repository_made_before_the_transaction_writes_inside_it() {
    let db = common::db().await;
    // ANCHOR: service_in_transaction
    let service = OrderService::new(&db); // made before, outside any transaction
    let result: mongrove::Result<()> = db
        .transaction(async |_tx| {
            service.place("A-1", 10).await?; // joins the transaction running on this task
            Err(Error::custom("payment declined"))
        })
        .await;
    assert!(result.is_err());
    assert!(
        codes(&db).await.is_empty(),
        "rolled back with the transaction"
    );
    // ANCHOR_END: service_in_transaction

    // A retried attempt does not repeat the write outside the transaction.
    let _fault = db
        .fail_point(FailCommand::transient(["commitTransaction"]).times(1))
        .await
        .unwrap();
    let mut runs = 0;
    db.transaction(async |tx| {
        runs += 1;
        service.place("A-2", 20).await?;
        // The document the transaction wrote, through both kinds of repository: no waiting on
        // the transaction's own lock.
        let f = Order::fields();
        tx.repo::<Order>()
            .update_one(f.code.eq("A-2"), f.total.inc(1))
            .await?;
        service
            .orders
            .update_one(f.code.eq("A-2"), f.total.inc(1))
            .await?;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(codes(&db).await, ["A-2"], "written once");
    let stored = db
        .repo::<Order>()
        .find_one(Order::fields().code.eq("A-2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.total, 22);
}

#[tokio::test]
async fn a_db_on_a_clone_of_the_client_joins_and_another_client_does_not() {
    let db = common::db().await;
    let same_client = Db::new(db.client().clone(), db.name());
    let other_client = Db::connect(mongrove::testkit::server().await.unwrap().uri(), db.name())
        .await
        .unwrap();
    let result: mongrove::Result<()> = db
        .transaction(async |_tx| {
            same_client
                .repo::<Order>()
                .insert(&mut order("same", 1))
                .await?;
            other_client
                .repo::<Order>()
                .insert(&mut order("other", 1))
                .await?;
            Err(Error::custom("abort"))
        })
        .await;
    assert!(result.is_err());
    // A session belongs to one client: the other client's write ran outside, as documented.
    assert_eq!(codes(&db).await, ["other"]);
}

#[tokio::test]
async fn spawned_work_joins_when_bound_and_not_otherwise() {
    let db = common::db().await;
    let result: mongrove::Result<()> = db
        .transaction(async |tx| {
            // ANCHOR: bind
            let orders = db.repo::<Order>();
            let task =
                tokio::spawn(tx.bind(async move { orders.insert(&mut order("bound", 1)).await }));
            task.await.map_err(Error::custom)??;
            // ANCHOR_END: bind
            let orders = db.repo::<Order>();
            let unbound =
                tokio::spawn(async move { orders.insert(&mut order("unbound", 1)).await });
            unbound.await.map_err(Error::custom)??;
            Err(Error::custom("abort"))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(
        codes(&db).await,
        ["unbound"],
        "only the unbound task wrote outside"
    );
}

#[tokio::test]
async fn a_repository_kept_after_its_transaction_refuses_to_write() {
    let db = common::db().await;
    let mut kept = None;
    db.transaction(async |tx| {
        kept = Some(tx.repo::<Order>());
        Ok(())
    })
    .await
    .unwrap();
    let kept = kept.unwrap();
    assert!(matches!(
        kept.insert(&mut order("late", 1)).await,
        Err(Error::TransactionEnded)
    ));
    assert!(matches!(
        kept.find(Filter::all()).await,
        Err(Error::TransactionEnded)
    ));
    assert!(codes(&db).await.is_empty(), "nothing was sent");

    // Work still running when the attempt ends is refused too.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let mut wait = Some(wait);
    let mut handle = None;
    db.transaction(async |tx| {
        let orders = tx.repo::<Order>();
        let wait = wait.take();
        handle = Some(tokio::spawn(async move {
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            orders.insert(&mut order("too late", 1)).await
        }));
        Ok(())
    })
    .await
    .unwrap();
    go.send(()).unwrap();
    let late = handle.unwrap().await.unwrap();
    assert!(matches!(late, Err(Error::TransactionEnded)), "{late:?}");
    assert!(codes(&db).await.is_empty());
}

#[tokio::test]
async fn a_swallowed_server_error_is_reported_at_once_not_retried() {
    let db = common::db().await;
    let orders = db.repo::<Order>();
    orders.sync_indexes().await.unwrap();
    orders.insert(&mut order("taken", 1)).await.unwrap();
    let started = Instant::now();
    let mut runs = 0;
    // ANCHOR: swallowed
    let result = db
        .transaction(async |tx| {
            runs += 1;
            let orders = tx.repo::<Order>();
            // Wrong: the duplicate key aborts the transaction on the server, whatever the
            // closure does with the error.
            if orders.insert(&mut order("taken", 2)).await.is_err() {
                tracing::info!("code taken, carrying on");
            }
            Ok(())
        })
        .await;
    match result {
        Err(Error::Swallowed(inner)) => {
            assert!(matches!(*inner, Error::DuplicateKey { .. }), "{inner}");
        }
        other => panic!("expected the swallowed error, got {other:?}"),
    }
    // ANCHOR_END: swallowed
    assert_eq!(runs, 1, "not retried");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not retried until the deadline"
    );
}

/// Whether a plain write to `code`'s order from another client (another service) gets through
/// within `limit`, or waits on a lock. (A write through the same client could reuse the pooled
/// server session of the abandoned transaction, which the server then aborts: that would hide
/// the problem.)
async fn writable(db: &Db, code: &str, limit: Duration) -> bool {
    let server = mongrove::testkit::server().await.unwrap();
    let other = Db::connect(server.uri(), db.name()).await.unwrap();
    let f = Order::fields();
    let orders = other.repo::<Order>();
    let write = orders.update_one(f.code.eq(code), f.total.inc(100));
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(_)))
}

#[tokio::test]
async fn a_commit_given_up_on_leaves_no_transaction_open() {
    let db = common::db().await;
    let orders = db.repo::<Order>();
    orders.insert(&mut order("locked", 1)).await.unwrap();
    // Every commit answers "unknown outcome" without running: the transaction stays open on
    // the server, holding the document's lock, until mongrove gives up.
    let fault = db
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(64)
                .error_labels(["UnknownTransactionCommitResult"]),
        )
        .await
        .unwrap();
    let options = TxOptions::new().retry(
        RetryPolicy::default()
            .deadline(Duration::from_millis(800))
            .backoff(Duration::from_millis(50), Duration::from_millis(100)),
    );
    let result = db
        .transaction_with(options, async |tx| {
            let f = Order::fields();
            tx.repo::<Order>()
                .update_one(f.code.eq("locked"), f.total.inc(1))
                .await?;
            Ok(())
        })
        .await;
    fault.off().await.unwrap();
    let error = result.unwrap_err();
    assert!(
        error.has_label("UnknownTransactionCommitResult"),
        "the outcome is reported unknown: {error}"
    );
    // Without killSessions the document stays locked until transactionLifetimeLimitSeconds
    // (60 s) passes.
    assert!(writable(&db, "locked", Duration::from_secs(10)).await);

    // MaxTimeMSExpired: not retried, and not left open either.
    orders.insert(&mut order("max-time", 1)).await.unwrap();
    let fault = db
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(50)
                .error_labels(["UnknownTransactionCommitResult"])
                .times(1),
        )
        .await
        .unwrap();
    let result = db
        .transaction(async |tx| {
            let f = Order::fields();
            tx.repo::<Order>()
                .update_one(f.code.eq("max-time"), f.total.inc(1))
                .await?;
            Ok(())
        })
        .await;
    fault.off().await.unwrap();
    assert_eq!(result.unwrap_err().code(), Some(50));
    assert!(writable(&db, "max-time", Duration::from_secs(10)).await);
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_scope() {
    let db = common::db().await;
    let orders = db.repo::<Order>();
    orders.insert(&mut order("slow", 1)).await.unwrap();
    let options = TxOptions::new().retry(RetryPolicy::default().deadline(Duration::from_secs(1)));
    let started = Instant::now();
    let result: mongrove::Result<()> = db
        .transaction_with(options, async |tx| {
            let f = Order::fields();
            tx.repo::<Order>()
                .update_one(f.code.eq("slow"), f.total.inc(1))
                .await?;
            // Waiting on something that takes far longer than the deadline (a failover's
            // server selection, a slow service).
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
        .await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut at the deadline"
    );
    let stored = orders
        .find_one(Order::fields().code.eq("slow"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.total, 1, "nothing of the cut attempt was committed");
    assert!(writable(&db, "slow", Duration::from_secs(10)).await);
}
