use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(collection = "system.orders")]
struct Order {
    total: f64,
}

fn main() {}
