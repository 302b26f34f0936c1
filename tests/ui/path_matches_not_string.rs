use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    seats: u32,
}

fn main() {
    let _ = Ticket::fields().seats.matches("^1", "");
}
