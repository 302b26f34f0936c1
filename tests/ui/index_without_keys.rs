use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(unique))]
struct User {
    email: String,
}

fn main() {}
