use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    price: f64,
}

#[derive(Serialize, Deserialize, Model)]
struct Order {
    price: f64,
}

async fn cheap_orders(db: &Db) -> mongrove::Result<Vec<Order>> {
    db.repo::<Order>()
        .find(Ticket::fields().price.eq(1.0))
        .await
}

fn main() {}
