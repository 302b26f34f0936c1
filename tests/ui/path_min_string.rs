use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    title: String,
}

fn main() {
    let _ = Ticket::fields().title.max("zzz");
}
