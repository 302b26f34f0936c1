use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version = "version")]
struct Order {
    total: f64,
    version: String,
}

fn main() {}
