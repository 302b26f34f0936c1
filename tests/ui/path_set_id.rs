use mongrove::Model;
use mongrove::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    #[serde(rename = "_id")]
    id: ObjectId,
    price: f64,
}

fn main() {
    let _ = Ticket::fields().id.set(ObjectId::new());
}
