//! Throwaway servers: [`Topology`] (what to start), [`Server`] (starting its `mongod`s on free
//! ports and waiting until they take writes, its URIs, stopping it). The supervised process of
//! each member is in `process`; replica-set initiation and the failover helpers in `replica`.

mod process;
mod replica;

pub use self::replica::StepDown;

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use self::process::Member;
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

    /// Stops the server now and waits until its processes are gone. Dropping does the same.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Close every supervisor's stdin first, so the members stop at the same time.
        for member in &self.members {
            member.close();
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
