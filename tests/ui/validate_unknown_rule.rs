use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Account {
    #[model(validate(email))]
    address: String,
}

fn main() {}
