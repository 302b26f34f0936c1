use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(id)]
struct Order {
    number: i64,
    total: f64,
}

fn main() {}
