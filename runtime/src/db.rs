//! `Db`: a client and a database, handing out repositories.

use std::any::Any;
use std::sync::Arc;

use mongodb::{Client, ClientSession, Collection, Database};

use mongodb::bson::{Bson, RawDocumentBuf, doc};

use crate::error::{Error, Result};

/// A MongoDB database seen through mongrove. Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// # use mongrove::{Db, Model};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Model)]
/// # #[model(collection = "orders", version = "version")]
/// # struct Order {
/// #     #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
/// #     id: Option<mongrove::bson::oid::ObjectId>,
/// #     customer: String,
/// #     total: i64,
/// #     status: String,
/// #     tags: Vec<String>,
/// #     version: i64,
/// # }
/// # async fn demo() -> mongrove::Result<()> {
/// let db = Db::connect("mongodb://localhost:27017/?replicaSet=rs0", "shop").await?;
/// if !db.supports_transactions().await? {
///     eprintln!("a standalone server: transactions will fail");
/// }
/// let orders = db.repo::<Order>();
/// let open = orders.count(Order::fields().status.eq("new")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Db {
    client: Client,
    database: Database,
    /// What `hello` says about the deployment, asked once and remembered.
    hello: Arc<tokio::sync::OnceCell<Hello>>,
    /// The per-collection batchers of repositories from this `Db`, when batching is on
    /// ([`Db::with_batching`]).
    batching: Option<Arc<Batching>>,
    /// The collection handles of this database that repositories have used, made once: a
    /// handle copies the database's name and options into an allocation of its own.
    collections: Arc<std::sync::Mutex<Vec<Handle>>>,
}

/// A collection's name (a model's constant) and its handle.
type Handle = (&'static str, Collection<RawDocumentBuf>);

/// The most calls one batch carries; the rest wait for the next one.
pub const MAX_BATCH: usize = 256;

/// The batchers of a `Db` with batching on, one per database and collection. Type-erased here
/// because the batcher belongs to the repository layer above.
#[derive(Default)]
pub(crate) struct Batching {
    pub(crate) limit: usize,
    #[allow(clippy::type_complexity)]
    batchers: std::sync::Mutex<Vec<(String, &'static str, Arc<dyn Any + Send + Sync>)>>,
}

impl Batching {
    /// The batcher of `collection` in `database`, made by `make` the first time.
    pub(crate) fn get_or_insert(
        &self,
        database: &str,
        collection: &'static str,
        make: impl FnOnce() -> Arc<dyn Any + Send + Sync>,
    ) -> Arc<dyn Any + Send + Sync> {
        let mut batchers = self.batchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, batcher)) = batchers
            .iter()
            .find(|(d, c, _)| d == database && *c == collection)
        {
            return batcher.clone();
        }
        let batcher = make();
        batchers.push((database.to_owned(), collection, batcher.clone()));
        batcher
    }
}

impl std::fmt::Debug for Batching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batching")
            .field("limit", &self.limit)
            .finish()
    }
}

/// The facts of the deployment mongrove needs, from one `hello`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hello {
    pub(crate) transactions: bool,
    pub(crate) limits: ServerLimits,
}

/// The server's size limits for writes, from `hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServerLimits {
    /// `maxBsonObjectSize`: the largest document (16 MiB by default).
    pub(crate) max_bson_object_size: usize,
    /// `maxWriteBatchSize`: the most writes in one command (100,000 by default).
    pub(crate) max_write_batch_size: usize,
    /// `maxMessageSizeBytes`: the largest message on the wire (48,000,000 by default).
    pub(crate) max_message_size: usize,
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
            hello: Arc::default(),
            batching: None,
            collections: Arc::default(),
        }
    }

    /// Database `name` on the same client. The two `Db`s count as one deployment for
    /// transactions: a repository taken from either inside a transaction of the other joins it
    /// (a transaction may span databases of one deployment).
    pub fn with_database(&self, name: &str) -> Db {
        Db {
            client: self.client.clone(),
            database: self.client.database(name),
            hello: self.hello.clone(),
            batching: self.batching.clone(),
            collections: Arc::default(),
        }
    }

    /// The same database, with automatic batching for every repository it hands out:
    /// concurrent [`find_by_id`](crate::Repo::find_by_id) calls on one collection go to the
    /// server as one `find({_id: {$in: [...]}})`, concurrent [`insert`](crate::Repo::insert)s
    /// as one unordered `insertMany`, each caller still getting its own document, `None` or
    /// error. A call sent while nothing else is in flight goes at once, alone (no delay is
    /// added); the calls that arrive while it is in flight leave together when it returns, at
    /// most [`MAX_BATCH`](crate::MAX_BATCH) per round trip.
    ///
    /// No batch mixes sessions. Calls in a transaction batch only with calls of the same
    /// transaction attempt, in its session (so they read its own writes), and their inserts
    /// go as one ordered `insertMany`; calls given a session of the caller's own
    /// (`.session(..)`) are never batched. Hooks, validation, versions and timestamps are
    /// applied to each document by its own caller, as without batching.
    pub fn with_batching(&self) -> Db {
        self.with_batching_limit(MAX_BATCH)
    }

    /// [`Db::with_batching`] with at most `limit` calls per batch (at least 1).
    pub fn with_batching_limit(&self, limit: usize) -> Db {
        Db {
            batching: Some(Arc::new(Batching {
                limit: limit.max(1),
                ..Batching::default()
            })),
            ..self.clone()
        }
    }

    /// The batchers of this `Db`, when batching is on.
    /// The handle of collection `name` of this database (a model's collection name).
    pub(crate) fn collection(&self, name: &'static str) -> Collection<RawDocumentBuf> {
        let Ok(mut known) = self.collections.lock() else {
            return self.database.collection(name);
        };
        // Names are the models' constants: the same pointer, short of a name two models share.
        if let Some((_, collection)) = known
            .iter()
            .find(|(known, _)| std::ptr::eq(*known, name) || *known == name)
        {
            return collection.clone();
        }
        let collection = self.database.collection(name);
        known.push((name, collection.clone()));
        collection
    }

    pub(crate) fn batching(&self) -> Option<&Arc<Batching>> {
        self.batching.as_ref()
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

    /// The identity of this `Db`'s lineage: `Db`s made from one another (clones,
    /// [`Db::with_database`]) share it, and so share one client. (A `Db::new` on a clone of the
    /// client starts a lineage of its own; the session layer finds out that it shares the
    /// client when it needs to.)
    pub(crate) fn lineage(&self) -> usize {
        Arc::as_ptr(&self.hello) as usize
    }

    /// Whether `self` and `other` are of one lineage, and so of one client.
    pub(crate) fn same_deployment(&self, other: &Db) -> bool {
        self.lineage() == other.lineage()
    }

    /// What `hello` says, asked once per `Db` (and its clones).
    pub(crate) async fn hello(&self) -> Result<Hello> {
        let hello = self
            .hello
            .get_or_try_init(|| async {
                let reply = self
                    .client
                    .database("admin")
                    .run_command(doc! { "hello": 1 })
                    .await?;
                let replica_set = reply.contains_key("setName");
                let mongos = reply.get_str("msg").is_ok_and(|msg| msg == "isdbgrid");
                let limit = |key: &str, default: usize| {
                    match reply.get(key) {
                        Some(Bson::Int32(n)) => usize::try_from(*n).ok(),
                        Some(Bson::Int64(n)) => usize::try_from(*n).ok(),
                        _ => None,
                    }
                    .filter(|n| *n > 0)
                    .unwrap_or(default)
                };
                Ok::<_, Error>(Hello {
                    transactions: replica_set || mongos,
                    limits: ServerLimits {
                        max_bson_object_size: limit("maxBsonObjectSize", 16 * 1024 * 1024),
                        max_write_batch_size: limit("maxWriteBatchSize", 100_000),
                        max_message_size: limit("maxMessageSizeBytes", 48_000_000),
                    },
                })
            })
            .await?;
        Ok(*hello)
    }

    /// The server's size limits for writes.
    pub(crate) async fn server_limits(&self) -> Result<ServerLimits> {
        Ok(self.hello().await?.limits)
    }

    /// The database name.
    pub fn name(&self) -> &str {
        self.database.name()
    }
}
