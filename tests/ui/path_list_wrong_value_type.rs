use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    price: f64,
    tags: Vec<String>,
}

fn main() {
    let f = Ticket::fields();
    let _ = f.price.in_(["cheap"]);
    let _ = f.price.nin(["dear"]);
    let _ = f.tags.push_each([1, 2]);
    let _ = f.tags.pull_all([3]);
    let _ = f.tags.contains_all([4.5]);
}
