use mongrove::watch::Replica;
use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Invoice {
    #[serde(rename = "_id")]
    id: i32,
    amount_cents: i64,
}

fn copy_of(db: &Db) -> Replica<Invoice> {
    Replica::new(db.repo::<Invoice>())
}

fn main() {}
