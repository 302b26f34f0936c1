use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize, Model)]
struct Customer {
    name: String,
    #[model(nested)]
    #[serde(skip)]
    address: Option<Address>,
}

fn main() {}
