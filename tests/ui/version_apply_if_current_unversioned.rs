use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Ticket {
    #[serde(rename = "_id")]
    id: i32,
    edits: i64,
}

async fn on_edited(db: &Db, id: i32, event_version: i64) -> mongrove::Result<()> {
    let f = Ticket::fields();
    db.repo::<Ticket>()
        .apply_if_current(id, event_version, f.edits.set(event_version))
        .await?;
    Ok(())
}

fn main() {}
