//! The quickstart: define a model, insert, query with typed filters, update, and print each step.
//!
//! Run it with `cargo run --example quickstart`. It uses the server at `MONGODB_URI`, or starts a
//! throwaway single-node replica set (see `mongrove::testkit`) and stops it on exit.

// ANCHOR: model
use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[serde(rename_all = "camelCase")]
#[model(
    collection = "tickets",
    version = "version",
    index(keys(event_name = 1, seat = 1), unique)
)]
pub struct Ticket {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub event_name: String,
    pub seat: String,
    pub price: f64,
    pub tags: Vec<String>,
    pub version: i64,
}
// ANCHOR_END: model

impl Ticket {
    pub fn new(event_name: &str, seat: &str, price: f64) -> Ticket {
        Ticket {
            id: None,
            event_name: event_name.to_owned(),
            seat: seat.to_owned(),
            price,
            tags: Vec::new(),
            version: 0,
        }
    }
}

/// The steps of the quickstart, returning the lines it printed so the test suite can check them.
pub async fn run(db: &Db) -> mongrove::Result<Vec<String>> {
    let mut log = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        log.push(line);
    };

    // ANCHOR: repo
    let tickets = db.repo::<Ticket>();
    let report = tickets.sync_indexes().await?;
    say(format!("indexes created: {:?}", report.created));
    // ANCHOR_END: repo

    // ANCHOR: insert
    let mut front = Ticket::new("Rust Conf", "A1", 120.0);
    let id = tickets.insert(&mut front).await?;
    say(format!("inserted {id} at version {}", front.version));

    let mut more = vec![
        Ticket::new("Rust Conf", "B7", 80.0),
        Ticket::new("Rust Conf", "C3", 45.0),
    ];
    tickets.insert_many(&mut more).await?;
    say(format!("inserted {} more", more.len()));
    // ANCHOR_END: insert

    // ANCHOR: query
    let f = Ticket::fields();
    let affordable = tickets
        .find(f.event_name.eq("Rust Conf").and(f.price.lt(100.0)))
        .sort(f.price.asc())
        .await?;
    let seats: Vec<&str> = affordable.iter().map(|t| t.seat.as_str()).collect();
    say(format!("under 100: {seats:?}"));
    // ANCHOR_END: query

    // ANCHOR: update
    let outcome = tickets
        .update_many(
            f.price.lt(100.0),
            f.price.mul(0.9).and(f.tags.add_to_set("sale")),
        )
        .await?;
    say(format!("discounted {} tickets", outcome.modified));

    let cheapest = tickets
        .find_one(f.tags.contains("sale"))
        .sort(f.price.asc())
        .await?;
    if let Some(ticket) = cheapest {
        say(format!(
            "cheapest on sale: {} at {:.2} (version {})",
            ticket.seat, ticket.price, ticket.version
        ));
    }
    // ANCHOR_END: update

    // ANCHOR: save
    let mut loaded = tickets
        .find_by_id(id)
        .await?
        .ok_or(mongrove::Error::NotFound {
            collection: "tickets".into(),
            id: None,
        })?;
    loaded.price = 150.0;
    tickets.save(&mut loaded).await?;
    say(format!(
        "saved {} at version {}",
        loaded.seat, loaded.version
    ));
    say(format!(
        "{} tickets in all",
        tickets.count(f.event_name.eq("Rust Conf")).await?
    ));
    // ANCHOR_END: save
    Ok(log)
}

#[allow(dead_code)] // The test suite includes this file and calls `run` itself.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server at MONGODB_URI, or a throwaway replica set; the database starts empty.
    let db = mongrove::testkit::example_db("quickstart").await?;
    run(&db).await?;
    Ok(())
}
