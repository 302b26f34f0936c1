use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(
    index(keys(email = 1), name = "lookup"),
    index(keys(name = 1), name = "lookup")
)]
struct User {
    email: String,
    name: String,
}

fn main() {}
