//! Manual transactions (`db.begin()`) against the real server: commit, abort, rollback on drop
//! (with the versions of the dropped writes put back), what joins and what does not, and the
//! retry of an unknown commit result.

use mongrove::bson::oid::ObjectId;
use mongrove::testkit::FailCommand;
use mongrove::{Db, Error, Filter, Model};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "ledger_lines", version = "version")]
struct Line {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    text: String,
    version: i64,
}

fn line(text: &str) -> Line {
    Line {
        id: None,
        text: text.into(),
        version: 0,
    }
}

/// Counts from another task, which a manual transaction of this task does not reach: only
/// committed writes are seen.
async fn committed(db: &Db) -> u64 {
    let db = db.clone();
    tokio::spawn(async move { db.repo::<Line>().count(Filter::all()).await })
        .await
        .expect("task")
        .expect("count")
}

// ANCHOR: begin
async fn record_two_lines(db: &Db) -> mongrove::Result<()> {
    let tx = db.begin().await?;
    tx.repo::<Line>().insert(&mut line("debit")).await?;
    // A repository of the same deployment used on the same task joins the transaction too.
    db.repo::<Line>().insert(&mut line("credit")).await?;
    tx.commit().await
}
// ANCHOR_END: begin

#[tokio::test]
async fn commit_makes_the_writes_of_the_task_visible_together() {
    let db = common::db().await;
    let tx = db.begin().await.expect("begin");
    tx.repo::<Line>()
        .insert(&mut line("debit"))
        .await
        .expect("insert");
    db.repo::<Line>()
        .insert(&mut line("credit"))
        .await
        .expect("insert");
    assert!(db.in_transaction());
    assert_eq!(
        committed(&db).await,
        0,
        "both writes are in the transaction"
    );
    tx.commit().await.expect("commit");
    assert!(!db.in_transaction());
    assert_eq!(committed(&db).await, 2);

    record_two_lines(&db).await.expect("the listing commits");
    assert_eq!(committed(&db).await, 4);
}

#[tokio::test]
async fn abort_and_drop_roll_back() {
    let db = common::db().await;
    let tx = db.begin().await.expect("begin");
    db.repo::<Line>()
        .insert(&mut line("aborted"))
        .await
        .expect("insert");
    tx.abort().await;

    // An early return with `?` drops the transaction: it aborts.
    async fn fails_half_way(db: &Db) -> mongrove::Result<()> {
        let tx = db.begin().await?;
        tx.repo::<Line>().insert(&mut line("first half")).await?;
        Err(Error::custom("second half failed"))?;
        tx.commit().await
    }
    assert!(fails_half_way(&db).await.is_err());
    assert_eq!(committed(&db).await, 0);
    // Nothing of the dropped transaction is still joined: this write commits on its own.
    db.repo::<Line>()
        .insert(&mut line("after"))
        .await
        .expect("insert");
    assert!(!db.in_transaction());
    assert_eq!(committed(&db).await, 1);
}

#[tokio::test]
async fn a_dropped_transaction_puts_back_the_versions_of_its_saves() {
    let db = common::db().await;
    let lines = db.repo::<Line>();
    let mut kept = line("v0");
    lines.insert(&mut kept).await.expect("insert");
    {
        let tx = db.begin().await.expect("begin");
        kept.text = "never committed".into();
        tx.repo::<Line>().save(&mut kept).await.expect("save");
        assert_eq!(kept.version, 1, "the model claims the dropped version");
    }
    kept.text = "v1".into();
    lines
        .save(&mut kept)
        .await
        .expect("saved from the real version, no false conflict");
    let stored = lines
        .find_by_id(kept.id.expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!((stored.version, stored.text.as_str()), (1, "v1"));
}

#[tokio::test]
async fn other_tasks_do_not_join_and_ended_transactions_refuse_work() {
    let db = common::db().await;
    let tx = db.begin().await.expect("begin");
    let repo = tx.repo::<Line>();
    let other = db.clone();
    tokio::spawn(async move { other.repo::<Line>().insert(&mut line("outside")).await })
        .await
        .expect("task")
        .expect("insert on another task");
    // Spawned work joins when bound to the transaction.
    let bound = db.clone();
    tokio::spawn(
        tx.tx()
            .bind(async move { bound.repo::<Line>().insert(&mut line("bound")).await }),
    )
    .await
    .expect("task")
    .expect("bound insert");
    assert_eq!(committed(&db).await, 1, "only the other task's write");
    tx.abort().await;
    assert_eq!(committed(&db).await, 1);
    let late = repo.insert(&mut line("late")).await;
    assert!(matches!(late, Err(Error::TransactionEnded)), "{late:?}");
}

#[tokio::test]
async fn commit_retries_an_unknown_commit_result() {
    let db = common::db().await;
    let _fault = db
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(64)
                .error_labels(["UnknownTransactionCommitResult"])
                .times(2),
        )
        .await
        .expect("fail point");
    let tx = db.begin().await.expect("begin");
    tx.repo::<Line>()
        .insert(&mut line("once"))
        .await
        .expect("insert");
    tx.commit().await.expect("the third try commits");
    assert_eq!(committed(&db).await, 1);
}

#[tokio::test]
async fn a_transient_error_is_returned_not_rerun() {
    let db = common::db().await;
    let _fault = db
        .fail_point(
            FailCommand::new(["insert"])
                .error_code(112)
                .error_labels(["TransientTransactionError"])
                .times(1),
        )
        .await
        .expect("fail point");
    let tx = db.begin().await.expect("begin");
    let error = tx
        .repo::<Line>()
        .insert(&mut line("conflict"))
        .await
        .expect_err("the fail point");
    assert!(error.has_label("TransientTransactionError"), "{error:?}");
    drop(tx);
    assert_eq!(committed(&db).await, 0);
}

#[tokio::test]
async fn a_scope_begun_inside_a_manual_transaction_joins_it() {
    let db = common::db().await;
    let tx = db.begin().await.expect("begin");
    db.transaction(async |scope| {
        scope.repo::<Line>().insert(&mut line("inner")).await?;
        Ok(())
    })
    .await
    .expect("the scope joins");
    assert_eq!(committed(&db).await, 0, "not committed by the inner scope");
    tx.abort().await;
    assert_eq!(
        committed(&db).await,
        0,
        "aborted with the manual transaction"
    );
}
