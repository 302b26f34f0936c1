//! `Db`: a client and a database, handing out repositories.

use std::sync::Arc;

use mongodb::{Client, ClientSession, Database};

use crate::error::Result;
use crate::model::Model;
use crate::repo::Repo;
use crate::session::VersionLedger;

/// A MongoDB database seen through mongrove. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    client: Client,
    database: Database,
    ledger: Arc<VersionLedger>,
    /// Whether the deployment runs transactions, asked once (`hello`) and remembered.
    transactions: Arc<tokio::sync::OnceCell<bool>>,
}

impl Db {
    /// Connects to `uri` (a MongoDB connection string) and uses database `name`.
    pub async fn connect(uri: &str, name: &str) -> Result<Db> {
        let client = Client::with_uri_str(uri).await?;
        Ok(Db::new(client, name))
    }

    /// Uses database `name` of an existing client.
    pub fn new(client: Client, name: &str) -> Db {
        let database = client.database(name);
        Db {
            client,
            database,
            ledger: Arc::default(),
            transactions: Arc::default(),
        }
    }

    /// Database `name` on the same client. The two `Db`s count as one deployment for
    /// transactions: a repository taken from either inside a transaction of the other joins it
    /// (a transaction may span databases of one deployment).
    pub fn with_database(&self, name: &str) -> Db {
        Db {
            client: self.client.clone(),
            database: self.client.database(name),
            ledger: self.ledger.clone(),
            transactions: self.transactions.clone(),
        }
    }

    /// The typed repository of model `M`.
    ///
    /// Inside a transaction scope of this `Db` (or of one made from it with
    /// [`Db::with_database`], or a clone) running on the current task, the repository is bound
    /// to that transaction, exactly as [`Tx::repo`](crate::Tx::repo) would be: a forgotten
    /// session cannot write outside the transaction. Elsewhere it runs without a session.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        Repo::new(self.clone(), crate::transaction::ambient_session(self))
    }

    /// Starts a session, for operations given one with `.session(&mut session)`.
    pub async fn start_session(&self) -> Result<ClientSession> {
        Ok(self.client.start_session().await?)
    }

    /// The driver's client, for anything mongrove does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The driver's database handle.
    pub fn database(&self) -> &Database {
        &self.database
    }

    pub(crate) fn ledger(&self) -> &VersionLedger {
        &self.ledger
    }

    /// Whether `self` and `other` share one client and one ledger: clones, or made from one
    /// another with [`Db::with_database`]. Such `Db`s join each other's transactions.
    pub(crate) fn same_deployment(&self, other: &Db) -> bool {
        Arc::ptr_eq(&self.ledger, &other.ledger)
    }

    /// The remembered answer to "does this deployment run transactions?".
    pub(crate) fn transaction_support(&self) -> &tokio::sync::OnceCell<bool> {
        &self.transactions
    }

    /// The database name.
    pub fn name(&self) -> &str {
        self.database.name()
    }
}
