use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(email = 1, email = -1)))]
struct User {
    email: String,
}

fn main() {}
