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

/// The next JSON text message other than a snapshot, within the test's timeout.
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let message = next_message(ws).await;
        if message["type"] != "snapshot" {
            return message;
        }
    }
}

/// The next JSON text message, within the test's timeout.
async fn next_message(ws: &mut Client) -> Value {
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

#[tokio::test]
async fn a_page_gets_the_stored_orders_then_the_live_ones_without_duplicates() {
    let db = crate::common::db().await;
    let orders = db.repo::<Order>();
    let mut before = Order::new("Before", "lamp", 1, 1_000);
    orders.insert(&mut before).await.unwrap();
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let snapshot = next_message(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let entries = snapshot["orders"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{snapshot}");
    assert_eq!(entries[0]["id"], before.id.unwrap().to_hex());
    assert_eq!(entries[0]["order"]["customer"], "Before");
    let ready = next_message(&mut ws).await;
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["resumed"], false);
    let start = ready["token"]
        .as_str()
        .expect("the stream's position")
        .to_owned();

    let mut after = Order::new("After", "cable", 1, 500);
    orders.insert(&mut after).await.unwrap();
    let created = next_message(&mut ws).await;
    assert_eq!(created["type"], "created", "{created}");
    assert_eq!(created["order"]["customer"], "After");
    assert!(created["token"].as_str().is_some_and(|t| !t.is_empty()));
    ws.close(None).await.unwrap();
    until_no_open_streams(&live).await;

    // A page that reconnects from the position of its `ready` gets the events after it (the
    // order placed since), and no snapshot.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?after={start}"))
        .await
        .unwrap();
    let ready = next_message(&mut ws).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["resumed"], true);
    let created = next_message(&mut ws).await;
    assert_eq!(created["order"]["customer"], "After", "{created}");
    ws.close(None).await.unwrap();
    until_no_open_streams(&live).await;
    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reconnecting_page_resumes_after_the_last_event_it_saw() {
    let db = crate::common::db().await;
    let orders = db.repo::<Order>();
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "ready");
    orders
        .insert(&mut Order::new("Seen", "lamp", 1, 100))
        .await
        .unwrap();
    let seen = next_json(&mut ws).await;
    let token = seen["token"].as_str().expect("a token").to_owned();
    ws.close(None).await.unwrap();
    until_no_open_streams(&live).await;

    // Written while the page was away.
    orders
        .insert(&mut Order::new("Missed", "cable", 1, 200))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?after={token}"))
        .await
        .unwrap();
    let ready = next_message(&mut ws).await;
    assert_eq!(ready["type"], "ready", "no snapshot on a resume: {ready}");
    assert_eq!(ready["resumed"], true);
    let missed = next_message(&mut ws).await;
    assert_eq!(missed["type"], "created", "{missed}");
    assert_eq!(missed["order"]["customer"], "Missed", "not `Seen` again");

    // A token the server cannot use: a fresh snapshot instead.
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?after=zz"))
        .await
        .unwrap();
    let snapshot = next_message(&mut ws2).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["orders"].as_array().unwrap().len(), 2);

    ws.close(None).await.unwrap();
    ws2.close(None).await.unwrap();
    until_no_open_streams(&live).await;
    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_port_is_an_option_and_a_busy_port_says_so() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(example::port_from(&args(&[]), None), Ok(8080));
    assert_eq!(
        example::port_from(&args(&[]), Some("9000".into())),
        Ok(9000)
    );
    assert_eq!(
        example::port_from(&args(&["--port", "9001"]), Some("9000".into())),
        Ok(9001)
    );
    assert_eq!(example::port_from(&args(&["--port=9002"]), None), Ok(9002));
    assert!(example::port_from(&args(&["--port"]), None).is_err());
    assert!(
        example::port_from(&args(&["--port", "x"]), None)
            .unwrap_err()
            .contains("not a port number")
    );
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let message = example::bind(port).await.expect_err("the port is taken");
    assert!(
        message.contains(&format!("port {port} is already in use")),
        "{message}"
    );
    assert!(message.contains("--port"), "{message}");
}

/// The Chromium binary: on the `PATH`, or installed on first use by `scripts/install-chromium.sh`
/// (Debian's package, as the test kit installs `mongod`). A machine where it cannot be had
/// fails the test; it never skips.
fn chromium_binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-chromium.sh");
        let installed = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("bash runs scripts/install-chromium.sh");
        assert!(
            installed.status.success(),
            "chromium is not installed and scripts/install-chromium.sh failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        String::from_utf8_lossy(&installed.stdout).trim().to_owned()
    })
}

// ANCHOR: browser
/// How every test runs Chromium: headless, with nothing of its own going on in the background.
const HEADLESS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// Chromium, headless, as the chapter shows it; `extra` adds `--dump-dom` or `--screenshot`.
fn chromium(url: &str, extra: &[&str]) -> std::process::Output {
    let binary = chromium_binary();
    let profile = std::env::temp_dir().join(format!("mongrove-chromium-{}", std::process::id()));
    let output = std::process::Command::new(binary)
        .args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    output
}
// ANCHOR_END: browser

/// Headless Chromium with its DevTools endpoint on loopback, showing one page; stopped (by the
/// pid this test started) when dropped.
struct Browser {
    _process: Chromium,
    page: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let profile =
            std::env::temp_dir().join(format!("mongrove-chromium-cdp-{}", std::process::id()));
        let child = std::process::Command::new(chromium_binary())
            .args(HEADLESS)
            .args([
                "--remote-debugging-address=127.0.0.1",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.display()),
                url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Owned at once, so that a failure below still stops it.
        let process = Chromium { child, profile };
        let target = timeout(WAIT, async {
            loop {
                if let Some(target) = page_target(port).await {
                    return target;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("chromium's DevTools endpoint answers");
        let (page, _) = tokio_tungstenite::connect_async(target)
            .await
            .expect("the page's DevTools socket");
        Browser {
            _process: process,
            page,
            next_id: 0,
        }
    }

    /// The page's current DOM.
    async fn dom(&mut self) -> String {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": "document.documentElement.outerHTML", "returnByValue": true },
        });
        self.page
            .send(Message::text(request.to_string()))
            .await
            .expect("send to the page");
        while let Some(message) = self.page.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).expect("JSON from DevTools");
            if reply["id"] == id {
                return reply["result"]["result"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("the page's DevTools socket closed");
    }

    /// The DOM once it holds every one of `needles`, or as it is when the wait runs out (the
    /// caller's assertions then say what is missing).
    async fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let dom = self.dom().await;
            if needles.iter().all(|n| dom.contains(n)) || tokio::time::Instant::now() > deadline {
                return dom;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The Chromium process this test started, stopped (by its pid) and cleaned up when dropped.
struct Chromium {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The DevTools WebSocket address of the first page target on `port`, once there is one.
async fn page_target(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    // The endpoint keeps the connection open: read the headers, then `Content-Length` bytes.
    let mut reply = Vec::new();
    let body = timeout(Duration::from_secs(2), async {
        let mut chunk = [0_u8; 4096];
        loop {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            reply.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())?;
            if body.len() >= length {
                return Some(body[..length].to_owned());
            }
        }
    })
    .await
    .ok()??;
    let targets: serde_json::Value = serde_json::from_str(&body).ok()?;
    targets
        .as_array()?
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .map(str::to_owned)
}

/// The parts of the page's DOM that say what it shows: from the state line to the end of the
/// raw log.
fn what_the_page_shows(dom: &str) -> &str {
    let start = dom.find(r#"<div id="state""#).unwrap_or(0);
    let end = dom
        .find("</details>")
        .map_or(dom.len(), |at| at + "</details>".len());
    dom.get(start..end.max(start)).unwrap_or(dom)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_shows_stored_and_live_orders() {
    let db = crate::common::db().await;
    let orders = db.repo::<Order>();
    orders
        .insert(&mut Order::new("Stored-Before-Load", "lamp", 1, 1_000))
        .await
        .unwrap();
    let live = LiveOrders::new(db.db().clone());
    let (addr, stop, server) = start(&live).await;
    let url = format!("http://{addr}/");

    // Once the page's stream is open, an order placed now must appear without a reload.
    let writer = {
        let live = live.clone();
        let orders = orders.clone();
        tokio::spawn(async move {
            timeout(WAIT, async {
                while live.open_streams() == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("the page connects");
            orders
                .insert(&mut Order::new("Placed-While-Open", "cable", 2, 500))
                .await
                .unwrap();
            // Written by something that does not know the model: it cannot be decoded.
            orders
                .collection()
                .insert_one(mongrove::bson::doc! { "customer": "Broken", "quantity": "many" })
                .await
                .unwrap();
        })
    };
    // The page as a person sees it, read through Chromium's DevTools endpoint until what must
    // appear has appeared (bounded); `--dump-dom` with virtual time could dump before the
    // page's WebSocket traffic arrived.
    let opened = std::time::Instant::now();
    let mut browser = Browser::open(&url).await;
    // Looked for as shown, in their elements: the raw log holds the orders' names too, and the
    // page's script the notice's text.
    let (stored, placed) = ("<td>Stored-Before-Load</td>", "<td>Placed-While-Open</td>");
    let notice = r#"<div id="notice" role="alert">An event could not be shown"#;
    let dom = browser.wait_for(&[stored, placed, notice]).await;
    let waited = opened.elapsed();
    writer.await.unwrap();
    drop(browser);
    // What a person would look at (state, notice, rows, and the raw messages with their times),
    // rather than the whole page with its style sheet.
    let shown = format!("after {waited:?}:\n{}", what_the_page_shows(&dom));
    assert!(dom.contains(stored), "{shown}");
    assert!(dom.contains(placed), "{shown}");
    assert!(
        dom.contains(r#"<details id="raw">"#),
        "the raw log starts collapsed: {shown}"
    );
    assert!(dom.contains(r#"class="live""#), "{shown}");
    // The undecodable order is a visible notice, not a silent gap.
    assert!(dom.contains(notice), "{shown}");
    assert!(!dom.contains("Broken</td>"), "{shown}");

    // A screenshot for people to look at.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("live_orders.png");
    let _ = std::fs::remove_file(&shot);
    let taken = tokio::task::spawn_blocking({
        let shot = format!("--screenshot={}", shot.display());
        move || {
            chromium(
                &url,
                &[
                    "--virtual-time-budget=5000",
                    "--window-size=1000,600",
                    &shot,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
        "a screenshot at {}",
        shot.display()
    );

    until_no_open_streams(&live).await;
    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}
