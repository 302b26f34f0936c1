//! References between models (`Ref<M>`, `.populate(path)`), `distinct`, projections into other
//! structs, keyset pagination and typed aggregation, against the real server. The query counts
//! come from the driver's command monitoring.

use std::sync::{Arc, Mutex};

use mongrove::bson::{Document, doc, oid::ObjectId};
use mongrove::mongodb::event::EventHandler;
use mongrove::mongodb::event::command::CommandEvent;
use mongrove::mongodb::options::ClientOptions;
use mongrove::testkit::{self, TestDb};
use mongrove::{Acc, Db, Error, Model, Projection, Ref, Resolved};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: models
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "customers")]
pub struct Customer {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub name: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "tags")]
pub struct Tag {
    #[serde(rename = "_id")]
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders")]
pub struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Stored as the customer's bare `_id`.
    pub customer: Ref<Customer>,
    /// A reference that may be absent.
    pub referrer: Option<Ref<Customer>>,
    /// Several references.
    pub tags: Vec<Ref<Tag>>,
    pub status: String,
    pub total: f64,
}
// ANCHOR_END: models

fn order(customer: &Customer, status: &str, total: f64) -> Order {
    Order {
        id: None,
        customer: Ref::to(customer).expect("inserted customer"),
        referrer: None,
        tags: Vec::new(),
        status: status.to_owned(),
        total,
    }
}

/// The commands a client sent, by name.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(String, Document)>>>);

impl Sent {
    fn named(&self, name: &str) -> Vec<Document> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A `Db` on the test's database through a client that records every command it sends.
async fn monitored(test: &TestDb) -> (Db, Sent) {
    let server = testkit::server().await.expect("test server");
    let mut options = ClientOptions::parse(server.uri())
        .await
        .expect("parse the server's URI");
    let sent = Sent::default();
    let record = sent.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event {
            record
                .0
                .lock()
                .unwrap()
                .push((started.command_name, started.command));
        }
    }));
    let client = mongrove::mongodb::Client::with_options(options).expect("client");
    (Db::new(client, test.name()), sent)
}

async fn customers(db: &Db, n: usize) -> Vec<Customer> {
    let mut all: Vec<Customer> = (0..n)
        .map(|i| Customer {
            id: None,
            name: format!("customer {i}"),
            country: if i % 2 == 0 { "FR" } else { "DE" }.to_owned(),
        })
        .collect();
    db.repo::<Customer>()
        .insert_many(&mut all)
        .await
        .expect("insert customers");
    all
}

#[tokio::test]
async fn a_ref_is_stored_as_the_bare_id() {
    let test = common::db().await;
    let all = customers(&test, 1).await;
    let mut o = order(&all[0], "new", 1.0);
    o.tags = vec![Ref::new("red".to_owned())];
    test.repo::<Order>().insert(&mut o).await.unwrap();
    let raw = test
        .repo::<Order>()
        .collection()
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_object_id("customer").unwrap(), all[0].id.unwrap());
    assert_eq!(raw.get("referrer"), Some(&mongrove::bson::Bson::Null));
    assert_eq!(
        raw.get_array("tags").unwrap(),
        &vec![mongrove::bson::Bson::from("red")]
    );
    // And a typed filter compares it as an id.
    let f = Order::fields();
    let found = test
        .repo::<Order>()
        .find(f.customer.eq(Ref::to(&all[0]).unwrap()))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

// ANCHOR: populate_count
#[tokio::test]
async fn populating_1000_orders_sends_two_finds() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let all = customers(&db, 100).await;
    let mut orders: Vec<Order> = (0..1000)
        .map(|i| order(&all[i % 100], "new", i as f64))
        .collect();
    db.repo::<Order>().insert_many(&mut orders).await.unwrap();
    sent.clear();

    // ANCHOR: populate
    let f = Order::fields();
    let populated = db
        .repo::<Order>()
        .find(f.status.eq("new"))
        .populate(f.customer)
        .await
        .unwrap();
    // ANCHOR_END: populate

    // One `find` for the orders (and its `getMore`s), one `$in` for the 100 customers.
    assert_eq!(sent.named("find").len(), 2);
    assert_eq!(populated.len(), 1000);
    for p in &populated {
        let customer = p.one().expect("every customer exists");
        assert_eq!(Some(p.doc.customer.id()), customer.id.as_ref());
    }
    let in_query = &sent.named("find")[1];
    assert_eq!(in_query.get_str("find").unwrap(), "customers");
    let ids = in_query
        .get_document("filter")
        .and_then(|f| f.get_document("_id"))
        .and_then(|f| f.get_array("$in"))
        .unwrap();
    assert_eq!(ids.len(), 100, "each customer asked for once");
}
// ANCHOR_END: populate_count

#[tokio::test]
async fn dangling_references_are_reported() {
    let test = common::db().await;
    let all = customers(&test, 2).await;
    let orders = test.repo::<Order>();
    let mut o = order(&all[0], "new", 1.0);
    o.referrer = Ref::to(&all[1]);
    orders.insert(&mut o).await.unwrap();
    test.repo::<Customer>().delete(&all[1]).await.unwrap();

    let f = Order::fields();
    // ANCHOR: dangling
    let p = orders
        .find_by_id(o.id.unwrap())
        .populate(f.referrer.clone())
        .await
        .unwrap()
        .expect("the order");
    assert!(p.one().is_none());
    assert_eq!(p.dangling(), vec![&all[1].id.unwrap()]);
    // ANCHOR_END: dangling
    assert!(matches!(&p.refs[..], [Resolved::Dangling(_)]));

    let err = orders
        .find(f.status.eq("new"))
        .populate(f.referrer)
        .strict()
        .await
        .unwrap_err();
    match err {
        Error::DanglingRef {
            collection,
            path,
            target,
            missing,
            ..
        } => {
            assert_eq!(collection, "orders");
            assert_eq!(path, "referrer");
            assert_eq!(target, "customers");
            assert_eq!(*missing, mongrove::bson::Bson::ObjectId(all[1].id.unwrap()));
        }
        other => panic!("expected DanglingRef, got {other:?}"),
    }
}

#[tokio::test]
async fn no_references_means_no_in_query() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let all = customers(&db, 1).await;
    db.repo::<Order>()
        .insert(&mut order(&all[0], "new", 1.0))
        .await
        .unwrap();
    sent.clear();
    let f = Order::fields();
    // The only order has no referrer, and no order is "gone": neither sends an empty `$in`.
    let p = db
        .repo::<Order>()
        .find(f.status.eq("new"))
        .populate(f.referrer.clone())
        .await
        .unwrap();
    assert_eq!(p.len(), 1);
    assert!(p[0].refs.is_empty());
    let none = db
        .repo::<Order>()
        .find_one(f.status.eq("gone"))
        .populate(f.customer)
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(sent.named("find").len(), 2, "one find per query, no `$in`");
}

#[tokio::test]
async fn vec_refs_resolve_in_order_and_inside_transactions() {
    let test = common::db().await;
    let all = customers(&test, 1).await;
    let mut tags = vec![Tag { id: "red".into() }, Tag { id: "blue".into() }];
    test.repo::<Tag>().insert_many(&mut tags).await.unwrap();
    let mut o = order(&all[0], "new", 1.0);
    o.tags = vec![
        Ref::new("blue".into()),
        Ref::new("red".into()),
        Ref::new("green".into()),
    ];
    test.repo::<Order>().insert(&mut o).await.unwrap();

    let f = Order::fields();
    let p = test
        .transaction(async |tx| {
            tx.repo::<Order>()
                .find_one(f.status.eq("new"))
                .populate(f.tags.clone())
                .await
        })
        .await
        .unwrap()
        .unwrap();
    let found: Vec<&str> = p.found().map(|t| t.id.as_str()).collect();
    assert_eq!(found, ["blue", "red"]);
    assert_eq!(p.dangling(), vec![&"green".to_owned()]);
}

#[tokio::test]
async fn distinct_is_typed_by_the_field() {
    let test = common::db().await;
    let all = customers(&test, 4).await;
    let f = Customer::fields();
    let mut countries: Vec<String> = test
        .repo::<Customer>()
        .distinct(f.country.clone())
        .await
        .unwrap();
    countries.sort();
    assert_eq!(countries, ["DE", "FR"]);
    let names = test
        .repo::<Customer>()
        .distinct(f.name.clone())
        .filter(f.country.eq("DE"))
        .await
        .unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(all.len(), 4);

    // A stored value of another type is a decode error, not a silent skip.
    test.repo::<Customer>()
        .collection()
        .insert_one(doc! { "name": 7, "country": "IT" })
        .await
        .unwrap();
    let err = test.repo::<Customer>().distinct(f.name).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref field, .. } if field == "name"),
        "{err:?}"
    );
}

#[tokio::test]
async fn distinct_elements_of_an_array_field() -> mongrove::Result<()> {
    let test = common::db().await;
    shop(&test).await;
    let mut tags = test
        .repo::<Order>()
        .distinct_elements(Order::fields().tags)
        .await?;
    tags.sort_by(|a, b| a.id().cmp(b.id()));
    assert_eq!(tags, [Ref::new("blue".into()), Ref::new("red".into())]);
    Ok(())
}

// ANCHOR: projection
/// The two fields of an order a listing shows. Each field is checked against `Order` at
/// compile time: same name, same type (or an `Option` of it).
#[derive(Debug, PartialEq, Deserialize, Projection)]
#[projection(of = Order)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub status: String,
    pub total: Option<f64>,
}
// ANCHOR_END: projection

#[tokio::test]
async fn project_reads_only_the_projected_fields() -> mongrove::Result<()> {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let all = customers(&db, 1).await;
    let mut o = order(&all[0], "paid", 12.5);
    db.repo::<Order>().insert(&mut o).await.unwrap();
    // A document whose `customer` no longer fits the model: a lean read never decodes it.
    db.repo::<Order>()
        .collection()
        .insert_one(doc! { "customer": "not an id", "status": "paid", "total": 1.0, "tags": [] })
        .await
        .unwrap();
    sent.clear();

    // ANCHOR: project
    let f = Order::fields();
    let lines: Vec<OrderLine> = db
        .repo::<Order>()
        .find(f.status.eq("paid"))
        .sort(f.total.desc())
        .project::<OrderLine>()
        .await?;
    // ANCHOR_END: project
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        OrderLine {
            id: o.id.unwrap(),
            status: "paid".into(),
            total: Some(12.5)
        }
    );
    let find = &sent.named("find")[0];
    assert_eq!(
        find.get_document("projection").unwrap(),
        &doc! { "_id": 1, "status": 1, "total": 1 }
    );

    // The full model does not decode the second document.
    let err = db
        .repo::<Order>()
        .find(f.status.eq("paid"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");

    // A projected field that does not decode is reported.
    db.repo::<Order>()
        .collection()
        .insert_one(doc! { "status": "odd", "total": "twelve" })
        .await
        .unwrap();
    let err = db
        .repo::<Order>()
        .find(f.status.eq("odd"))
        .project::<OrderLine>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref field, .. } if field == "total"),
        "{err:?}"
    );

    // A projection may store a field under another name: the server renames it.
    let states = db
        .repo::<Order>()
        .find(f.total.eq(12.5))
        .project::<State>()
        .await?;
    assert_eq!(
        states,
        [State {
            status: "paid".into()
        }]
    );
    Ok(())
}

#[derive(Debug, PartialEq, Deserialize, Projection)]
#[projection(of = Order)]
struct State {
    #[serde(rename = "state")]
    status: String,
}

async fn numbered(db: &Db, totals: impl IntoIterator<Item = i32>) -> Vec<Order> {
    let all = customers(db, 1).await;
    let mut orders: Vec<Order> = totals
        .into_iter()
        .map(|t| order(&all[0], "open", f64::from(t)))
        .collect();
    db.repo::<Order>().insert_many(&mut orders).await.unwrap();
    orders
}

fn totals(page: &mongrove::Page<Order>) -> Vec<f64> {
    page.items.iter().map(|o| o.total).collect()
}

#[tokio::test]
async fn keyset_pages_are_stable_across_inserts() -> mongrove::Result<()> {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    // Totals 0, 1, 1, 2, 2, 3, ...: ties on the sort key are broken by `_id`.
    numbered(&db, (0..12).map(|i| (i + 1) / 2)).await;
    let orders = db.repo::<Order>();
    let f = Order::fields();

    // ANCHOR: pages
    let first = orders
        .find(f.status.eq("open"))
        .sort(f.total.desc())
        .limit(5)
        .page()
        .await?;
    let cursor = first.next.clone().expect("more than one page");
    let second = orders
        .find(f.status.eq("open"))
        .sort(f.total.desc())
        .limit(5)
        .after(&cursor)
        .await?;
    // ANCHOR_END: pages
    assert_eq!(totals(&first), [6.0, 5.0, 5.0, 4.0, 4.0]);
    assert_eq!(totals(&second), [3.0, 3.0, 2.0, 2.0, 1.0]);
    assert!(sent.named("find").iter().all(|c| !c.contains_key("skip")));

    // Documents inserted before the cursor's position do not shift the next page; those after it
    // appear in it.
    numbered(&db, [10, 0]).await;
    let again = orders
        .find(f.status.eq("open"))
        .sort(f.total.desc())
        .limit(5)
        .after(&cursor)
        .await?;
    assert_eq!(totals(&again), totals(&second));
    let third = orders
        .find(f.status.eq("open"))
        .sort(f.total.desc())
        .limit(5)
        .after(second.next.as_deref().expect("a third page"))
        .await?;
    assert_eq!(totals(&third), [1.0, 0.0, 0.0]);
    assert!(third.next.is_none(), "the last page has no next cursor");

    let ids: std::collections::HashSet<_> = first
        .items
        .iter()
        .chain(&second.items)
        .chain(&third.items)
        .map(|o| o.id)
        .collect();
    assert_eq!(ids.len(), 13, "no document repeated");
    Ok(())
}

#[tokio::test]
async fn a_cursor_after_the_last_page_returns_an_empty_page() -> mongrove::Result<()> {
    let test = common::db().await;
    numbered(&test, 0..4).await;
    let orders = test.repo::<Order>();
    let f = Order::fields();
    let first = orders
        .find(f.status.eq("open"))
        .sort(f.total.asc())
        .limit(2)
        .page()
        .await?;
    let cursor = first.next.expect("a second page");
    // Everything after the cursor goes away before the next page is read.
    orders.delete_many(f.total.gte(2.0)).await?;
    let empty = orders
        .find(f.status.eq("open"))
        .sort(f.total.asc())
        .limit(2)
        .after(&cursor)
        .await?;
    assert!(empty.items.is_empty());
    assert!(empty.next.is_none());
    Ok(())
}

#[tokio::test]
async fn tampered_and_foreign_cursors_are_refused() -> mongrove::Result<()> {
    let test = common::db().await;
    numbered(&test, 0..4).await;
    let orders = test.repo::<Order>();
    let f = Order::fields();
    let first = orders
        .find(f.status.eq("open"))
        .sort(f.total.asc())
        .limit(2)
        .page()
        .await?;
    let cursor = first.next.expect("a second page");

    let mut tampered = cursor.clone().into_bytes();
    let at = tampered.len() - 4;
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let err = orders
        .find(f.status.eq("open"))
        .sort(f.total.asc())
        .limit(2)
        .after(&tampered)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidCursor { reason, .. } if reason.contains("altered")),
        "{err:?}"
    );

    // The same cursor with another filter, or another sort.
    for find in [
        orders.find(f.status.eq("closed")).sort(f.total.asc()),
        orders.find(f.status.eq("open")).sort(f.total.desc()),
    ] {
        let err = find.limit(2).after(&cursor).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCursor { reason, .. } if reason.contains("another query")),
            "{err:?}"
        );
    }
    Ok(())
}

// ANCHOR: aggregate_out
/// One output document of the revenue pipeline: its serde names are the output fields.
#[derive(Debug, PartialEq, Deserialize)]
struct Revenue {
    #[serde(rename = "_id")]
    status: String,
    orders: i64,
    total: f64,
    average: f64,
    largest: f64,
    customers: Vec<ObjectId>,
}
// ANCHOR_END: aggregate_out

async fn shop(db: &Db) -> Vec<Customer> {
    let all = customers(db, 2).await;
    let mut orders = vec![
        order(&all[0], "paid", 10.0),
        order(&all[0], "paid", 30.0),
        order(&all[1], "paid", 20.0),
        order(&all[1], "open", 5.0),
    ];
    orders[0].tags = vec![Ref::new("red".into()), Ref::new("blue".into())];
    db.repo::<Order>().insert_many(&mut orders).await.unwrap();
    all
}

#[tokio::test]
async fn group_with_typed_accumulators() -> mongrove::Result<()> {
    let test = common::db().await;
    let all = shop(&test).await;
    let orders = test.repo::<Order>();
    // ANCHOR: aggregate
    let f = Order::fields();
    let revenue: Vec<Revenue> = orders
        .aggregate()
        .match_(f.total.gt(1.0))
        .group_by(
            &f.status,
            [
                Acc::count("orders"),
                Acc::sum("total", &f.total),
                Acc::avg("average", &f.total),
                Acc::max("largest", &f.total),
                Acc::add_to_set("customers", &f.customer),
            ],
        )
        .sort(doc! { "_id": -1 }.into())
        .decode::<Revenue>()
        .await?;
    // ANCHOR_END: aggregate
    assert_eq!(revenue.len(), 2);
    let paid = &revenue[0];
    assert_eq!(
        (
            paid.status.as_str(),
            paid.orders,
            paid.total,
            paid.average,
            paid.largest
        ),
        ("paid", 3, 60.0, 20.0, 30.0)
    );
    let mut customers = paid.customers.clone();
    customers.sort();
    let mut expected: Vec<ObjectId> = all.iter().map(|c| c.id.unwrap()).collect();
    expected.sort();
    assert_eq!(customers, expected);
    assert_eq!(revenue[1].status, "open");
    Ok(())
}

#[derive(Debug, Deserialize)]
struct WithCustomer {
    total: f64,
    buyer: Vec<Customer>,
}

#[tokio::test]
async fn lookup_unwind_skip_limit_and_a_raw_stage() -> mongrove::Result<()> {
    let test = common::db().await;
    shop(&test).await;
    let orders = test.repo::<Order>();
    let f = Order::fields();
    // ANCHOR: lookup
    let joined: Vec<WithCustomer> = orders
        .aggregate()
        .sort(f.total.asc())
        .skip(1)
        .limit(2)
        .lookup::<Customer, _>(f.customer.clone(), "buyer")
        .decode()
        .await?;
    // ANCHOR_END: lookup
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[0].total, 10.0);
    assert_eq!(joined[0].buyer.len(), 1);
    assert_eq!(joined[0].buyer[0].name, "customer 0");

    // One document per tag, counted with a raw stage.
    let tags = orders
        .aggregate()
        .unwind(&f.tags)
        .stage(doc! { "$count": "n" })
        .await?;
    assert_eq!(tags, [doc! { "n": 2 }]);

    // A projection as a stage, streamed.
    use futures_util::StreamExt;
    let mut lines = orders
        .aggregate()
        .match_(f.status.eq("open"))
        .project::<OrderLine>()
        .decode::<OrderLine>()
        .stream()
        .await?;
    let line = lines.next().await.expect("one line")?;
    assert_eq!(line.total, Some(5.0));
    assert!(lines.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn an_output_that_does_not_decode_is_a_decode_error() {
    let test = common::db().await;
    shop(&test).await;
    let f = Order::fields();
    // `_id` of a group is the status, a string: `Revenue` without `orders` does not decode.
    let err = test
        .repo::<Order>()
        .aggregate()
        .group_by(&f.status, [Acc::sum("total", &f.total)])
        .decode::<Revenue>()
        .await
        .unwrap_err();
    match err {
        Error::Decode {
            collection, field, ..
        } => {
            assert_eq!(collection, "orders");
            assert_eq!(field, "orders");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn aggregate_joins_the_transaction() -> mongrove::Result<()> {
    let test = common::db().await;
    shop(&test).await;
    // Another client: it never joins this test's transaction.
    let (other, _) = monitored(&test).await;
    let f = Order::fields();
    let count = || [Acc::count("n")];
    let (inside, outside) = test
        .transaction(async |tx| {
            let orders = tx.repo::<Order>();
            orders.delete_many(f.status.eq("open")).await?;
            // The pipeline sees the transaction's own uncommitted delete; the other client does not.
            let inside = orders.aggregate().group_all(count()).await?;
            let outside = other.repo::<Order>().aggregate().group_all(count()).await?;
            Ok((inside, outside))
        })
        .await?;
    assert_eq!(inside, [doc! { "_id": null, "n": 3 }]);
    assert_eq!(outside, [doc! { "_id": null, "n": 4 }]);
    Ok(())
}

#[tokio::test]
async fn populate_and_pages_run_in_a_session_of_your_own() -> mongrove::Result<()> {
    let test = common::db().await;
    let existing = customers(&test, 1).await;
    let mut session = test.client().start_session().await?;
    session.start_transaction().await?;
    // A customer and an order that exist only inside the session's transaction.
    let mut c = Customer {
        id: None,
        name: "in the transaction".into(),
        country: "FR".into(),
    };
    test.repo::<Customer>()
        .insert(&mut c)
        .session(&mut session)
        .await?;
    let mut o = order(&c, "tx", 1.0);
    o.referrer = Ref::to(&existing[0]);
    test.repo::<Order>()
        .insert(&mut o)
        .session(&mut session)
        .await?;

    let f = Order::fields();
    let inside = test
        .repo::<Order>()
        .find(f.status.eq("tx"))
        .populate(f.customer.clone())
        .strict()
        .session(&mut session)
        .await?;
    assert_eq!(inside.len(), 1);
    assert_eq!(
        inside[0].one().map(|c| c.name.as_str()),
        Some("in the transaction")
    );
    let page = test
        .repo::<Order>()
        .find(f.status.eq("tx"))
        .page()
        .session(&mut session)
        .await?;
    assert_eq!(page.items.len(), 1);

    // Outside the session neither exists yet.
    let outside = test
        .repo::<Order>()
        .find(f.status.eq("tx"))
        .populate(f.customer)
        .await?;
    assert!(outside.is_empty());
    session.abort_transaction().await?;
    Ok(())
}

#[tokio::test]
async fn a_loop_reads_every_page_once() -> mongrove::Result<()> {
    let test = common::db().await;
    numbered(&test, 0..23).await;
    let orders = test.repo::<Order>();
    let f = Order::fields();
    // ANCHOR: page_loop
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = orders
            .find(f.status.eq("open"))
            .sort(f.total.asc())
            .limit(10)
            .after(&cursor)
            .await?;
        seen.extend(page.items.iter().map(|o| o.total));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    // ANCHOR_END: page_loop
    assert_eq!(seen, (0..23).map(f64::from).collect::<Vec<_>>());
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "accounts")]
pub struct Account {
    #[serde(rename = "_id")]
    pub id: String,
    pub manager: Option<Ref<Account>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "invoices")]
pub struct Invoice {
    #[serde(rename = "_id")]
    pub id: i64,
    pub account: Ref<Account>,
}

#[tokio::test]
async fn nested_populate_sends_one_query_per_level() -> mongrove::Result<()> {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let account = |id: &str, manager: Option<&str>| Account {
        id: id.into(),
        manager: manager.map(|m| Ref::new(m.to_owned())),
    };
    db.repo::<Account>()
        .insert_many(&mut [
            account("boss", None),
            account("a", Some("boss")),
            account("b", Some("gone")),
        ])
        .await?;
    let mut invoices: Vec<Invoice> = (0..30)
        .map(|i| Invoice {
            id: i,
            account: Ref::new(if i % 2 == 0 { "a" } else { "b" }.to_owned()),
        })
        .collect();
    db.repo::<Invoice>().insert_many(&mut invoices).await?;
    sent.clear();

    // ANCHOR: nested
    let populated = db
        .repo::<Invoice>()
        .find(Invoice::fields().id.gte(0))
        .sort(Invoice::fields().id.asc())
        .populate(Invoice::fields().account)
        .then(Account::fields().manager)
        .await?;
    // ANCHOR_END: nested
    assert_eq!(sent.named("find").len(), 3, "invoices, accounts, managers");
    assert_eq!(populated.len(), 30);
    let first = populated[0].one().expect("account a");
    assert_eq!(first.doc.id, "a");
    assert_eq!(first.one().map(|m| m.id.as_str()), Some("boss"));
    let second = populated[1].one().expect("account b");
    assert_eq!(second.dangling(), vec![&"gone".to_owned()]);

    let err = db
        .repo::<Invoice>()
        .find(Invoice::fields().id.gte(0))
        .populate(Invoice::fields().account)
        .strict()
        .then(Account::fields().manager)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DanglingRef { collection, target, .. } if collection == "accounts" && target == "accounts"),
        "{err:?}"
    );
    Ok(())
}
