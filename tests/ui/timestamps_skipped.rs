use mongrove::Model;
use mongrove::bson::DateTime;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(timestamps)]
struct Order {
    total: f64,
    created_at: DateTime,
    #[serde(skip)]
    updated_at: Option<DateTime>,
}

fn main() {}
