//! Every repository operation runs in a DEBUG `tracing` span with the OpenTelemetry database
//! fields and its outcome.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mongrove::bson::oid::ObjectId;
use mongrove::{Error, Model, WriteOp};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(
    collection = "traced_orders",
    version = "version",
    index(keys(code = 1), unique)
)]
struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    code: String,
    qty: i32,
    #[serde(default)]
    version: i64,
}

fn order(code: &str, qty: i32) -> Order {
    Order {
        id: None,
        code: code.to_owned(),
        qty,
        version: 0,
    }
}

/// The fields of the `mongodb` spans whose operation is `operation`.
fn of(spans: &[(String, String)], operation: &str) -> Vec<String> {
    let wanted = format!("db.operation.name={operation:?} ");
    spans
        .iter()
        .filter(|(name, fields)| name == "mongodb" && fields.contains(&wanted))
        .map(|(_, fields)| fields.clone())
        .collect()
}

fn one(spans: &[(String, String)], operation: &str) -> String {
    let found = of(spans, operation);
    assert!(!found.is_empty(), "no `{operation}` span in {spans:#?}");
    found[0].clone()
}

// A current-thread test: every span of its operations is opened on this thread.
#[tokio::test(flavor = "current_thread")]
async fn every_operation_has_a_span_with_the_database_fields_and_its_outcome() {
    let db = common::db().await;
    let orders = db.repo::<Order>();
    let f = Order::fields();
    let recording = common::spans().record_this_thread();

    orders.sync_indexes().await.expect("indexes");
    let mut first = order("A-1", 1);
    orders.insert(&mut first).await.expect("insert");
    let mut more = vec![order("A-2", 2), order("A-3", 3)];
    orders.insert_many(&mut more).await.expect("insert_many");
    assert_eq!(orders.find(f.qty.gte(2)).await.expect("find").len(), 2);
    let stream = orders.find(f.qty.gte(0)).stream().await.expect("stream");
    drop(stream);
    orders.find_one(f.code.eq("A-1")).await.expect("find_one");
    orders.count(f.qty.gte(0)).await.expect("count");
    orders.exists(f.code.eq("A-9")).await.expect("exists");
    orders
        .update_one(f.code.eq("A-1"), f.qty.inc(1))
        .await
        .expect("update_one");
    orders
        .update_many(f.qty.gte(0), f.qty.inc(1))
        .await
        .expect("update_many");
    orders
        .find_one_and_update(f.code.eq("A-2"), f.qty.set(20))
        .await
        .expect("find_one_and_update");
    let mut stale = first.clone();
    let mut reloaded = orders
        .find_by_id(first.id.expect("id"))
        .await
        .expect("find_by_id")
        .expect("stored");
    reloaded.qty = 100;
    orders.save(&mut reloaded).await.expect("save");
    stale.qty = 7;
    let conflict = orders.save(&mut stale).await.expect_err("stale version");
    assert!(
        matches!(conflict, Error::VersionConflict { .. }),
        "{conflict}"
    );
    let duplicate = orders
        .insert(&mut order("A-1", 1))
        .await
        .expect_err("duplicate code");
    assert!(
        matches!(duplicate, Error::DuplicateKey { .. }),
        "{duplicate}"
    );
    let mut replacement = orders
        .find_one(f.code.eq("A-3"))
        .await
        .expect("find_one")
        .expect("stored");
    replacement.qty = 30;
    orders
        .replace(f.code.eq("A-3"), &mut replacement)
        .await
        .expect("replace");
    orders
        .modify(first.id.expect("id"), |mut o| async move {
            o.qty += 1;
            Ok(o)
        })
        .await
        .expect("modify");
    orders
        .bulk_write(vec![
            WriteOp::Insert(order("B-1", 1)),
            WriteOp::update_many(f.qty.gte(0), f.qty.inc(1)),
        ])
        .await
        .expect("bulk_write");
    let watch = orders.watch().await.expect("watch");
    drop(watch);
    orders
        .delete(&reloaded)
        .await
        .expect_err("stale version: delete refuses");
    orders.delete_many(f.qty.gte(0)).await.expect("delete_many");

    let spans = recording.finish();
    for operation in [
        "sync_indexes",
        "insert",
        "insert_many",
        "find",
        "find_one",
        "count",
        "exists",
        "update_one",
        "update_many",
        "find_one_and_update",
        "save",
        "replace",
        "modify",
        "bulk_write",
        "watch",
        "delete",
        "delete_many",
    ] {
        let fields = one(&spans, operation);
        for expected in [
            r#"db.system="mongodb""#.to_owned(),
            format!("db.namespace={:?}", db.name()),
            r#"db.collection.name="traced_orders""#.to_owned(),
            format!(r#"otel.name="{operation} traced_orders""#),
        ] {
            assert!(
                fields.contains(&expected),
                "{operation}: {expected} in {fields}"
            );
        }
    }
    // Opening a stream and collecting both are `find`.
    assert_eq!(of(&spans, "find").len(), 2, "{spans:#?}");
    assert!(one(&spans, "insert_many").contains("db.mongodb.inserted_count=2 "));
    assert!(of(&spans, "find")[0].contains("db.response.returned_rows=2 "));
    let update_one = one(&spans, "update_one");
    assert!(
        update_one.contains("db.mongodb.matched_count=1 "),
        "{update_one}"
    );
    assert!(
        update_one.contains("db.mongodb.modified_count=1 "),
        "{update_one}"
    );
    let update_many = one(&spans, "update_many");
    assert!(
        update_many.contains("db.mongodb.matched_count=3 "),
        "{update_many}"
    );
    assert!(
        update_many.contains("db.mongodb.modified_count=3 "),
        "{update_many}"
    );
    let bulk = one(&spans, "bulk_write");
    assert!(bulk.contains("db.mongodb.inserted_count=1 "), "{bulk}");
    assert!(bulk.contains("db.mongodb.matched_count=4 "), "{bulk}");
    assert!(one(&spans, "delete_many").contains("db.mongodb.deleted_count=4 "));
    // `modify` loads and saves inside its own span.
    assert!(of(&spans, "save").len() >= 3, "{spans:#?}");

    // Failures name the error kind; successes have none.
    let saves = of(&spans, "save");
    let failed: Vec<_> = saves.iter().filter(|s| s.contains("error.type")).collect();
    assert_eq!(failed.len(), 1, "{saves:#?}");
    assert!(
        failed[0].contains(r#"error.type="VersionConflict""#),
        "{failed:?}"
    );
    assert!(
        failed[0].contains(r#"otel.status_code="ERROR""#),
        "{failed:?}"
    );
    let inserts = of(&spans, "insert");
    assert!(
        inserts
            .iter()
            .any(|s| s.contains(r#"error.type="DuplicateKey""#)),
        "{inserts:#?}"
    );
    assert!(one(&spans, "delete").contains(r#"error.type="VersionConflict""#));
    assert!(!one(&spans, "count").contains("error.type"));
}

/// A writer the fmt subscriber shares with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ANCHOR: subscriber
/// Prints one line per closed span, with its fields, at DEBUG and above.
fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(writer)
        .finish()
}
// ANCHOR_END: subscriber

#[tokio::test(flavor = "current_thread")]
async fn the_fmt_subscriber_of_the_guide_prints_the_operation_spans() {
    let db = common::db().await;
    let captured = Captured::default();
    let writer = {
        let captured = captured.clone();
        move || captured.clone()
    };
    // A thread-local default: the test binary's global subscriber stays in place.
    let guard = tracing::subscriber::set_default(subscriber(writer));
    let orders = db.repo::<Order>();
    orders.insert(&mut order("F-1", 1)).await.expect("insert");
    let missing = orders
        .update_one(Order::fields().code.eq("F-9"), Order::fields().qty.inc(1))
        .await
        .expect("update");
    assert_eq!(missing.matched, 0);
    drop(guard);
    let out = String::from_utf8(captured.0.lock().unwrap().clone()).expect("utf-8");
    let insert = out
        .lines()
        .find(|l| l.contains(r#"db.operation.name="insert""#))
        .unwrap_or_else(|| panic!("no insert line in {out}"));
    assert!(insert.contains("DEBUG"), "{insert}");
    assert!(
        insert.contains(r#"db.collection.name="traced_orders""#),
        "{insert}"
    );
    let update = out
        .lines()
        .find(|l| l.contains(r#"db.operation.name="update_one""#))
        .unwrap_or_else(|| panic!("no update line in {out}"));
    assert!(update.contains("db.mongodb.matched_count=0"), "{update}");
}
