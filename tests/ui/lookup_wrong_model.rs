use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Model, Ref};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Customer {
    #[serde(rename = "_id")]
    id: ObjectId,
}

#[derive(Serialize, Deserialize, Model)]
struct Tag {
    #[serde(rename = "_id")]
    id: String,
}

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[serde(rename = "_id")]
    id: ObjectId,
    customer: Ref<Customer>,
}

async fn join(db: &Db) {
    let _ = db
        .repo::<Order>()
        .aggregate()
        .lookup::<Tag, _>(Order::fields().customer, "tag")
        .await;
}

fn main() {}
