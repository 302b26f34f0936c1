use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[model(id)]
    #[serde(rename = "_id", skip)]
    number: i64,
    total: f64,
}

fn main() {}
