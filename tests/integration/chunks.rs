//! `process_in_chunks` against the real server: 10,000 orders billed 1,000 at a time, with items
//! the handler rejects and items the server rejects (a duplicate key, a validation rule);
//! resuming after the last committed chunk; a transient error rerunning a chunk.

use mongrove::bson::{Bson, doc, oid::ObjectId};
use mongrove::testkit::FailCommand;
use mongrove::{Db, Error, Filter, Model, RejectedBy, Tx};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: models
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders")]
struct Order {
    #[serde(rename = "_id")]
    id: i32,
    amount: i64,
    billed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "receipts", index(keys(code = 1), unique))]
struct Receipt {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    order: i32,
    code: String,
    amount: i64,
}
// ANCHOR_END: models

/// Orders `from..to`: amount 0 (rejected by the handler) every 2,500 from 7, a negative amount
/// (rejected by the receipts' validator) for 4321, 10 for the others.
async fn seed(db: &Db, from: i32, to: i32) {
    let mut orders: Vec<Order> = (from..to)
        .map(|id| Order {
            id,
            amount: match id {
                4321 => -5,
                id if id % 2500 == 7 => 0,
                _ => 10,
            },
            billed: false,
        })
        .collect();
    db.repo::<Order>()
        .insert_many(&mut orders)
        .await
        .expect("seed orders");
}

async fn receipts(db: &Db) {
    db.database()
        .run_command(doc! {
            "create": "receipts",
            "validator": { "amount": { "$gte": 0 } },
        })
        .await
        .expect("create receipts with a validator");
    db.repo::<Receipt>().sync_indexes().await.expect("indexes");
}

// ANCHOR: bill
/// Bills every order not billed yet, 1,000 per transaction.
async fn bill_all(db: &Db, progress: &mut Vec<u64>) -> mongrove::Result<mongrove::ChunkReport> {
    let f = Order::fields();
    db.repo::<Order>()
        .process_in_chunks(
            f.billed.eq(false),
            1_000,
            |tx: Tx, order: Order| async move {
                if order.amount == 0 {
                    // Rejected before writing anything: recorded, and the chunk goes on.
                    return Err(Error::custom("nothing to bill"));
                }
                // A duplicate code or a negative amount is rejected by the server, which aborts
                // the transaction: the chunk runs again without this order.
                tx.repo::<Receipt>()
                    .insert(&mut Receipt {
                        id: None,
                        order: order.id,
                        code: format!("R-{}", order.id),
                        amount: order.amount,
                    })
                    .await?;
                let f = Order::fields();
                tx.repo::<Order>()
                    .update_one(f.id.eq(order.id), f.billed.set(true))
                    .await?;
                Ok(())
            },
        )
        .on_progress(|report| progress.push(report.processed))
        .await
}
// ANCHOR_END: bill

#[tokio::test]
async fn ten_thousand_orders_in_chunks_with_failing_items_of_each_kind() {
    let db = common::db().await;
    receipts(&db).await;
    seed(&db, 0, 10_000).await;
    // Receipts that already exist: billing these orders hits the unique index.
    for id in [1234, 5678, 9990] {
        db.repo::<Receipt>()
            .insert(&mut Receipt {
                id: None,
                order: id,
                code: format!("R-{id}"),
                amount: 10,
            })
            .await
            .expect("an earlier receipt");
    }

    let mut progress = Vec::new();
    let report = bill_all(&db, &mut progress).await.expect("the batch runs");

    assert_eq!(report.chunks, 10);
    assert_eq!(report.processed, 10_000 - 8);
    assert_eq!(report.last_id, Some(Bson::Int32(9_999)));
    assert_eq!(progress.len(), 10, "one progress report per chunk");
    assert_eq!(progress.last(), Some(&report.processed));
    let ids = |by: RejectedBy| -> Vec<Bson> {
        let mut ids: Vec<Bson> = report
            .failed
            .iter()
            .filter(|item| item.rejected_by == by)
            .map(|item| item.id.clone())
            .collect();
        ids.sort_by_key(|id| id.as_i32());
        ids
    };
    assert_eq!(
        ids(RejectedBy::Handler),
        [7, 2507, 5007, 7507].map(Bson::Int32)
    );
    assert_eq!(
        ids(RejectedBy::Server),
        [1234, 4321, 5678, 9990].map(Bson::Int32)
    );
    for item in &report.failed {
        match item.id.as_i32() {
            Some(1234 | 5678 | 9990) => assert!(
                matches!(item.error, Error::DuplicateKey { .. }),
                "{:?}",
                item.error
            ),
            Some(4321) => assert_eq!(item.error.code(), Some(121), "{:?}", item.error),
            _ => assert_eq!(item.error.to_string(), "nothing to bill"),
        }
    }
    assert!(report.retries >= 4, "each server rejection reran its chunk");

    // Every chunk committed without its failing items, and only them.
    let f = Order::fields();
    let billed = db
        .repo::<Order>()
        .count(f.billed.eq(true))
        .await
        .expect("count");
    assert_eq!(billed, 10_000 - 8);
    let receipts = db
        .repo::<Receipt>()
        .count(Filter::all())
        .await
        .expect("count");
    assert_eq!(receipts, 10_000 - 8 + 3);
}

#[tokio::test]
async fn a_run_resumes_after_the_last_committed_chunk() {
    let db = common::db().await;
    receipts(&db).await;
    seed(&db, 10, 40).await;
    let mut seen = Vec::new();
    let orders = db.repo::<Order>();
    let first = orders
        .process_in_chunks(Filter::all(), 10, |_tx: Tx, order: Order| {
            seen.push(order.id);
            async { Ok(()) }
        })
        .await
        .expect("first run");
    assert_eq!((first.chunks, first.processed), (3, 30));
    assert_eq!(seen, (10..40).collect::<Vec<_>>(), "in _id order");

    seed(&db, 40, 45).await;
    let mut seen = Vec::new();
    // ANCHOR: resume
    let second = orders
        .process_in_chunks(Filter::all(), 10, |_tx: Tx, order: Order| {
            seen.push(order.id);
            async { Ok(()) }
        })
        .resume_after(first.last_id.clone().expect("a last id"))
        .await
        .expect("resumed");
    // ANCHOR_END: resume
    assert_eq!((second.chunks, second.processed), (1, 5));
    assert_eq!(seen, (40..45).collect::<Vec<_>>());
    assert_eq!(second.last_id, Some(Bson::Int32(44)));
}

#[tokio::test]
async fn a_transient_error_reruns_the_chunk() {
    let db = common::db().await;
    receipts(&db).await;
    seed(&db, 100, 120).await;
    let _fault = db
        .fail_point(
            FailCommand::new(["insert"])
                .error_code(112)
                .error_labels(["TransientTransactionError"])
                .times(1),
        )
        .await
        .expect("fail point");
    let mut progress = Vec::new();
    let report = bill_all(&db, &mut progress).await.expect("the batch runs");
    assert_eq!((report.chunks, report.processed), (1, 20));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.retries, 1, "the chunk ran twice");
    let receipts = db
        .repo::<Receipt>()
        .count(Filter::all())
        .await
        .expect("count");
    assert_eq!(receipts, 20, "committed once");
}
