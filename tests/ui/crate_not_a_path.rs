use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(crate = "not a path!")]
struct Ticket {
    title: String,
}

#[derive(Serialize, Deserialize, Model)]
#[model(crate)]
struct Order {
    total: i64,
}

fn main() {}
