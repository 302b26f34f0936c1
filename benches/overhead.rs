//! What mongrove costs on top of the driver, measured side by side in one run against the same
//! throwaway replica set: each workload runs through the raw driver (a typed `Collection<T>`, serde
//! straight from BSON) and through a mongrove repository, alternating, several rounds. The report
//! gives the median ratio mongrove / driver, because absolute times on shared machines are noise.
//!
//! Run with `cargo bench --bench overhead` (`-- --quick` for fewer documents).

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongrove::bson::{doc, oid::ObjectId};
use mongrove::{Db, Filter, Model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[serde(rename_all = "camelCase")]
#[model(collection = "orders", version = "version")]
struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    customer: String,
    total_cents: i64,
    items: Vec<Item>,
    status: String,
    version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: i32,
    price_cents: i64,
}

fn order(n: usize) -> Order {
    Order {
        id: None,
        customer: format!("customer-{}", n % 97),
        total_cents: (n as i64) * 10,
        items: (0..4)
            .map(|i| Item {
                sku: format!("sku-{i}"),
                qty: i + 1,
                price_cents: 250,
            })
            .collect(),
        status: "open".into(),
        version: 0,
    }
}

struct Workload {
    name: &'static str,
    driver: Vec<Duration>,
    mongrove: Vec<Duration>,
}

impl Workload {
    fn report(&self) {
        let median = |times: &[Duration]| {
            let mut sorted = times.to_vec();
            sorted.sort();
            sorted[sorted.len() / 2]
        };
        let ratios: Vec<f64> = self
            .driver
            .iter()
            .zip(&self.mongrove)
            .map(|(d, m)| m.as_secs_f64() / d.as_secs_f64())
            .collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{:<28} mongrove/driver = {:.2} (rounds: {}; median driver {:?}, mongrove {:?})",
            self.name,
            sorted[sorted.len() / 2],
            sorted
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            median(&self.driver),
            median(&self.mongrove),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (inserts, reads, rounds) = if quick {
        (200, 2_000, 3)
    } else {
        (1_000, 20_000, 5)
    };
    let server = mongrove::testkit::server().await?;
    let db = Db::connect(server.uri(), "bench_overhead").await?;
    db.database().drop().await?;
    let raw = db.database().collection::<Order>("orders");
    let orders = db.repo::<Order>();

    let mut insert_one = Workload {
        name: "insert one at a time",
        driver: vec![],
        mongrove: vec![],
    };
    let mut find_all = Workload {
        name: "find + decode all",
        driver: vec![],
        mongrove: vec![],
    };
    let mut find_filtered = Workload {
        name: "find by filter, sorted",
        driver: vec![],
        mongrove: vec![],
    };
    let mut update = Workload {
        name: "update_one by id",
        driver: vec![],
        mongrove: vec![],
    };

    for _ in 0..rounds {
        raw.delete_many(doc! {}).await?;
        let started = Instant::now();
        for n in 0..inserts {
            raw.insert_one(order(n)).await?;
        }
        insert_one.driver.push(started.elapsed());
        raw.delete_many(doc! {}).await?;
        let started = Instant::now();
        for n in 0..inserts {
            orders.insert(&mut order(n)).await?;
        }
        insert_one.mongrove.push(started.elapsed());

        let ids: Vec<ObjectId> = orders
            .find(Filter::all())
            .limit(200)
            .await?
            .into_iter()
            .filter_map(|o| o.id)
            .collect();
        let f = Order::fields();
        let started = Instant::now();
        for id in &ids {
            raw.update_one(
                doc! { "_id": id },
                doc! { "$inc": { "totalCents": 1, "version": 1 } },
            )
            .await?;
        }
        update.driver.push(started.elapsed());
        let started = Instant::now();
        for id in &ids {
            orders
                .update_one(f.id.eq(*id), f.total_cents.inc(1))
                .await?;
        }
        update.mongrove.push(started.elapsed());
    }

    raw.delete_many(doc! {}).await?;
    let bulk: Vec<Order> = (0..reads).map(order).collect();
    raw.insert_many(bulk).await?;
    for _ in 0..rounds {
        let started = Instant::now();
        let all: Vec<Order> = raw.find(doc! {}).await?.try_collect().await?;
        find_all.driver.push(started.elapsed());
        let started = Instant::now();
        let typed = orders.find(Filter::all()).await?;
        find_all.mongrove.push(started.elapsed());
        assert_eq!(all.len(), typed.len());

        let f = Order::fields();
        let started = Instant::now();
        let some: Vec<Order> = raw
            .find(doc! { "customer": "customer-7", "totalCents": { "$gte": 1000 } })
            .sort(doc! { "totalCents": -1 })
            .await?
            .try_collect()
            .await?;
        find_filtered.driver.push(started.elapsed());
        let started = Instant::now();
        let same = orders
            .find(f.customer.eq("customer-7").and(f.total_cents.gte(1000)))
            .sort(f.total_cents.desc())
            .await?;
        find_filtered.mongrove.push(started.elapsed());
        assert_eq!(some.len(), same.len());
    }

    println!(
        "mongrove overhead against the raw driver ({rounds} alternating rounds, same server):"
    );
    for workload in [&insert_one, &update, &find_all, &find_filtered] {
        workload.report();
    }
    db.database().drop().await?;
    Ok(())
}
