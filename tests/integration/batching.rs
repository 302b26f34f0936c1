//! Automatic batching of concurrent `find_by_id` and `insert` (`Db::with_batching`,
//! `Repo::batched`): each caller gets its own answer, fewer round trips, no batch across
//! sessions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::IntoFuture;

use futures_util::future::join_all;
use mongrove::bson::{Bson, DateTime, doc};
use mongrove::mongodb::event::EventHandler;
use mongrove::mongodb::event::command::CommandEvent;
use mongrove::mongodb::options::ClientOptions;
use mongrove::testkit::{self, TestDb};
use mongrove::{Db, Error, HookContext, HookResult, Hooks, Model};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "cards", version = "version", timestamps, hooks)]
pub struct Card {
    #[serde(rename = "_id")]
    pub id: String,
    pub title: String,
    /// Set by `before_insert`, so stored.
    pub stamped: bool,
    pub version: i64,
    pub created_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
    /// Set by `after_load`, never stored.
    #[serde(skip)]
    pub loaded: bool,
}

#[mongrove::async_trait]
impl Hooks for Card {
    async fn before_insert(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        self.stamped = true;
        Ok(())
    }

    async fn after_load(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        self.loaded = true;
        Ok(())
    }
}

fn card(id: &str) -> Card {
    Card {
        id: id.to_owned(),
        title: format!("card {id}"),
        stamped: false,
        version: 7,
        created_at: None,
        updated_at: None,
        loaded: false,
    }
}

/// The commands a monitored client sent: each one's name, whether it ran in a transaction
/// (carried a `txnNumber`) and its session id.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<Command>>>);

#[derive(Clone, Debug)]
struct Command {
    name: String,
    in_transaction: bool,
    session: Option<Bson>,
}

impl Sent {
    fn count(&self, name: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.name == name)
            .count()
    }

    fn in_transaction(&self, name: &str) -> usize {
        self.transaction_sessions(name).len()
    }

    /// The session ids of the commands named `name` sent in a transaction.
    fn transaction_sessions(&self, name: &str) -> Vec<Option<Bson>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.name == name && c.in_transaction)
            .map(|c| c.session.clone())
            .collect()
    }

    fn all(&self) -> Vec<(String, bool)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.name.clone(), c.in_transaction))
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A `Db` on the test's database through a client of its own that records every command.
async fn monitored(test: &TestDb) -> (Db, Sent) {
    let server = testkit::server().await.expect("test server");
    let mut options = ClientOptions::parse(server.uri()).await.expect("the URI");
    let sent = Sent::default();
    let record = sent.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event {
            let command = Command {
                in_transaction: started.command.contains_key("txnNumber"),
                session: started.command.get("lsid").cloned(),
                name: started.command_name,
            };
            record.0.lock().unwrap().push(command);
        }
    }));
    let client = mongrove::mongodb::Client::with_options(options).expect("client");
    (Db::new(client, test.name()), sent)
}

/// The `find_by_id` batches among recorded spans, with their fields.
fn find_batches(spans: &[(String, String)]) -> Vec<&String> {
    spans
        .iter()
        .filter(|(name, fields)| name == "batch" && fields.contains("operation=\"find_by_id\""))
        .map(|(_, fields)| fields)
        .collect()
}

/// A batched repository with the cards `{prefix}0` to `{prefix}{n - 1}`, and a fail point that
/// makes the server hold the next `find` for 400 ms.
async fn cards_and_a_held_find(
    test: &TestDb,
    prefix: &str,
    n: usize,
) -> (mongrove::Repo<Card>, testkit::FailPointGuard) {
    let cards = test.repo::<Card>().batched();
    for i in 0..n {
        cards
            .insert(&mut card(&format!("{prefix}{i}")))
            .await
            .unwrap();
    }
    let held = test
        .fail_point(
            testkit::FailCommand::new(["find"])
                .block_for(Duration::from_millis(400))
                .times(1),
        )
        .await
        .unwrap();
    (cards, held)
}

#[tokio::test]
async fn concurrent_lookups_share_round_trips_and_each_gets_its_own_document() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let plain = db.repo::<Card>();
    for i in 0..20 {
        plain.insert(&mut card(&format!("c{i}"))).await.unwrap();
    }
    // 32 lookups: present ids, missing ids, and the same id asked twice, in no sorted order.
    let ids: Vec<String> = (0..32)
        .map(|i| match i % 4 {
            0 => format!("missing{i}"),
            1 => "c3".to_owned(),
            _ => format!("c{}", (i * 7) % 20),
        })
        .collect();

    sent.clear();
    let unbatched = join_all(
        ids.iter()
            .map(|id| plain.find_by_id(id.clone()).into_future()),
    )
    .await;
    let unbatched_finds = sent.count("find");
    assert_eq!(unbatched_finds, 32);

    // ANCHOR: with_batching
    let batched_db = db.with_batching();
    let cards = batched_db.repo::<Card>();
    assert!(cards.is_batched());
    sent.clear();
    let batched = join_all(
        ids.iter()
            .map(|id| cards.find_by_id(id.clone()).into_future()),
    )
    .await;
    // ANCHOR_END: with_batching
    let batched_finds = sent.count("find");
    assert_eq!(
        batched_finds, 1,
        "32 lookups started together share one find command"
    );

    for ((id, got), plain) in ids.iter().zip(batched).zip(unbatched) {
        let got = got.expect("the lookup succeeds");
        let plain = plain.expect("the lookup succeeds");
        match (got, plain) {
            (Some(got), Some(plain)) => {
                assert_eq!(&got.id, id);
                assert_eq!(got.title, plain.title);
                assert!(got.loaded, "after_load ran for the batched lookup of {id}");
            }
            (None, None) => assert!(id.starts_with("missing")),
            (got, plain) => panic!("{id}: batched {got:?}, unbatched {plain:?}"),
        }
    }
}

#[tokio::test]
async fn a_lone_caller_is_sent_at_once_alone() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let cards = db.repo::<Card>().batched();
    cards.insert(&mut card("a")).await.unwrap();
    sent.clear();
    for _ in 0..3 {
        let found = cards.find_by_id("a".to_owned()).await.unwrap();
        assert!(found.is_some_and(|c| c.loaded));
    }
    assert_eq!(
        cards
            .find_by_id("zz".to_owned())
            .await
            .unwrap()
            .map(|c| c.id),
        None
    );
    assert_eq!(sent.count("find"), 4);
}

#[tokio::test]
async fn a_failing_insert_fails_only_its_caller_and_each_document_is_prepared() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let cards = db.with_batching().repo::<Card>();
    cards.insert(&mut card("taken")).await.unwrap();

    let mut docs: Vec<Card> = (0..12).map(|i| card(&format!("n{i}"))).collect();
    docs[5] = card("taken");
    sent.clear();
    let results = join_all(docs.iter_mut().map(|doc| cards.insert(doc).into_future())).await;
    assert!(
        sent.count("insert") < 12,
        "12 concurrent inserts took {} insert commands",
        sent.count("insert")
    );
    for (i, (result, doc)) in results.into_iter().zip(&docs).enumerate() {
        if i == 5 {
            match result {
                Err(Error::DuplicateKey { key, .. }) => {
                    assert!(key.contains("taken"), "the error names the key: {key}")
                }
                other => panic!("the duplicate's caller gets DuplicateKey, got {other:?}"),
            }
            continue;
        }
        assert_eq!(result.unwrap(), doc.id);
        // Version, timestamps and hooks applied per document, as without batching.
        assert_eq!(doc.version, 0);
        assert!(doc.stamped);
        assert!(doc.created_at.is_some() && doc.created_at == doc.updated_at);
        let stored = cards.find_by_id(doc.id.clone()).await.unwrap().unwrap();
        assert_eq!(stored.version, 0);
        assert!(stored.stamped);
        assert_eq!(stored.created_at, doc.created_at);
    }
    let stored = db.repo::<Card>().count(doc! {}).await.expect("count");
    assert_eq!(stored, 12, "11 new documents and the one that was there");
}

#[tokio::test]
async fn two_concurrent_inserts_of_one_id_write_one() {
    let test = common::db().await;
    let cards = test.with_batching().repo::<Card>();
    let (mut a, mut b, mut c) = (card("twin"), card("twin"), card("other"));
    let (ra, rb, rc) = tokio::join!(
        cards.insert(&mut a),
        cards.insert(&mut b),
        cards.insert(&mut c)
    );
    assert!(rc.is_ok());
    let failed = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Err(Error::DuplicateKey { .. })))
        .count();
    assert_eq!(failed, 1, "{ra:?} {rb:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn batches_are_traced_with_their_size() {
    let test = common::db().await;
    let cards = test.repo::<Card>().batched();
    for i in 0..10 {
        cards.insert(&mut card(&format!("t{i}"))).await.unwrap();
    }
    let recording = common::spans().record_this_thread();
    let found = join_all((0..10).map(|i| cards.find_by_id(format!("t{i}")).into_future())).await;
    let spans = recording.finish();
    assert!(found.iter().all(|f| matches!(f, Ok(Some(_)))));
    let sizes = find_batches(&spans);
    assert_eq!(sizes.len(), 1, "{spans:?}");
    assert!(sizes[0].contains("size=10 "), "{sizes:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn calls_made_while_a_batch_is_in_flight_leave_together_after_it() {
    let test = common::db().await;
    // The first lookup's find is held by the server, so the others arrive while it is in flight.
    let (cards, _held) = cards_and_a_held_find(&test, "f", 10).await;
    let recording = common::spans().record_this_thread();
    let first = cards.find_by_id("f0".to_owned()).into_future();
    let later = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        join_all((1..10).map(|i| cards.find_by_id(format!("f{i}")).into_future())).await
    };
    let (first, later) = tokio::join!(first, later);
    let spans = recording.finish();
    assert_eq!(first.unwrap().map(|c| c.id), Some("f0".to_owned()));
    for (i, found) in (1..10).zip(later) {
        assert_eq!(found.unwrap().map(|c| c.id), Some(format!("f{i}")));
    }
    let sizes = find_batches(&spans);
    assert_eq!(sizes.len(), 2, "{spans:?}");
    assert!(sizes[0].contains("size=1 "), "{sizes:?}");
    assert!(sizes[1].contains("size=9 "), "{sizes:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn calls_in_a_transaction_batch_only_within_it_and_a_callers_session_never() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let db = db.with_batching();
    let cards = db.repo::<Card>();
    for id in ["a", "b", "c"] {
        cards.insert(&mut card(id)).await.unwrap();
    }
    let outcome: Result<(), Error> = db
        .transaction(async |_tx| {
            // The transaction's own uncommitted write, then lookups made together: one `find`,
            // in the transaction (it sees that write), each caller with its own answer.
            cards.insert(&mut card("inside")).await?;
            // A task the transaction does not bind looks up at the same moment: it runs
            // outside, in a batch of its own, and cannot see the uncommitted card.
            let outside = tokio::spawn({
                let cards = cards.clone();
                async move { cards.find_by_id("inside".to_owned()).await }
            });
            sent.clear();
            let found = join_all(
                ["a", "inside", "nope", "b"]
                    .map(|id| cards.find_by_id(id.to_owned()).into_future()),
            )
            .await;
            let ids: Vec<Option<String>> = found
                .into_iter()
                .map(|f| f.map(|c| c.map(|c| c.id)))
                .collect::<Result<_, _>>()?;
            assert_eq!(
                ids,
                [
                    Some("a".into()),
                    Some("inside".into()),
                    None,
                    Some("b".into())
                ]
            );
            assert!(
                outside.await.unwrap()?.is_none(),
                "outside sees no uncommitted card"
            );
            assert_eq!(sent.in_transaction("find"), 1, "{:?}", sent.all());
            assert_eq!(
                sent.count("find"),
                2,
                "one batch inside, one outside: {:?}",
                sent.all()
            );

            // Inserts made together: one ordered insert in the transaction. The duplicate
            // fails its own caller with its own error; the server stops there and aborts the
            // transaction, so the card after it is sent alone and gets the server's answer.
            sent.clear();
            let mut new = [card("t1"), card("a"), card("t3")];
            let [first, duplicate, last] = &mut new;
            let (first, duplicate, last) = tokio::join!(
                cards.insert(first),
                cards.insert(duplicate),
                cards.insert(last)
            );
            assert_eq!(first?, "t1");
            assert!(
                matches!(duplicate, Err(Error::DuplicateKey { .. })),
                "{duplicate:?}"
            );
            assert!(
                last.is_err(),
                "the aborted transaction takes no more writes"
            );
            assert_eq!(sent.in_transaction("insert"), 2, "{:?}", sent.all());
            Err(Error::Custom("roll back".into()))
        })
        .await;
    assert!(
        matches!(&outcome, Err(Error::Custom(e)) if e.to_string() == "roll back"),
        "{outcome:?}"
    );
    for id in ["inside", "t1", "t3"] {
        assert!(
            cards.find_by_id(id.to_owned()).await.unwrap().is_none(),
            "{id}"
        );
    }
    assert_eq!(
        cards
            .find_by_id("a".to_owned())
            .await
            .unwrap()
            .unwrap()
            .version,
        0
    );

    // A repository taken from the transaction batches too, within it.
    db.transaction(async |tx| {
        assert!(tx.repo::<Card>().is_batched());
        Ok(())
    })
    .await
    .unwrap();

    // An explicit session: each lookup goes on its own, in that session.
    let mut session = db.start_session().await.unwrap();
    sent.clear();
    let mut found = 0;
    for id in ["a", "nope"] {
        if cards
            .find_by_id(id.to_owned())
            .session(&mut session)
            .await
            .unwrap()
            .is_some()
        {
            found += 1;
        }
    }
    assert_eq!(found, 1);
    assert_eq!(sent.count("find"), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_caller_strands_no_other_call_of_its_batch() {
    let test = common::db().await;
    // The batch's find is held by the server well past the first caller's patience.
    let (cards, _held) = cards_and_a_held_find(&test, "k", 6).await;
    let impatient = tokio::time::timeout(
        Duration::from_millis(100),
        cards.find_by_id("k0".to_owned()).into_future(),
    );
    let patient = join_all((1..6).map(|i| cards.find_by_id(format!("k{i}")).into_future()));
    let (gave_up, found) = tokio::join!(impatient, patient);
    assert!(gave_up.is_err(), "the first caller stopped waiting");
    for (i, found) in (1..6).zip(found) {
        assert_eq!(found.unwrap().map(|c| c.id), Some(format!("k{i}")));
    }
}

#[tokio::test]
async fn a_retried_transaction_batches_again_in_its_new_attempt() {
    let test = common::db().await;
    let cards = test.repo::<Card>().batched();
    for id in ["r0", "r1", "r2"] {
        cards.insert(&mut card(id)).await.unwrap();
    }
    // The first attempt's batch fails transiently: each of its callers hears of it, and the
    // retried attempt's lookups go in a batch of that attempt.
    let _once = test
        .fail_point(testkit::FailCommand::transient(["find"]).times(1))
        .await
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let found = test
        .transaction(async |tx| {
            let found = join_all(
                ["r0", "r1", "r2"].map(|id| cards.find_by_id(id.to_owned()).into_future()),
            )
            .await;
            let failed = found.iter().filter(|f| f.is_err()).count();
            attempts.lock().unwrap().push((tx.attempt(), failed));
            found
                .into_iter()
                .map(|f| f.map(|c| c.map(|c| c.id)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap();
    assert_eq!(
        found,
        [Some("r0".into()), Some("r1".into()), Some("r2".into())]
    );
    assert_eq!(*attempts.lock().unwrap(), [(1, 3), (2, 0)]);
}

#[tokio::test]
async fn a_transaction_that_batched_gives_its_session_back() {
    let test = common::db().await;
    let (db, sent) = monitored(&test).await;
    let db = db.with_batching();
    let cards = db.repo::<Card>();
    cards.insert(&mut card("s0")).await.unwrap();
    // Two transactions one after the other, each with batched lookups: the second reuses the
    // first one's server session, which the driver pools again only once nothing holds the
    // first transaction any more (its batchers included).
    for _ in 0..2 {
        db.transaction(async |_tx| {
            let found =
                join_all(["s0", "nope"].map(|id| cards.find_by_id(id.to_owned()).into_future()))
                    .await;
            assert!(found.iter().all(Result::is_ok));
            Ok(())
        })
        .await
        .unwrap();
        // The driver checks a dropped session back in on a task of its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sessions = sent.transaction_sessions("find");
    assert_eq!(sessions.len(), 2, "{:?}", sent.all());
    assert!(sessions[0].is_some());
    assert_eq!(
        sessions[0], sessions[1],
        "the first transaction's session was kept"
    );
}
