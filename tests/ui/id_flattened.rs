use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct OrderKey {
    shop: String,
    number: i64,
}

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[serde(rename = "_id", flatten)]
    key: OrderKey,
    total: f64,
}

fn main() {}
