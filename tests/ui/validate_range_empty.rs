use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Review {
    #[model(validate(range(min = 5, max = 1)))]
    stars: i32,
}

fn main() {}
