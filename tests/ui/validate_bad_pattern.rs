use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Article {
    #[model(validate(pattern = "^[a-z+$"))]
    slug: String,
}

fn main() {}
