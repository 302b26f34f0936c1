//! Failover on a three-member replica set: the primary steps down or is killed (SIGKILL) while
//! the application writes. Money transfers keep their invariants, majority-acknowledged writes
//! survive, and one `Db` keeps working through an election by itself (retryable writes).
//!
//! The tests share one replica set and take turns, since each of them changes its primary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mongrove::mongodb::Client;
use mongrove::mongodb::event::EventHandler;
use mongrove::mongodb::event::command::CommandEvent;
use mongrove::mongodb::options::{ClientOptions, ReadConcern, WriteConcern};
use mongrove::testkit::{Server, Topology};
use mongrove::{Db, Error, Filter, Model, TxOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use crate::transactions::transfers_example::{
    self, Account, InsufficientFunds, Xorshift, balances, open_accounts,
};

/// The replica set of this module: three members, started on first use.
async fn cluster() -> &'static Server {
    static CLUSTER: OnceCell<Server> = OnceCell::const_new();
    CLUSTER
        .get_or_try_init(|| Server::start(Topology::replica_set(3)))
        .await
        .unwrap_or_else(|e| panic!("a three-member replica set starts: {e}"))
}

/// The tests of this module take turns: each one steps down or kills the primary.
async fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

/// A `Db` on a fresh database of the cluster, through a client of its own, with `options` set
/// and the number of failed commands counted.
async fn client_db(
    server: &Server,
    configure: impl FnOnce(&mut ClientOptions),
) -> (Db, Arc<AtomicUsize>) {
    let name = server
        .db()
        .await
        .expect("a fresh database")
        .name()
        .to_owned();
    let mut options = ClientOptions::parse(server.uri()).await.expect("URI");
    let failed = Arc::new(AtomicUsize::new(0));
    let count = failed.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Failed(_) = event {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }));
    configure(&mut options);
    let client = Client::with_options(options).expect("client");
    (Db::new(client, &name), failed)
}

// ANCHOR: ledger
/// One entry per applied transfer, written in the same transaction as the two balances. Its
/// `_id` is the transfer's own id, chosen by the caller before the first attempt.
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "ledger")]
struct Entry {
    #[serde(rename = "_id")]
    transfer: i64,
    from: i32,
    to: i32,
    amount: i64,
}

/// Whether a transfer was applied by this call or by an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Now,
    Earlier,
}

/// Applies `entry` once, however often it is called: a transfer already in the ledger is not
/// applied again. Majority write concern: a commit that is acknowledged survives a failover.
async fn transfer_once(db: &Db, entry: &Entry) -> mongrove::Result<Applied> {
    let options = TxOptions::new()
        .read_concern(ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .retry(transfers_example::transfer_policy());
    let entry = entry.clone();
    db.transaction_with(options, async move |tx| {
        let ledger = tx.repo::<Entry>();
        if ledger.find_by_id(entry.transfer).await?.is_some() {
            return Ok(Applied::Earlier);
        }
        let accounts = tx.repo::<Account>();
        let a = Account::fields();
        let debited = accounts
            .update_one(
                a.number.eq(entry.from).and(a.balance.gte(entry.amount)),
                a.balance.inc(-entry.amount),
            )
            .await?;
        if debited.matched == 0 {
            return Err(Error::custom(InsufficientFunds {
                account: entry.from,
                amount: entry.amount,
            }));
        }
        accounts
            .update_one(a.number.eq(entry.to), a.balance.inc(entry.amount))
            .await?;
        ledger.insert(&mut entry.clone()).await?;
        Ok(Applied::Now)
    })
    .await
}

/// The commit may or may not have happened: the scope retried the commit until its deadline
/// and the server never said.
fn outcome_unknown(error: &Error) -> bool {
    error.has_label("UnknownTransactionCommitResult")
}

/// A transfer with an unknown outcome is asked again, with the same id: safe, thanks to the
/// ledger. Returns the last result and how many unknown outcomes came before it.
async fn transfer(db: &Db, entry: &Entry) -> (mongrove::Result<Applied>, u32) {
    let mut unknown = 0;
    loop {
        match transfer_once(db, entry).await {
            Err(error) if outcome_unknown(&error) && unknown < 3 => unknown += 1,
            result => return (result, unknown),
        }
    }
}
// ANCHOR_END: ledger

/// One transfer asked for by a task, and what became of it.
struct Asked {
    entry: Entry,
    result: mongrove::Result<Applied>,
    unknown: u32,
}

#[tokio::test]
async fn bank_transfers_survive_step_downs_and_kills_of_the_primary() {
    const ACCOUNTS: i32 = 10;
    const START: i64 = 1_000;
    const TASKS: i64 = 8;
    let _turn = turn().await;
    let server = cluster().await;
    server.wait_for_primary().await.expect("a primary");
    let (db, failed_commands) = client_db(server, |_| {}).await;
    open_accounts(&db, ACCOUNTS, START)
        .await
        .expect("open accounts");

    // Eight tasks transfer money until the faults are over, and a little longer.
    let done = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let db = db.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut rng = Xorshift::new(0x5eed_0000 ^ (task as u64 + 1));
                let mut asked = Vec::new();
                for n in 0.. {
                    if done.load(Ordering::Relaxed) && n >= 40 {
                        break;
                    }
                    let from = rng.below(ACCOUNTS as u64) as i32;
                    let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as i32) % ACCOUNTS;
                    let entry = Entry {
                        transfer: task * 1_000_000 + n,
                        from,
                        to,
                        amount: 1 + rng.below(300) as i64,
                    };
                    let (result, unknown) = transfer(&db, &entry).await;
                    asked.push(Asked {
                        entry,
                        result,
                        unknown,
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                asked
            })
        })
        .collect();

    // ANCHOR: faults
    // Three step-downs and two SIGKILLs of the primary, a second and a half apart; a killed
    // member is started again (same port, same data) before the next fault.
    let mut failovers = Vec::new();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if round % 2 == 0 {
            let step = server.step_down().await.expect("step down");
            failovers.push((step.former, step.primary));
        } else {
            let primary = server.wait_for_primary().await.expect("a primary");
            server.kill(primary).await.expect("kill the primary");
            let elected = server.wait_for_primary().await.expect("a new primary");
            failovers.push((primary, elected));
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.restart(primary).await.expect("the member rejoins");
        }
    }
    // ANCHOR_END: faults
    tokio::time::sleep(Duration::from_millis(1000)).await;
    done.store(true, Ordering::Relaxed);
    let mut asked = Vec::new();
    for task in tasks {
        asked.extend(task.await.expect("a transfer task"));
    }

    assert_eq!(failovers.len(), 5);
    for (former, elected) in &failovers {
        assert_ne!(former, elected, "another member became primary");
    }
    assert!(
        failed_commands.load(Ordering::Relaxed) > 0,
        "the faults reached the application's client"
    );
    assert!(asked.len() >= 300, "{} transfers", asked.len());

    // The ledger, read from the new primary once everything is over.
    let ledger: BTreeMap<i64, Entry> = db
        .repo::<Entry>()
        .find(Filter::all())
        .await
        .expect("read the ledger")
        .into_iter()
        .map(|entry| (entry.transfer, entry))
        .collect();
    let mut expected = vec![START; ACCOUNTS as usize];
    for entry in ledger.values() {
        expected[entry.from as usize] -= entry.amount;
        expected[entry.to as usize] += entry.amount;
    }
    let stored: Vec<i64> = balances(&db)
        .await
        .expect("balances")
        .into_iter()
        .map(|(_, balance)| balance)
        .collect();
    // Each transfer in the ledger moved its money exactly once, and nothing else moved any.
    assert_eq!(
        stored, expected,
        "the balances are the ledger's, applied once"
    );
    assert_eq!(
        stored.iter().sum::<i64>(),
        i64::from(ACCOUNTS) * START,
        "no money created or lost"
    );

    let (mut committed, mut refused, mut gave_up, mut unknown_for_good, mut unknown_seen) =
        (0, 0, 0, 0, 0);
    let mut ids = BTreeSet::new();
    for asked in &asked {
        assert!(ids.insert(asked.entry.transfer), "transfer ids are unique");
        unknown_seen += asked.unknown;
        let in_ledger = ledger.get(&asked.entry.transfer);
        if let Some(entry) = in_ledger {
            assert_eq!(
                (entry.from, entry.to, entry.amount),
                (asked.entry.from, asked.entry.to, asked.entry.amount)
            );
        }
        match &asked.result {
            Ok(applied) => {
                // Reported committed: in the ledger. `Earlier` only after an unknown outcome.
                assert!(in_ledger.is_some(), "committed but not in the ledger");
                assert!(*applied == Applied::Now || asked.unknown > 0);
                committed += 1;
            }
            Err(error) if error.downcast_custom::<InsufficientFunds>().is_some() => {
                assert!(in_ledger.is_none(), "refused but applied");
                refused += 1;
            }
            Err(error) if outcome_unknown(error) => {
                // Either applied exactly once (the ledger and the balances say so) or not at all.
                unknown_for_good += 1;
            }
            Err(error) => {
                // Given up before a commit was sent or after one that surely failed.
                assert!(
                    error.has_label("TransientTransactionError"),
                    "unexpected failure: {error:?}"
                );
                assert!(in_ledger.is_none(), "failed for good but applied");
                gave_up += 1;
            }
        }
    }
    assert_eq!(
        ledger.len(),
        committed
            + asked
                .iter()
                .filter(|a| a.result.as_ref().is_err_and(outcome_unknown))
                .filter(|a| ledger.contains_key(&a.entry.transfer))
                .count(),
        "the ledger holds the committed transfers and some of the unknown ones, nothing else"
    );
    println!(
        "{} transfers: {committed} committed, {refused} refused, {gave_up} given up, \
         {unknown_for_good} unknown for good; {unknown_seen} unknown outcomes asked again; \
         {} failed commands; failovers {failovers:?}",
        asked.len(),
        failed_commands.load(Ordering::Relaxed)
    );
    assert!(
        committed > asked.len() / 2,
        "most transfers go through ({committed} of {})",
        asked.len()
    );
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "writes")]
struct Write {
    #[serde(rename = "_id")]
    n: i64,
}

/// What [`write_until`] did.
struct Written {
    /// The numbers the server acknowledged, and when.
    acknowledged: Vec<(i64, Instant)>,
    /// The numbers whose insert failed, with the error.
    failed: Vec<(i64, Error)>,
    /// The longest time between two acknowledgements.
    longest_gap: Duration,
}

impl Written {
    fn acknowledged_after(&self, moment: Instant) -> usize {
        self.acknowledged
            .iter()
            .filter(|(_, t)| *t > moment)
            .count()
    }
}

/// Enough acknowledged writes for the checks to mean something, however slow the machine.
const MIN_WRITES: usize = 30;

/// Inserts `Write { n }` for n = 0, 1, ... one at a time until `stop`, and at least until
/// [`MIN_WRITES`] are acknowledged (for at most a minute).
async fn write_until(db: Db, stop: Arc<AtomicBool>) -> Written {
    let writes = db.repo::<Write>();
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    let mut last = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut n = 0;
    let started = Instant::now();
    while !(stop.load(Ordering::Relaxed) && acknowledged.len() >= MIN_WRITES)
        && started.elapsed() < Duration::from_secs(60)
    {
        match writes.insert(&mut Write { n }).await {
            Ok(_) => {
                longest_gap = longest_gap.max(last.elapsed());
                last = Instant::now();
                acknowledged.push((n, last));
            }
            Err(error) => failed.push((n, error)),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Written {
        acknowledged,
        failed,
        longest_gap,
    }
}

#[tokio::test]
async fn writes_acknowledged_by_a_majority_survive_a_kill_of_the_primary() {
    let _turn = turn().await;
    let server = cluster().await;
    // ANCHOR: majority
    let (db, _) = client_db(server, |options| {
        options.write_concern = Some(WriteConcern::majority());
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(db.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let primary = server.wait_for_primary().await.expect("a primary");
    server.kill(primary).await.expect("kill the primary");
    let killed_at = Instant::now();
    let elected = server.wait_for_primary().await.expect("a new primary");
    assert_ne!(primary, elected);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("the writer");

    // Every acknowledged write is on the new primary.
    let stored: BTreeSet<i64> = db
        .repo::<Write>()
        .find(Filter::all())
        .await
        .expect("read back")
        .into_iter()
        .map(|w| w.n)
        .collect();
    let lost: Vec<i64> = written
        .acknowledged
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    // ANCHOR_END: majority
    // Nothing else is stored but writes that failed (their outcome was unknown).
    let acknowledged: BTreeSet<i64> = written.acknowledged.iter().map(|(n, _)| *n).collect();
    let failed: BTreeSet<i64> = written.failed.iter().map(|(n, _)| *n).collect();
    assert!(
        stored
            .iter()
            .all(|n| acknowledged.contains(n) || failed.contains(n))
    );
    assert!(
        written.acknowledged_after(killed_at) > 0,
        "writes succeed again after the failover"
    );
    assert!(
        acknowledged.len() >= MIN_WRITES,
        "{} writes",
        acknowledged.len()
    );
    println!(
        "{} acknowledged, {} failed ({:?}), longest wait {:?}",
        acknowledged.len(),
        failed.len(),
        written
            .failed
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>(),
        written.longest_gap
    );
    server.restart(primary).await.expect("the member rejoins");
}

#[tokio::test]
async fn one_db_keeps_writing_through_a_step_down() {
    let _turn = turn().await;
    let server = cluster().await;
    // ANCHOR: retryable
    // An ordinary `Db` (retryable writes are on by default).
    let (db, failed_commands) = client_db(server, |_| {}).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(db.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let step = server.step_down().await.expect("step down");
    let stepped_down = Instant::now();
    assert_ne!(step.former, step.primary);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("the writer");
    // The driver found the new primary and retried the interrupted write there itself: no
    // error, or a transient one, and no wait anywhere near the 30 s of server selection.
    assert!(
        written.failed.len() <= 2,
        "at most transient errors: {:?}",
        written.failed
    );
    assert!(
        written.longest_gap < Duration::from_secs(10),
        "writes went on within seconds (longest wait {:?})",
        written.longest_gap
    );
    assert!(written.acknowledged_after(stepped_down) > 0);
    // ANCHOR_END: retryable
    let stored = db
        .repo::<Write>()
        .count(Filter::all())
        .await
        .expect("count");
    // Every acknowledged write is there, once (the `_id` refuses a second copy).
    let (acknowledged, failed) = (written.acknowledged.len(), written.failed.len());
    assert!(acknowledged >= MIN_WRITES, "{acknowledged} writes");
    assert!(stored >= acknowledged as u64 && stored <= (acknowledged + failed) as u64);
    println!(
        "{acknowledged} acknowledged, {failed} failed, {} failed commands, longest wait {:?}",
        failed_commands.load(Ordering::Relaxed),
        written.longest_gap
    );
}

#[tokio::test]
async fn a_consumer_keeps_going_across_failovers_and_misses_nothing() {
    use mongrove::watch::{Change, MongoTokenStore, Operation};
    let _turn = turn().await;
    let server = cluster().await;
    // Majority writes: a write acknowledged this way is never rolled back by a failover, so the
    // change stream must deliver each of them.
    let (db, _) = client_db(server, |options| {
        options.write_concern = Some(WriteConcern::majority());
    })
    .await;
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::<i64>::new()));
    let (stop_consumer, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = {
        let db = db.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let consumer = db
                .repo::<Write>()
                .watch()
                .operations([Operation::Insert])
                .consumer("failover-audit", MongoTokenStore::new(&db))
                .retry_for(Duration::from_secs(60));
            consumer
                .run(
                    move |change: Change<Write>| {
                        let seen = seen.clone();
                        async move {
                            if let Some(write) = change.document() {
                                seen.lock().expect("seen").insert(write.n);
                            }
                            Ok::<(), mongrove::watch::BoxError>(())
                        }
                    },
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
        })
    };
    // A stream starts at "now": writes made before the consumer's stream is open are not its
    // to see. Sentinel writes (negative numbers) until it has seen one.
    let opened = Instant::now() + Duration::from_secs(30);
    for sentinel in 1.. {
        db.repo::<Write>()
            .insert(&mut Write { n: -sentinel })
            .await
            .expect("a sentinel write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !seen.lock().expect("seen").is_empty() {
            break;
        }
        assert!(Instant::now() < opened, "the consumer's stream opened");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(db.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let step = server.step_down().await.expect("step down");
    assert_ne!(step.former, step.primary);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let primary = server.wait_for_primary().await.expect("a primary");
    server.kill(primary).await.expect("kill the primary");
    server.wait_for_primary().await.expect("a new primary");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("the writer");
    server
        .restart(primary)
        .await
        .expect("restart the killed member");

    let acknowledged: BTreeSet<i64> = written.acknowledged.iter().map(|(n, _)| *n).collect();
    assert!(
        acknowledged.len() >= MIN_WRITES,
        "{} writes",
        acknowledged.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing: Vec<i64> = {
            let seen = seen.lock().expect("seen");
            acknowledged
                .iter()
                .copied()
                .filter(|n| !seen.contains(n))
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop_consumer.send(());
    let summary = consumer
        .await
        .expect("the consumer task")
        .expect("the consumer rode out the failovers");
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    // Every delivered event was handled and its position saved (the driver resumed the stream
    // by itself, or the consumer reopened it: either way nothing was skipped).
    assert!(
        summary.handled as usize >= acknowledged.len(),
        "{summary:?}"
    );
}
