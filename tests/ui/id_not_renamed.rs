use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct User {
    #[model(id)]
    email: String,
    name: String,
}

fn main() {}
