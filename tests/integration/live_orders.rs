//! Runs the live-orders example (also the change-streams chapter of the guide): a real WebSocket
//! client connects, an order is inserted from another task, and the client receives it as JSON.

#[allow(dead_code)]
#[path = "../../examples/live_orders.rs"]
mod example;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use example::{LiveOrders, Order};

const WAIT: Duration = Duration::from_secs(20);

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The next JSON text message, within the test's timeout.
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("a message within the timeout")
            .expect("the server keeps the connection open")
            .expect("a valid WebSocket message");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// Starts the example's server on a free port; the sender stops it.
async fn start(live: &LiveOrders) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let live = live.clone();
    let server = tokio::spawn(async move {
        live.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("the server runs");
    });
    (addr, stop, server)
}

/// Waits (bounded) until the server has closed every client's change stream.
async fn until_no_open_streams(live: &LiveOrders) {
    timeout(WAIT, async {
        while live.open_streams() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the change stream is closed when the client leaves");
}

#[tokio::test]
async fn websocket_client_receives_an_inserted_order_as_json() {
    let db = crate::common::db().await;
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("the WebSocket handshake succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "ready");
    assert_eq!(live.open_streams(), 1);

    let orders = db.repo::<Order>();
    let writer = tokio::spawn(async move {
        let mut order = Order::new("Ada", "keyboard", 2, 12_998);
        orders
            .insert(&mut order)
            .await
            .expect("the insert succeeds")
    });
    let id = writer.await.unwrap();

    let created = next_json(&mut ws).await;
    assert_eq!(created["type"], "created", "{created}");
    assert_eq!(created["id"], id.to_hex());
    assert_eq!(created["order"]["customer"], "Ada");
    assert_eq!(created["order"]["item"], "keyboard");
    assert_eq!(created["order"]["quantity"], 2);
    assert_eq!(created["order"]["totalCents"], 12_998);
    assert_eq!(created["order"]["version"], 0);

    // An update arrives with the fields it set and the order looked up after it.
    let f = Order::fields();
    db.repo::<Order>()
        .update_one(f.id.eq(id), f.status.set("paid"))
        .await
        .unwrap();
    let updated = next_json(&mut ws).await;
    assert_eq!(updated["type"], "updated", "{updated}");
    assert_eq!(updated["order"]["status"], "paid");
    assert_eq!(updated["order"]["version"], 1);
    let changed: Vec<&str> = updated["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(changed.contains(&"status"), "{changed:?}");

    ws.close(None).await.unwrap();
    until_no_open_streams(&live).await;

    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn every_client_gets_every_order_and_leaving_closes_only_its_stream() {
    let db = crate::common::db().await;
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;

    let url = format!("ws://{addr}/ws");
    let (mut first, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut second, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(next_json(&mut first).await["type"], "ready");
    assert_eq!(next_json(&mut second).await["type"], "ready");
    assert_eq!(live.open_streams(), 2);

    let mut order = Order::new("Grace", "monitor", 1, 24_900);
    db.repo::<Order>().insert(&mut order).await.unwrap();
    for ws in [&mut first, &mut second] {
        let created = next_json(ws).await;
        assert_eq!(created["type"], "created");
        assert_eq!(created["order"]["customer"], "Grace");
    }

    // The first client goes away without a close frame.
    drop(first);
    timeout(WAIT, async {
        while live.open_streams() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the departed client's stream is closed");
    assert_eq!(live.open_streams(), 1);

    // The second client is still served.
    db.repo::<Order>().delete(&order).await.unwrap();
    let deleted = next_json(&mut second).await;
    assert_eq!(deleted["type"], "deleted");
    assert_eq!(deleted["id"], order.id.unwrap().to_hex());

    second.close(None).await.unwrap();
    until_no_open_streams(&live).await;
    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_page_is_served_over_plain_http() {
    let db = crate::common::db().await;
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;

    let mut socket = TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    timeout(WAIT, socket.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("new WebSocket("),
        "the page opens a WebSocket"
    );
    assert_eq!(live.open_streams(), 0);

    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}
