//! The supervised `mongod` of one member: the `sh` supervisor that runs it (and stops it and
//! removes its files when this process goes away), the thread that reads the supervisor's
//! reports, and the process-level operations: start, wait until it listens, SIGKILL, start
//! again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{SET_NAME, START_TIMEOUT};
use crate::error::{Error, Result};

/// One `mongod` of a server, run by its supervisor.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) port: u16,
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
    pub(super) fn spawn(mongod: &Path, port: u16, replica_set: bool) -> Result<Member> {
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

    /// Closes the supervisor's stdin: it stops `mongod` and removes the dbpath. Does not wait
    /// (dropping the member waits).
    pub(super) fn close(&self) {
        drop(lock(&self.supervisor).stdin.take());
    }

    pub(super) fn direct_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=1000&appName=mongrove-testkit",
            self.port
        )
    }

    pub(super) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reported(&self) -> MutexGuard<'_, Reported> {
        lock(&self.state)
    }

    pub(super) fn running(&self) -> bool {
        self.reported().pid.is_some()
    }

    pub(super) fn log_tail(&self) -> String {
        let tail = log_tail(&self.dbpath.join("mongod.log"));
        let out = log_tail(&self.dbpath.join("mongod.out"));
        format!("{tail}\n(its output: {out})")
    }

    /// Waits until the `mongod` started after `exits` earlier exits listens on its port.
    pub(super) async fn wait_listening(&self, exits: u32) -> Result<()> {
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
    pub(super) async fn kill(&self, index: usize) -> Result<()> {
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
    pub(super) async fn start_again(&self, index: usize) -> Result<()> {
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
