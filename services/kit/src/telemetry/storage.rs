//! Database queries and cache operations as log events.

use std::fmt;

use tokio::time::Instant;
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

use super::event;

/// A query or cache operation slower than this is also logged as a `performance` warning.
const SLOW_MS: f64 = 500.0;

/// Logs every database query and cache operation (their `db` and `cache` spans, see
/// the services' repositories, `phantom_storage::Database`, and `cache::CacheManager`) when it ends: a DEBUG event with its
/// duration, and a WARN `performance` event when it was slow. Spans rather than events at
/// each call site, so no query can be forgotten.
#[derive(Debug, Clone, Copy)]
pub(super) struct StorageEvents;

/// What a storage span was, and when it began.
struct Opened {
    kind: &'static str,
    operation: String,
    at: Instant,
}

/// Finds the operation's name among a span's fields.
struct Operation(String);

impl Visit for Operation {
    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "db.operation.name" | "cache.operation") {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

impl<S> Layer<S> for StorageEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let kind = match attrs.metadata().name() {
            "db" => event::DB_QUERY,
            "cache" => event::CACHE,
            _ => return,
        };
        let mut operation = Operation(String::new());
        attrs.record(&mut operation);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened {
                kind,
                operation: operation.0,
                at: Instant::now(),
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(opened) = span.extensions_mut().remove::<Opened>() else {
            return;
        };
        let parent = span.parent().map(|p| p.id());
        let duration_ms = opened.at.elapsed().as_secs_f64() * 1000.0;
        let operation = opened.operation.as_str();
        tracing::debug!(
            parent: parent.clone(),
            event = opened.kind,
            operation,
            duration_ms,
            "Storage operation"
        );
        if duration_ms > SLOW_MS {
            tracing::warn!(
                parent: parent,
                event = event::PERFORMANCE,
                kind = opened.kind,
                operation,
                duration_ms,
                "Slow storage operation"
            );
        }
    }
}
