//! `RetryPolicy::run` for any operation, with a retry predicate, and `modify` with an async
//! closure, against the real server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Error, Model, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: coupon
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "coupons", index(keys(code = 1), unique))]
struct Coupon {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    code: String,
}
// ANCHOR_END: coupon

async fn coupons(db: &Db) -> mongrove::Repo<Coupon> {
    let coupons = db.repo::<Coupon>();
    coupons.sync_indexes().await.expect("indexes");
    coupons
}

#[tokio::test]
async fn a_predicate_retries_duplicate_keys_until_a_fresh_code() -> mongrove::Result<()> {
    let db = common::db().await;
    let coupons = coupons(&db).await;
    for taken in ["C1", "C2"] {
        coupons
            .insert(&mut Coupon {
                id: None,
                code: taken.into(),
            })
            .await
            .expect("insert");
    }
    let next = AtomicU32::new(1);
    let next_code = || format!("C{}", next.fetch_add(1, Ordering::SeqCst));
    // ANCHOR: run
    let coupon = RetryPolicy::default()
        .max_attempts(10)
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .retry_if(|error| matches!(error, Error::DuplicateKey { .. }))
        .run(|| async {
            let mut coupon = Coupon {
                id: None,
                code: next_code(),
            };
            coupons.insert(&mut coupon).await?;
            Ok(coupon)
        })
        .await?;
    // ANCHOR_END: run
    assert_eq!(coupon.code, "C3", "C1 and C2 collided and were retried");
    Ok(())
}

#[tokio::test]
async fn errors_the_predicate_rejects_stop_at_once() {
    let db = common::db().await;
    let coupons = coupons(&db).await;
    let runs = AtomicU32::new(0);
    let policy = RetryPolicy::default()
        .retry_if(|error| matches!(error, Error::DuplicateKey { .. }))
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    let result: mongrove::Result<()> = policy
        .run(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(Error::custom("the payment service said no"))
        })
        .await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(
        result.expect_err("stops").to_string(),
        "the payment service said no"
    );

    // Retried errors stop at the attempt cap, with the last error.
    coupons
        .insert(&mut Coupon {
            id: None,
            code: "same".into(),
        })
        .await
        .expect("insert");
    let runs = AtomicU32::new(0);
    let result = policy
        .clone()
        .max_attempts(3)
        .run(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            coupons
                .insert(&mut Coupon {
                    id: None,
                    code: "same".into(),
                })
                .await
        })
        .await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert!(
        matches!(result, Err(Error::DuplicateKey { .. })),
        "{result:?}"
    );
}

// ANCHOR: product
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "products", version = "version")]
struct Product {
    #[serde(rename = "_id")]
    sku: String,
    stock: u32,
    version: i64,
}

#[derive(Debug)]
struct InsufficientStock {
    available: u32,
    wanted: u32,
}

impl std::fmt::Display for InsufficientStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let InsufficientStock { available, wanted } = self;
        write!(f, "insufficient stock: {available} left, {wanted} wanted")
    }
}

impl std::error::Error for InsufficientStock {}
// ANCHOR_END: product

// ANCHOR: modify
/// Takes `wanted` items out of stock, or says why not without writing anything.
async fn reserve(db: &Db, sku: &str, wanted: u32) -> mongrove::Result<Product> {
    db.repo::<Product>()
        .modify(sku.to_owned(), async |mut product: Product| {
            if product.stock < wanted {
                return Err(Error::custom(InsufficientStock {
                    available: product.stock,
                    wanted,
                }));
            }
            product.stock -= wanted;
            Ok(product)
        })
        .await
}
// ANCHOR_END: modify

#[tokio::test]
async fn modify_with_an_async_closure_stops_without_writing_and_skips_no_op_changes() {
    let db = common::db().await;
    let products = db.repo::<Product>();
    products
        .insert(&mut Product {
            sku: "mug".into(),
            stock: 3,
            version: 0,
        })
        .await
        .expect("insert");
    let reserved = reserve(&db, "mug", 2).await.expect("in stock");
    assert_eq!((reserved.stock, reserved.version), (1, 1));

    let refused = reserve(&db, "mug", 2).await.expect_err("only one left");
    let reason = refused
        .downcast_custom::<InsufficientStock>()
        .expect("the closure's own error");
    assert_eq!((reason.available, reason.wanted), (1, 2));
    let stored = products
        .find_by_id("mug".to_owned())
        .await
        .expect("read")
        .expect("stored");
    assert_eq!((stored.stock, stored.version), (1, 1), "nothing written");

    // A closure that changes nothing writes nothing: the version stays.
    let same = products
        .modify("mug".to_owned(), async |product: Product| Ok(product))
        .await
        .expect("no-op");
    assert_eq!(same.version, 1);
    let stored = products
        .find_by_id("mug".to_owned())
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.version, 1);

    // The closure may await other operations.
    let restocked = products
        .modify("mug".to_owned(), async |mut product: Product| {
            let others = db.repo::<Product>().count(mongrove::Filter::all()).await?;
            product.stock += u32::try_from(others).map_err(Error::custom)? * 10;
            Ok(product)
        })
        .await
        .expect("restock");
    assert_eq!((restocked.stock, restocked.version), (11, 2));
}
