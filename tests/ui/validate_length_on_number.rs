use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Review {
    #[model(validate(length(max = 5)))]
    stars: i32,
}

fn main() {}
