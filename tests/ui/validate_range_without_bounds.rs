use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Review {
    #[model(validate(range()))]
    stars: i32,
}

fn main() {}
