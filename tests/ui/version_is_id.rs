use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version = "id")]
struct Order {
    #[serde(rename = "_id")]
    id: i64,
    total: f64,
}

fn main() {}
