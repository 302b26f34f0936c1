//! The listings of the "Testing your app" chapter: an application's own tests with
//! `mongrove::testkit`, a database per test, fail points and a three-member replica set.

use mongrove::{Db, Filter, Model};
use serde::{Deserialize, Serialize};

// ANCHOR: app
// The application under test: registering a customer writes the account and its welcome
// credit together.
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "accounts")]
pub struct Account {
    #[serde(rename = "_id")]
    pub name: String,
    pub credit_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "credits")]
pub struct Credit {
    #[serde(rename = "_id")]
    pub account: String,
    pub reason: String,
}

pub async fn register(db: &Db, name: &str) -> mongrove::Result<()> {
    db.transaction(async |tx| {
        let account = Account {
            name: name.to_owned(),
            credit_cents: 500,
        };
        tx.repo::<Account>().insert(&mut account.clone()).await?;
        let credit = Credit {
            account: name.to_owned(),
            reason: "welcome".to_owned(),
        };
        tx.repo::<Credit>().insert(&mut credit.clone()).await?;
        Ok(())
    })
    .await
}
// ANCHOR_END: app

// ANCHOR: per_test
#[tokio::test]
async fn registering_writes_the_account_and_its_credit() -> mongrove::Result<()> {
    // A database of this test's own, on the shared throwaway server: tests run in parallel
    // without seeing each other's data.
    let db = mongrove::testkit::db().await?;
    register(&db, "ada").await?;
    assert_eq!(db.repo::<Account>().count(Filter::all()).await?, 1);
    assert_eq!(db.repo::<Credit>().count(Filter::all()).await?, 1);
    Ok(())
}
// ANCHOR_END: per_test

// ANCHOR: transient
use mongrove::testkit::FailCommand;

#[tokio::test]
async fn a_transient_error_is_retried_and_nothing_is_written_twice() -> mongrove::Result<()> {
    let db = mongrove::testkit::db().await?;
    // The next `insert` of this test's client fails as a failover would make it fail.
    let _fault = db
        .fail_point(
            FailCommand::new(["insert"])
                .times(1)
                .error_code(112) // WriteConflict
                .error_labels(["TransientTransactionError"]),
        )
        .await?;
    register(&db, "grace").await?;
    assert_eq!(db.repo::<Account>().count(Filter::all()).await?, 1);
    assert_eq!(db.repo::<Credit>().count(Filter::all()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_failed_write_leaves_nothing_behind() -> mongrove::Result<()> {
    let db = mongrove::testkit::db().await?;
    // An error that is not transient (code 2, BadValue): the transaction is aborted and the
    // error comes back to the caller, with nothing written.
    let _fault = db
        .fail_point(FailCommand::new(["insert"]).times(1).error_code(2))
        .await?;
    let error = register(&db, "linus").await.expect_err("the insert fails");
    assert_eq!(error.code(), Some(2), "{error}");
    assert_eq!(db.repo::<Account>().count(Filter::all()).await?, 0);
    assert_eq!(db.repo::<Credit>().count(Filter::all()).await?, 0);
    Ok(())
}
// ANCHOR_END: transient

// ANCHOR: failover
use mongrove::testkit::{Server, Topology};

#[tokio::test]
async fn registering_survives_a_new_primary() -> mongrove::Result<()> {
    // Three mongods of its own, stopped when `server` is dropped.
    let server = Server::start(Topology::replica_set(3)).await?;
    let db = server.db().await?;
    register(&db, "ada").await?;
    let step = server.step_down().await?;
    assert_ne!(step.former, step.primary);
    register(&db, "grace").await?;
    assert_eq!(db.repo::<Account>().count(Filter::all()).await?, 2);
    Ok(())
}
// ANCHOR_END: failover
