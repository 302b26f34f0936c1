//! The first-service example over real HTTP: started on a free loopback port against the test
//! server, driven by a minimal HTTP/1.1 client, and shut down gracefully.

#[allow(dead_code)]
#[path = "../../examples/service.rs"]
mod example;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::common;

const WAIT: Duration = Duration::from_secs(20);

/// One request on its own connection (`Connection: close`): the status and the JSON body.
async fn request(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream.write_all(body.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("an answer within the timeout")
        .expect("reads");
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a head and a body: {response}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"))
    };
    (status, body)
}

#[tokio::test]
async fn creates_reads_and_updates_an_order_over_http_with_409_on_a_stale_version() {
    let db = common::db().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, db.db().clone(), async {
        let _ = stopped.await;
    }));

    let (status, created) = request(
        &addr,
        "POST",
        "/orders",
        Some(json!({ "customer": "ada", "total_cents": 1200 })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "new");
    assert_eq!(created["version"], 0);
    let id = created["id"].as_str().expect("an id").to_owned();
    // The transaction counted the order on its customer.
    let customer = db
        .repo::<example::Customer>()
        .find_by_id("ada".to_owned())
        .await
        .expect("reads")
        .expect("the customer was created with the order");
    assert_eq!(customer.orders, 1);

    let (status, read) = request(&addr, "GET", &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["customer"], "ada");
    assert_eq!(read["total_cents"], 1200);

    let path = format!("/orders/{id}");
    let (status, paid) = request(
        &addr,
        "PATCH",
        &path,
        Some(json!({ "status": "paid", "version": 0 })),
    )
    .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["version"], 1);

    // A second client still holding version 0 is told that the order changed.
    let (status, conflict) = request(
        &addr,
        "PATCH",
        &path,
        Some(json!({ "status": "cancelled", "version": 0 })),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["your_version"], 0);
    assert_eq!(conflict["current_version"], 1);
    let stored = db
        .repo::<example::Order>()
        .find_one(example::Order::fields().customer.eq("ada"))
        .await
        .expect("reads")
        .expect("stored");
    assert_eq!(stored.status, "paid", "the stale write changed nothing");

    let (status, _) = request(&addr, "GET", "/orders/000000000000000000000000", None).await;
    assert_eq!(status, 404);
    let (status, _) = request(&addr, "GET", "/orders/not-an-id", None).await;
    assert_eq!(status, 400);

    assert!(
        still_serves(&addr, &path).await,
        "the check sees a live service"
    );
    stop.send(()).expect("the server is running");
    timeout(WAIT, server)
        .await
        .expect("stops within the timeout")
        .expect("the task ends")
        .expect("serves without error");
    assert!(
        !still_serves(&addr, &path).await,
        "the service answers after the shutdown"
    );
}

/// Whether the service still answers at `addr`. The freed port may already belong to another
/// test's listener (a `mongod` started meanwhile), so a connection alone proves nothing: the
/// question is whether the order comes back.
async fn still_serves(addr: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = timeout(Duration::from_secs(2), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).contains("\"customer\":\"ada\"")
}

#[tokio::test]
async fn the_configuration_names_what_is_missing() {
    let error = example::Config::from_env(|_| None).expect_err("no MONGODB_URI");
    assert!(matches!(error, example::StartupError::NoUri));
    assert!(
        error.to_string().contains("MONGODB_URI is not set"),
        "{error}"
    );
    let error = example::Config::from_env(|name| match name {
        "MONGODB_URI" => Some("mongodb://localhost".to_owned()),
        "PORT" => Some("eighty".to_owned()),
        _ => None,
    })
    .expect_err("a bad port");
    assert!(error.to_string().contains("PORT=eighty"), "{error}");
    let config = example::Config::from_env(|name| match name {
        "MONGODB_URI" => Some("mongodb://localhost".to_owned()),
        _ => None,
    })
    .expect("defaults");
    assert_eq!((config.port, config.database.as_str()), (8080, "shop"));
}

#[tokio::test]
async fn startup_accepts_a_replica_set() {
    let db = common::db().await;
    let server = mongrove::testkit::server().await.expect("the test server");
    let config = example::Config {
        uri: server.uri().to_owned(),
        database: db.name().to_owned(),
        port: 0,
    };
    let connected = example::connect(&config).await.expect("a replica set");
    assert!(connected.supports_transactions().await.expect("hello"));
}

#[tokio::test]
async fn startup_refuses_a_standalone_server_with_a_clear_message() {
    let server = mongrove::testkit::Server::start(mongrove::testkit::Topology::Standalone)
        .await
        .expect("a standalone server");
    let config = example::Config {
        uri: server.uri().to_owned(),
        database: "shop".to_owned(),
        port: 0,
    };
    let error = example::connect(&config)
        .await
        .expect_err("no transactions on a standalone server");
    assert!(
        matches!(error, example::StartupError::NoTransactions { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("standalone server"), "{message}");
    assert!(message.contains("replica set"), "{message}");
}
