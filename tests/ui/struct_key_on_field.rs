use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    total: f64,
    #[model(version)]
    version: i64,
}

fn main() {}
