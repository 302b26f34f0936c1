use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    title: String,
    price: f64,
}

async fn raise(db: &Db) -> mongrove::Result<()> {
    let tickets = db.repo::<Ticket>();
    let f = Ticket::fields();
    tickets
        .update_one(f.title.eq("a"), f.price.inc(1))
        .expect_version(3)
        .await?;
    tickets
        .update_many(f.title.eq("a"), f.price.inc(1))
        .expect_version(3)
        .await?;
    tickets
        .find_one_and_update(f.title.eq("a"), f.price.inc(1))
        .expect_version(3)
        .await?;
    Ok(())
}

fn main() {}
