//! The test kit itself: fail points, and no `mongod` left behind even when a test panics.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongrove::bson::{doc, oid::ObjectId};
use mongrove::testkit::{FailCommand, Server, Topology};
use mongrove::{Error, Filter, Model};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Serialize, Deserialize, Model)]
#[model(collection = "pings")]
struct Ping {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    n: i32,
}

#[tokio::test]
async fn fail_points_hit_only_this_tests_client_and_switch_off() {
    let db = common::db().await;
    let other = common::db().await;
    let pings = db.repo::<Ping>();
    let guard = db
        .fail_point(FailCommand::transient(["insert"]).times(2))
        .await
        .unwrap();
    // Another test's client is not affected.
    other
        .repo::<Ping>()
        .insert(&mut Ping { id: None, n: 0 })
        .await
        .unwrap();
    for _ in 0..2 {
        let error = pings
            .insert(&mut Ping { id: None, n: 1 })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(112));
        assert!(error.has_label("TransientTransactionError"), "{error:?}");
    }
    // `times(2)` is used up.
    pings.insert(&mut Ping { id: None, n: 2 }).await.unwrap();
    drop(guard);

    let guard = db
        .fail_point(FailCommand::new(["find"]).close_connection())
        .await
        .unwrap();
    let error = pings.find(Filter::all()).await.unwrap_err();
    assert!(matches!(error, Error::Driver(_)), "{error:?}");
    // Dropping the guard switches the fail point off.
    drop(guard);
    assert_eq!(pings.count(Filter::all()).await.unwrap(), 1);

    let guard = db
        .fail_point(
            FailCommand::new(["count", "aggregate"])
                .block_for(Duration::from_millis(300))
                .times(1),
        )
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(pings.count(Filter::all()).await.unwrap(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "blockTimeMS held the command"
    );
    guard.off().await.unwrap();

    let _guard = db
        .fail_point(
            FailCommand::new(["update"])
                .write_concern_error(
                    doc! { "code": 64, "errmsg": "waiting for replication timed out" },
                )
                .times(1),
        )
        .await
        .unwrap();
    let f = Ping::fields();
    let error = pings.update_one(f.n.eq(2), f.n.inc(1)).await.unwrap_err();
    assert_eq!(error.code(), Some(64));
}

#[tokio::test]
async fn a_standalone_server_starts_and_stops() {
    let server = Server::start(Topology::Standalone).await.unwrap();
    let db = server.db().await.unwrap();
    let pings = db.repo::<Ping>();
    pings.insert(&mut Ping { id: None, n: 1 }).await.unwrap();
    let hello = db
        .database()
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    assert!(
        hello.get_str("setName").is_err(),
        "a standalone has no replica set name"
    );
    let address = address_of(server.uri());
    drop(db);
    server.stop();
    assert!(
        gone(address),
        "the standalone mongod still listens after stop()"
    );
}

fn address_of(uri: &str) -> SocketAddr {
    let port: u16 = uri
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {uri}"));
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn gone(address: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Set by `no_mongod_outlives_a_panicking_test` on the child process it runs.
const PANIC_WITH_SERVER: &str = "MONGROVE_TEST_PANIC_WITH_SERVER";

#[tokio::test]
async fn a_started_replica_set_stops_with_its_owner() {
    let server = Server::start(Topology::ReplicaSet).await.unwrap();
    let address = address_of(server.uri());
    let db = server.db().await.unwrap();
    db.repo::<Ping>()
        .insert(&mut Ping { id: None, n: 1 })
        .await
        .unwrap();
    if std::env::var_os(PANIC_WITH_SERVER).is_some() {
        // The child process of `no_mongod_outlives_a_panicking_test`: say where the server is,
        // leak it (as a static would be: only its supervisor can stop it now), and panic.
        println!("MONGROVE_CHILD_URI={}", server.uri());
        std::mem::forget(server);
        panic!("the test panics with its server running");
    }
    drop(db);
    server.stop();
    assert!(gone(address), "the replica set still listens after stop()");
}

#[test]
fn no_mongod_outlives_a_panicking_test() {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "testkit::a_started_replica_set_stops_with_its_owner",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PANIC_WITH_SERVER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut uri = None;
    let mut child = child;
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(found) = line.split("MONGROVE_CHILD_URI=").nth(1) {
            uri = Some(found.trim().to_owned());
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child test was meant to panic");
    let uri = uri.expect("the child started a server and printed its address");
    assert!(
        gone(address_of(&uri)),
        "mongod at {uri} outlived the panicking test process"
    );
}

#[test]
fn topologies_count_their_members() {
    assert_eq!(Topology::replica_set(1), Topology::ReplicaSet);
    assert_eq!(Topology::replica_set(0), Topology::ReplicaSet);
    assert_eq!(Topology::replica_set(3), Topology::ReplicaSetOf(3));
    assert_ne!(Topology::replica_set(3), Topology::ReplicaSet);
    assert_ne!(Topology::Standalone, Topology::ReplicaSet);
    assert_eq!(Topology::ReplicaSet.members(), 1);
    assert_eq!(Topology::Standalone.members(), 1);
    assert_eq!(Topology::replica_set(3).members(), 3);
    assert!(Topology::replica_set(3).is_replica_set());
    assert!(!Topology::Standalone.is_replica_set());
}

#[tokio::test]
async fn a_three_member_replica_set_fails_over_and_stops_with_its_owner() {
    let server = Server::start(Topology::replica_set(3)).await.unwrap();
    let uri = server.uri().to_owned();
    assert!(uri.ends_with("/?replicaSet=rs0"), "{uri}");
    let addresses: Vec<SocketAddr> = uri
        .trim_start_matches("mongodb://")
        .split('/')
        .next()
        .unwrap()
        .split(',')
        .map(|host| host.parse().unwrap())
        .collect();
    assert_eq!(addresses.len(), 3, "{uri}");
    let primary = server.primary().await.unwrap().expect("a primary");
    // Each member has a direct URI of its own.
    let direct = server.member_uri(primary).unwrap();
    assert!(direct.contains(&addresses[primary].to_string()), "{direct}");
    assert!(server.member_uri(3).is_err());

    server.kill(primary).await.unwrap();
    assert!(
        gone(addresses[primary]),
        "the killed member stopped listening"
    );
    assert!(server.kill(primary).await.is_err(), "it is not running");
    let elected = server.wait_for_primary().await.unwrap();
    assert_ne!(elected, primary);
    server.restart(primary).await.unwrap();
    assert_eq!(server.primary().await.unwrap(), Some(elected));

    // Stopping with a member just killed and restarted leaves nothing behind.
    let dbpaths: Vec<_> = addresses
        .iter()
        .map(|a| std::env::temp_dir().join(format!("mongrove-{}-{}", std::process::id(), a.port())))
        .collect();
    assert!(dbpaths.iter().all(|p| p.exists()), "{dbpaths:?}");
    server.stop();
    for address in &addresses {
        assert!(gone(*address), "{address} still listens after stop()");
    }
    assert!(dbpaths.iter().all(|p| !p.exists()), "dbpaths removed");
}
