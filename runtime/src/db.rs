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
        }
    }

    /// The typed repository of model `M`.
    pub fn repo<M: Model>(&self) -> Repo<M> {
        Repo::new(self.clone(), None)
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

    /// The database name.
    pub fn name(&self) -> &str {
        self.database.name()
    }
}
