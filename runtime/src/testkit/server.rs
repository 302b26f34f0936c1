//! Starting and stopping throwaway `mongod`s: a standalone server, or the members of a replica
//! set, and the failover helpers (step down, kill, restart) for replica sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::{Bson, Document, Timestamp, doc};

use super::TestDb;
use super::install::locate_mongod;
use crate::error::{Error, Result};

/// The kind of deployment to start.
///
/// `Topology::ReplicaSet` is a single-node replica set; [`Topology::replica_set`] asks for more
/// members (a three-member set for failover tests: `Topology::replica_set(3)`).
/// Equality compares what is started: `Topology::replica_set(1) == Topology::ReplicaSet`.
#[derive(Debug, Clone, Copy, Eq)]
pub enum Topology {
    /// A single-node replica set (`rs0`): sessions, transactions and change streams work.
    ReplicaSet,
    /// A standalone server: no transactions, no change streams (as in much local development).
    Standalone,
    /// A replica set (`rs0`) of this many members (1 to 7, all voting, equal priorities), made
    /// by [`Topology::replica_set`]. Elections are tuned to take seconds: an election timeout
    /// of 1 s and a heartbeat every 500 ms.
    ReplicaSetOf(u8),
}

impl Topology {
    /// A replica set of `members` members (0 counts as 1). `replica_set(1)` is
    /// [`Topology::ReplicaSet`].
    ///
    /// ```no_run
    /// # async fn demo() -> mongrove::Result<()> {
    /// use mongrove::testkit::{Server, Topology};
    ///
    /// let server = Server::start(Topology::replica_set(3)).await?;
    /// assert_eq!(server.topology().members(), 3);
    /// // mongodb://127.0.0.1:<port>,127.0.0.1:<port>,127.0.0.1:<port>/?replicaSet=rs0
    /// println!("{}", server.uri());
    /// # Ok(()) }
    /// ```
    pub const fn replica_set(members: u8) -> Topology {
        if members <= 1 {
            Topology::ReplicaSet
        } else {
            Topology::ReplicaSetOf(members)
        }
    }

    /// How many `mongod`s the topology runs: 1 for a standalone server.
    pub const fn members(self) -> usize {
        match self {
            Topology::ReplicaSet | Topology::Standalone => 1,
            Topology::ReplicaSetOf(0) => 1,
            Topology::ReplicaSetOf(n) => n as usize,
        }
    }

    /// Whether the topology is a replica set (of any size).
    pub const fn is_replica_set(self) -> bool {
        !matches!(self, Topology::Standalone)
    }
}

impl PartialEq for Topology {
    fn eq(&self, other: &Topology) -> bool {
        self.is_replica_set() == other.is_replica_set() && self.members() == other.members()
    }
}

/// The name of every replica set the test kit starts.
const SET_NAME: &str = "rs0";
/// A replica set has at most 7 voting members; the test kit starts voting members only.
const MAX_MEMBERS: usize = 7;
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Server::wait_for_primary`] and the helpers that wait for an election wait.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Server::step_down`] keeps the former primary from standing again, unless another
/// member is elected first (then it may stand again at once).
const STEP_DOWN_SECS: i32 = 10;

/// A running test server. One started by [`Server::start`] stops when dropped.
///
/// For a replica set of several members ([`Topology::replica_set`]), the failover helpers
/// [`primary`](Server::primary), [`wait_for_primary`](Server::wait_for_primary),
/// [`step_down`](Server::step_down), [`kill`](Server::kill) and [`restart`](Server::restart)
/// act on its members, numbered from 0 in the order of the URI.
#[derive(Debug)]
pub struct Server {
    uri: String,
    topology: Topology,
    /// Empty for a server at `MONGODB_URI`, which the test kit did not start.
    members: Vec<Member>,
}

/// One `mongod` of a server, run by its supervisor.
#[derive(Debug)]
struct Member {
    port: u16,
    dbpath: PathBuf,
    supervisor: Mutex<Supervisor>,
    /// What the supervisor last reported, kept up to date by a reader thread.
    state: Arc<Mutex<Reported>>,
}

#[derive(Debug)]
struct Supervisor {
    /// The shell that supervises `mongod`; closing its stdin stops the server.
    shell: Child,
    stdin: Option<ChildStdin>,
}

/// What a supervisor has said about its `mongod`.
#[derive(Debug, Default)]
struct Reported {
    /// The running `mongod`'s process id, `None` before it starts and after it exits.
    pid: Option<u32>,
    /// How many times a `mongod` of this member has exited.
    exits: u32,
    /// How the last one exited (`exited <status>`).
    last_exit: Option<String>,
    /// The supervisor is gone.
    closed: bool,
}

/// Runs `mongod` in the background and waits for its stdin to close: when the owning process
/// exits for any reason, the pipe closes, and the shell stops `mongod` and removes its files.
/// A signal to the whole process group (Ctrl-C on `cargo test`) must not kill the shell before
/// it has cleaned up, hence the trap.
///
/// The shell reports on stdout (`mongrove: pid <pid>` when `mongod` starts, `mongrove: exited
/// <status>` when it ends), and a `start` line on stdin starts `mongod` again (after a kill) with
/// the same arguments, so the same port and dbpath. The pid file lives only while that `mongod`
/// runs, so the shell never signals a process id that is no longer its `mongod`'s. Its files are
/// deleted as soon as it is gone, so it is stopped with SIGKILL: a clean shutdown (seconds, for
/// a replica set member) would save nothing.
const SUPERVISOR: &str = r#"dbpath="$1"; shift
pidfile="$dbpath/mongrove-supervised.pid"
run() {
  "$@" >>"$dbpath/mongod.out" 2>&1 &
  child=$!
  echo "$child" >"$pidfile"
  echo "mongrove: pid $child"
  wait "$child"
  status=$?
  rm -f "$pidfile"
  echo "mongrove: exited $status"
}
stop() {
  if [ -s "$pidfile" ]; then kill -9 "$(cat "$pidfile")" 2>/dev/null; fi
}
trap stop INT TERM HUP
run "$@" &
while read -r command; do
  if [ "$command" = start ]; then run "$@" & fi
done
stop
wait
rm -rf "$dbpath""#;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Member {
    /// Starts `mongod` on `port` under a supervisor; does not wait for it.
    fn spawn(mongod: &Path, port: u16, replica_set: bool) -> Result<Member> {
        // The CI checks that no `--dbpath .../mongrove-<pid>-<port>` outlives the suite: keep
        // the form.
        let dbpath = std::env::temp_dir().join(format!("mongrove-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dbpath)
            .map_err(|e| Error::Testkit(format!("cannot create {}: {e}", dbpath.display())))?;
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
            .arg(dbpath.join("mongod.log"))
            .args([
                "--nounixsocket",
                "--setParameter",
                "enableTestCommands=1",
                "--wiredTigerCacheSizeGB",
                "0.25",
            ]);
        if replica_set {
            command.args(["--replSet", SET_NAME, "--oplogSize", "256"]);
        }
        let mut shell = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Testkit(format!("cannot run sh to start {}: {e}", mongod.display()))
            })?;
        let stdin = shell.stdin.take();
        let stdout = shell.stdout.take();
        let state = Arc::new(Mutex::new(Reported::default()));
        let member = Member {
            port,
            dbpath,
            supervisor: Mutex::new(Supervisor { shell, stdin }),
            state: state.clone(),
        };
        let Some(stdout) = stdout else {
            return Err(Error::Testkit("the supervisor shell has no stdout".into()));
        };
        std::thread::Builder::new()
            .name(format!("mongrove-mongod-{port}"))
            .spawn(move || read_reports(stdout, &state))
            .map_err(|e| Error::Testkit(format!("cannot start a thread: {e}")))?;
        // Dropping `member` on an error above stops the supervisor and removes the dbpath.
        Ok(member)
    }

    fn direct_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=1000&appName=mongrove-testkit",
            self.port
        )
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reported(&self) -> MutexGuard<'_, Reported> {
        lock(&self.state)
    }

    fn running(&self) -> bool {
        self.reported().pid.is_some()
    }

    fn log_tail(&self) -> String {
        let tail = log_tail(&self.dbpath.join("mongod.log"));
        let out = log_tail(&self.dbpath.join("mongod.out"));
        format!("{tail}\n(its output: {out})")
    }

    /// Waits until the `mongod` started after `exits` earlier exits listens on its port.
    async fn wait_listening(&self, exits: u32) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            let exit = {
                let reported = self.reported();
                if reported.exits > exits || reported.closed {
                    Some(
                        reported
                            .last_exit
                            .clone()
                            .unwrap_or_else(|| "stopped".into()),
                    )
                } else {
                    None
                }
            };
            if exit.is_some() || Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "mongod did not start listening on 127.0.0.1:{} ({}); the end of its log: {}",
                    self.port,
                    exit.as_deref().unwrap_or("timed out"),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// SIGKILLs this member's `mongod` (by the process id its supervisor reported) and waits
    /// until it is gone.
    async fn kill(&self, index: usize) -> Result<()> {
        let (pid, exits) = {
            let reported = self.reported();
            (reported.pid, reported.exits)
        };
        let Some(pid) = pid else {
            return Err(Error::Testkit(format!(
                "member {index} (127.0.0.1:{}) is not running",
                self.port
            )));
        };
        let status = Command::new("sh")
            .args(["-c", r#"kill -9 "$1""#, "mongrove-kill"])
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Error::Testkit(format!("cannot run sh to kill {pid}: {e}")))?;
        if !status.success() {
            return Err(Error::Testkit(format!(
                "kill -9 {pid} (member {index}, 127.0.0.1:{}) failed: {status}",
                self.port
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.reported().exits == exits {
            if Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "member {index} (pid {pid}) did not exit after SIGKILL"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Starts this member's `mongod` again (same port, same dbpath) and waits until it listens.
    async fn start_again(&self, index: usize) -> Result<()> {
        let exits = {
            let reported = self.reported();
            if reported.pid.is_some() {
                return Err(Error::Testkit(format!(
                    "member {index} (127.0.0.1:{}) is running; kill it before restarting it",
                    self.port
                )));
            }
            reported.exits
        };
        {
            let mut supervisor = lock(&self.supervisor);
            let written = match supervisor.stdin.as_mut() {
                Some(stdin) => stdin.write_all(b"start\n").and_then(|()| stdin.flush()),
                None => Err(std::io::Error::other("the supervisor is stopped")),
            };
            written.map_err(|e| {
                Error::Testkit(format!("cannot ask member {index} to start again: {e}"))
            })?;
        }
        self.wait_listening(exits).await
    }
}

/// The reader thread of a supervisor's reports.
fn read_reports(stdout: impl Read, state: &Mutex<Reported>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(report) = line.strip_prefix("mongrove: ") else {
            continue;
        };
        let mut reported = lock(state);
        if let Some(pid) = report.strip_prefix("pid ") {
            reported.pid = pid.trim().parse().ok();
        } else if report.starts_with("exited") {
            reported.pid = None;
            reported.exits += 1;
            reported.last_exit = Some(report.to_owned());
        }
    }
    let mut reported = lock(state);
    reported.pid = None;
    reported.closed = true;
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut supervisor = lock(&self.supervisor);
        drop(supervisor.stdin.take());
        let _ = supervisor.shell.wait();
        let _ = std::fs::remove_dir_all(&self.dbpath);
    }
}

/// A step-down done by [`Server::step_down`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDown {
    /// The member that was primary and stepped down.
    pub former: usize,
    /// The member elected in its place.
    pub primary: usize,
}

impl Server {
    pub(crate) fn external(uri: String) -> Server {
        Server {
            uri,
            topology: Topology::ReplicaSet,
            members: Vec::new(),
        }
    }

    /// Starts the `mongod`s of the given topology, each on a free 127.0.0.1 port, and waits until
    /// the deployment takes writes. For a replica set: initiates it with every member, waits
    /// until one is primary and every other one is secondary, and returns with a URI that lists
    /// every member and names the set (`mongodb://127.0.0.1:<a>,127.0.0.1:<b>,.../?replicaSet=rs0`).
    pub async fn start(topology: Topology) -> Result<Server> {
        let count = topology.members();
        if count > MAX_MEMBERS {
            return Err(Error::Testkit(format!(
                "a test replica set has 1 to {MAX_MEMBERS} members (all voting), not {count}"
            )));
        }
        let mongod = locate_mongod()?;
        let replica_set = topology.is_replica_set();
        // Start them all, then wait for each: they start at the same time.
        let mut spawned = Vec::with_capacity(count);
        for port in free_ports(count)? {
            spawned.push(Member::spawn(&mongod, port, replica_set)?);
        }
        let mut members = Vec::with_capacity(count);
        for first in spawned {
            members.push(Self::listening(&mongod, first, replica_set).await?);
        }
        let mut server = Server {
            uri: String::new(),
            topology,
            members,
        };
        server.uri = if replica_set {
            server.initiate().await?;
            let hosts: Vec<String> = server.members.iter().map(Member::host).collect();
            format!("mongodb://{}/?replicaSet={SET_NAME}", hosts.join(","))
        } else {
            server.member_uri(0)?
        };
        Ok(server)
    }

    /// Waits until `member` listens; a port found free can be taken before mongod binds it, so
    /// on failure try twice more on other ports.
    async fn listening(mongod: &Path, member: Member, replica_set: bool) -> Result<Member> {
        let mut member = member;
        let mut tries = 1;
        loop {
            match member.wait_listening(0).await {
                Ok(()) => return Ok(member),
                Err(e) if tries >= 3 => return Err(e),
                Err(_) => {
                    // Dropping the member stops its supervisor and removes its dbpath.
                    drop(member);
                    let port = free_ports(1)?.into_iter().next().unwrap_or(0);
                    member = Member::spawn(mongod, port, replica_set)?;
                    tries += 1;
                }
            }
        }
    }

    /// `replSetInitiate` with every member, then waits for a primary and for every other member
    /// to be secondary.
    async fn initiate(&self) -> Result<()> {
        let members: Vec<Bson> = self
            .members
            .iter()
            .enumerate()
            .map(|(id, member)| Bson::Document(doc! { "_id": id as i32, "host": member.host() }))
            .collect();
        let mut config = doc! { "_id": SET_NAME, "members": members };
        if self.members.len() > 1 {
            // Failovers in seconds: a member stands for election when it has not heard from
            // a primary for 1 s.
            config.insert(
                "settings",
                doc! { "electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 500 },
            );
        }
        self.admin_command(0, doc! { "replSetInitiate": config })
            .await?;
        self.wait_for_primary().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let (primaries, secondaries) = self.states().await;
            if primaries == 1 && primaries + secondaries == self.members.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "the replica set did not settle in {START_TIMEOUT:?}: {primaries} primary, {secondaries} secondaries of {}; the end of member 0's log: {}",
                    self.members.len(),
                    self.member(0).map(Member::log_tail).unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many members say they are primary, and how many secondary.
    async fn states(&self) -> (usize, usize) {
        let (mut primaries, mut secondaries) = (0, 0);
        for index in 0..self.members.len() {
            if let Ok(hello) = self.hello(index).await {
                if hello.get_bool("isWritablePrimary").unwrap_or(false) {
                    primaries += 1;
                } else if hello.get_bool("secondary").unwrap_or(false) {
                    secondaries += 1;
                }
            }
        }
        (primaries, secondaries)
    }

    /// Runs an admin command on one member, through a direct connection of its own.
    async fn admin_command(&self, index: usize, command: Document) -> Result<Document> {
        let member = self.member(index)?;
        let client = Client::with_uri_str(member.direct_uri()).await?;
        let result = client.database("admin").run_command(command).await;
        client.shutdown().immediate(true).await;
        Ok(result?)
    }

    async fn hello(&self, index: usize) -> Result<Document> {
        self.admin_command(index, doc! { "hello": 1 }).await
    }

    fn member(&self, index: usize) -> Result<&Member> {
        if self.members.is_empty() {
            return Err(Error::Testkit(format!(
                "the server at {} was not started by the test kit: it has no members to act on",
                self.uri
            )));
        }
        self.members.get(index).ok_or_else(|| {
            Error::Testkit(format!(
                "no member {index}: the server has {} (numbered from 0)",
                self.members.len()
            ))
        })
    }

    /// The connection string.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The deployment kind.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// A direct connection string to one member (`directConnection=true`): for commands meant
    /// for that member alone, such as `replSetGetStatus` or a fail point on a secondary.
    pub fn member_uri(&self, member: usize) -> Result<String> {
        let member = self.member(member)?;
        Ok(format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            member.port
        ))
    }

    /// A fresh database on this server, through a client of its own.
    pub async fn db(&self) -> Result<TestDb> {
        TestDb::new(&self.uri).await
    }

    /// Which member is primary now (numbered from 0, in the order of the URI), or `None` while
    /// there is none (during an election). Asks each running member with `hello`; should two
    /// say so for a moment, the one of the later election wins.
    ///
    /// ```no_run
    /// # async fn demo(server: &mongrove::testkit::Server) -> mongrove::Result<()> {
    /// if let Some(member) = server.primary().await? {
    ///     println!("member {member} is primary");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn primary(&self) -> Result<Option<usize>> {
        self.member(0)?;
        let mut best: Option<(usize, Option<Bson>)> = None;
        for (index, member) in self.members.iter().enumerate() {
            if !member.running() {
                continue;
            }
            let Ok(hello) = self.hello(index).await else {
                continue;
            };
            if !hello.get_bool("isWritablePrimary").unwrap_or(false) {
                continue;
            }
            let election = hello.get("electionId").cloned();
            let later = match (&best, &election) {
                (None, _) => true,
                (Some((_, Some(Bson::ObjectId(seen)))), Some(Bson::ObjectId(this))) => this > seen,
                _ => false,
            };
            if later {
                best = Some((index, election));
            }
        }
        Ok(best.map(|(index, _)| index))
    }

    /// Waits (up to 30 s) until a member is primary, and returns it.
    ///
    /// ```no_run
    /// # async fn demo(server: &mongrove::testkit::Server) -> mongrove::Result<()> {
    /// let old = server.wait_for_primary().await?;
    /// server.kill(old).await?;
    /// let new = server.wait_for_primary().await?; // elected in a few seconds
    /// assert_ne!(old, new);
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_primary(&self) -> Result<usize> {
        self.wait_for_primary_other_than(None).await
    }

    async fn wait_for_primary_other_than(&self, former: Option<usize>) -> Result<usize> {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            match self.primary().await? {
                Some(primary) if Some(primary) != former => return Ok(primary),
                _ => {}
            }
            if Instant::now() > deadline {
                let running: Vec<usize> = (self.members.iter().enumerate())
                    .filter(|(_, member)| member.running())
                    .map(|(index, _)| index)
                    .collect();
                return Err(Error::Testkit(format!(
                    "no member became primary in {ELECTION_TIMEOUT:?} (running members: {running:?}; a majority of {} must run)",
                    self.members.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Steps the primary down (`replSetStepDown`, 10 s, with up to 5 s for a secondary to
    /// catch up) and waits until another member is elected. The former primary may then stand
    /// again at once (`replSetFreeze: 0`), so that step-downs and kills can follow each other
    /// without leaving no member that may be elected.
    ///
    /// The primary closes connections with writes in flight: clients see a transient error
    /// (`NotWritablePrimary`, `InterruptedDueToReplStateChange` or a network error), which
    /// retryable writes and the transaction scope ride out.
    ///
    /// ```no_run
    /// # async fn demo(server: &mongrove::testkit::Server) -> mongrove::Result<()> {
    /// let step = server.step_down().await?;
    /// assert_ne!(step.former, step.primary);
    /// assert_eq!(server.primary().await?, Some(step.primary));
    /// # Ok(()) }
    /// ```
    pub async fn step_down(&self) -> Result<StepDown> {
        let former = self.wait_for_primary().await?;
        let stepped = self
            .admin_command(
                former,
                doc! { "replSetStepDown": STEP_DOWN_SECS, "secondaryCatchUpPeriodSecs": 5 },
            )
            .await;
        if let Err(error) = stepped {
            // The primary may close the connection that asked; whether it stepped down is
            // what counts.
            match self.hello(former).await {
                Ok(hello) if !hello.get_bool("isWritablePrimary").unwrap_or(true) => {}
                _ => return Err(error),
            }
        }
        let primary = self.wait_for_primary_other_than(Some(former)).await?;
        self.admin_command(former, doc! { "replSetFreeze": 0 })
            .await?;
        Ok(StepDown { former, primary })
    }

    /// SIGKILLs one member's `mongod` (the process the test kit started for it, by its process
    /// id), as a crash or a power cut would, and waits until it is gone. Its dbpath stays, for
    /// [`restart`](Server::restart). Does not wait for an election: see
    /// [`wait_for_primary`](Server::wait_for_primary).
    ///
    /// ```no_run
    /// # async fn demo(server: &mongrove::testkit::Server) -> mongrove::Result<()> {
    /// let primary = server.wait_for_primary().await?;
    /// server.kill(primary).await?;
    /// let next = server.wait_for_primary().await?;
    /// server.restart(primary).await?; // rejoins as a secondary, caught up
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self, member: usize) -> Result<()> {
        self.member(member)?.kill(member).await
    }

    /// Starts a killed member again, on the same port and dbpath, and waits until it has
    /// rejoined: for a replica set, until it is secondary (or primary) and has caught up with
    /// what the primary had written when it came back.
    pub async fn restart(&self, member: usize) -> Result<()> {
        let index = member;
        let member = self.member(index)?;
        member.start_again(index).await?;
        if !self.topology.is_replica_set() {
            return Ok(());
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let primary = self.wait_for_primary().await?;
        let target = last_write(&self.hello(primary).await?);
        loop {
            if let Ok(hello) = self.hello(index).await {
                let joined = hello.get_bool("secondary").unwrap_or(false)
                    || hello.get_bool("isWritablePrimary").unwrap_or(false);
                if joined && last_write(&hello) >= target {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Testkit(format!(
                    "member {index} did not rejoin in {START_TIMEOUT:?}; the end of its log: {}",
                    member.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server now and waits until its processes are gone. Dropping does the same.
    pub fn stop(self) {
        drop(self);
    }
}

/// The time of a member's last write (`hello.lastWrite.opTime.ts`), for comparing members.
fn last_write(hello: &Document) -> (u32, u32) {
    hello
        .get_document("lastWrite")
        .and_then(|w| w.get_document("opTime"))
        .and_then(|t| t.get_timestamp("ts"))
        .map(|Timestamp { time, increment }| (time, increment))
        .unwrap_or((0, 0))
}

impl Drop for Server {
    fn drop(&mut self) {
        // Close every supervisor's stdin first, so the members stop at the same time.
        for member in &self.members {
            drop(lock(&member.supervisor).stdin.take());
        }
        self.members.clear();
    }
}

/// `count` different free ports of 127.0.0.1 (the listeners are held until all are found).
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let error =
        |e: std::io::Error| Error::Testkit(format!("cannot find a free port on 127.0.0.1: {e}"));
    let mut listeners = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(error)?;
        ports.push(listener.local_addr().map_err(error)?.port());
        listeners.push(listener);
    }
    Ok(ports)
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
