use mongrove::Model;
use serde::{Deserialize, Serialize};

fn active_only() -> bool {
    true
}

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(email = 1), unique, partial = active_only))]
struct User {
    email: String,
    active: bool,
}

fn main() {}
