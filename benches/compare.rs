//! mongrove, the raw driver and Mongoose 9, side by side against one server in one run.
//!
//! Every workload runs once per side per round, the sides alternating within a round (driver,
//! mongrove, mongrove with batching where it applies, each round starting with the next of
//! them; then one Mongoose process for the round), so that a noisy neighbour slows all sides
//! alike. For each workload and side: throughput,
//! client CPU time per operation (the process's CPU clock, `CLOCK_PROCESS_CPUTIME_ID`, which
//! counts nanoseconds rather than the 10 ms ticks of `/proc/self/stat`; Node:
//! `process.cpuUsage()`, in microseconds), peak resident memory (`VmHWM`, reset before
//! each timed part through `/proc/self/clear_refs`; Node: the largest `rss` seen) and the peak
//! of live heap bytes above the timed part's start (counted by the global allocator; Node: the
//! largest `heapUsed + external` seen). Resident memory mostly shows what the allocator kept
//! from earlier workloads; the heap peak is what the timed part itself needed. The report
//! gives medians and per-round ratios with their spread (min–max over the rounds).
//!
//! Run it with `scripts/bench.sh` (it installs Mongoose into `benches/mongoose/` first);
//! `scripts/bench.sh --smoke` is a run of seconds; `--write book/src/performance` regenerates
//! the guide's table and chart.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use futures_util::StreamExt;
use futures_util::future::join_all;
use mongrove::bson::{doc, oid::ObjectId};
use mongrove::mongodb::Collection;
use mongrove::{Db, Filter, Jitter, Model, RetryPolicy};
use serde::{Deserialize, Serialize};
use tracing::instrument::WithSubscriber;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Counts live heap bytes, so that each timed part's own peak can be told apart from what
/// earlier ones left resident.
#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

// ANCHOR: model
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
// ANCHOR_END: model

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

/// How many operations each workload runs per side and round.
#[derive(Clone, Copy, Debug, Serialize)]
struct Sizes {
    /// insert one at a time, find by id, save, `$inc`: this many operations.
    singles: usize,
    /// The documents those workloads find, save and update (in turn, when there are more
    /// operations); not scaled, so that a larger scale only adds operations.
    pool: usize,
    transactions: usize,
    insert_many: usize,
    find_all: usize,
    /// Calls of `insert_many` and of the find that reads `find_all` documents, per side and
    /// round: one call takes tens of milliseconds, too short a window to time alone. Not scaled.
    bulk_calls: usize,
    /// Queries by filter, sorted, over `singles * 5` documents.
    filtered: usize,
    /// Rounds of 32 concurrent lookups.
    concurrent: usize,
    /// Each of the 16 tasks modifies the contended document this many times.
    modify_each: usize,
    events: usize,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            singles: 1_000,
            pool: 1_000,
            transactions: 200,
            insert_many: 10_000,
            find_all: 20_000,
            bulk_calls: 5,
            filtered: 200,
            concurrent: 200,
            modify_each: 100,
            events: 200,
        }
    }

    /// Every count multiplied by `factor` (`--scale`): two runs at different scales tell the
    /// cost of one operation apart from the set-up's (see `scripts/instructions.sh`).
    fn scaled(self, factor: usize) -> Self {
        Sizes {
            singles: self.singles * factor,
            pool: self.pool,
            transactions: self.transactions * factor,
            insert_many: self.insert_many * factor,
            find_all: self.find_all * factor,
            bulk_calls: self.bulk_calls,
            filtered: self.filtered * factor,
            concurrent: self.concurrent * factor,
            modify_each: self.modify_each * factor,
            events: self.events * factor,
        }
    }

    fn smoke() -> Self {
        Sizes {
            singles: 100,
            pool: 100,
            transactions: 20,
            insert_many: 1_000,
            find_all: 2_000,
            bulk_calls: 1,
            filtered: 20,
            concurrent: 20,
            modify_each: 10,
            events: 20,
        }
    }
}

const WORKLOADS: [&str; 11] = [
    "insert one at a time",
    "find by id",
    "version-checked save",
    "$inc by id",
    "2-write transaction",
    "insert_many",
    "find + decode all",
    "find by filter and sort",
    "32 concurrent find_by_id",
    "16 tasks x contended modify",
    "change-stream delivery",
];

const DRIVER: &str = "driver";
const MONGROVE: &str = "mongrove";
const BATCHED: &str = "mongrove batched";
const MONGOOSE: &str = "mongoose";
/// mongrove with a subscriber installed that filters DEBUG out, as most production setups do.
const SPANS_OFF: &str = "mongrove, subscriber at INFO";
/// mongrove with every span formatted when it closes (to a sink).
const SPANS_ON: &str = "mongrove, spans formatted";

/// One timed part.
#[derive(Clone, Debug, Default, Deserialize)]
struct Sample {
    ops: u64,
    secs: f64,
    /// Client CPU seconds (user + system) during the timed part.
    cpu: f64,
    /// Peak resident memory, in MiB.
    peak_mib: f64,
    /// Peak of live heap bytes above the start of the timed part, in MiB.
    #[serde(default)]
    heap_mib: f64,
    /// Change-stream delivery latencies, in milliseconds.
    #[serde(default)]
    latencies_ms: Vec<f64>,
}

impl Sample {
    /// Two timed parts of one side as one: their operations, times and CPU added up.
    fn and(self, other: Sample) -> Sample {
        Sample {
            ops: self.ops + other.ops,
            secs: self.secs + other.secs,
            cpu: self.cpu + other.cpu,
            peak_mib: self.peak_mib.max(other.peak_mib),
            heap_mib: self.heap_mib.max(other.heap_mib),
            latencies_ms: [self.latencies_ms, other.latencies_ms].concat(),
        }
    }
}

/// The timer of one timed part: wall clock, process CPU, peak memory reset at the start.
struct Timer {
    started: Instant,
    cpu: ProcessTime,
    heap_at_start: usize,
}

impl Timer {
    fn start() -> Self {
        // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        HEAP.reset_peak_usage();
        Timer {
            heap_at_start: HEAP.current_usage(),
            cpu: ProcessTime::now(),
            started: Instant::now(),
        }
    }

    fn stop(self, ops: usize) -> Sample {
        let secs = self.started.elapsed().as_secs_f64();
        Sample {
            ops: ops as u64,
            secs,
            cpu: self.cpu.elapsed().as_secs_f64(),
            peak_mib: peak_mib(),
            heap_mib: HEAP.peak_usage().saturating_sub(self.heap_at_start) as f64
                / (1024.0 * 1024.0),
            latencies_ms: Vec::new(),
        }
    }
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Ctx {
    db: Db,
    batched_db: Db,
    raw: Collection<Order>,
    sizes: Sizes,
}

impl Ctx {
    /// A fresh collection holding `n` orders, and their ids (not timed).
    async fn seeded(&self, n: usize) -> Res<Vec<ObjectId>> {
        self.raw.drop().await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
        let docs: Vec<Order> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| Order {
                id: Some(*id),
                ..order(n)
            })
            .collect();
        self.raw.insert_many(docs).await?;
        Ok(ids)
    }
}

fn no_backoff() -> RetryPolicy {
    // Every side retries a lost race at once, so the workload measures the clients.
    RetryPolicy::new()
        .unlimited_attempts()
        .backoff(Duration::ZERO, Duration::ZERO)
        .jitter(Jitter::None)
}

async fn run(ctx: &Ctx, workload: &str, side: &str) -> Res<Sample> {
    let sizes = ctx.sizes;
    let raw = &ctx.raw;
    let orders = if side == BATCHED {
        ctx.batched_db.repo::<Order>()
    } else {
        ctx.db.repo::<Order>()
    };
    let driver = side == DRIVER;
    Ok(match workload {
        "insert one at a time" => {
            ctx.seeded(0).await?;
            let n = sizes.singles;
            let t = Timer::start();
            for i in 0..n {
                if driver {
                    raw.insert_one(order(i)).await?;
                } else {
                    orders.insert(&mut order(i)).await?;
                }
            }
            t.stop(n)
        }
        "find by id" => {
            let ids = ctx.seeded(sizes.pool).await?;
            let t = Timer::start();
            for id in ids.iter().cycle().take(sizes.singles) {
                let found = if driver {
                    raw.find_one(doc! { "_id": id }).await?
                } else {
                    orders.find_by_id(*id).await?
                };
                assert!(found.is_some());
            }
            t.stop(sizes.singles)
        }
        "version-checked save" => {
            ctx.seeded(sizes.pool).await?;
            let mut docs: Vec<Order> = orders.find(Filter::all()).await?;
            let pool = docs.len();
            let t = Timer::start();
            for i in 0..sizes.singles {
                let doc = &mut docs[i % pool];
                doc.total_cents += 1;
                if driver {
                    // ANCHOR: driver_save
                    let expected = doc.version;
                    doc.version += 1;
                    let result = raw
                        .replace_one(doc! { "_id": doc.id, "version": expected }, &*doc)
                        .await?;
                    assert_eq!(result.matched_count, 1, "a version conflict");
                    // ANCHOR_END: driver_save
                } else {
                    // ANCHOR: mongrove_save
                    orders.save(doc).await?;
                    // ANCHOR_END: mongrove_save
                }
            }
            t.stop(sizes.singles)
        }
        "$inc by id" => {
            let ids = ctx.seeded(sizes.pool).await?;
            let f = Order::fields();
            let t = Timer::start();
            for id in ids.iter().cycle().take(sizes.singles) {
                if driver {
                    raw.update_one(
                        doc! { "_id": id },
                        doc! { "$inc": { "totalCents": 1, "version": 1 } },
                    )
                    .await?;
                } else {
                    orders
                        .update_one(f.id.eq(*id), f.total_cents.inc(1))
                        .await?;
                }
            }
            t.stop(sizes.singles)
        }
        "2-write transaction" => {
            ctx.seeded(1).await?;
            let n = sizes.transactions;
            let t = Timer::start();
            for i in 0..n {
                if driver {
                    let mut session = ctx.db.client().start_session().await?;
                    session.start_transaction().await?;
                    raw.insert_one(order(2 * i)).session(&mut session).await?;
                    raw.insert_one(order(2 * i + 1))
                        .session(&mut session)
                        .await?;
                    session.commit_transaction().await?;
                } else {
                    ctx.db
                        .transaction(async |tx| {
                            let orders = tx.repo::<Order>();
                            orders.insert(&mut order(2 * i)).await?;
                            orders.insert(&mut order(2 * i + 1)).await?;
                            Ok(())
                        })
                        .await?;
                }
            }
            t.stop(n)
        }
        "insert_many" => {
            let mut total: Option<Sample> = None;
            for _ in 0..sizes.bulk_calls {
                // Each call into an empty collection, with documents that have no id yet.
                ctx.seeded(0).await?;
                let mut docs: Vec<Order> = (0..sizes.insert_many).map(order).collect();
                let t = Timer::start();
                if driver {
                    raw.insert_many(&docs).await?;
                } else {
                    orders.insert_many(&mut docs).await?;
                }
                let call = t.stop(docs.len());
                total = Some(match total {
                    Some(sum) => sum.and(call),
                    None => call,
                });
            }
            total.ok_or("bulk_calls is 0")?
        }
        "find + decode all" => {
            ctx.seeded(sizes.find_all).await?;
            let t = Timer::start();
            for _ in 0..sizes.bulk_calls {
                let all: Vec<Order> = if driver {
                    let cursor = raw.find(doc! {}).await?;
                    futures_util::TryStreamExt::try_collect(cursor).await?
                } else {
                    orders.find(Filter::all()).await?
                };
                assert_eq!(all.len(), sizes.find_all);
            }
            t.stop(sizes.find_all * sizes.bulk_calls)
        }
        "find by filter and sort" => {
            ctx.seeded(sizes.pool * 5).await?;
            let f = Order::fields();
            let n = sizes.filtered;
            let t = Timer::start();
            for _ in 0..n {
                let found = if driver {
                    let cursor = raw
                        .find(doc! { "customer": "customer-7", "totalCents": { "$gte": 1000 } })
                        .sort(doc! { "totalCents": -1 })
                        .await?;
                    futures_util::TryStreamExt::try_collect::<Vec<Order>>(cursor)
                        .await?
                        .len()
                } else {
                    orders
                        .find(f.customer.eq("customer-7").and(f.total_cents.gte(1000)))
                        .sort(f.total_cents.desc())
                        .await?
                        .len()
                };
                assert!(found > 0);
            }
            t.stop(n)
        }
        "32 concurrent find_by_id" => {
            let ids = ctx.seeded(1_000).await?;
            let t = Timer::start();
            for round in 0..sizes.concurrent {
                let pick = |k: usize| ids[(round * 32 + k * 31) % ids.len()];
                // ANCHOR: concurrent
                let found = if driver {
                    let lookups =
                        (0..32).map(|k| raw.find_one(doc! { "_id": pick(k) }).into_future());
                    join_all(lookups)
                        .await
                        .into_iter()
                        .filter(|r| matches!(r, Ok(Some(_))))
                        .count()
                } else {
                    let lookups = (0..32).map(|k| orders.find_by_id(pick(k)).into_future());
                    join_all(lookups)
                        .await
                        .into_iter()
                        .filter(|r| matches!(r, Ok(Some(_))))
                        .count()
                };
                // ANCHOR_END: concurrent
                assert_eq!(found, 32);
            }
            t.stop(sizes.concurrent * 32)
        }
        "16 tasks x contended modify" => {
            let ids = ctx.seeded(1).await?;
            let id = ids[0];
            let each = sizes.modify_each;
            let t = Timer::start();
            let tasks = (0..16).map(|_| {
                let raw = raw.clone();
                let orders = orders.clone();
                tokio::spawn(async move {
                    for _ in 0..each {
                        if driver {
                            loop {
                                let Some(mut doc) = raw.find_one(doc! { "_id": id }).await? else {
                                    return Err("the document is gone".into());
                                };
                                let expected = doc.version;
                                doc.version += 1;
                                doc.total_cents += 1;
                                let filter = doc! { "_id": id, "version": expected };
                                if raw.replace_one(filter, &doc).await?.matched_count == 1 {
                                    break;
                                }
                            }
                        } else {
                            orders
                                .modify(id, |mut o: Order| async move {
                                    o.total_cents += 1;
                                    Ok(o)
                                })
                                .retry(no_backoff())
                                .await?;
                        }
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            });
            for task in join_all(tasks).await {
                task??;
            }
            let sample = t.stop(16 * each);
            let last = raw.find_one(doc! { "_id": id }).await?.ok_or("gone")?;
            assert_eq!(
                last.total_cents,
                (16 * each) as i64,
                "every modification counted"
            );
            sample
        }
        "change-stream delivery" => {
            ctx.seeded(1).await?;
            let n = sizes.events;
            let mut latencies = Vec::with_capacity(n);
            let t = Timer::start();
            if driver {
                let mut stream = raw.watch().await?;
                for i in 0..n {
                    let sent = Instant::now();
                    raw.insert_one(order(i)).await?;
                    stream.next().await.ok_or("the stream ended")??;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            } else {
                let mut stream = orders.watch().await?;
                for i in 0..n {
                    let sent = Instant::now();
                    orders.insert(&mut order(i)).await?;
                    stream.next().await.ok_or("the stream ended")??;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            }
            let mut sample = t.stop(n);
            sample.latencies_ms = latencies;
            sample
        }
        other => return Err(format!("no workload {other}").into()),
    })
}

/// The sides that run a workload in Rust.
fn sides(workload: &str) -> &'static [&'static str] {
    match workload {
        "find by id" => &[DRIVER, MONGROVE, BATCHED, SPANS_OFF, SPANS_ON],
        "32 concurrent find_by_id" => &[DRIVER, MONGROVE, BATCHED],
        _ => &[DRIVER, MONGROVE],
    }
}

/// Runs one side of a workload, with the subscriber that side is about. Without one (every
/// side but the span sides), tracing's global maximum level is OFF and mongrove's DEBUG spans
/// are skipped at a single atomic load.
async fn run_side(ctx: &Ctx, workload: &str, side: &str) -> Res<Sample> {
    let subscriber = match side {
        SPANS_OFF => subscriber(tracing::Level::INFO),
        SPANS_ON => subscriber(tracing::Level::DEBUG),
        _ => return run(ctx, workload, side).await,
    };
    let sample = run(ctx, workload, MONGROVE)
        .with_subscriber(subscriber)
        .await;
    // The dispatcher is gone: let the next side see tracing's level without it again.
    tracing::callsite::rebuild_interest_cache();
    sample
}

/// A `fmt` subscriber at `level` that formats every span when it closes, into a sink.
fn subscriber(level: tracing::Level) -> tracing::Dispatch {
    tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::sink)
            .finish(),
    )
}

/// One round of the Mongoose side, in a Node process of its own.
fn mongoose_round(uri: &str, db: &str, sizes: &Sizes) -> Res<BTreeMap<String, Sample>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mongoose/bench.js");
    let output = std::process::Command::new("node")
        .arg(script)
        .arg(uri)
        .arg(db)
        .arg(serde_json::to_string(sizes)?)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "the Mongoose bench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// A ratio's median and spread over the rounds.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        let median = median(&mut values);
        Some(Spread {
            median,
            min: values[0],
            max: values[values.len() - 1],
        })
    }

    fn text(spread: Option<Spread>) -> String {
        match spread {
            Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
            None => "n/a".to_owned(),
        }
    }
}

type Results = BTreeMap<(String, String), Vec<Sample>>;

/// Per round: `a`'s throughput over `b`'s, and `a`'s CPU per op over `b`'s.
fn ratios(results: &Results, workload: &str, a: &str, b: &str) -> (Option<Spread>, Option<Spread>) {
    let get = |side: &str| results.get(&(workload.to_owned(), side.to_owned()));
    let (Some(xs), Some(ys)) = (get(a), get(b)) else {
        return (None, None);
    };
    let throughput = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (x.ops as f64 / x.secs) / (y.ops as f64 / y.secs))
        .collect();
    let cpu = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (x.cpu / x.ops as f64) / (y.cpu / y.ops as f64))
        .collect();
    (Spread::of(throughput), Spread::of(cpu))
}

struct Args {
    sizes: Sizes,
    rounds: usize,
    /// Only these workloads (`--only "find by id,insert_many"`); all when empty.
    only: Vec<String>,
    /// Only these Rust sides (`--sides driver,mongrove`), for profiling one side at a time; all
    /// when empty.
    sides: Vec<String>,
    write: Option<String>,
    mongoose: bool,
    label: String,
    /// The tokio runtime the Rust sides run on (`--runtime current-thread`): a multi-thread
    /// runtime with two workers by default.
    current_thread: bool,
}

impl Args {
    fn workloads(&self) -> impl Iterator<Item = &'static str> + '_ {
        WORKLOADS
            .into_iter()
            .filter(|w| self.only.is_empty() || self.only.iter().any(|o| o == w))
    }
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let smoke = argv.iter().any(|a| a == "--smoke");
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let list = |flag: &str| -> Vec<String> {
        value(flag)
            .map(|list| list.split(',').map(|w| w.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let current_thread = match value("--runtime").as_deref() {
        None | Some("multi-thread") => false,
        Some("current-thread") => true,
        Some(other) => {
            eprintln!(
                "--runtime {other}: the runtimes are multi-thread (the default) and current-thread"
            );
            std::process::exit(2);
        }
    };
    let scale = value("--scale").and_then(|f| f.parse().ok()).unwrap_or(1);
    Args {
        sizes: if smoke { Sizes::smoke() } else { Sizes::full() }.scaled(scale),
        rounds: value("--rounds")
            .and_then(|r| r.parse().ok())
            .unwrap_or(if smoke { 3 } else { 7 }),
        only: list("--only"),
        sides: list("--sides"),
        write: value("--write"),
        mongoose: !argv.iter().any(|a| a == "--no-mongoose"),
        label: format!(
            "{}, tokio's {} runtime",
            if smoke { "smoke sizes" } else { "full sizes" },
            if current_thread {
                "current-thread"
            } else {
                "multi-thread (2 workers)"
            }
        ),
        current_thread,
    }
}

fn main() -> Res<()> {
    let args = args();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    };
    runtime.block_on(compare(args))
}

async fn compare(args: Args) -> Res<()> {
    if args.workloads().next().is_none() {
        return Err(format!(
            "--only names no workload; they are: {}",
            WORKLOADS.join(", ")
        )
        .into());
    }
    let server = mongrove::testkit::server().await?;
    let name = "bench_compare";
    let db = Db::connect(server.uri(), name).await?;
    db.database().drop().await?;
    let ctx = Ctx {
        raw: db.database().collection::<Order>("orders"),
        batched_db: db.with_batching(),
        db,
        sizes: args.sizes,
    };
    let mut results: Results = BTreeMap::new();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        for workload in args.workloads() {
            let mut order: Vec<&str> = sides(workload)
                .iter()
                .copied()
                .filter(|s| args.sides.is_empty() || args.sides.iter().any(|a| a == s))
                .collect();
            // Each round starts with another side, so that none always runs first (after the
            // seeding, say) or last.
            if !order.is_empty() {
                let shift = round % order.len();
                order.rotate_left(shift);
            }
            for side in order {
                eprint!("  {workload} / {side} ...");
                let sample = run_side(&ctx, workload, side).await?;
                eprintln!(" {:.3} s", sample.secs);
                results
                    .entry((workload.to_owned(), side.to_owned()))
                    .or_default()
                    .push(sample);
            }
        }
        if args.mongoose {
            ctx.raw.drop().await?;
            // Node runs for many seconds: off the runtime's threads, so that the driver's
            // server monitor keeps its heartbeat on a current-thread runtime.
            let (uri, sizes) = (server.uri().to_owned(), args.sizes);
            let round = tokio::task::spawn_blocking(move || {
                mongoose_round(&uri, name, &sizes).map_err(|e| e.to_string())
            })
            .await??;
            for (workload, sample) in round {
                if !args.workloads().any(|w| w == workload) {
                    continue;
                }
                results
                    .entry((workload, MONGOOSE.to_owned()))
                    .or_default()
                    .push(sample);
            }
        }
    }
    ctx.db.database().drop().await?;
    let report = report(&results, &args);
    println!("{report}");
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir)?;
        // A current-thread run is kept next to the default one, not over it.
        let suffix = if args.current_thread {
            "-current-thread"
        } else {
            ""
        };
        let (table, svg) = (
            format!("{dir}/results{suffix}.md"),
            format!("{dir}/ratios{suffix}.svg"),
        );
        std::fs::write(&table, &report)?;
        std::fs::write(&svg, chart(&results))?;
        eprintln!("wrote {table} and {svg}");
    }
    Ok(())
}

fn report(results: &Results, args: &Args) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} rounds, {}, one server. Throughput in operations per second and client CPU in µs per \
         operation are medians over the rounds; ratios are per round, median (min–max).\n\n",
        args.rounds, args.label,
    ));
    out.push_str("| workload | side | ops/s | CPU µs/op | peak RSS MiB | peak heap MiB | throughput ÷ driver | CPU ÷ driver | throughput ÷ Mongoose | CPU ÷ Mongoose |\n");
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for workload in WORKLOADS {
        for side in [DRIVER, MONGROVE, BATCHED, SPANS_OFF, SPANS_ON, MONGOOSE] {
            let Some(samples) = results.get(&(workload.to_owned(), side.to_owned())) else {
                continue;
            };
            let mut tput: Vec<f64> = samples.iter().map(|s| s.ops as f64 / s.secs).collect();
            let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu / s.ops as f64 * 1e6).collect();
            let mut peak: Vec<f64> = samples.iter().map(|s| s.peak_mib).collect();
            let mut heap: Vec<f64> = samples.iter().map(|s| s.heap_mib).collect();
            let (vs_driver, cpu_driver) = if side == DRIVER {
                (None, None)
            } else {
                ratios(results, workload, side, DRIVER)
            };
            let (vs_mongoose, cpu_mongoose) = if side == MONGROVE || side == BATCHED {
                ratios(results, workload, side, MONGOOSE)
            } else {
                (None, None)
            };
            let dash = |s: Option<Spread>, applies: bool| {
                if applies {
                    Spread::text(s)
                } else {
                    "".to_owned()
                }
            };
            out.push_str(&format!(
                "| {workload} | {side} | {:.0} | {:.1} | {:.0} | {:.2} | {} | {} | {} | {} |\n",
                median(&mut tput),
                median(&mut cpu),
                median(&mut peak),
                median(&mut heap),
                dash(vs_driver, side != DRIVER),
                dash(cpu_driver, side != DRIVER),
                dash(vs_mongoose, side == MONGROVE || side == BATCHED),
                dash(cpu_mongoose, side == MONGROVE || side == BATCHED),
            ));
        }
    }
    let span_rows: Vec<String> = [SPANS_OFF, SPANS_ON]
        .into_iter()
        .filter_map(|side| {
            let (tput, cpu) = ratios(results, "find by id", side, MONGROVE);
            tput.map(|t| {
                format!(
                    "| {side} | {} | {} |\n",
                    Spread::text(Some(t)),
                    Spread::text(cpu)
                )
            })
        })
        .collect();
    if !span_rows.is_empty() {
        out.push_str(
            "\nWhat spans cost, find by id, each side ÷ mongrove with no subscriber (the same \
             round):\n\n| side | throughput ratio | CPU per op ratio |\n|---|--:|--:|\n",
        );
        out.push_str(&span_rows.concat());
    }
    if results.keys().any(|(w, _)| w == "change-stream delivery") {
        out.push_str("\nChange-stream delivery latency, insert to event, all rounds:\n\n");
        out.push_str("| side | p50 ms | p99 ms |\n|---|--:|--:|\n");
    }
    for side in [DRIVER, MONGROVE, MONGOOSE] {
        if let Some(samples) = results.get(&("change-stream delivery".to_owned(), side.to_owned()))
        {
            let mut all: Vec<f64> = samples
                .iter()
                .flat_map(|s| s.latencies_ms.clone())
                .collect();
            out.push_str(&format!(
                "| {side} | {:.2} | {:.2} |\n",
                percentile(&mut all, 0.5),
                percentile(&mut all, 0.99)
            ));
        }
    }
    out
}

/// The throughput ratios as a hand-written SVG bar chart: per workload, mongrove ÷ driver (and
/// batched ÷ driver, mongrove ÷ Mongoose), median bar with a min–max whisker, log scale.
fn chart(results: &Results) -> String {
    let series: [(&str, &str, &str, &str); 3] = [
        (MONGROVE, DRIVER, "#2b6cb0", "mongrove ÷ driver"),
        (BATCHED, DRIVER, "#38a169", "mongrove batched ÷ driver"),
        (MONGROVE, MONGOOSE, "#dd6b20", "mongrove ÷ Mongoose"),
    ];
    let (left, width, row, bar) = (230.0, 420.0, 46.0, 11.0);
    let (lo, hi): (f64, f64) = (0.25, 16.0);
    let x = |v: f64| left + width * ((v.clamp(lo, hi) / lo).ln() / (hi / lo).ln());
    let height = 60.0 + row * WORKLOADS.len() as f64 + 40.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"700\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">Throughput ratios per round (median bar, min–max whisker; log scale; 1 = parity)</text>\n"
    );
    for tick in [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0] {
        let tx = x(tick);
        let stroke = if tick == 1.0 { "#000" } else { "#ddd" };
        svg.push_str(&format!(
            "<line x1=\"{tx:.1}\" y1=\"40\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"{stroke}\"/>\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick}×</text>\n",
            height - 45.0,
            height - 30.0
        ));
    }
    for (i, workload) in WORKLOADS.iter().enumerate() {
        let top = 45.0 + row * i as f64;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            top + row / 2.0,
            workload.replace('&', "&amp;")
        ));
        for (j, (a, b, color, _)) in series.iter().enumerate() {
            let Some(s) = ratios(results, workload, a, b).0 else {
                continue;
            };
            let y = top + 4.0 + j as f64 * (bar + 2.0);
            let (x0, x1) = (x(1.0_f64.min(s.median)), x(1.0_f64.max(s.median)));
            svg.push_str(&format!(
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar}\" fill=\"{color}\"/>\
                 <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{:.2}</text>\n",
                (x1 - x0).max(1.0),
                x(s.min),
                y + bar / 2.0,
                x(s.max),
                y + bar / 2.0,
                x(s.max.max(s.median)) + 4.0,
                y + bar - 1.0,
                s.median
            ));
        }
    }
    for (j, (_, _, color, label)) in series.iter().enumerate() {
        let lx = 10.0 + 230.0 * j as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{label}</text>\n",
            height - 18.0,
            lx + 16.0,
            height - 8.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
