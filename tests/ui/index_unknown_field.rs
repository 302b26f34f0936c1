use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(mail = 1), unique))]
struct User {
    email: String,
    name: String,
}

fn main() {}
