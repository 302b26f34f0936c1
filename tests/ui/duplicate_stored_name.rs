use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct User {
    email: String,
    #[serde(rename = "email")]
    contact: String,
}

fn main() {}
