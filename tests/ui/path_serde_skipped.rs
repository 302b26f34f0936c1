use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    price: f64,
    #[serde(skip)]
    cached_total: f64,
}

fn main() {
    let _ = Ticket::fields().cached_total.gt(10.0);
}
