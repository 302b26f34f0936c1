use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    title: String,
    tags: Vec<String>,
}

fn main() {
    let _ = Ticket::fields().title.push("sale");
}
