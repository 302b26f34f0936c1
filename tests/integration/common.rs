//! Helpers shared by the integration tests.

use mongrove::testkit::{self, TestDb};

/// A fresh database on the shared test server. Panics with the test kit's explanation when no
/// server can be had: a test without its server fails, it never passes by skipping.
pub async fn db() -> TestDb {
    match testkit::db().await {
        Ok(db) => db,
        Err(e) => panic!("no test server: {e}"),
    }
}
