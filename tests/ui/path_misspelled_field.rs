use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    title: String,
    price: f64,
}

fn main() {
    let _ = Ticket::fields().prise.lt(50.0);
}
