use mongrove::Model;
use mongrove::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct User {
    #[serde(rename = "_id")]
    id: ObjectId,
    #[model(id)]
    email: String,
}

fn main() {}
