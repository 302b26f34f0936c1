use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(email = 2)))]
struct User {
    email: String,
}

fn main() {}
