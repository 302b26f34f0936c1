use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Line {
    sku: String,
    status: String,
}

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize, Model)]
#[model(collection = "orders")]
struct Order {
    #[serde(rename = "_id")]
    id: i32,
    #[model(nested)]
    address: Address,
    #[model(nested)]
    items: Vec<Line>,
    total: i64,
}

fn main() {
    // Filters through the array match any element; an update must say which.
    let _ = Order::fields().items.sku.eq("A-1".to_owned());
    let _ = Order::fields().items.status.set("shipped".to_owned());
}
