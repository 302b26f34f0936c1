use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[model(primary_key)]
    #[serde(rename = "_id")]
    number: i64,
    total: f64,
}

fn main() {}
