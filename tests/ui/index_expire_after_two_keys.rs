use mongrove::Model;
use mongrove::bson::DateTime;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(index(keys(user = 1, created_at = 1), expire_after = 3600))]
struct Session {
    user: String,
    created_at: DateTime,
}

fn main() {}
