use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Page<T> {
    items: Vec<T>,
}

fn main() {}
