//! Your first service: an HTTP API for orders, on axum, with `Db` in its state.
//!
//! - `POST /orders` `{"customer": "ada", "total_cents": 1200}` creates an order and counts it
//!   on its customer, in one transaction; `201` and the order.
//! - `GET /orders/{id}` reads it back; `404` when there is none.
//! - `PATCH /orders/{id}` `{"status": "paid", "version": 0}` changes its status if it is still
//!   at `version`; `409 Conflict` when someone changed it first.
//!
//! Run it with `MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0 cargo run --example
//! service` (optionally `PORT=8080`, `DATABASE=shop`, `RUST_LOG=debug` to print mongrove's
//! spans). It stops cleanly on Ctrl-C or SIGTERM: requests in flight finish first.

use std::future::Future;
use std::net::SocketAddr;

// ANCHOR: state
use axum::Router;
use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mongrove::bson::oid::ObjectId;
use mongrove::{Db, Error, Model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "orders", version = "version", timestamps)]
pub struct Order {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub customer: String,
    pub total_cents: i64,
    pub status: String,
    pub version: i64,
    pub created_at: Option<mongrove::bson::DateTime>,
    pub updated_at: Option<mongrove::bson::DateTime>,
}

/// How many orders each customer placed: changed in the same transaction as the order.
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "customers")]
pub struct Customer {
    #[serde(rename = "_id")]
    pub name: String,
    pub orders: i64,
}

/// The application's state: a `Db` is a handle on one connection pool, cheap to clone into
/// every request.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
}

/// The routes.
pub fn app(db: Db) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(read_order).patch(update_order))
        .with_state(AppState { db })
}
// ANCHOR_END: state

/// An order as the API shows it: the id as a hex string.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub customer: String,
    pub total_cents: i64,
    pub status: String,
    pub version: i64,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        OrderView {
            id: order.id.map(|id| id.to_hex()).unwrap_or_default(),
            customer: order.customer,
            total_cents: order.total_cents,
            status: order.status,
            version: order.version,
        }
    }
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewOrder {
    pub customer: String,
    pub total_cents: i64,
}

/// The body of `PATCH /orders/{id}`: the new status and the version the client last saw.
#[derive(Debug, Deserialize)]
pub struct StatusChange {
    pub status: String,
    pub version: i64,
}

// ANCHOR: errors
/// What a handler can fail with, and the HTTP answer for each.
pub enum ApiError {
    BadId(String),
    NotFound,
    Db(Error),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError::Db(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadId(id) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": format!("`{id}` is not an order id") }),
            ),
            ApiError::NotFound | ApiError::Db(Error::NotFound { .. }) => (
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": "no such order" }),
            ),
            // Someone else changed the order since the client read it: the client reloads
            // and decides again.
            ApiError::Db(Error::VersionConflict {
                expected, found, ..
            }) => (
                StatusCode::CONFLICT,
                serde_json::json!({
                    "error": "the order changed since you read it",
                    "your_version": expected,
                    "current_version": found,
                }),
            ),
            ApiError::Db(error @ Error::Validation { .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "error": error.to_string() }),
            ),
            ApiError::Db(error) => {
                // The details go to the log, not to the client.
                tracing::error!(%error, kind = error.kind(), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({ "error": "internal error" }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
// ANCHOR_END: errors

fn parse_id(id: &str) -> Result<ObjectId, ApiError> {
    id.parse().map_err(|_| ApiError::BadId(id.to_owned()))
}

// ANCHOR: create
/// Inserts the order and counts it on its customer, together or not at all. The body may run
/// more than once (a transient error retries it), so it only touches the database.
async fn create_order(
    State(state): State<AppState>,
    Json(new): Json<NewOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let order = state
        .db
        .transaction(async move |tx| {
            let mut order = Order {
                id: None,
                customer: new.customer.clone(),
                total_cents: new.total_cents,
                status: "new".to_owned(),
                version: 0,
                created_at: None,
                updated_at: None,
            };
            tx.repo::<Order>().insert(&mut order).await?;
            let c = Customer::fields();
            tx.repo::<Customer>()
                .update_one(c.name.eq(new.customer.clone()), c.orders.inc(1))
                .upsert(true)
                .await?;
            Ok(order)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}
// ANCHOR_END: create

// ANCHOR: read_update
async fn read_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = parse_id(&id)?;
    let order = state.db.repo::<Order>().find_by_id(id).await?;
    Ok(Json(order.ok_or(ApiError::NotFound)?.into()))
}

/// Changes the status only if the order is still at the version the client saw:
/// `Error::VersionConflict` (409) otherwise.
async fn update_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(change): Json<StatusChange>,
) -> Result<Json<OrderView>, ApiError> {
    let id = parse_id(&id)?;
    let o = Order::fields();
    let updated = state
        .db
        .repo::<Order>()
        .find_one_and_update(o.id.eq(id), o.status.set(change.status))
        .expect_version(change.version)
        .return_after()
        .await?;
    Ok(Json(updated.ok_or(ApiError::NotFound)?.into()))
}
// ANCHOR_END: read_update

// ANCHOR: startup
/// Why the service could not start, in words an operator can act on.
#[derive(Debug)]
pub enum StartupError {
    NoUri,
    BadPort(String),
    NoTransactions {
        uri: String,
    },
    Db(Error),
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupError::NoUri => write!(
                f,
                "MONGODB_URI is not set: set it to your deployment's connection string, for \
                 example MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0"
            ),
            StartupError::BadPort(port) => write!(f, "PORT={port} is not a port number"),
            StartupError::NoTransactions { uri } => write!(
                f,
                "{uri} is a standalone server, and this service needs transactions: use a \
                 replica set (a single-node one will do: mongod --replSet rs0, then \
                 rs.initiate())"
            ),
            StartupError::Db(error) => write!(f, "cannot reach MongoDB: {error}"),
            StartupError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// The service's settings, from the environment (`lookup` is `std::env::var` in `main`).
#[derive(Debug)]
pub struct Config {
    pub uri: String,
    pub database: String,
    pub port: u16,
}

impl Config {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, StartupError> {
        let uri = lookup("MONGODB_URI")
            .filter(|uri| !uri.is_empty())
            .ok_or(StartupError::NoUri)?;
        let port = match lookup("PORT") {
            Some(port) => port.parse().map_err(|_| StartupError::BadPort(port))?,
            None => 8080,
        };
        let database = lookup("DATABASE").unwrap_or_else(|| "shop".to_owned());
        Ok(Config {
            uri,
            database,
            port,
        })
    }
}

/// Connects and checks, once at startup, that the deployment can run transactions: a
/// misconfigured deployment is an error now, not on the first order.
pub async fn connect(config: &Config) -> Result<Db, StartupError> {
    let db = Db::connect(&config.uri, &config.database)
        .await
        .map_err(StartupError::Db)?;
    if !db.supports_transactions().await.map_err(StartupError::Db)? {
        return Err(StartupError::NoTransactions {
            uri: config.uri.clone(),
        });
    }
    Ok(db)
}

/// Serves until `shutdown` completes, then lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(db))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The error in words (its `Display`), not the `Debug` form `main` would print.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), StartupError> {
    // ANCHOR: tracing
    if std::env::var_os("RUST_LOG").is_some() {
        // mongrove's operation spans and this service's logs, on stderr.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
    // ANCHOR_END: tracing
    let config = Config::from_env(|name| std::env::var(name).ok())?;
    let db = connect(&config).await?;
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| StartupError::Bind { addr, error })?;
    println!("listening on http://{addr}");
    serve(listener, db, shutdown_signal())
        .await
        .map_err(|error| StartupError::Bind { addr, error })?;
    println!("stopped");
    Ok(())
}
// ANCHOR_END: startup
