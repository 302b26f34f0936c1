use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys("address..city" = 1)))]
struct User {
    email: String,
}

fn main() {}
