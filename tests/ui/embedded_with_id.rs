use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Address {
    #[model(id)]
    #[serde(rename = "_id")]
    code: String,
    city: String,
}

fn main() {}
