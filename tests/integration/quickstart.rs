//! Runs the quickstart example (also the guide's first chapter) against the test server.

#[allow(dead_code)]
#[path = "../../examples/quickstart.rs"]
mod example;

#[tokio::test]
async fn quickstart_runs_and_reports_each_step() {
    let db = crate::common::db().await;
    let log = example::run(&db).await.expect("the quickstart runs");
    assert_eq!(log[0], r#"indexes created: ["eventName_1_seat_1"]"#);
    assert!(
        log[1].starts_with("inserted ") && log[1].ends_with(" at version 0"),
        "{}",
        log[1]
    );
    assert_eq!(log[3], r#"under 100: ["C3", "B7"]"#);
    assert_eq!(log[4], "discounted 2 tickets");
    assert_eq!(log[5], "cheapest on sale: C3 at 40.50 (version 1)");
    assert_eq!(log[6], "saved A1 at version 1");
    assert_eq!(log[7], "3 tickets in all");
}
