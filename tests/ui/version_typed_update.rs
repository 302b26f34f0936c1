use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(version = "version")]
struct Ticket {
    title: String,
    version: i64,
}

fn main() {
    let f = Ticket::fields();
    // Filters and sorts on the version are fine.
    let _ = f.version.eq(3).and(f.version.gt(1));
    let _ = f.version.desc();
    // Updates are not: the repository increments it on every write.
    let _ = f.version.inc(1);
    let _ = f.version.set(7);
}
