use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded, collection = "addresses")]
struct Address {
    city: String,
}

fn main() {}
