//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use mongrove::testkit::{self, TestDb};

/// A fresh database on the shared test server. Panics with the test kit's explanation when no
/// server can be had: a test without its server fails, it never passes by skipping.
pub async fn db() -> TestDb {
    spans();
    match testkit::db().await {
        Ok(db) => db,
        Err(e) => panic!("no test server: {e}"),
    }
}

/// The spans mongrove opens, for the tests that check them.
///
/// tracing caches for the whole process, per call site, whether any subscriber listens; a
/// thread-local subscriber races that cache when other tests open the same spans on other
/// threads. So one global recorder is installed before the first test reaches the server, and
/// it keeps the spans of the threads that asked for them.
pub fn spans() -> &'static SpanLog {
    static LOG: OnceLock<Arc<SpanLog>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(SpanLog::default());
        tracing::subscriber::set_global_default(log.clone())
            .expect("no other global subscriber in the test binary");
        log
    })
}

/// Spans as `(name, "field=value ...")`, per recording thread; values recorded after the span
/// opened (an operation's outcome) are appended to its fields.
#[derive(Default)]
pub struct SpanLog {
    threads: Mutex<HashMap<ThreadId, Vec<(String, String)>>>,
    /// Where each recorded span's entry is, for the values recorded later.
    entries: Mutex<HashMap<u64, (ThreadId, usize)>>,
    next: AtomicU64,
}

impl SpanLog {
    /// Records the spans opened on this thread until [`Recording::finish`].
    pub fn record_this_thread(&self) -> Recording<'_> {
        let thread = std::thread::current().id();
        self.threads.lock().unwrap().insert(thread, Vec::new());
        Recording { log: self, thread }
    }
}

/// The spans of one thread, being recorded.
pub struct Recording<'a> {
    log: &'a SpanLog,
    thread: ThreadId,
}

impl Recording<'_> {
    /// Stops recording and returns what was recorded.
    pub fn finish(self) -> Vec<(String, String)> {
        let thread = self.thread;
        self.log
            .entries
            .lock()
            .unwrap()
            .retain(|_, (t, _)| *t != thread);
        self.log
            .threads
            .lock()
            .unwrap()
            .remove(&self.thread)
            .unwrap_or_default()
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for SpanLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let thread = std::thread::current().id();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(spans) = self.threads.lock().unwrap().get_mut(&thread) {
            let mut fields = Fields(String::new());
            span.record(&mut fields);
            spans.push((span.metadata().name().to_owned(), fields.0));
            let entry = (thread, spans.len() - 1);
            self.entries.lock().unwrap().insert(id, entry);
        }
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let Some((thread, index)) = self.entries.lock().unwrap().get(&id.into_u64()).copied()
        else {
            return;
        };
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        if let Some(spans) = self.threads.lock().unwrap().get_mut(&thread)
            && let Some((_, existing)) = spans.get_mut(index)
        {
            existing.push_str(&fields.0);
        }
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
