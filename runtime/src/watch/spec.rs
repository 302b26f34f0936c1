//! The stream spec: what a subscription asks the server for — the operations, the filter, the
//! collections of a database stream, extra stages, the full-document modes and the start point —
//! the builder setters that fill it in, and the `$match` stages it becomes.
//!
//! Kept apart from the repository (and from the open stream) so that a
//! [`Consumer`](super::Consumer) can open the same subscription again and again.

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ChangeStreamOptions;

use super::Operation;
use crate::error::{Error, Result};
use crate::query::EncodeProblem;

/// What a subscription asks the server for. Filled in by the setters of
/// [`Watch`](super::Watch) and [`WatchDb`](super::WatchDb); turned into stages here and into an
/// open stream by [`EventStream::open`](super::stream::EventStream::open).
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    pub(super) operations: Option<Vec<Operation>>,
    pub(super) filter: Option<Result<Document, EncodeProblem>>,
    pub(super) collections: Option<Vec<String>>,
    pub(super) pipeline: Vec<Document>,
    pub(super) options: ChangeStreamOptions,
}

const LIFECYCLE: [&str; 4] = ["drop", "rename", "dropDatabase", "invalidate"];

impl Spec {
    /// The stages after `$changeStream`. Lifecycle events always pass, so a stream never ends
    /// without saying why.
    pub(super) fn stages(&self, label: &str) -> Result<Vec<Document>> {
        let mut stages = Vec::new();
        if let Some(operations) = &self.operations {
            let mut names: Vec<&str> = operations.iter().filter_map(|o| o.server_name()).collect();
            for name in LIFECYCLE {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            stages.push(doc! { "$match": { "operationType": { "$in": names } } });
        }
        if let Some(collections) = &self.collections {
            stages.push(doc! { "$match": { "$or": [
                { "ns.coll": { "$in": collections.clone() } },
                { "operationType": { "$in": ["dropDatabase", "invalidate"] } },
            ] } });
        }
        if let Some(filter) = &self.filter {
            let filter = filter.clone().map_err(|p| Error::Encode {
                collection: label.to_owned(),
                what: p.what,
                reason: p.reason,
            })?;
            let mut deleted = prefixed("fullDocumentBeforeChange", &filter);
            deleted.insert("operationType", "delete");
            stages.push(doc! { "$match": { "$or": [
                { "operationType": { "$in": LIFECYCLE.to_vec() } },
                prefixed("fullDocument", &filter),
                deleted,
            ] } });
        }
        stages.extend(self.pipeline.iter().cloned());
        Ok(stages)
    }
}

/// Rewrites a filter on a model's documents into one on `prefix.<path>` of change events.
fn prefixed(prefix: &str, filter: &Document) -> Document {
    let mut out = Document::new();
    for (key, value) in filter {
        if key.starts_with('$') {
            let value = match (key.as_str(), value) {
                ("$and" | "$or" | "$nor", Bson::Array(items)) => Bson::Array(
                    items
                        .iter()
                        .map(|item| match item {
                            Bson::Document(sub) => Bson::Document(prefixed(prefix, sub)),
                            other => other.clone(),
                        })
                        .collect(),
                ),
                // `$expr`, `$comment`, ...: the caller's business; left as written.
                _ => value.clone(),
            };
            out.insert(key.clone(), value);
        } else {
            out.insert(format!("{prefix}.{key}"), value.clone());
        }
    }
    out
}

/// Setters shared by [`Watch`](super::Watch) and [`WatchDb`](super::WatchDb).
//
// A macro rather than a function or a generic type: the setters must be inherent
// methods of both builders, so that `repo.watch().operations(..)` needs no trait in scope and
// each builder keeps its own return type; a shared trait or a generic builder would change the
// public types. The expansion names `Operation`, `Document`, `FullDocumentType`,
// `FullDocumentBeforeChangeType`, `Timestamp`, `ResumeToken` and `Duration` as imported where
// it is used, and fills in the builder's `spec` field.
macro_rules! common_setters {
    () => {
        /// Only these kinds of events (lifecycle events — drop, rename, drop database,
        /// invalidate — always pass, so that the end of a stream is never silent).
        pub fn operations(mut self, operations: impl IntoIterator<Item = Operation>) -> Self {
            self.spec.operations = Some(operations.into_iter().collect());
            self
        }

        /// Aggregation stages appended after mongrove's own `$match` stages. Do not remove
        /// `_id`, `operationType` or `ns`: resuming needs them.
        pub fn pipeline(mut self, stages: impl IntoIterator<Item = Document>) -> Self {
            self.spec.pipeline.extend(stages);
            self
        }

        /// What update events carry as the document after the change: `UpdateLookup` (the
        /// current document, looked up when the event is sent), or `WhenAvailable` / `Required`
        /// (the post-image recorded with the change; see
        /// [`Repo::enable_pre_and_post_images`](crate::Repo::enable_pre_and_post_images)).
        /// Without it, updates carry only what changed.
        pub fn full_document(mut self, mode: FullDocumentType) -> Self {
            self.spec.options.full_document = Some(mode);
            self
        }

        /// Whether update, replace and delete events carry the document as it was before:
        /// `WhenAvailable` or `Required` (needs
        /// [`Repo::enable_pre_and_post_images`](crate::Repo::enable_pre_and_post_images)).
        pub fn full_document_before_change(mut self, mode: FullDocumentBeforeChangeType) -> Self {
            self.spec.options.full_document_before_change = Some(mode);
            self
        }

        /// Starts with the changes committed at or after this cluster time (for example a
        /// session's `operation_time()`).
        pub fn start_at_operation_time(mut self, time: Timestamp) -> Self {
            self.spec.options.start_at_operation_time = Some(time);
            self
        }

        /// Continues after the event with this token (which must not be an invalidate event's).
        pub fn resume_after(mut self, token: ResumeToken) -> Self {
            self.spec.options.resume_after = Some(token);
            self
        }

        /// Continues after the event with this token; unlike [`Self::resume_after`], the token
        /// may be an invalidate event's, to follow a collection that was dropped and created
        /// again.
        pub fn start_after(mut self, token: ResumeToken) -> Self {
            self.spec.options.start_after = Some(token);
            self
        }

        /// How many events the server sends per round trip (the memory a stream holds).
        pub fn batch_size(mut self, size: u32) -> Self {
            self.spec.options.batch_size = Some(size);
            self
        }

        /// How long the server waits for new events before answering with an empty batch.
        pub fn max_await_time(mut self, wait: Duration) -> Self {
            self.spec.options.max_await_time = Some(wait);
            self
        }
    };
}

pub(super) use common_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_moved_under_the_event_document() {
        let filter = doc! { "total": { "$gte": 10 }, "$or": [{ "status": "new" }, { "a.b": 1 }] };
        assert_eq!(
            prefixed("fullDocument", &filter),
            doc! {
                "fullDocument.total": { "$gte": 10 },
                "$or": [{ "fullDocument.status": "new" }, { "fullDocument.a.b": 1 }],
            }
        );
    }

    #[test]
    fn operation_filters_keep_lifecycle_events() {
        let spec = Spec {
            operations: Some(vec![Operation::Insert, Operation::Drop]),
            ..Spec::default()
        };
        let stages = spec.stages("orders").unwrap();
        assert_eq!(
            stages,
            vec![doc! { "$match": { "operationType": { "$in": [
                "insert", "drop", "rename", "dropDatabase", "invalidate"
            ] } } }]
        );
    }
}
