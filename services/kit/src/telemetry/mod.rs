//! Telemetry: structured logs (text for terminals, JSON lines for collectors) and
//! OpenTelemetry traces exported over OTLP/gRPC.
//!
//! # Layout
//! - [`otel`](self::otel): the tracer provider: W3C propagation, parent-based ratio sampling,
//!   a batch exporter that never holds up a request, and `service.name` per span.
//! - `format`: the log line formats; JSON lines carry `trace_id`, `span_id` and the fields
//!   of every span in scope (`correlation_id`, `service`, `tenant`, `scan_id`, ...).
//! - `redact`: what keeps secrets out of every log line: [`Secrets`], the list the binary
//!   fills from its configuration and hands to the log writer and the services, and
//!   [`scrub_patterns`], what needs no list.
//! - `storage`: database queries and cache operations logged as they end.
//!
//! # Event kinds
//! Events say what they are in an `event` field ([`event`] has the names), so a collector
//! can select them; [`AUDIT`] and [`SECURITY`] events also have their own *targets*, so that
//! a filter (`PHANTOM_LOG=warn,audit=info`) or a collector can route them apart.

mod format;
pub mod otel;
mod redact;
mod storage;
mod writer;

use std::{collections::HashMap, io::IsTerminal};

use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, fmt, fmt::MakeWriter, prelude::*,
};

pub use redact::{Redacting, Secrets, scrub_patterns};
pub use writer::{LogDrops, LogGuard};

use phantom_layers::registry::Registry;

use crate::config::{LogFormat, TelemetryConfig};

/// Target of audit events: who did what (a scan created, cancelled).
pub const AUDIT: &str = "audit";
/// Target of security events: what was refused for safety (a target out of scope, an
/// origin not allowed).
pub const SECURITY: &str = "security";

/// The values of the `event` field.
pub mod event {
    /// A call served, with its code and duration (the shared server stack logs it).
    pub const API_RESPONSE: &str = "api.response";
    /// A database query ended (DEBUG), with its duration.
    pub const DB_QUERY: &str = "db.query";
    /// A cache operation ended (DEBUG), with its duration.
    pub const CACHE: &str = "cache";
    /// A call to something outside the service (another service, the LLM).
    pub const EXTERNAL_CALL: &str = "external.call";
    /// A scan's life: created, started, finished.
    pub const SCAN: &str = "scan";
    /// A finding rated HIGH or CRITICAL.
    pub const VULNERABILITY: &str = "vulnerability.found";
    /// Something was slow (a query or cache operation past half a second).
    pub const PERFORMANCE: &str = "performance";
    /// The process's own life: listening, ready, stopping.
    pub const SYSTEM: &str = "system";
}

/// Installs the global subscriber, logging to stderr. Calling it again (tests) is harmless.
///
/// Logs go to stderr: stdout belongs to what the user asked for (`phantom up`'s summary,
/// `phantom scan --output json`). They are written by a thread of their own, off the request
/// path, from a bounded queue that drops (and counts) lines rather than wait (see
/// `writer.rs`); keep the returned [`LogGuard`] until the process ends, so the last lines
/// are written. Must run inside the Tokio runtime when `otlp_endpoint` is set (the
/// exporter's channel lives there).
///
/// `services` are the names of the services this process runs: each one's spans are
/// exported under its own `service.name`.
///
/// Every line is scrubbed of `secrets` (the binary fills them from its configuration, and
/// hands the same [`Secrets`] to its services) and of what [`scrub_patterns`] recognizes.
///
/// Returns the process's registry, where telemetry counts the spans it exported and the log
/// lines it dropped: hand it to the services of this process ([`crate::Context::new`]).
pub fn init(
    config: &TelemetryConfig,
    services: &[&'static str],
    secrets: &Secrets,
) -> (Registry, LogGuard) {
    let format = match config.log_format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    };
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    let (writer, guard, drops) =
        writer::non_blocking(std::io::stderr(), secrets.clone(), config.log_buffer_lines);
    let process = install(config, services, format, ansi, writer);
    process.source("logs", drops);
    (process, guard)
}

/// Installs the global subscriber, logging in `format` (`Auto` is JSON) to `writer`, every
/// line scrubbed of `secrets`, synchronously. For embedding and tests; [`init`] is what the
/// binary calls. Returns the process's registry (see [`init`]).
pub fn init_with_writer<W>(
    config: &TelemetryConfig,
    services: &[&'static str],
    secrets: &Secrets,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Registry
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(
        config,
        services,
        format,
        ansi,
        Redacting::new(writer, secrets.clone()),
    )
}

/// Installs the global subscriber (once per process), logging to `writer` as it is.
fn install<W>(
    config: &TelemetryConfig,
    services: &[&'static str],
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Registry
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (tracer, process) = otel::install(config, services);
    // Only our own spans become OpenTelemetry spans: not events (they are logs, and go to the
    // log pipeline, scrubbed), and not the HTTP/2 internals of the exporter's own calls.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("phantom")
        }));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(traces)
        .with(storage::StorageEvents);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .fmt_fields(format::TextFields)
                    .with_target(false)
                    .with_writer(writer)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json | LogFormat::Auto => registry
            .with(format::SpanFieldsLayer)
            .with(
                fmt::layer()
                    .fmt_fields(format::NoFields)
                    .event_format(format::JsonLines)
                    .with_writer(writer),
            )
            .try_init(),
    };
    process
}

/// The W3C `traceparent` of the current span (empty when there is none), for work that
/// runs later and elsewhere on its behalf: a scan runs after its CreateScan returned, on
/// whichever replica claims it. [`continue_trace`] picks it up.
pub fn trace_context() -> String {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent").unwrap_or_default()
}

/// Makes `span` (just created, not yet entered) a child of the span `traceparent` names.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if cx.span().span_context().is_valid() {
        // Only fails without an OpenTelemetry layer, where there is no trace to continue.
        let _ = span.set_parent(cx);
    }
}

/// Sends the spans finished so far to the collector, waiting a few seconds at most. Servers
/// call it as they stop, so the last calls' spans are not lost with the process.
pub fn flush() {
    otel::flush();
}
