//! Starting and stopping a throwaway `mongod`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::doc;

use super::TestDb;
use super::install::locate_mongod;
use crate::error::{Error, Result};

/// The kind of deployment to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A single-node replica set (`rs0`): sessions, transactions and change streams work.
    ReplicaSet,
    /// A standalone server: no transactions, no change streams (as in much local development).
    Standalone,
}

/// A running test server. One started by [`Server::start`] stops when dropped.
#[derive(Debug)]
pub struct Server {
    uri: String,
    topology: Topology,
    process: Option<Mutex<Process>>,
}

#[derive(Debug)]
struct Process {
    /// The shell that supervises `mongod`; closing its stdin stops the server.
    supervisor: Child,
    stdin: Option<ChildStdin>,
    dbpath: PathBuf,
}

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `mongod` in the background and waits for its stdin to close: when the owning process
/// exits for any reason, the pipe closes, and the shell stops `mongod` and removes its files.
/// A signal to the whole process group (Ctrl-C on `cargo test`) must not kill the shell before
/// it has cleaned up, hence the trap.
const SUPERVISOR: &str = r#"dbpath="$1"; shift
"$@" &
pid=$!
trap 'kill "$pid" 2>/dev/null' INT TERM HUP
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dbpath""#;

impl Server {
    pub(crate) fn external(uri: String) -> Server {
        Server {
            uri,
            topology: Topology::ReplicaSet,
            process: None,
        }
    }

    /// Starts a `mongod` of the given topology on a free 127.0.0.1 port and waits until it takes
    /// writes (for a replica set: until it is primary).
    pub async fn start(topology: Topology) -> Result<Server> {
        let mongod = locate_mongod()?;
        let mut last_error = None;
        // A port found free can be taken before mongod binds it; try a few.
        for _ in 0..3 {
            match Self::start_once(&mongod, topology).await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Testkit("mongod did not start".into())))
    }

    async fn start_once(mongod: &Path, topology: Topology) -> Result<Server> {
        let port = free_port()?;
        let dbpath = std::env::temp_dir().join(format!("mongrove-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dbpath)
            .map_err(|e| Error::Testkit(format!("cannot create {}: {e}", dbpath.display())))?;
        let log = dbpath.join("mongod.log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("mongrove-mongod")
            .arg(&dbpath)
            .arg(mongod)
            .args([
                "--bind_ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--dbpath",
            ])
            .arg(&dbpath)
            .arg("--logpath")
            .arg(&log)
            .args([
                "--nounixsocket",
                "--setParameter",
                "enableTestCommands=1",
                "--wiredTigerCacheSizeGB",
                "0.25",
            ]);
        if topology == Topology::ReplicaSet {
            command.args(["--replSet", "rs0", "--oplogSize", "256"]);
        }
        let mut supervisor = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Testkit(format!("cannot run sh to start {}: {e}", mongod.display()))
            })?;
        let stdin = supervisor.stdin.take();
        let process = Process {
            supervisor,
            stdin,
            dbpath,
        };
        let mut server = Server {
            uri: String::new(),
            topology,
            process: Some(Mutex::new(process)),
        };
        let started = server.wait_until_ready(port, &log).await;
        match started {
            Ok(uri) => {
                server.uri = uri;
                Ok(server)
            }
            // Dropping `server` stops the process.
            Err(e) => Err(e),
        }
    }

    async fn wait_until_ready(&self, port: u16, log: &Path) -> Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if self.exited() || Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "mongod did not start listening on 127.0.0.1:{port}; the end of its log: {}",
                    log_tail(log)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let direct = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        if self.topology == Topology::Standalone {
            return Ok(direct);
        }
        let client = Client::with_uri_str(&direct).await?;
        let admin = client.database("admin");
        let config = doc! {
            "_id": "rs0",
            "members": [{ "_id": 0, "host": format!("127.0.0.1:{port}") }],
        };
        admin
            .run_command(doc! { "replSetInitiate": config })
            .await?;
        loop {
            let hello = admin.run_command(doc! { "hello": 1 }).await?;
            if hello.get_bool("isWritablePrimary").unwrap_or(false) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "the replica set on port {port} elected no primary in {START_TIMEOUT:?}; the end of its log: {}",
                    log_tail(log)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.shutdown().await;
        Ok(format!("mongodb://127.0.0.1:{port}/?replicaSet=rs0"))
    }

    fn exited(&self) -> bool {
        let Some(process) = &self.process else {
            return false;
        };
        let Ok(mut process) = process.lock() else {
            return true;
        };
        matches!(process.supervisor.try_wait(), Ok(Some(_)))
    }

    /// The connection string.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The deployment kind.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// A fresh database on this server, through a client of its own.
    pub async fn db(&self) -> Result<TestDb> {
        TestDb::new(&self.uri).await
    }

    /// Stops the server now and waits until its process is gone. Dropping does the same.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        let Ok(mut process) = process.into_inner() else {
            return;
        };
        drop(process.stdin.take());
        let _ = process.supervisor.wait();
        let _ = std::fs::remove_dir_all(&process.dbpath);
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::Testkit(format!("cannot find a free port on 127.0.0.1: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Testkit(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn log_tail(log: &Path) -> String {
    let mut text = String::new();
    if std::fs::File::open(log)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return format!("(no log at {})", log.display());
    }
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}
