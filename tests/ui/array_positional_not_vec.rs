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
    let _ = Order::fields().address.matched();
}
