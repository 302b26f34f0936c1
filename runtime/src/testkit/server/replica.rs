//! The members of a replica set: initiating the set, asking members for their state, and the
//! failover helpers of [`Server`] ([`primary`](Server::primary),
//! [`wait_for_primary`](Server::wait_for_primary), [`step_down`](Server::step_down),
//! [`kill`](Server::kill), [`restart`](Server::restart)).

use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::{Bson, Document, Timestamp, doc};

use super::process::Member;
use super::{SET_NAME, START_TIMEOUT, Server};
use crate::error::{Error, Result};

/// How long [`Server::wait_for_primary`] and the helpers that wait for an election wait.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Server::step_down`] keeps the former primary from standing again, unless another
/// member is elected first (then it may stand again at once).
const STEP_DOWN_SECS: i32 = 10;

/// A step-down done by [`Server::step_down`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDown {
    /// The member that was primary and stepped down.
    pub former: usize,
    /// The member elected in its place.
    pub primary: usize,
}

impl Server {
    /// `replSetInitiate` with every member, then waits for a primary and for every other member
    /// to be secondary.
    pub(super) async fn initiate(&self) -> Result<()> {
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
