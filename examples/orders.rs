//! Order processing: insert an order and decrement the stock of what it contains, together or
//! not at all.
//!
//! Run it with `cargo run --example orders`. It uses the server at `MONGODB_URI`, or starts a
//! throwaway single-node replica set (see `mongrove::testkit`) and stops it on exit.

// ANCHOR: models
use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Error, Model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "products")]
pub struct Product {
    /// The SKU.
    #[serde(rename = "_id")]
    pub sku: String,
    pub name: String,
    pub stock: i64,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders", version = "version")]
pub struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub customer: String,
    #[model(nested)]
    pub lines: Vec<Line>,
    pub total_cents: i64,
    pub version: i64,
}
// ANCHOR_END: models

// ANCHOR: out_of_stock
/// The application's reason to give up: not enough stock. It travels inside
/// `mongrove::Error::Custom` and comes back out with `Error::downcast_custom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfStock {
    pub sku: String,
    pub wanted: i64,
}

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not enough `{}` in stock for {}", self.sku, self.wanted)
    }
}

impl std::error::Error for OutOfStock {}
// ANCHOR_END: out_of_stock

// ANCHOR: place_order
/// Takes the stock of every line and records the order, in one transaction: if any line is out
/// of stock, nothing is taken and no order exists.
pub async fn place_order(
    db: &Db,
    customer: &str,
    lines: &[(&str, i64)],
) -> mongrove::Result<Order> {
    db.transaction(async |tx| {
        let products = tx.repo::<Product>();
        let p = Product::fields();
        let mut order = Order {
            id: None,
            customer: customer.to_owned(),
            lines: Vec::new(),
            total_cents: 0,
            version: 0,
        };
        for &(sku, quantity) in lines {
            // Take the stock only if there is enough of it: one atomic update per line.
            let taken = products
                .find_one_and_update(
                    p.sku.eq(sku).and(p.stock.gte(quantity)),
                    p.stock.inc(-quantity),
                )
                .await?;
            let Some(product) = taken else {
                // Returning an error aborts the transaction: the lines taken so far go back.
                return Err(Error::custom(OutOfStock {
                    sku: sku.to_owned(),
                    wanted: quantity,
                }));
            };
            order.total_cents += product.price_cents * quantity;
            order.lines.push(Line {
                sku: sku.to_owned(),
                quantity,
            });
        }
        tx.repo::<Order>().insert(&mut order).await?;
        Ok(order)
    })
    .await
}
// ANCHOR_END: place_order

/// The products the example starts with.
pub async fn seed(db: &Db) -> mongrove::Result<()> {
    let mut products = vec![
        Product {
            sku: "kb-01".into(),
            name: "Keyboard".into(),
            stock: 5,
            price_cents: 4_900,
        },
        Product {
            sku: "ms-02".into(),
            name: "Mouse".into(),
            stock: 2,
            price_cents: 1_900,
        },
    ];
    db.repo::<Product>().insert_many(&mut products).await?;
    Ok(())
}

/// The stock of `sku` now.
pub async fn stock(db: &Db, sku: &str) -> mongrove::Result<i64> {
    let product = db.repo::<Product>().find_by_id(sku.to_owned()).await?;
    Ok(product.map_or(0, |p| p.stock))
}

/// The steps of the example, returning the lines it printed so the test suite can check them.
pub async fn run(db: &Db) -> mongrove::Result<Vec<String>> {
    let mut log = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        log.push(line);
    };
    seed(db).await?;

    // ANCHOR: run
    let order = place_order(db, "ada", &[("kb-01", 2), ("ms-02", 1)]).await?;
    say(format!(
        "order for {} placed: {} cents",
        order.customer, order.total_cents
    ));

    // Two keyboards are still there, but only one mouse: the whole order is refused.
    match place_order(db, "grace", &[("kb-01", 2), ("ms-02", 2)]).await {
        Err(error) => match error.downcast_custom::<OutOfStock>() {
            Some(out) => say(format!("refused: {out}")),
            None => return Err(error),
        },
        Ok(order) => say(format!("unexpected order {:?}", order.id)),
    }
    // ANCHOR_END: run
    say(format!(
        "stock now: kb-01 {}, ms-02 {}",
        stock(db, "kb-01").await?,
        stock(db, "ms-02").await?
    ));
    let orders = db.repo::<Order>().count(mongrove::Filter::all()).await?;
    say(format!("{orders} order(s) stored"));
    Ok(log)
}

#[allow(dead_code)] // The test suite includes this file and calls `run` itself.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server at MONGODB_URI, or a throwaway replica set; the database starts empty.
    let db = mongrove::testkit::example_db("orders_example").await?;
    run(&db).await?;
    Ok(())
}
