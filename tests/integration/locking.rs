//! Locking reads against the real server: the write-skew anomaly of snapshot isolation (two
//! doctors both go off call), and `find_for_update` ruling it out; the lock is invisible to the
//! model, and refused outside a transaction.

use std::sync::atomic::{AtomicU32, Ordering};

use mongrove::bson::doc;
use mongrove::{Db, Error, LOCK_FIELD, Model};
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

use crate::common;

// ANCHOR: doctor
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "doctors", version = "version")]
struct Doctor {
    #[serde(rename = "_id")]
    id: String,
    on_call: bool,
    version: i64,
}
// ANCHOR_END: doctor

async fn two_doctors_on_call(db: &Db) {
    for id in ["alice", "bob"] {
        db.repo::<Doctor>()
            .insert(&mut Doctor {
                id: id.into(),
                on_call: true,
                version: 0,
            })
            .await
            .expect("insert");
    }
}

/// How the on-call check reads.
#[derive(Clone, Copy)]
enum Read {
    Plain,
    ForUpdate,
}

// ANCHOR: go_off_call
/// Takes `doctor` off call, but only if another doctor stays on call. Returns whether it did.
/// `rendezvous` is the test's: both transactions take their snapshot before either writes.
async fn go_off_call(
    db: &Db,
    doctor: &str,
    read: Read,
    rendezvous: &Barrier,
    attempts: &AtomicU32,
) -> mongrove::Result<bool> {
    db.transaction(async |tx| {
        attempts.fetch_max(tx.attempt(), Ordering::SeqCst);
        let doctors = tx.repo::<Doctor>();
        let f = Doctor::fields();
        // The transaction's snapshot is taken at its first read.
        doctors.count(f.on_call.eq(true)).await?;
        if tx.attempt() == 1 {
            rendezvous.wait().await;
        }
        let on_call = match read {
            // Reads the snapshot: the other transaction's write is invisible, and nothing
            // stops it from committing.
            Read::Plain => doctors.find(f.on_call.eq(true)).await?,
            // Reads and locks every doctor on call: the second transaction to lock them gets a
            // write conflict, and the scope runs it again after the first has committed.
            Read::ForUpdate => doctors.find_for_update(f.on_call.eq(true)).await?,
        };
        if on_call.len() < 2 || !on_call.iter().any(|d| d.id == doctor) {
            return Ok(false);
        }
        doctors
            .update_one(f.id.eq(doctor.to_owned()), f.on_call.set(false))
            .await?;
        Ok(true)
    })
    .await
}
// ANCHOR_END: go_off_call

async fn both_try(db: &Db, read: Read) -> ((bool, bool), u32, u64) {
    two_doctors_on_call(db).await;
    let rendezvous = Barrier::new(2);
    let (alice_attempts, bob_attempts) = (AtomicU32::new(0), AtomicU32::new(0));
    let (alice, bob) = tokio::join!(
        go_off_call(db, "alice", read, &rendezvous, &alice_attempts),
        go_off_call(db, "bob", read, &rendezvous, &bob_attempts),
    );
    let on_call = db
        .repo::<Doctor>()
        .count(Doctor::fields().on_call.eq(true))
        .await
        .expect("count");
    let attempts = alice_attempts
        .load(Ordering::SeqCst)
        .max(bob_attempts.load(Ordering::SeqCst));
    (
        (alice.expect("alice"), bob.expect("bob")),
        attempts,
        on_call,
    )
}

// ANCHOR: write_skew
#[tokio::test]
async fn without_a_lock_both_doctors_go_off_call() {
    let db = common::db().await;
    let (went, attempts, on_call) = both_try(&db, Read::Plain).await;
    // Snapshot isolation: each saw two doctors on call and wrote a different document, so
    // there was no conflict, both committed, and nobody is on call (write skew).
    assert_eq!(went, (true, true));
    assert_eq!(attempts, 1);
    assert_eq!(on_call, 0);
}

#[tokio::test]
async fn with_find_for_update_one_doctor_stays_on_call() {
    let db = common::db().await;
    let (went, attempts, on_call) = both_try(&db, Read::ForUpdate).await;
    // The loser's lock was a write conflict: it ran again, saw one doctor on call, and stayed.
    assert!(went == (true, false) || went == (false, true), "{went:?}");
    assert!(attempts >= 2, "the loser was run again");
    assert_eq!(on_call, 1);
}
// ANCHOR_END: write_skew

#[tokio::test]
async fn the_lock_is_invisible_to_the_model_and_its_version() {
    let db = common::db().await;
    two_doctors_on_call(&db).await;
    let f = Doctor::fields();
    let (one, all) = db
        .transaction(async |tx| {
            let doctors = tx.repo::<Doctor>();
            let one = doctors
                .find_one_for_update(f.id.eq("alice".to_owned()))
                .lock_wait(std::time::Duration::from_secs(1))
                .await?;
            let all = doctors
                .find_for_update(f.on_call.eq(true))
                .sort(f.id.desc())
                .await?;
            Ok((one, all))
        })
        .await
        .expect("locking reads");
    let one = one.expect("alice");
    assert_eq!((one.id.as_str(), one.version), ("alice", 0));
    let ids: Vec<_> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["bob", "alice"]);
    assert!(all.iter().all(|d| d.version == 0), "versions untouched");
    // Stored: the hidden counter went up once per lock, nothing else changed.
    let raw = db
        .repo::<Doctor>()
        .collection()
        .find_one(doc! { "_id": "alice" })
        .await
        .expect("read")
        .expect("alice");
    assert_eq!(raw.get_i64(LOCK_FIELD), Ok(2));
    assert_eq!(raw.get_i64("version"), Ok(0));
    let missing = db
        .transaction(async |tx| {
            tx.repo::<Doctor>()
                .find_one_for_update(f.id.eq("carol".to_owned()))
                .await
        })
        .await
        .expect("no such doctor");
    assert!(missing.is_none());
}

#[tokio::test]
async fn a_locking_read_outside_a_transaction_is_refused() {
    let db = common::db().await;
    two_doctors_on_call(&db).await;
    let doctors = db.repo::<Doctor>();
    let f = Doctor::fields();
    let one = doctors
        .find_one_for_update(f.id.eq("alice".to_owned()))
        .await;
    assert!(
        matches!(
            one,
            Err(Error::NotInTransaction {
                operation: "find_one_for_update"
            })
        ),
        "{one:?}"
    );
    let all = doctors.find_for_update(f.on_call.eq(true)).await;
    assert!(
        matches!(all, Err(Error::NotInTransaction { .. })),
        "{all:?}"
    );
    let locked = doctors
        .collection()
        .count_documents(doc! { LOCK_FIELD: { "$exists": true } })
        .await
        .expect("count");
    assert_eq!(locked, 0, "nothing was sent");
}
