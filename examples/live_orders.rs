//! Live orders: a WebSocket server that pushes typed order events to every connected browser.
//!
//! Run it with `cargo run --example live_orders -- --demo` and open <http://127.0.0.1:8080/>:
//! the page lists orders as they are placed, paid and cancelled (`--demo` places a few itself;
//! without it, write to the `live_orders.orders` collection yourself). `--port <n>` or `PORT`
//! changes the port (a busy port is an error that says so).
//! It uses the server at `MONGODB_URI`, or starts a throwaway single-node replica set (see
//! `mongrove::testkit`) and stops it on exit.
//!
//! Each WebSocket client gets its own change stream, opened when it connects and closed when it
//! leaves, so the server holds one server-side cursor per open page and nothing else. The page
//! first gets the orders already stored (read after its stream opened, so nothing falls in
//! between), then every change; after a reconnect it resumes from the last event it saw.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mongrove::bson::oid::ObjectId;
use mongrove::bson::{Bson, doc};
use mongrove::watch::{Change, ChangeKind, FullDocumentType, Operation, ResumeToken};
use mongrove::{Db, Filter, Model};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Errors of the example's own plumbing (I/O, WebSocket, JSON, mongrove).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ANCHOR: model
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[serde(rename_all = "camelCase")]
#[model(collection = "orders", version = "version")]
pub struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub customer: String,
    pub item: String,
    pub quantity: i32,
    pub total_cents: i64,
    pub status: String,
    pub version: i64,
}
// ANCHOR_END: model

impl Order {
    pub fn new(customer: &str, item: &str, quantity: i32, total_cents: i64) -> Order {
        Order {
            id: None,
            customer: customer.to_owned(),
            item: item.to_owned(),
            quantity,
            total_cents,
            status: "placed".to_owned(),
            version: 0,
        }
    }
}

// ANCHOR: message
/// What the browser receives, as JSON: `{"type": "created", "id": "...", "order": {...}}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum OrderMessage {
    /// The orders stored when the page connected (sent first, unless the page resumed):
    /// the change stream was opened before they were read, so nothing written after them is
    /// missed.
    Snapshot {
        orders: Vec<SnapshotEntry>,
    },
    /// Sent once the change stream is open and the snapshot sent: every order written from
    /// now on will arrive.
    Ready {
        /// Whether the page's stream picked up after the last event it saw.
        resumed: bool,
    },
    Created {
        id: String,
        order: OrderView,
    },
    Updated {
        id: String,
        /// The stored paths the update set.
        changed: Vec<String>,
        /// The order now (looked up by the server), unless it was deleted meanwhile.
        order: Option<OrderView>,
    },
    Replaced {
        id: String,
        order: OrderView,
    },
    Deleted {
        id: String,
    },
    /// An event that could not be decoded; the stream goes on.
    Error {
        message: String,
    },
}

/// One order of a snapshot.
#[derive(Debug, Serialize)]
pub struct SnapshotEntry {
    pub id: String,
    pub order: OrderView,
}

/// An order as the page shows it (the id as a hex string rather than `{"$oid": ...}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub customer: String,
    pub item: String,
    pub quantity: i32,
    pub total_cents: i64,
    pub status: String,
    pub version: i64,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        OrderView {
            customer: order.customer,
            item: order.item,
            quantity: order.quantity,
            total_cents: order.total_cents,
            status: order.status,
            version: order.version,
        }
    }
}

impl OrderMessage {
    /// The message for one typed change event; `None` for events the page ignores.
    pub fn from_change(change: Change<Order>) -> Option<OrderMessage> {
        Some(match change.kind {
            ChangeKind::Insert { id, document, .. } => OrderMessage::Created {
                id: id.to_hex(),
                order: document.into(),
            },
            ChangeKind::Update {
                id,
                description,
                document,
                ..
            } => OrderMessage::Updated {
                id: id.to_hex(),
                changed: description.updated_fields.keys().cloned().collect(),
                order: document.map(OrderView::from),
            },
            ChangeKind::Replace { id, document, .. } => OrderMessage::Replaced {
                id: id.to_hex(),
                order: document.into(),
            },
            ChangeKind::Delete { id, .. } => OrderMessage::Deleted { id: id.to_hex() },
            _ => return None,
        })
    }
}
// ANCHOR_END: message

/// The server: serves the page and a WebSocket endpoint, and counts the open change streams.
#[derive(Clone)]
pub struct LiveOrders {
    db: Db,
    open_streams: Arc<AtomicUsize>,
}

/// Decrements the open-stream count when a client's stream is dropped, however it ends.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: &Arc<AtomicUsize>) -> OpenStream {
        count.fetch_add(1, Ordering::SeqCst);
        OpenStream(count.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

const PAGE: &str = include_str!("live_orders.html");

impl LiveOrders {
    pub fn new(db: Db) -> LiveOrders {
        LiveOrders {
            db,
            open_streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many clients have a change stream open right now.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::SeqCst)
    }

    // ANCHOR: serve
    /// Accepts connections until `shutdown` completes; each one is served on its own task.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (socket, _) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => accepted?,
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.connection(socket).await {
                    eprintln!("connection ended: {e}");
                }
            });
        }
    }
    // ANCHOR_END: serve

    /// One TCP connection: a WebSocket upgrade, or a plain request for the page.
    async fn connection(&self, mut socket: TcpStream) -> Result<(), BoxError> {
        // Peek at the request head without consuming it, so that the WebSocket handshake can
        // read it again. A browser sends the head in one packet; this is a demo, not a router.
        let mut head = [0_u8; 2048];
        let n = socket.peek(&mut head).await?;
        let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        if head.contains("upgrade: websocket") {
            // `GET /ws?after=<token>`: a page reconnecting after the last event it saw.
            let after = head
                .lines()
                .next()
                .and_then(|line| line.split(' ').nth(1))
                .and_then(|path| path.split_once("?after="))
                .map(|(_, token)| token.to_owned());
            let ws = tokio_tungstenite::accept_async(socket).await?;
            return self.push_orders(ws, after.as_deref()).await;
        }
        let mut request = vec![0_u8; n];
        socket.read_exact(&mut request).await?;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
            PAGE.len()
        );
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await?;
        Ok(())
    }

    // ANCHOR: push
    /// Sends the current orders, then streams the order events to one client until it leaves.
    /// With `after` (the token of the last event the page saw), it resumes from there instead.
    pub async fn push_orders<S>(
        &self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        after: Option<&str>,
    ) -> Result<(), BoxError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let orders = self.db.repo::<Order>();
        let watch = || {
            orders
                .watch()
                .operations([
                    Operation::Insert,
                    Operation::Update,
                    Operation::Replace,
                    Operation::Delete,
                ])
                .full_document(FullDocumentType::UpdateLookup)
        };
        let (mut outgoing, mut incoming) = ws.split();
        // Resume where the page left off; if the server no longer has that point of its
        // history (or the token is not one), start over with a fresh snapshot.
        let resumed = match after.and_then(parse_token) {
            Some(token) => watch().resume_after(token).await.ok(),
            None => None,
        };
        let is_resumed = resumed.is_some();
        let (mut changes, mut seen) = match resumed {
            Some(changes) => (changes, HashMap::new()),
            None => {
                // The stream first, then the snapshot: an order written in between is in the
                // stream, and maybe in the snapshot too; `seen` drops the duplicate.
                let changes = watch().await?;
                let current = orders.find(Filter::all()).await?;
                let mut seen = HashMap::new();
                let mut entries = Vec::new();
                for order in current {
                    let id = order.id.map(|id| id.to_hex()).unwrap_or_default();
                    seen.insert(id.clone(), order.version);
                    entries.push(SnapshotEntry {
                        id,
                        order: order.into(),
                    });
                }
                let snapshot = OrderMessage::Snapshot { orders: entries };
                send(&mut outgoing, &snapshot, None).await?;
                (changes, seen)
            }
        };
        let _open = OpenStream::new(&self.open_streams);
        // The stream's position now: a page that sees no event before it reconnects still
        // resumes from here instead of loading a new snapshot.
        let start = changes.resume_token().as_ref().and_then(token_text);
        let ready = OrderMessage::Ready {
            resumed: is_resumed,
        };
        send(&mut outgoing, &ready, start.as_deref()).await?;
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(change)) => {
                        let token = token_text(&change.token);
                        let Some(message) = OrderMessage::from_change(change) else {
                            continue;
                        };
                        if already_sent(&mut seen, &message) {
                            continue;
                        }
                        send(&mut outgoing, &message, token.as_deref()).await?;
                    }
                    // A document that does not fit `Order` names its id and field; tell the
                    // page and go on with the next event.
                    Some(Err(e)) => {
                        let message = OrderMessage::Error { message: e.to_string() };
                        send(&mut outgoing, &message, None).await?;
                    }
                    None => break,
                },
                message = incoming.next() => match message {
                    // The client left (a close frame, or the connection dropped).
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    // Pings are answered by tungstenite; anything else is ignored.
                    Some(Ok(_)) => {}
                },
            }
        }
        // Dropping `changes` here closes the change stream's cursor on the server.
        Ok(())
    }
    // ANCHOR_END: push
}

/// Whether the snapshot already showed this change: an event of an order at a version no
/// later than the snapshot's. Deletes always pass.
fn already_sent(seen: &mut HashMap<String, i64>, message: &OrderMessage) -> bool {
    let (id, version) = match message {
        OrderMessage::Created { id, order } | OrderMessage::Replaced { id, order } => {
            (id, order.version)
        }
        OrderMessage::Updated {
            id,
            order: Some(order),
            ..
        } => (id, order.version),
        _ => return false,
    };
    match seen.get(id) {
        Some(&shown) if version <= shown => true,
        _ => {
            seen.remove(id);
            false
        }
    }
}

/// The resume token as the page keeps it: the hex string of its `_data`.
fn token_text(token: &ResumeToken) -> Option<String> {
    match mongrove::bson::to_bson(token).ok()? {
        Bson::Document(doc) => doc.get_str("_data").ok().map(str::to_owned),
        _ => None,
    }
}

/// The token back from the page's text; `None` for anything that is not hex.
fn parse_token(text: &str) -> Option<ResumeToken> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    mongrove::bson::from_bson(Bson::Document(doc! { "_data": text })).ok()
}

/// Sends `message` as JSON, with the resume `token` of the event it came from, if any.
async fn send<S>(
    outgoing: &mut futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<S>, Message>,
    message: &OrderMessage,
    token: Option<&str>,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut json = serde_json::to_value(message)?;
    if let (Some(token), Some(object)) = (token, json.as_object_mut()) {
        object.insert("token".to_owned(), token.into());
    }
    outgoing.send(Message::text(json.to_string())).await?;
    Ok(())
}

/// Places an order, pays it and sometimes cancels it, every two seconds (`--demo`).
async fn demo(db: Db) -> mongrove::Result<()> {
    let orders = db.repo::<Order>();
    let f = Order::fields();
    let customers = ["Ada", "Grace", "Linus", "Barbara"];
    let items = ["keyboard", "monitor", "cable", "lamp"];
    for n in 0_usize.. {
        let mut order = Order::new(
            customers[n % customers.len()],
            items[n % items.len()],
            (n % 3 + 1) as i32,
            1999 * (n % 5 + 1) as i64,
        );
        let id = orders.insert(&mut order).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = if n % 4 == 3 { "cancelled" } else { "paid" };
        orders.update_one(f.id.eq(id), f.status.set(status)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The port: `--port N`, else `PORT`, else 8080.
pub fn port_from(args: &[String], env: Option<String>) -> Result<u16, String> {
    let given = match args.iter().position(|a| a == "--port") {
        Some(i) => Some(
            args.get(i + 1)
                .cloned()
                .ok_or("--port needs a number, for example --port 8081")?,
        ),
        None => args
            .iter()
            .find_map(|a| a.strip_prefix("--port=").map(str::to_owned))
            .or(env),
    };
    match given {
        None => Ok(8080),
        Some(port) => port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number (--port / PORT)")),
    }
}

/// Listens on 127.0.0.1:`port`, with a message that says what to do when the port is taken.
pub async fn bind(port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "port {port} is already in use (another live_orders?): choose another with \
                 --port <n> or PORT=<n>"
            ),
            _ => format!("cannot listen on 127.0.0.1:{port}: {e}"),
        })
}

#[allow(dead_code)] // The test suite includes this file and drives `LiveOrders` itself.
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = port_from(&args, std::env::var("PORT").ok()).map_err(|e| -> BoxError {
        eprintln!("error: {e}");
        e.into()
    })?;
    let listener = match bind(port).await {
        Ok(listener) => listener,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(1);
        }
    };
    let db = mongrove::testkit::example_db("live_orders").await?;
    println!("live orders on http://{}/", listener.local_addr()?);
    if args.iter().any(|arg| arg == "--demo") {
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(e) = demo(db).await {
                eprintln!("demo writer stopped: {e}");
            }
        });
    }
    let live = LiveOrders::new(db);
    live.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
