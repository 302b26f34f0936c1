use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(email), unique))]
struct User {
    email: String,
}

fn main() {}
