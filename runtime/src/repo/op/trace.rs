//! One `tracing` span per repository operation, with the OpenTelemetry database fields.
//!
//! Every operation's `IntoFuture` goes through [`traced`], so the span is opened in one place
//! rather than in each operation body. The span is at DEBUG level: with no subscriber, or one
//! that filters DEBUG out, `traced` sees a disabled span and returns the operation's future
//! as it is, without building field values or wrapping it.

use std::future::Future;

use futures_util::future::{BoxFuture, Either};
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use crate::error::{BulkOutcome, Result};
use crate::repo::op::update::UpdateOutcome;

/// Runs `run` inside a DEBUG span named `mongodb` that carries `db.system`, `db.namespace` (the
/// database), `db.collection.name` (unless `collection` is empty) and `db.operation.name`, and records the outcome: the counts
/// `record` takes from a success, or `error.type` (the [`Error::kind`](crate::Error::kind)) on
/// failure.
pub(crate) fn traced<'a, T: Send + 'a>(
    database: &str,
    collection: &str,
    operation: &'static str,
    record: fn(&Span, &T),
    run: impl Future<Output = Result<T>> + Send + 'a,
) -> BoxFuture<'a, Result<T>> {
    let span = tracing::debug_span!(
        "mongodb",
        otel.name = if collection.is_empty() {
            operation.to_owned()
        } else {
            format!("{operation} {collection}")
        },
        otel.kind = "client",
        db.system = "mongodb",
        db.namespace = database,
        db.collection.name = Empty,
        db.operation.name = operation,
        db.response.returned_rows = Empty,
        db.mongodb.matched_count = Empty,
        db.mongodb.modified_count = Empty,
        db.mongodb.inserted_count = Empty,
        db.mongodb.deleted_count = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return Box::pin(run);
    }
    // A database-wide operation (a database change stream) has no collection to name.
    if !collection.is_empty() {
        span.record("db.collection.name", collection);
    }
    // A handle of its own rather than `Span::current()`, which only subscribers that track the
    // current span can answer.
    let outcome = span.clone();
    Box::pin(
        async move {
            let result = run.await;
            let span = outcome;
            match &result {
                Ok(value) => record(&span, value),
                Err(error) => {
                    span.record("error.type", error.kind());
                    span.record("otel.status_code", "ERROR");
                }
            }
            result
        }
        .instrument(span),
    )
}

/// `future` inside `span`, or `future` as it is when the span is disabled (no subscriber
/// listens at its level): a disabled span still costs an enter and an exit at every poll.
pub(crate) fn instrumented<F: Future>(future: F, span: Span) -> Either<Instrumented<F>, F> {
    if span.is_disabled() {
        Either::Right(future)
    } else {
        Either::Left(future.instrument(span))
    }
}

/// Records nothing beyond success.
pub(crate) fn nothing<T>(_: &Span, _: &T) {}

/// Matched and modified counts of an update or replacement.
pub(crate) fn update(span: &Span, outcome: &UpdateOutcome) {
    span.record("db.mongodb.matched_count", outcome.matched);
    span.record("db.mongodb.modified_count", outcome.modified);
}

/// Every count of a bulk write.
pub(crate) fn bulk(span: &Span, outcome: &BulkOutcome) {
    span.record("db.mongodb.inserted_count", outcome.inserted);
    span.record("db.mongodb.matched_count", outcome.matched);
    span.record("db.mongodb.modified_count", outcome.modified);
    span.record("db.mongodb.deleted_count", outcome.deleted);
}

/// How many documents a query returned.
// `&Vec`, not a slice: the recorder's type is `fn(&Span, &Output)` with `Output = Vec<_>`.
#[allow(clippy::ptr_arg)]
pub(crate) fn rows<T>(span: &Span, found: &Vec<T>) {
    span.record("db.response.returned_rows", found.len() as u64);
}

/// Whether a single-document query found one.
pub(crate) fn row<T>(span: &Span, found: &Option<T>) {
    span.record("db.response.returned_rows", u64::from(found.is_some()));
}

/// How many documents an `insert_many` inserted.
// `&Vec`, not a slice: the recorder's type is `fn(&Span, &Output)` with `Output = Vec<_>`.
#[allow(clippy::ptr_arg)]
pub(crate) fn inserted<T>(span: &Span, ids: &Vec<T>) {
    span.record("db.mongodb.inserted_count", ids.len() as u64);
}

/// How many documents a `delete_many` deleted.
pub(crate) fn deleted(span: &Span, count: &u64) {
    span.record("db.mongodb.deleted_count", *count);
}
