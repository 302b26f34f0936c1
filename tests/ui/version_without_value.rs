use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version)]
struct Order {
    total: f64,
    version: i64,
}

fn main() {}
