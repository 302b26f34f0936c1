//! The transaction scope against the real server, with faults injected by fail points: retries
//! as the convenient-transaction specification says, abort on error and panic, the ambient
//! transaction, nested scopes, options, versions put back after a rollback, concurrent
//! transfers, and standalone servers.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use mongrove::bson::{Bson, Document, doc, oid::ObjectId};
use mongrove::mongodb::event::EventHandler;
use mongrove::mongodb::event::command::CommandEvent;
use mongrove::mongodb::options::{ClientOptions, ReadConcern, WriteConcern};
use mongrove::testkit::{self, FailCommand, Server, TestDb, Topology};
use mongrove::{Db, Error, Filter, Model, RetryPolicy, Standalone, TxOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::common;

#[allow(dead_code)]
#[path = "../../examples/orders.rs"]
mod orders_example;

#[allow(dead_code)]
#[path = "../../examples/transfers.rs"]
pub(crate) mod transfers_example;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "items")]
struct Item {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    name: String,
}

fn item(name: &str) -> Item {
    Item {
        id: None,
        name: name.to_owned(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "notes", version = "version")]
struct Note {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    text: String,
    version: i64,
}

async fn count(db: &Db) -> u64 {
    db.repo::<Item>()
        .count(Filter::all())
        .await
        .expect("count items")
}

fn transient(command: &str) -> FailCommand {
    FailCommand::transient([command])
}

/// The commands a client sent, by name, with their bodies.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(String, Document)>>>);

impl Sent {
    fn named(&self, name: &str) -> Vec<Document> {
        self.0
            .lock()
            .map(|sent| {
                sent.iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, d)| d.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A `Db` on the test's database through a client of its own that records every command it
/// sends, under the test's application name (so the test's fail points apply to it).
async fn monitored(test: &TestDb) -> (Db, Sent) {
    let server = testkit::server().await.expect("test server");
    let mut options = ClientOptions::parse(server.uri())
        .await
        .expect("parse the server's URI");
    options.app_name = Some(test.app_name().to_owned());
    let sent = Sent::default();
    let record = sent.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        // Started commands under their name; replies under `ok:` or `failed:` and the name.
        let entry = match event {
            CommandEvent::Started(started) => (started.command_name, started.command),
            CommandEvent::Succeeded(done) => (format!("ok:{}", done.command_name), doc! {}),
            CommandEvent::Failed(failed) => (format!("failed:{}", failed.command_name), doc! {}),
            _ => return,
        };
        if let Ok(mut sent) = record.0.lock() {
            sent.push(entry);
        }
    }));
    let client = mongrove::mongodb::Client::with_options(options).expect("client");
    (Db::new(client, test.name()), sent)
}

#[tokio::test]
async fn ok_commits_and_returns_the_value() {
    let db = common::db().await;
    let value = db
        .transaction(async |tx| {
            assert!(tx.in_transaction());
            assert_eq!(tx.attempt(), 1);
            tx.repo::<Item>().insert(&mut item("a")).await?;
            tx.repo::<Item>().insert(&mut item("b")).await?;
            Ok(41 + 1)
        })
        .await
        .expect("the transaction commits");
    assert_eq!(value, 42);
    assert_eq!(count(&db).await, 2);
}

#[tokio::test]
async fn a_transient_error_on_a_write_reruns_the_closure_and_commits_once() {
    let db = common::db().await;
    let _fault = db
        .fail_point(transient("insert").times(1))
        .await
        .expect("fail point");
    let mut runs = 0;
    db.transaction(async |tx| {
        runs += 1;
        tx.repo::<Item>().insert(&mut item("once")).await?;
        Ok(())
    })
    .await
    .expect("the second run commits");
    assert_eq!(
        runs, 2,
        "the first run failed transiently, the second committed"
    );
    assert_eq!(count(&db).await, 1, "committed exactly once");
}

#[tokio::test]
async fn unknown_commit_result_retries_only_the_commit_with_majority_write_concern() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let _fault = test
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(64)
                .error_labels(["UnknownTransactionCommitResult"])
                .times(2),
        )
        .await
        .expect("fail point");
    let mut runs = 0;
    db.transaction(async |tx| {
        runs += 1;
        tx.repo::<Item>().insert(&mut item("x")).await?;
        Ok(())
    })
    .await
    .expect("the third commit succeeds");
    assert_eq!(
        runs, 1,
        "the closure is not rerun for an unknown commit result"
    );
    let commits = sent.named("commitTransaction");
    assert_eq!(commits.len(), 3, "two failed commits, then one that worked");
    for retry in &commits[1..] {
        let w = retry
            .get_document("writeConcern")
            .ok()
            .and_then(|wc| wc.get("w").cloned());
        assert_eq!(w, Some(Bson::String("majority".into())), "{retry}");
    }
    assert_eq!(count(&db).await, 1);
}

#[tokio::test]
async fn max_time_ms_expired_on_commit_is_not_retried() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let _fault = test
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(50)
                .error_labels(["UnknownTransactionCommitResult"])
                .times(1),
        )
        .await
        .expect("fail point");
    let mut runs = 0;
    let result = db
        .transaction(async |tx| {
            runs += 1;
            tx.repo::<Item>().insert(&mut item("x")).await?;
            Ok(())
        })
        .await;
    let error = result.expect_err("MaxTimeMSExpired is returned");
    assert_eq!(error.code(), Some(50), "{error}");
    assert!(error.has_label("UnknownTransactionCommitResult"));
    assert_eq!(runs, 1);
    assert_eq!(sent.named("commitTransaction").len(), 1, "not retried");
}

#[tokio::test]
async fn past_the_deadline_the_error_says_so_and_keeps_the_last_labels() {
    let db = common::db().await;
    let _fault = db
        .fail_point(transient("insert"))
        .await
        .expect("fail point");
    // Waits much longer than an attempt, so that the deadline falls in a wait, not in a body
    // (a body still running at the deadline is aborted: a timeout without a last error).
    let policy = RetryPolicy::default()
        .deadline(Duration::from_millis(300))
        .backoff(Duration::from_millis(100), Duration::from_millis(100))
        .jitter(mongrove::Jitter::None);
    let mut runs = 0;
    let result = db
        .transaction_with(TxOptions::new().retry(policy), async |tx| {
            runs += 1;
            tx.repo::<Item>().insert(&mut item("never")).await?;
            Ok(())
        })
        .await;
    let error = result.expect_err("the fault never stops");
    match &error {
        Error::Timeout { context, last } => {
            assert!(context.contains("deadline"), "{context}");
            let attempts = if runs == 1 { "attempt" } else { "attempts" };
            assert!(
                context.contains(&format!("after {runs} {attempts}")),
                "{context}"
            );
            assert!(last.is_some());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(error.has_label("TransientTransactionError"), "{error:?}");
    assert_eq!(error.code(), Some(112));
    assert_eq!(count(&db).await, 0);
}

#[tokio::test]
async fn attempts_can_be_capped_and_the_last_error_is_returned() {
    let db = common::db().await;
    let _fault = db
        .fail_point(transient("insert"))
        .await
        .expect("fail point");
    let policy = RetryPolicy::default()
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    let mut runs = 0;
    let error = db
        .transaction_with(TxOptions::new().retry(policy), async |tx| {
            runs += 1;
            tx.repo::<Item>().insert(&mut item("never")).await?;
            Ok(())
        })
        .await
        .expect_err("the fault never stops");
    assert_eq!(runs, 3);
    assert!(matches!(error, Error::Driver(_)), "{error:?}");
    assert!(error.has_label("TransientTransactionError"));
}

#[tokio::test]
async fn a_non_retryable_error_aborts_and_comes_back_unchanged() {
    let db = common::db().await;
    let mut runs = 0;
    let error = db
        .transaction(async |tx| {
            runs += 1;
            tx.repo::<Item>().insert(&mut item("a")).await?;
            tx.repo::<Item>().insert(&mut item("b")).await?;
            Err::<(), _>(Error::custom("changed my mind"))
        })
        .await
        .expect_err("the closure failed");
    assert_eq!(error.to_string(), "changed my mind");
    assert_eq!(runs, 1);
    assert_eq!(count(&db).await, 0, "nothing the closure wrote is visible");

    // A server error that is not transient: a duplicate key.
    let id = ObjectId::new();
    let error = db
        .transaction(async |tx| {
            let items = tx.repo::<Item>();
            items.insert(&mut item("first")).await?;
            let mut one = Item {
                id: Some(id),
                name: "one".into(),
            };
            items.insert(&mut one).await?;
            let mut again = one.clone();
            items.insert(&mut again).await?;
            Ok(())
        })
        .await
        .expect_err("duplicate key");
    assert!(matches!(error, Error::DuplicateKey { .. }), "{error:?}");
    assert_eq!(count(&db).await, 0);
}

#[tokio::test]
async fn a_panic_aborts_and_the_panic_continues() {
    let db = common::db().await;
    let outcome = AssertUnwindSafe(db.transaction(async |tx| {
        tx.repo::<Item>().insert(&mut item("doomed")).await?;
        if tx.attempt() > 0 {
            panic!("boom");
        }
        Ok(())
    }))
    .catch_unwind()
    .await;
    let panic = outcome.expect_err("the panic continues");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    assert_eq!(count(&db).await, 0, "nothing the closure wrote is visible");
    // The scope is usable again afterwards.
    db.transaction(async |tx| tx.repo::<Item>().insert(&mut item("fine")).await)
        .await
        .expect("a later transaction works");
    assert_eq!(count(&db).await, 1);
}

#[tokio::test]
async fn repositories_taken_from_the_db_join_the_running_transaction() {
    let db = common::db().await;
    let other = db.with_database(&format!("{}_other", db.name()));
    // ANCHOR: ambient
    let result = db
        .transaction(async |_tx| {
            assert!(db.in_transaction());
            // Forgetting `tx` does not write outside the transaction.
            db.repo::<Item>().insert(&mut item("ambient")).await?;
            db.clone().repo::<Item>().insert(&mut item("clone")).await?;
            other.repo::<Item>().insert(&mut item("other db")).await?;
            Err::<(), _>(Error::custom("roll it all back"))
        })
        .await;
    // ANCHOR_END: ambient
    assert!(result.is_err());
    assert!(!db.in_transaction());
    assert_eq!(count(&db).await, 0);
    assert_eq!(count(&other).await, 0);

    // A task spawned inside the scope is another task: it does not join (documented).
    db.transaction(async |_tx| {
        let outside = db.clone();
        let joined = tokio::spawn(async move { outside.in_transaction() })
            .await
            .map_err(Error::custom)?;
        assert!(!joined);
        Ok(())
    })
    .await
    .expect("commits");
    other
        .database()
        .drop()
        .await
        .expect("drop the other database");
}

#[tokio::test]
async fn a_nested_transaction_joins_the_outer_one() {
    let db = common::db().await;
    let mut inner_runs = 0;
    // ANCHOR: nested
    let result = db
        .transaction(async |tx| {
            tx.repo::<Item>().insert(&mut item("outer")).await?;
            let inner = db
                .transaction(async |inner| {
                    inner_runs += 1;
                    inner.repo::<Item>().insert(&mut item("inner")).await?;
                    Ok("inner done")
                })
                .await?;
            assert_eq!(inner, "inner done");
            Err::<(), _>(Error::custom("the outer one fails"))
        })
        .await;
    // ANCHOR_END: nested
    assert!(result.is_err());
    assert_eq!(inner_runs, 1);
    assert_eq!(
        count(&db).await,
        0,
        "the inner writes belonged to the outer transaction"
    );

    db.transaction(async |tx| {
        tx.repo::<Item>().insert(&mut item("outer")).await?;
        db.transaction(async |inner| inner.repo::<Item>().insert(&mut item("inner")).await)
            .await?;
        Ok(())
    })
    .await
    .expect("both commit together");
    assert_eq!(count(&db).await, 2);
}

#[tokio::test]
async fn options_reach_the_server() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let options = TxOptions::new()
        .read_concern(ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .max_commit_time(Duration::from_secs(7));
    db.transaction_with(options, async |tx| {
        tx.repo::<Item>().insert(&mut item("x")).await?;
        Ok(())
    })
    .await
    .expect("commits");
    let insert = sent.named("insert").pop().expect("the insert was sent");
    assert_eq!(
        insert
            .get_document("readConcern")
            .ok()
            .and_then(|rc| rc.get_str("level").ok()),
        Some("snapshot")
    );
    let commit = sent
        .named("commitTransaction")
        .pop()
        .expect("the commit was sent");
    let max_time = match commit.get("maxTimeMS") {
        Some(Bson::Int32(ms)) => Some(i64::from(*ms)),
        Some(Bson::Int64(ms)) => Some(*ms),
        _ => None,
    };
    assert_eq!(max_time, Some(7000), "{commit}");
    assert_eq!(
        commit
            .get_document("writeConcern")
            .ok()
            .and_then(|wc| wc.get_str("w").ok()),
        Some("majority")
    );
}

#[tokio::test]
async fn a_version_saved_in_a_rolled_back_attempt_is_put_back() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let mut note = Note {
        id: None,
        text: "draft".into(),
        version: 0,
    };
    notes.insert(&mut note).await.expect("insert");

    // The first commit fails transiently: the save of attempt 1 never happened on the server,
    // and attempt 2 saves from the version the server really has.
    let fault = db
        .fail_point(transient("commitTransaction").times(1))
        .await
        .expect("fail point");
    let mut runs = 0;
    db.transaction(async |tx| {
        runs += 1;
        note.text = format!("edit {runs}");
        tx.repo::<Note>().save(&mut note).await
    })
    .await
    .expect("no false version conflict on the rerun");
    fault.off().await.expect("fail point off");
    assert_eq!(runs, 2);
    assert_eq!(note.version, 1);
    let stored = notes
        .find_by_id(note.id.expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!((stored.version, stored.text.as_str()), (1, "edit 2"));

    // An aborted transaction: the model claims version 2, the server still has 1; the next
    // save (outside any transaction) is not a false conflict.
    let result = db
        .transaction(async |tx| {
            note.text = "abandoned".into();
            tx.repo::<Note>().save(&mut note).await?;
            Err::<(), _>(Error::custom("abort"))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(
        note.version, 2,
        "the in-memory model still claims the aborted version"
    );
    note.text = "final".into();
    notes
        .save(&mut note)
        .await
        .expect("saved from the real version");
    let stored = notes
        .find_by_id(note.id.expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!((stored.version, stored.text.as_str()), (2, "final"));
    assert_eq!(note.version, 2);
}

#[tokio::test]
async fn version_conflicts_rerun_the_closure_only_when_asked() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let mut note = Note {
        id: None,
        text: "v0".into(),
        version: 0,
    };
    notes.insert(&mut note).await.expect("insert");
    let id = note.id.expect("id");
    // Somebody else moves the stored version on; `note` is now stale.
    let mut theirs = note.clone();
    notes.save(&mut theirs).await.expect("their save");

    /// Saves `stale` in a transaction; a rerun loads the document first.
    async fn edit(db: &Db, policy: RetryPolicy, stale: &Note) -> (mongrove::Result<()>, u32) {
        let mut runs = 0;
        let result = db
            .transaction_with(TxOptions::new().retry(policy), async |tx| {
                runs += 1;
                let notes = tx.repo::<Note>();
                let mut current = if runs == 1 {
                    stale.clone()
                } else {
                    let id = stale.id.ok_or(Error::custom("no id"))?;
                    notes.find_by_id(id).await?.ok_or(Error::custom("gone"))?
                };
                current.text = "mine".into();
                notes.save(&mut current).await
            })
            .await;
        (result, runs)
    }
    let (result, runs) = edit(&db, RetryPolicy::default(), &note).await;
    assert!(
        matches!(result, Err(Error::VersionConflict { .. })),
        "{result:?}"
    );
    assert_eq!(runs, 1);
    let (result, runs) = edit(
        &db,
        RetryPolicy::default().retry_version_conflicts(true),
        &note,
    )
    .await;
    result.expect("the rerun loads the document again");
    assert_eq!(runs, 2);
    let stored = notes.find_by_id(id).await.expect("read").expect("stored");
    assert_eq!((stored.text.as_str(), stored.version), ("mine", 2));
}

#[tokio::test]
async fn bank_transfers_ride_out_transient_faults() {
    use transfers_example::{balances, open_accounts, random_transfers};
    const ACCOUNTS: i32 = 10;
    const START: i64 = 1_000;
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    open_accounts(&db, ACCOUNTS, START).await.expect("accounts");

    // Faults at random: one in ten `update` and `commitTransaction` commands of this test's
    // client fails with a transient WriteConflict.
    let guard = test
        .fail_point(FailCommand::transient(["update", "commitTransaction"]).probability(0.1))
        .await
        .expect("random faults");
    let outcomes = random_transfers(&db, 8, 200, ACCOUNTS, 300).await;
    guard.off().await.expect("fail point off");

    assert_eq!(outcomes.len(), 8 * 200);
    let final_balances = balances(&db).await.expect("balances");
    let total: i64 = final_balances.iter().map(|(_, b)| b).sum();
    assert_eq!(
        total,
        i64::from(ACCOUNTS) * START,
        "no money created or lost"
    );
    assert!(
        final_balances.iter().all(|(_, b)| *b >= 0),
        "{final_balances:?}"
    );

    // Every transfer applied completely or reported failed: replaying exactly the applied
    // ones gives exactly the stored balances.
    let mut expected = vec![START; ACCOUNTS as usize];
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(()) => {
                expected[outcome.from as usize] -= outcome.amount;
                expected[outcome.to as usize] += outcome.amount;
            }
            Err(error) => {
                // Refused for want of money, or (on a machine slow enough to spend the
                // transfer's whole retry deadline on conflicts) given up: never applied.
                let overdraft = error
                    .downcast_custom::<transfers_example::InsufficientFunds>()
                    .is_some();
                let gave_up = matches!(error, Error::Timeout { .. })
                    && error.has_label("TransientTransactionError");
                assert!(overdraft || gave_up, "unexpected failure: {error:?}");
                failed += 1;
            }
        }
    }
    let stored: Vec<i64> = final_balances.iter().map(|(_, b)| *b).collect();
    assert_eq!(stored, expected);
    let applied = outcomes.len() - failed;
    assert!(
        applied > outcomes.len() / 2,
        "most transfers go through ({applied})"
    );
    // Each applied transfer committed exactly once; faults and conflicts did happen.
    assert_eq!(sent.named("ok:commitTransaction").len(), applied);
    let failed_updates = sent.named("failed:update").len();
    let failed_commits = sent.named("failed:commitTransaction").len();
    assert!(
        failed_updates > 0 && failed_commits > 0,
        "faults were injected"
    );
}

#[tokio::test]
async fn the_orders_example_takes_stock_and_orders_together() {
    let db = common::db().await;
    let log = orders_example::run(&db).await.expect("the example runs");
    assert_eq!(
        log,
        [
            "order for ada placed: 11700 cents",
            "refused: not enough `ms-02` in stock for 2",
            "stock now: kb-01 3, ms-02 1",
            "1 order(s) stored",
        ]
    );
}

/// A standalone `mongod`, shared by the tests of this module.
async fn standalone() -> &'static Server {
    static STANDALONE: OnceCell<Server> = OnceCell::const_new();
    STANDALONE
        .get_or_try_init(|| Server::start(Topology::Standalone))
        .await
        .expect("a standalone mongod starts")
}

#[tokio::test]
async fn a_standalone_server_refuses_transactions_by_default() {
    let db = standalone().await.db().await.expect("db");
    assert!(!db.supports_transactions().await.expect("hello"));
    let mut runs = 0;
    let error = db
        .transaction(async |tx| {
            runs += 1;
            tx.repo::<Item>().insert(&mut item("x")).await?;
            Ok(())
        })
        .await
        .expect_err("no transactions on a standalone server");
    assert!(matches!(error, Error::TransactionsUnsupported), "{error:?}");
    assert!(error.to_string().contains("--replSet"), "{error}");
    assert_eq!(runs, 0, "the closure never ran");
    assert_eq!(count(&db).await, 0);
}

#[tokio::test]
async fn local_mode_runs_the_work_without_a_transaction() {
    let db = standalone().await.db().await.expect("db");
    // ANCHOR: local
    let local = TxOptions::new().standalone(Standalone::RunWithoutTransaction);
    let value = db
        .transaction_with(local.clone(), async |tx| {
            assert!(!tx.in_transaction());
            tx.repo::<Item>().insert(&mut item("a")).await?;
            db.repo::<Item>().insert(&mut item("b")).await?;
            Ok("done")
        })
        .await
        .expect("runs without a transaction");
    // ANCHOR_END: local
    assert_eq!(value, "done");
    assert_eq!(count(&db).await, 2);
    // Without a transaction nothing is rolled back (documented): the write before the error stays.
    let result = db
        .transaction_with(local, async |tx| {
            tx.repo::<Item>().insert(&mut item("c")).await?;
            Err::<(), _>(Error::custom("fails after writing"))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(count(&db).await, 3);
    // The replica set is unaffected by the option: it still runs real transactions.
    let rs = common::db().await;
    rs.transaction_with(
        TxOptions::new().standalone(Standalone::RunWithoutTransaction),
        async |tx| {
            assert!(tx.in_transaction());
            Ok(())
        },
    )
    .await
    .expect("commits");
}

/// A `tracing` subscriber that records the name and fields of every span.
#[tokio::test(flavor = "current_thread")]
async fn spans_name_each_transaction_attempt_commit_and_retry_with_its_reason() {
    let db = common::db().await;
    let _fault = db
        .fail_point(transient("insert").times(1))
        .await
        .expect("fail point");
    // A current-thread test: every span of its transaction is opened on this thread.
    let recording = common::spans().record_this_thread();
    db.transaction(async |tx| tx.repo::<Item>().insert(&mut item("traced")).await)
        .await
        .expect("commits on the second attempt");
    let spans = recording.finish();
    let find = |name: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, fields)| fields.clone())
            .collect()
    };
    let transaction = find("transaction");
    assert_eq!(transaction.len(), 1, "{spans:?}");
    assert!(
        transaction[0].contains(&format!("db={:?}", db.name())),
        "{transaction:?}"
    );
    let attempts = find("attempt");
    assert_eq!(attempts, ["number=1 ", "number=2 "]);
    assert_eq!(find("commit").len(), 1, "only the second attempt commits");
    let retries = find("retry");
    assert_eq!(retries.len(), 1, "{spans:?}");
    assert!(
        retries[0].contains(r#"reason="TransientTransactionError""#),
        "{retries:?}"
    );
}
