use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version = "version")]
struct Order {
    total: f64,
    #[serde(skip)]
    version: i64,
}

fn main() {}
