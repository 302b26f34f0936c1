//! Unit tests of `error`.

use super::driver::parse_duplicate_key;
use super::*;
use mongodb::error::ErrorKind;

#[test]
fn duplicate_key_message_is_parsed() {
    let (index, key) = parse_duplicate_key(
        r#"E11000 duplicate key error collection: app.users index: email_1 dup key: { email: "a@b.c" }"#,
    );
    assert_eq!(index, "email_1");
    assert_eq!(key, r#"{ email: "a@b.c" }"#);
}

#[test]
fn unexpected_duplicate_key_message_keeps_the_text() {
    let (index, key) = parse_duplicate_key("E11000 something new");
    assert_eq!(index, "(unknown)");
    assert_eq!(key, "E11000 something new");
}

#[test]
fn outages_are_told_from_lasting_errors() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    let network = Error::Driver(mongodb::error::Error::from(ErrorKind::Io(
        std::sync::Arc::new(io),
    )));
    assert!(is_outage(&network));
    let wrapped = Error::TokenStore {
        store: "tokens".into(),
        subscription: "s".into(),
        action: "save",
        source: Box::new(network),
    };
    assert!(is_outage(&wrapped));
    assert!(!is_outage(&Error::custom("the disk is full")));
    assert!(!is_outage(&Error::Driver(mongodb::error::Error::custom(
        "not a server error"
    ))));
}

#[test]
fn version_conflict_says_both_versions() {
    let error = Error::VersionConflict {
        collection: "tickets".into(),
        id: Bson::Int32(7).into(),
        expected: 0,
        found: 1,
    };
    assert_eq!(
        error.to_string(),
        "version conflict in `tickets` on _id 7: expected version 0, found 1"
    );
}
