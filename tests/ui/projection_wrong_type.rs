use mongrove::{Model, Projection};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    status: String,
    total: f64,
}

#[derive(Deserialize, Projection)]
#[projection(of = Order)]
struct Summary {
    status: String,
    total: String,
}

fn main() {}
