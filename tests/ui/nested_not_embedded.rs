use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize, Model)]
struct Customer {
    name: String,
    #[model(nested)]
    address: Address,
}

fn main() {}
