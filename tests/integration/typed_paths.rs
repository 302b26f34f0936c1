//! Typed paths on optional strings, dates and floats: queries the server accepts compile.

use mongrove::bson::DateTime;
use mongrove::{Filter, Model};
use serde::{Deserialize, Serialize};

use crate::common;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(collection = "players")]
pub struct Player {
    #[serde(rename = "_id")]
    pub id: i32,
    pub nick: Option<String>,
    pub score: f64,
    pub first_seen: DateTime,
    pub last_seen: Option<DateTime>,
}

#[tokio::test]
async fn regex_on_optional_strings_and_min_max_on_dates_and_inc_on_floats() {
    let db = common::db().await;
    let players = db.repo::<Player>();
    let day = |d: i64| DateTime::from_millis(d * 86_400_000);
    let mut docs = vec![
        Player {
            id: 1,
            nick: Some("Ada".into()),
            score: 0.5,
            first_seen: day(10),
            last_seen: None,
        },
        Player {
            id: 2,
            nick: None,
            score: 2.0,
            first_seen: day(10),
            last_seen: Some(day(12)),
        },
    ];
    players.insert_many(&mut docs).await.unwrap();

    // ANCHOR: valid_queries
    let f = Player::fields();
    // `matches` on an `Option<String>`: a missing nick does not match.
    let named = players.find(f.nick.matches("^a", "i")).await.unwrap();
    // `inc` takes anything that converts into the field's type: `1` for an `f64`.
    players
        .update_many(Filter::all(), f.score.inc(1))
        .await
        .unwrap();
    // `min` and `max` on dates, and on optional dates (the field takes the value when missing).
    players
        .update_many(
            Filter::all(),
            f.first_seen.min(day(5)).and(f.last_seen.max(day(11))),
        )
        .await
        .unwrap();
    // ANCHOR_END: valid_queries

    assert_eq!(named.iter().map(|p| p.id).collect::<Vec<_>>(), [1]);
    let all = players.find(Filter::all()).sort(f.id.asc()).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|p| (p.score, p.first_seen, p.last_seen))
        .collect();
    assert_eq!(
        seen,
        [(1.5, day(5), Some(day(11))), (3.0, day(5), Some(day(12)))]
    );
}
