use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[serde(rename = "_id")]
    id: ObjectId,
    customer: ObjectId,
}

async fn load(db: &Db) {
    let _ = db
        .repo::<Order>()
        .find(mongrove::bson::doc! {})
        .populate(Order::fields().customer)
        .await;
}

fn main() {}
