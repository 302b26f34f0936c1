use mongrove::Model;
use mongrove::bson::DateTime;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(created_at = 1), expire_after = "1h"))]
struct Session {
    user: String,
    created_at: DateTime,
}

fn main() {}
