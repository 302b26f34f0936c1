use mongrove::Model;
use mongrove::bson::DateTime;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(timestamps(created = "created_at", modified = "modified_at"))]
struct Order {
    total: f64,
    created_at: DateTime,
    modified_at: DateTime,
}

fn main() {}
