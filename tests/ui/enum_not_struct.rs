use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
enum Status {
    Open,
    Closed,
}

fn main() {}
