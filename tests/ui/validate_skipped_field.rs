use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Review {
    #[serde(skip)]
    #[model(validate(non_empty))]
    draft: String,
}

fn main() {}
