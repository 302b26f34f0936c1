use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(collection = "orders$2024")]
struct Order {
    total: f64,
}

fn main() {}
