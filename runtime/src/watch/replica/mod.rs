//! A copy of another collection, kept by applying its change events in version order.
//!
//! This file holds the [`Replica`] and its apply logic: which events are due, held back or
//! stale, and releasing held events when their turn comes. `write.rs` writes a due event to the
//! copy; `state.rs` keeps what must survive a restart (tombstones and held events) in the state
//! collection.

mod state;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};

use mongodb::Collection;
use mongodb::bson::{self, Bson, Document, doc};

use crate::error::{Error, Result};
use crate::model::{Model, Versioned};
use crate::repo::Repo;
use crate::watch::{Change, ChangeKind};

/// What [`Replica::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaOutcome {
    /// The event was written to the copy, and after it `released` events that had been held
    /// back for this document became due and were written too.
    Applied {
        /// Held-back events written after this one.
        released: usize,
    },
    /// The event came early (the copy is more than one version behind it, or does not have the
    /// document yet): it is kept in memory and written when its turn comes.
    HeldBack,
    /// The copy already has this version or a later one (a redelivered or overtaken event):
    /// nothing was written.
    Stale,
    /// Not a document event (drop, rename, invalidate, ...): nothing to apply.
    Ignored,
}

/// Keeps a copy of another collection of versioned documents (`#[model(version = "...")]`), fed
/// by the source's change events — typically from a [`Consumer`](super::Consumer) watching the
/// source, with the copy in another database or another service.
///
/// An event is applied only when the copy's version of the document is the event's version
/// minus one; an event that comes early is held back until the versions before it have been
/// applied; an event at or below the copy's version is stale and dropped. So events may arrive
/// late, twice or out of order (at-least-once delivery, several streams) and the copy still ends
/// identical to the source, versions included. Writes go to the copy verbatim (the source's
/// bytes, through the driver's collection): no hooks, no version bookkeeping of its own.
///
/// - Inserts and replacements carry the whole document. Updates are applied from their update
///   description (`$set` / `$unset`, truncated arrays), and must carry the new version, which
///   every mongrove update does; an update made outside mongrove that left the version alone
///   gives [`Error::Decode`] naming the version field.
/// - Deletes are ordered by the version of their pre-image when the stream asks for pre-images
///   ([`Watch::full_document_before_change`](super::Watch::full_document_before_change));
///   without one a delete is applied at once.
/// - **What survives a restart.** The ids of the documents it deleted (tombstones, so that a
///   late or repeated event cannot bring a deleted document back: ids are not reused after a
///   delete) and the held-back events ([`Replica::pending`]) are kept in memory *and* in a side
///   collection of the copy's database, `<collection>_replica_state` (see
///   [`Replica::state_collection`]): a tombstone is written before the document is deleted, and
///   a held event before [`Replica::apply`] returns, so before a consumer records its token. A
///   new `Replica` on the same target loads the held events on its first `apply` (and writes
///   those that became due), and looks a tombstone up whenever the copy lacks a document. So
///   events delivered again after a restart — a delete, the events before it, late ones — are
///   stale, held or applied exactly as they would have been without the restart, and
///   [`Replica::pending`] returns to 0. A change stream of one collection delivers each
///   document's events in version order, so with one source events are only held when a
///   consumer re-delivers or merges streams.
///
/// `Replica::new` needs a versioned model ([`Versioned`](crate::Versioned)); for another one it
/// does not compile.
pub struct Replica<M: Model> {
    target: Repo<M>,
    held: HashMap<Vec<u8>, BTreeMap<i64, Change<M>>>,
    deleted: HashSet<Vec<u8>>,
    /// Tombstones `{ _id: { deleted: <id> }, version, deletedAt }` and held events
    /// `{ _id: { held: <id>, version }, event, heldAt }`.
    state: Collection<Document>,
    /// Whether the held events of an earlier run have been read from `state`.
    loaded: bool,
}

impl<M: Model> std::fmt::Debug for Replica<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("target", &self.target)
            .field("pending", &self.pending())
            .finish()
    }
}

/// What an event asks of the copy.
enum Step {
    Write,
    Hold,
    Stale,
    /// The copy deleted the document earlier: stale, and remembered.
    Buried,
}

/// How many times a conditional write is re-evaluated when another writer moved the copy
/// between the version read and the write.
const RACE_ATTEMPTS: usize = 5;

impl<M: Model> Replica<M> {
    /// A replica writing into `target` (a repository of the copy's database).
    pub fn new(target: Repo<M>) -> Self
    where
        M: Versioned,
    {
        let state = target
            .db()
            .database()
            .collection(&format!("{}_replica_state", target.collection().name()));
        Replica {
            target,
            held: HashMap::new(),
            deleted: HashSet::new(),
            state,
            loaded: false,
        }
    }

    /// Keeps tombstones and held events in `collection` instead of
    /// `<collection>_replica_state` next to the copy. Every `Replica` of the same copy must
    /// use the same one.
    pub fn with_state_collection(mut self, collection: Collection<Document>) -> Self {
        self.state = collection;
        self
    }

    /// Where tombstones and held-back events are kept across restarts.
    pub fn state_collection(&self) -> &Collection<Document> {
        &self.state
    }

    /// The repository the copy is written to.
    pub fn target(&self) -> &Repo<M> {
        &self.target
    }

    /// How many events are held back, waiting for earlier versions.
    pub fn pending(&self) -> usize {
        self.held.values().map(BTreeMap::len).sum()
    }

    /// Forgets the held-back events and the deleted ids in memory. The state collection keeps
    /// them: a new `Replica` finds them again. See [`Replica::reset`] to forget them for good.
    pub fn clear_pending(&mut self) {
        self.held.clear();
        self.deleted.clear();
    }

    /// Forgets the held-back events and the deleted ids, in memory and in the state collection
    /// (for example after rebuilding the copy from a full read).
    pub async fn reset(&mut self) -> Result<()> {
        self.clear_pending();
        self.state
            .delete_many(doc! {})
            .await
            .map_err(|e| self.state_error(e))?;
        self.loaded = true;
        Ok(())
    }

    /// Applies one event of the source collection to the copy, or holds it back, or drops it.
    pub async fn apply(&mut self, change: Change<M>) -> Result<ReplicaOutcome> {
        if !self.loaded {
            self.load().await?;
        }
        let Some(id) = change.id() else {
            return Ok(ReplicaOutcome::Ignored);
        };
        let id = self.id_bson(id)?;
        let key = id_key(&id);
        if self.deleted.contains(&key) {
            return Ok(ReplicaOutcome::Stale);
        }
        let order = self.order(&change, &id)?;
        match self.try_apply(&change, &id, order).await? {
            Step::Stale => Ok(ReplicaOutcome::Stale),
            Step::Buried => {
                self.bury(key, &id).await?;
                Ok(ReplicaOutcome::Stale)
            }
            Step::Hold => {
                let version = order.unwrap_or(i64::MAX);
                // Recorded before `apply` returns, so before the consumer records the event's
                // token: a restart finds it again.
                self.record_held(&id, version, &change).await?;
                let slot = self.held.entry(key).or_default();
                // The same version twice is the same event delivered twice: keep one.
                slot.insert(version, change);
                Ok(ReplicaOutcome::HeldBack)
            }
            Step::Write if matches!(change.kind, ChangeKind::Delete { .. }) => {
                self.bury(key, &id).await?;
                Ok(ReplicaOutcome::Applied { released: 0 })
            }
            Step::Write => {
                let released = self.release(&key, &id).await?;
                Ok(ReplicaOutcome::Applied { released })
            }
        }
    }

    /// Writes the held-back events of one document that have become due.
    async fn release(&mut self, key: &[u8], id: &Bson) -> Result<usize> {
        let mut released = 0;
        loop {
            let local = self.local_version(id).await?;
            let Some(slot) = self.held.get_mut(key) else {
                break;
            };
            let Some((&version, _)) = slot.first_key_value() else {
                self.held.remove(key);
                break;
            };
            let due = match local {
                Some(local) if version <= local => {
                    slot.remove(&version);
                    self.unhold(id, version).await?;
                    continue;
                }
                Some(local) => version == local + 1,
                None => false,
            };
            if !due {
                break;
            }
            let Some(change) = slot.remove(&version) else {
                break;
            };
            match self.try_apply(&change, id, Some(version)).await? {
                Step::Write if matches!(change.kind, ChangeKind::Delete { .. }) => {
                    self.bury(key.to_vec(), id).await?;
                    return Ok(released + 1);
                }
                Step::Write => {
                    self.unhold(id, version).await?;
                    released += 1;
                }
                Step::Stale => self.unhold(id, version).await?,
                Step::Buried => {
                    self.bury(key.to_vec(), id).await?;
                    return Ok(released);
                }
                Step::Hold => {
                    if let Some(slot) = self.held.get_mut(key) {
                        slot.insert(version, change);
                    }
                    break;
                }
            }
        }
        if self.held.get(key).is_some_and(BTreeMap::is_empty) {
            self.held.remove(key);
        }
        Ok(released)
    }

    /// The version an event brings the document to: the document's for inserts and
    /// replacements, the one an update sets, one past the pre-image's for a delete (`None`
    /// without a pre-image).
    fn order(&self, change: &Change<M>, id: &Bson) -> Result<Option<i64>> {
        match &change.kind {
            ChangeKind::Insert { document, .. } | ChangeKind::Replace { document, .. } => {
                Ok(Some(document.version().unwrap_or(0)))
            }
            ChangeKind::Update { .. } => match change.version() {
                Some(version) => Ok(Some(version)),
                None => Err(Error::Decode {
                    collection: M::COLLECTION.to_owned(),
                    id: Some(id.clone().into()),
                    field: M::VERSION_FIELD.unwrap_or("version").to_owned(),
                    reason: "the update event does not set the version, so it cannot be put in \
                             order; write to the source through mongrove, or bump the version in \
                             the update"
                        .to_owned(),
                }),
            },
            ChangeKind::Delete { before, .. } => Ok(before
                .as_ref()
                .map(|before| before.version().unwrap_or(0).saturating_add(1))),
            _ => Ok(None),
        }
    }

    fn id_bson(&self, id: &M::Id) -> Result<Bson> {
        crate::value::to_bson(id).map_err(|e| Error::Encode {
            collection: M::COLLECTION.to_owned(),
            what: "the _id".to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Whether an event is due, early or stale, given the copy's version and the event's.
fn decide<M: Model>(kind: &ChangeKind<M>, local: Option<i64>, order: Option<i64>) -> Step {
    match (kind, local, order) {
        (ChangeKind::Insert { .. }, None, _) => Step::Write,
        // Without its version a delete cannot wait for its turn; with it, a missing document
        // has not been inserted yet (a deleted one is caught earlier, by its id).
        (ChangeKind::Delete { .. }, None, None) => Step::Stale,
        (ChangeKind::Delete { .. }, Some(_), None) => Step::Write,
        (_, None, _) => Step::Hold,
        (_, Some(_), None) => Step::Stale,
        (_, Some(local), Some(version)) if version <= local => Step::Stale,
        (_, Some(local), Some(version)) if version == local + 1 => Step::Write,
        _ => Step::Hold,
    }
}

/// A hashable key for an `_id` of any BSON type.
fn id_key(id: &Bson) -> Vec<u8> {
    // The BSON bytes of `{ "": id }`: equal ids give equal bytes.
    let mut wrapper = Document::new();
    wrapper.insert("", id.clone());
    bson::to_vec(&wrapper).unwrap_or_else(|_| format!("{id:?}").into_bytes())
}
