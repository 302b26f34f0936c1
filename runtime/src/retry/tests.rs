//! Unit tests of `retry`.

use super::*;
use mongodb::bson::Bson;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn default_follows_the_specification() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.attempts_limit(), None);
    assert_eq!(policy.deadline_limit(), Some(Duration::from_secs(120)));
    assert_eq!(policy.backoff_ceiling(1), ms(5));
    assert_eq!(policy.backoff_ceiling(2), Duration::from_secs_f64(0.0075));
    assert!(!policy.retries_version_conflicts());
}

#[test]
fn schedule_grows_exponentially_up_to_the_cap() {
    let policy = RetryPolicy::default()
        .backoff(ms(10), ms(100))
        .multiplier(2.0)
        .jitter(Jitter::None);
    let waits: Vec<_> = (1..=6).map(|n| policy.backoff_with(n, 0.3)).collect();
    assert_eq!(waits, [ms(10), ms(20), ms(40), ms(80), ms(100), ms(100)]);
    assert_eq!(policy.backoff_ceiling(0), Duration::ZERO);
    // Huge retry numbers overflow the factor to infinity; the cap still holds.
    assert_eq!(policy.backoff_ceiling(u32::MAX), ms(100));
}

#[test]
fn silly_settings_are_tamed() {
    let policy = RetryPolicy::default()
        .backoff(ms(50), ms(10))
        .multiplier(f64::NAN)
        .max_attempts(0);
    assert_eq!(policy.attempts_limit(), Some(1));
    // A maximum below the initial wait is raised to it; a NaN multiplier is a constant wait.
    assert_eq!(policy.backoff_ceiling(1), ms(50));
    assert_eq!(policy.backoff_ceiling(7), ms(50));
    assert_eq!(
        RetryPolicy::default().multiplier(0.5).backoff_ceiling(3),
        ms(5)
    );
}

#[test]
fn full_jitter_stays_between_zero_and_the_ceiling() {
    let policy = RetryPolicy::default()
        .backoff(ms(8), ms(300))
        .multiplier(3.0);
    let mut rng = StdRng::seed_from_u64(7);
    for retry in 1..=10 {
        let ceiling = policy.backoff_ceiling(retry);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..200 {
            let wait = policy.backoff_with(retry, rng.random::<f64>());
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            seen_low |= wait < ceiling / 4;
            seen_high |= wait > ceiling * 3 / 4;
        }
        assert!(seen_low && seen_high, "jitter spreads over the whole range");
    }
    assert_eq!(policy.backoff_with(1, 0.0), Duration::ZERO);
}

#[test]
fn equal_jitter_stays_in_the_upper_half() {
    let policy = RetryPolicy::default()
        .backoff(ms(10), ms(1000))
        .jitter(Jitter::Equal);
    let mut rng = StdRng::seed_from_u64(42);
    for retry in 1..=8 {
        let ceiling = policy.backoff_ceiling(retry);
        for _ in 0..200 {
            let wait = policy.backoff_with(retry, rng.random::<f64>());
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} vs {ceiling:?}"
            );
        }
    }
    // Out-of-range draws are clamped.
    assert_eq!(policy.backoff_with(1, 7.0), ms(10));
    assert_eq!(policy.backoff_with(1, -1.0), ms(5));
    assert_eq!(policy.backoff_with(1, f64::NAN), ms(5));
}

#[test]
fn attempt_cap_and_deadline_cut_retries() {
    let policy = RetryPolicy::default()
        .max_attempts(3)
        .deadline(ms(100))
        .backoff(ms(10), ms(10))
        .jitter(Jitter::None);
    assert_eq!(policy.next(1, ms(0), 0.5), Next::RetryAfter(ms(10)));
    assert_eq!(policy.next(2, ms(50), 0.5), Next::RetryAfter(ms(10)));
    assert_eq!(policy.next(3, ms(50), 0.5), Next::OutOfAttempts);
    // The wait would end exactly at the deadline: the specification says stop.
    assert_eq!(policy.next(1, ms(90), 0.5), Next::PastDeadline);
    assert_eq!(policy.next(1, ms(89), 0.5), Next::RetryAfter(ms(10)));
    let forever = RetryPolicy::default().no_deadline().unlimited_attempts();
    assert!(matches!(
        forever.next(1_000_000, Duration::from_secs(1 << 30), 0.5),
        Next::RetryAfter(_)
    ));
    assert!(!forever.past_deadline(Duration::MAX));
}

#[test]
fn which_errors_are_retried() {
    let conflict = Error::VersionConflict {
        collection: "c".into(),
        id: Bson::Int32(1).into(),
        expected: 0,
        found: 1,
    };
    assert!(!RetryPolicy::default().retries(&conflict));
    assert!(
        RetryPolicy::default()
            .retry_version_conflicts(true)
            .retries(&conflict)
    );
    assert!(!RetryPolicy::default().retries(&Error::TransactionsUnsupported));
    let transient = Error::Driver(mongodb::error::Error::custom("x"));
    assert!(!RetryPolicy::default().retries(&transient));
}

fn conflict() -> Error {
    Error::VersionConflict {
        collection: "c".into(),
        id: Bson::Int32(1).into(),
        expected: 0,
        found: 1,
    }
}

#[tokio::test]
async fn pause_waits_while_the_budget_lasts() {
    let policy = RetryPolicy::default().backoff(ms(1), ms(1));
    let paused = pause(&policy, 1, Instant::now(), conflict(), "test").await;
    assert!(paused.is_ok());
}

#[tokio::test]
async fn pause_returns_the_last_error_when_attempts_run_out() {
    let policy = RetryPolicy::default().max_attempts(4).backoff(ms(1), ms(1));
    assert!(
        pause(&policy, 3, Instant::now(), conflict(), "test")
            .await
            .is_ok()
    );
    let result = pause(&policy, 4, Instant::now(), conflict(), "test").await;
    assert!(matches!(result, Err(Error::VersionConflict { .. })));
}

#[tokio::test]
async fn pause_reports_the_deadline_with_the_last_error() {
    // A zero deadline: the first wait already reaches it.
    let policy = RetryPolicy::default().deadline(Duration::ZERO);
    let result = pause(&policy, 1, Instant::now(), conflict(), "saving").await;
    match result {
        Err(Error::Timeout {
            context,
            last: Some(last),
        }) => {
            assert!(context.starts_with("saving: stopped retrying after 1 attempt in"));
            assert!(context.contains("deadline"));
            assert!(matches!(*last, Error::VersionConflict { .. }));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_predicate_adds_errors_to_retry_and_leaves_the_rest() {
    let policy =
        RetryPolicy::default().retry_if(|error| matches!(error, Error::DuplicateKey { .. }));
    let duplicate = Error::DuplicateKey {
        collection: "coupons".into(),
        index: "code_1".into(),
        key: "{ code: 7 }".into(),
    };
    assert!(policy.retries(&duplicate));
    assert!(!policy.retries(&Error::custom("no")));
    assert!(!RetryPolicy::default().retries(&duplicate));
    // Clones share the predicate and compare equal; another predicate does not.
    assert_eq!(policy.clone(), policy);
    assert_ne!(policy, RetryPolicy::default().retry_if(|_| true));
}

#[tokio::test]
async fn run_retries_what_the_policy_retries_and_stops_on_the_rest() {
    let policy = RetryPolicy::default()
        .backoff(Duration::ZERO, Duration::ZERO)
        .retry_if(|error| error.to_string() == "again");
    let mut runs = 0;
    let value = policy
        .run(|| {
            runs += 1;
            let run = runs;
            async move {
                if run < 3 {
                    Err(Error::custom("again"))
                } else {
                    Ok(run)
                }
            }
        })
        .await;
    assert_eq!(value.ok(), Some(3));

    let mut runs = 0;
    let stopped: Result<()> = policy
        .run(|| {
            runs += 1;
            async { Err(Error::custom("stop")) }
        })
        .await;
    assert_eq!(runs, 1);
    assert_eq!(
        stopped.err().map(|e| e.to_string()).as_deref(),
        Some("stop")
    );

    let mut runs = 0;
    let capped: Result<()> = policy
        .clone()
        .max_attempts(4)
        .run(|| {
            runs += 1;
            async { Err(Error::custom("again")) }
        })
        .await;
    assert_eq!(runs, 4);
    assert!(capped.is_err());
}
