//! The listings of the "Coming from Mongoose" chapter: what a Mongoose user does every day,
//! written with mongrove and run against the real server.

use futures_util::StreamExt;
use mongrove::bson::DateTime;
use mongrove::bson::oid::ObjectId;
use mongrove::watch::ChangeKind;
use mongrove::{Error, HookContext, HookResult, Hooks, Model, WriteOp};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: schema
// const productSchema = new Schema({ sku: { type: String, unique: true, match: /^[A-Z0-9-]+$/ },
//   name: { type: String, minLength: 1 }, price: { type: Number, min: 0 } },
//   { timestamps: true, optimisticConcurrency: true });
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(
    collection = "products",
    version = "version",
    timestamps,
    hooks,
    index(keys(sku = 1), unique)
)]
pub struct Product {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[model(validate(pattern = "^[A-Z0-9-]+$"))]
    pub sku: String,
    #[model(validate(length(min = 1)))]
    pub name: String,
    #[model(validate(range(min = 0)))]
    pub price_cents: i64,
    pub version: i64,
    pub created_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
}
// ANCHOR_END: schema

// ANCHOR: hooks
// productSchema.pre('save', function () { this.sku = this.sku.toUpperCase(); });
#[mongrove::async_trait]
impl Hooks for Product {
    async fn before_insert(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        self.sku = self.sku.to_uppercase();
        Ok(())
    }

    async fn before_save(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        self.sku = self.sku.to_uppercase();
        Ok(())
    }
}
// ANCHOR_END: hooks

fn product(sku: &str, price_cents: i64) -> Product {
    Product {
        id: None,
        sku: sku.to_owned(),
        name: format!("product {sku}"),
        price_cents,
        version: 0,
        created_at: None,
        updated_at: None,
    }
}

#[tokio::test]
async fn what_a_mongoose_user_does_every_day() -> mongrove::Result<()> {
    let db = common::db().await;

    // ANCHOR: crud
    // await Product.syncIndexes();
    let products = db.repo::<Product>();
    products.sync_indexes().await?;
    // const p = await Product.create({ sku: 'ab-1', name: 'Mug', price: 900 });
    let mut mug = product("ab-1", 900);
    products.insert(&mut mug).await?;
    assert_eq!(mug.sku, "AB-1"); // the before_insert hook ran
    assert!(mug.created_at.is_some()); // timestamps
    // await Product.find({ price: { $lt: 1000 } }).sort({ price: -1 }).limit(10);
    let p = Product::fields();
    let cheap = products
        .find(p.price_cents.lt(1000))
        .sort(p.price_cents.desc())
        .limit(10)
        .await?;
    assert_eq!(cheap.len(), 1);
    // ANCHOR_END: crud

    // ANCHOR: validation
    // Mongoose validates on save, and on updates only with { runValidators: true }.
    let invalid = products.insert(&mut product("ab-2", -5)).await;
    match invalid {
        Err(Error::Validation { failures, .. }) => assert_eq!(failures[0].field, "price_cents"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    // ANCHOR_END: validation

    // ANCHOR: versions
    // optimisticConcurrency: true / update-if-current; in mongrove on every write path.
    let mut mine = products.find_by_id(mug.id.unwrap()).await?.unwrap();
    let mut theirs = mine.clone();
    theirs.price_cents = 950;
    products.save(&mut theirs).await?; // version 0 -> 1
    mine.price_cents = 990;
    let stale = products.save(&mut mine).await;
    assert!(matches!(
        stale,
        Err(Error::VersionConflict {
            expected: 0,
            found: 1,
            ..
        })
    ));
    // An update can check the version too (Mongoose's updateOne cannot).
    let stale = products
        .update_one(p.sku.eq("AB-1"), p.price_cents.set(999))
        .expect_version(0)
        .await;
    assert!(matches!(stale, Err(Error::VersionConflict { .. })));
    // ANCHOR_END: versions

    // ANCHOR: insert_many
    // await Product.insertMany(docs, { ordered: false }) — a partial write is a report.
    let mut batch = vec![
        product("c-1", 100),
        product("ab-1", 100),
        product("c-2", 100),
    ];
    let report = products.insert_many(&mut batch).ordered(false).await;
    match report {
        Err(Error::PartialWrite(report)) => {
            assert_eq!(report.written, vec![0, 2]);
            assert_eq!(report.failed[0].index, 1);
            assert!(matches!(report.failed[0].error, Error::DuplicateKey { .. }));
        }
        other => panic!("expected a partial write, got {other:?}"),
    }
    // ANCHOR_END: insert_many

    // ANCHOR: bulk
    // await Product.bulkWrite([{ insertOne: ... }, { updateMany: ... }]) — no hooks run,
    // but the version still goes up on every update.
    let outcome = products
        .bulk_write(vec![
            WriteOp::Insert(product("D-1", 100)),
            WriteOp::update_many(p.price_cents.lte(100), p.price_cents.inc(10)),
        ])
        .await?;
    assert_eq!((outcome.inserted, outcome.modified), (1, 3));
    // ANCHOR_END: bulk

    // ANCHOR: transaction
    // await mongoose.connection.transaction(async (session) => {
    //   await Product.create([{ ... }], { session }); ... });
    db.transaction(async |_tx| {
        // No session to pass: a repository used inside the scope joins the transaction.
        products.insert(&mut product("E-1", 100)).await?;
        products.delete_many(p.sku.eq("D-1")).await?;
        Ok(())
    })
    .await?;
    // A session you manage yourself is passed explicitly, as in Mongoose.
    let mut session = db.start_session().await?;
    products
        .count(p.price_cents.gte(0))
        .session(&mut session)
        .await?;
    // ANCHOR_END: transaction

    // ANCHOR: watch
    // Product.watch().on('change', change => ...)
    let mut changes = products.watch().await?;
    products.insert(&mut product("F-1", 100)).await?;
    let change = changes.next().await.expect("an event")?;
    match change.kind {
        ChangeKind::Insert { document, .. } => assert_eq!(document.sku, "F-1"),
        other => panic!("expected an insert, got {other:?}"),
    }
    // ANCHOR_END: watch
    Ok(())
}
