//! Fail points: make the server fail chosen commands of one test's client.

use std::time::Duration;

use mongodb::Client;
use mongodb::bson::{Document, doc};
use tokio::sync::{Mutex, MutexGuard};

use super::TestDb;
use crate::error::Result;

/// The server has one `failCommand` fail point; tests of a process take turns with it.
static FAIL_POINT: Mutex<()> = Mutex::const_new(());

/// A `failCommand` fail point configuration.
///
/// ```no_run
/// # async fn demo(db: &mongrove::testkit::TestDb) -> mongrove::Result<()> {
/// use mongrove::testkit::FailCommand;
/// let _guard = db
///     .fail_point(FailCommand::transient(["insert"]).times(1))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailCommand {
    commands: Vec<String>,
    times: Option<u32>,
    skip: Option<u32>,
    probability: Option<f64>,
    error_code: Option<i32>,
    error_labels: Option<Vec<String>>,
    close_connection: bool,
    block: Option<Duration>,
    write_concern_error: Option<Document>,
}

impl FailCommand {
    /// Fails the named commands (`"insert"`, `"commitTransaction"`, ...), every time until
    /// told otherwise with [`FailCommand::times`].
    pub fn new<S: Into<String>>(commands: impl IntoIterator<Item = S>) -> Self {
        FailCommand {
            commands: commands.into_iter().map(Into::into).collect(),
            times: None,
            skip: None,
            probability: None,
            error_code: None,
            error_labels: None,
            close_connection: false,
            block: None,
            write_concern_error: None,
        }
    }

    /// Fails the named commands as a write conflict does inside a transaction: error 112
    /// (`WriteConflict`) labelled `TransientTransactionError`, which the transaction scope
    /// answers by running the closure again. Combine with [`FailCommand::times`].
    ///
    /// ```
    /// use mongrove::testkit::FailCommand;
    /// let once = FailCommand::transient(["commitTransaction"]).times(1);
    /// # let _ = once;
    /// ```
    pub fn transient<S: Into<String>>(commands: impl IntoIterator<Item = S>) -> Self {
        FailCommand::new(commands)
            .error_code(112)
            .error_labels(["TransientTransactionError"])
    }

    /// Fails only the next `times` matching commands.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Lets the first `skip` matching commands through and fails every one after them, until
    /// the guard is dropped (instead of `times` and `probability`).
    pub fn skip(mut self, skip: u32) -> Self {
        self.skip = Some(skip);
        self
    }

    /// Fails each matching command with this probability (0 to 1) instead of always, for
    /// faults injected at random.
    pub fn probability(mut self, probability: f64) -> Self {
        self.probability = Some(probability.clamp(0.0, 1.0));
        self
    }

    /// The server error code to reply with (for example 112, WriteConflict).
    pub fn error_code(mut self, code: i32) -> Self {
        self.error_code = Some(code);
        self
    }

    /// Error labels to attach (for example `TransientTransactionError`).
    pub fn error_labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.error_labels = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// Closes the connection instead of replying (a network error).
    pub fn close_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// Holds the command this long before it runs (or fails).
    pub fn block_for(mut self, duration: Duration) -> Self {
        self.block = Some(duration);
        self
    }

    /// Replies with this write concern error.
    pub fn write_concern_error(mut self, error: Document) -> Self {
        self.write_concern_error = Some(error);
        self
    }

    fn to_command(&self, app_name: &str) -> Document {
        let mut data = doc! { "failCommands": self.commands.clone(), "appName": app_name };
        if let Some(code) = self.error_code {
            data.insert("errorCode", code);
        }
        if let Some(labels) = &self.error_labels {
            data.insert("errorLabels", labels.clone());
        }
        if self.close_connection {
            data.insert("closeConnection", true);
        }
        if let Some(block) = self.block {
            data.insert("blockConnection", true);
            data.insert(
                "blockTimeMS",
                i64::try_from(block.as_millis()).unwrap_or(i64::MAX),
            );
        }
        if let Some(error) = &self.write_concern_error {
            data.insert("writeConcernError", error.clone());
        }
        let mode = match (self.skip, self.times, self.probability) {
            (Some(skip), ..) => mongodb::bson::Bson::Document(doc! { "skip": i64::from(skip) }),
            (None, Some(times), _) => {
                mongodb::bson::Bson::Document(doc! { "times": i64::from(times) })
            }
            (None, None, Some(p)) => {
                mongodb::bson::Bson::Document(doc! { "activationProbability": p })
            }
            (None, None, None) => mongodb::bson::Bson::String("alwaysOn".into()),
        };
        doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data }
    }
}

/// An active fail point. Switch it off with [`FailPointGuard::off`]; dropping it does the same
/// from a helper thread, so a failing test never leaves the server broken for the next one.
#[must_use = "the fail point is switched off when the guard is dropped"]
pub struct FailPointGuard {
    uri: String,
    client: Client,
    active: bool,
    _turn: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for FailPointGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailPointGuard")
            .field("active", &self.active)
            .finish()
    }
}

const OFF: fn() -> Document = || doc! { "configureFailPoint": "failCommand", "mode": "off" };

impl TestDb {
    /// Configures the server's `failCommand` fail point for this test's client only.
    pub async fn fail_point(&self, fail: FailCommand) -> Result<FailPointGuard> {
        let turn = FAIL_POINT.lock().await;
        let client = self.db().client().clone();
        client
            .database("admin")
            .run_command(fail.to_command(self.app_name()))
            .await?;
        Ok(FailPointGuard {
            uri: self.uri.clone(),
            client,
            active: true,
            _turn: turn,
        })
    }
}

impl FailPointGuard {
    /// Switches the fail point off.
    pub async fn off(mut self) -> Result<()> {
        self.client.database("admin").run_command(OFF()).await?;
        self.active = false;
        Ok(())
    }
}

impl Drop for FailPointGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        // The test's runtime may be the current thread, blocked here: use a runtime and a client
        // of its own on another thread.
        let uri = self.uri.clone();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = Client::with_uri_str(&uri).await.ok()?;
                client.database("admin").run_command(OFF()).await.ok()
            })
        });
        let _ = handle.join();
    }
}
