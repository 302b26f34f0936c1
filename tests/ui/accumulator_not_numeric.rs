use mongrove::{Acc, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    status: String,
    total: f64,
}

fn main() {
    let _ = Acc::sum("total", &Order::fields().status);
}
