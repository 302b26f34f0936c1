use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(score = -1)))]
struct User {
    email: String,
    #[serde(skip)]
    score: u32,
}

fn main() {}
