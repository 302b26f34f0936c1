use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(collection = "orders")]
#[model(collection = "purchases")]
struct Order {
    total: f64,
}

fn main() {}
