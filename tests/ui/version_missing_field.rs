use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version = "revision")]
struct Ticket {
    title: String,
    version: i64,
}

fn main() {}
