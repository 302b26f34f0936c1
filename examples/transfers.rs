//! Money transfers under concurrency: many tasks move money between a few accounts at the same
//! time. Write conflicts between them (and any other transient error) rerun the transaction;
//! a transfer either happens completely or is reported failed, and money is never created or
//! lost.
//!
//! Run it with `cargo run --example transfers`. It uses the server at `MONGODB_URI`, or starts a
//! throwaway single-node replica set (see `mongrove::testkit`) and stops it on exit.

use std::time::Duration;

use mongrove::{Db, Error, Filter, Jitter, Model, RetryPolicy, TxOptions};
use serde::{Deserialize, Serialize};

// ANCHOR: account
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "accounts")]
pub struct Account {
    #[serde(rename = "_id")]
    pub number: i32,
    pub balance: i64,
}

/// The transfer would overdraw the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientFunds {
    pub account: i32,
    pub amount: i64,
}

impl std::fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account {} cannot pay {}", self.account, self.amount)
    }
}

impl std::error::Error for InsufficientFunds {}
// ANCHOR_END: account

// ANCHOR: policy
/// How transfers are retried: a transfer that cannot get through in 10 seconds is reported
/// failed rather than holding its caller for the specification's 120. Between attempts it waits
/// 2 ms, then 1.5 times longer each time, never more than 200 ms, with full jitter.
pub fn transfer_policy() -> RetryPolicy {
    RetryPolicy::default()
        .deadline(Duration::from_secs(10))
        .backoff(Duration::from_millis(2), Duration::from_millis(200))
        .multiplier(1.5)
        .jitter(Jitter::Full)
}
// ANCHOR_END: policy

// ANCHOR: transfer
/// Moves `amount` from one account to another, in one transaction.
pub async fn transfer(db: &Db, from: i32, to: i32, amount: i64) -> mongrove::Result<()> {
    let options = TxOptions::new().retry(transfer_policy());
    // `async move`: the closure owns `from`, `to` and `amount`, so the future is `Send` and the
    // transfer can run on a spawned task.
    db.transaction_with(options, async move |tx| {
        let accounts = tx.repo::<Account>();
        let a = Account::fields();
        // Debit only if the money is there; the filter and the update are one atomic step.
        let debited = accounts
            .update_one(
                a.number.eq(from).and(a.balance.gte(amount)),
                a.balance.inc(-amount),
            )
            .await?;
        if debited.matched == 0 {
            return Err(Error::custom(InsufficientFunds {
                account: from,
                amount,
            }));
        }
        accounts
            .update_one(a.number.eq(to), a.balance.inc(amount))
            .await?;
        Ok(())
    })
    .await
}
// ANCHOR_END: transfer

/// Opens accounts `0..count`, each with `balance`.
pub async fn open_accounts(db: &Db, count: i32, balance: i64) -> mongrove::Result<()> {
    let mut accounts: Vec<Account> = (0..count)
        .map(|number| Account { number, balance })
        .collect();
    db.repo::<Account>().insert_many(&mut accounts).await?;
    Ok(())
}

/// Every balance, by account number.
pub async fn balances(db: &Db) -> mongrove::Result<Vec<(i32, i64)>> {
    let mut all = db.repo::<Account>().find(Filter::all()).await?;
    all.sort_by_key(|a| a.number);
    Ok(all.into_iter().map(|a| (a.number, a.balance)).collect())
}

/// One transfer that was asked for, and what became of it.
#[derive(Debug)]
pub struct Outcome {
    pub from: i32,
    pub to: i32,
    pub amount: i64,
    /// `Ok` when the transfer was applied; the error when it was not.
    pub result: mongrove::Result<()>,
}

/// A small deterministic random number generator (xorshift), so runs can be replayed.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Xorshift(seed.max(1))
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

// ANCHOR: workload
/// `tasks` tasks, each making `per_task` random transfers among `accounts` accounts at the same
/// time. Returns every transfer with its result.
pub async fn random_transfers(
    db: &Db,
    tasks: u64,
    per_task: usize,
    accounts: i32,
    max_amount: i64,
) -> Vec<Outcome> {
    let accounts = u64::try_from(accounts.max(2)).unwrap_or(2);
    let max_amount = u64::try_from(max_amount.max(1)).unwrap_or(1);
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut rng = Xorshift::new(0x9e37_79b9_7f4a_7c15 ^ (task + 1));
                let mut outcomes = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let from = rng.below(accounts);
                    let to = (from + 1 + rng.below(accounts - 1)) % accounts;
                    let amount = 1 + rng.below(max_amount);
                    let (from, to) = (from as i32, to as i32);
                    let amount = amount as i64;
                    let result = transfer(&db, from, to, amount).await;
                    outcomes.push(Outcome {
                        from,
                        to,
                        amount,
                        result,
                    });
                }
                outcomes
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(outcomes) => all.extend(outcomes),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a transfer task was cancelled: {error}"),
        }
    }
    all
}
// ANCHOR_END: workload

#[allow(dead_code)] // The test suite includes this file and calls its functions itself.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server at MONGODB_URI, or a throwaway replica set; the database starts empty.
    let db = mongrove::testkit::example_db("transfers_example").await?;
    open_accounts(&db, 10, 1_000).await?;
    let outcomes = random_transfers(&db, 8, 200, 10, 300).await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let total: i64 = balances(&db).await?.iter().map(|(_, b)| b).sum();
    println!(
        "{} transfers, {failed} refused, total {total} (was 10000)",
        outcomes.len()
    );
    Ok(())
}
