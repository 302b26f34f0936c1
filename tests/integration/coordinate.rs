//! Transaction trees and sagas across two separate `mongod` processes, with faults injected by
//! fail points.

use std::sync::{Arc, Mutex};

use mongrove::bson::oid::ObjectId;
use mongrove::coordinate::Stage;
use mongrove::testkit::{FailCommand, Server, TestDb, Topology};
use mongrove::{Db, Error, Filter, Model, Saga, TxTree};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::common;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders")]
struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    customer: String,
    cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "invoices")]
struct Invoice {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    order: ObjectId,
    cents: i64,
}

/// A second replica set: another `mongod` process, another client.
async fn second_server() -> &'static Server {
    static SECOND: OnceCell<Server> = OnceCell::const_new();
    SECOND
        .get_or_try_init(|| Server::start(Topology::ReplicaSet))
        .await
        .expect("a second replica set starts")
}

/// A database on each of the two servers.
async fn two_databases() -> (TestDb, TestDb) {
    let shop = common::db().await;
    let billing = second_server()
        .await
        .db()
        .await
        .expect("a database on the second server");
    (shop, billing)
}

async fn orders(db: &Db) -> u64 {
    db.repo::<Order>()
        .count(Filter::all())
        .await
        .expect("count")
}

async fn invoices(db: &Db) -> u64 {
    db.repo::<Invoice>()
        .count(Filter::all())
        .await
        .expect("count")
}

// ANCHOR: tree
/// The order tree: the order on `shop`, its invoice (which reads the order's id) on `billing`,
/// and a compensation that deletes the order again.
fn order_tree<'a>(
    shop: &Db,
    billing: &Db,
    fail_invoice: bool,
    compensations: Arc<Mutex<Vec<String>>>,
) -> (
    TxTree<'a>,
    mongrove::NodeRef<ObjectId>,
    mongrove::NodeRef<ObjectId>,
) {
    let mut tree = TxTree::new();
    let order = tree.root("order", shop, move |tx, _store| async move {
        let mut order = Order {
            id: None,
            customer: "ada".into(),
            cents: 1200,
        };
        tx.repo::<Order>().insert(&mut order).await
    });
    let invoice = tree.child(order, "invoice", billing, move |tx, store| async move {
        let order_id = *store.get(&order)?;
        let mut invoice = Invoice {
            id: None,
            order: order_id,
            cents: 1200,
        };
        let id = tx.repo::<Invoice>().insert(&mut invoice).await?;
        if fail_invoice {
            return Err(Error::custom("the invoice is refused"));
        }
        Ok(id)
    });
    tree.compensate(order, move |tx, store| {
        let compensations = compensations.clone();
        async move {
            let order_id = *store.get(&order)?;
            let orders = tx.repo::<Order>();
            orders.delete_many(Order::fields().id.eq(order_id)).await?;
            if let Ok(mut log) = compensations.lock() {
                log.push(format!("order {order_id} cancelled"));
            }
            Ok(())
        }
    });
    (tree, order, invoice)
}
// ANCHOR_END: tree

#[tokio::test]
async fn a_tree_commits_on_both_servers_and_passes_results_down() {
    let (shop, billing) = two_databases().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tree, order, invoice) = order_tree(&shop, &billing, false, log.clone());
    // The tree's future is `Send`: it runs on a spawned task.
    let store = tokio::spawn(tree.run())
        .await
        .expect("the task ends")
        .expect("the tree commits");
    let order_id = *store.get(&order).expect("order result");
    let invoice_id = *store.get(&invoice).expect("invoice result");
    let stored = billing
        .repo::<Invoice>()
        .find_by_id(invoice_id)
        .await
        .expect("read")
        .expect("the invoice is stored");
    assert_eq!(stored.order, order_id, "the child read its parent's result");
    assert_eq!(orders(&shop).await, 1);
    assert!(log.lock().expect("log").is_empty(), "nothing compensated");
}

#[tokio::test]
async fn a_failing_child_leaves_both_databases_untouched() {
    let (shop, billing) = two_databases().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tree, _, _) = order_tree(&shop, &billing, true, log.clone());
    let error = tree.run().await.expect_err("the child fails");
    match &error {
        Error::TreeAborted { node, source } => {
            assert_eq!(node, "invoice");
            assert_eq!(source.to_string(), "the invoice is refused");
        }
        other => panic!("expected TreeAborted, got {other:?}"),
    }
    assert_eq!(
        orders(&shop).await,
        0,
        "the parent's transaction was aborted"
    );
    assert_eq!(
        invoices(&billing).await,
        0,
        "the child's transaction was aborted"
    );
    assert!(
        log.lock().expect("log").is_empty(),
        "nothing committed, nothing to undo"
    );
}

#[tokio::test]
async fn a_commit_failing_after_another_committed_runs_its_compensation() {
    let (shop, billing) = two_databases().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tree, _, _) = order_tree(&shop, &billing, false, log.clone());
    // The shop commits first; then the billing server refuses its commit.
    let _fault = billing
        .fail_point(
            FailCommand::new(["commitTransaction"])
                .error_code(251)
                .times(1),
        )
        .await
        .expect("fail point");
    // ANCHOR: report
    let error = tree.run().await.expect_err("the second commit fails");
    let Error::PartiallyCommitted(report) = &error else {
        panic!("expected PartiallyCommitted, got {error:?}");
    };
    assert_eq!(report.committed, ["order"]);
    assert_eq!(report.compensated, ["order"]);
    assert_eq!(report.aborted, ["invoice"]);
    assert!(report.not_compensated().is_empty());
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].node, "invoice");
    assert_eq!(report.failures[0].stage, Stage::Commit);
    assert_eq!(report.failures[0].error.code(), Some(251));
    // ANCHOR_END: report
    let message = error.to_string();
    assert!(
        message.contains(r#"committed ["order"], compensated ["order"]"#),
        "{message}"
    );
    assert_eq!(
        log.lock().expect("log").len(),
        1,
        "the compensation ran once"
    );
    assert_eq!(
        orders(&shop).await,
        0,
        "the committed order was compensated"
    );
    assert_eq!(invoices(&billing).await, 0, "the invoice never committed");
}

#[tokio::test]
async fn a_transient_error_runs_the_whole_tree_again() {
    let (shop, billing) = two_databases().await;
    let runs = Arc::new(Mutex::new((0, 0)));
    let mut tree = TxTree::new();
    let counter = runs.clone();
    let order = tree.root("order", &shop, move |tx, _| {
        let counter = counter.clone();
        async move {
            if let Ok(mut runs) = counter.lock() {
                runs.0 += 1;
            }
            let mut order = Order {
                id: None,
                customer: "bob".into(),
                cents: 5,
            };
            tx.repo::<Order>().insert(&mut order).await
        }
    });
    let counter = runs.clone();
    tree.child(order, "invoice", &billing, move |tx, store| {
        let counter = counter.clone();
        async move {
            if let Ok(mut runs) = counter.lock() {
                runs.1 += 1;
            }
            let mut invoice = Invoice {
                id: None,
                order: *store.get(&order)?,
                cents: 5,
            };
            tx.repo::<Invoice>().insert(&mut invoice).await
        }
    });
    let _fault = billing
        .fail_point(FailCommand::transient(["insert"]).times(1))
        .await
        .expect("fail point");
    tree.run().await.expect("the second run commits");
    assert_eq!(*runs.lock().expect("runs"), (2, 2));
    assert_eq!(orders(&shop).await, 1, "the first run's order was aborted");
    assert_eq!(invoices(&billing).await, 1);
}

#[tokio::test]
async fn a_saga_undoes_completed_steps_in_reverse_order() {
    let (shop, billing) = two_databases().await;
    let undone = Arc::new(Mutex::new(Vec::new()));
    // ANCHOR: saga
    let mut saga = Saga::new();
    let order = saga.step("order", &shop, move |tx, _| async move {
        let mut order = Order {
            id: None,
            customer: "eve".into(),
            cents: 300,
        };
        tx.repo::<Order>().insert(&mut order).await
    });
    let log = undone.clone();
    saga.compensate(order, move |tx, store| {
        let log = log.clone();
        async move {
            let id = *store.get(&order)?;
            tx.repo::<Order>()
                .delete_many(Order::fields().id.eq(id))
                .await?;
            if let Ok(mut log) = log.lock() {
                log.push("order");
            }
            Ok(())
        }
    });
    let invoice = saga.step("invoice", &billing, move |tx, store| async move {
        let mut invoice = Invoice {
            id: None,
            order: *store.get(&order)?,
            cents: 300,
        };
        tx.repo::<Invoice>().insert(&mut invoice).await
    });
    let log = undone.clone();
    saga.compensate(invoice, move |tx, store| {
        let log = log.clone();
        async move {
            let id = *store.get(&invoice)?;
            tx.repo::<Invoice>()
                .delete_many(Invoice::fields().id.eq(id))
                .await?;
            if let Ok(mut log) = log.lock() {
                log.push("invoice");
            }
            Ok(())
        }
    });
    saga.step("ship", &shop, move |_tx, _| async move {
        Err::<(), _>(Error::custom("no courier"))
    });
    // ANCHOR_END: saga

    let error = tokio::spawn(saga.run())
        .await
        .expect("the task ends")
        .expect_err("the last step fails");
    let Error::SagaFailed(report) = &error else {
        panic!("expected SagaFailed, got {error:?}");
    };
    assert_eq!(report.committed, ["order", "invoice"]);
    assert_eq!(report.compensated, ["invoice", "order"]);
    assert_eq!(report.aborted, ["ship"]);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].stage, Stage::Action);
    assert_eq!(report.failures[0].error.to_string(), "no courier");
    assert_eq!(*undone.lock().expect("log"), ["invoice", "order"]);
    assert_eq!(orders(&shop).await, 0);
    assert_eq!(invoices(&billing).await, 0);
}

#[tokio::test]
async fn the_store_refuses_results_that_have_not_run_yet() {
    let (shop, billing) = two_databases().await;
    let mut tree = TxTree::new();
    let first = tree.root("first", &shop, move |_tx, _| async move { Ok(1_u8) });
    let late = tree.root("late", &billing, move |_tx, _| async move { Ok(2_u8) });
    tree.child(first, "early child", &shop, move |_tx, store| async move {
        assert_eq!(*store.get(&first)?, 1);
        // `late` is a later root: it runs after this whole subtree.
        store.get(&late).map(|_| ())
    });
    let error = tree.run().await.expect_err("the child read too early");
    match error {
        Error::TreeAborted { node, source } => {
            assert_eq!(node, "early child");
            assert!(
                matches!(*source, Error::MissingResult { ref node } if node == "late"),
                "{source:?}"
            );
        }
        other => panic!("expected TreeAborted, got {other:?}"),
    }
}
