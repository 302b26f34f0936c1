use mongrove::Model;
use mongrove::bson::DateTime;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(timestamps(created = "changed_at", updated = "changed_at"))]
struct Order {
    total: f64,
    changed_at: DateTime,
}

fn main() {}
