//! OpenTelemetry spans for gRPC calls, and W3C trace context across hops.
//!
//! On the server side, [`ServerSpanLayer`] opens the call's SERVER span, named as the
//! OpenTelemetry RPC conventions name it (`phantom.v1.VulnAnalyzer/AnalyzeFindings`), with
//! `rpc.system`, `rpc.service`, `rpc.method` and, once the call ends, `rpc.grpc.status_code`
//! (read from the headers of a trailers-only response, or from the trailers, as
//! [`crate::classify`] reads it). Its parent is the caller's span, taken from the
//! `traceparent` / `tracestate` metadata. On the client side, [`ClientSpanLayer`] opens a
//! CLIENT span per outgoing call, a child of whatever span is current (a handler's, a
//! scan's), and writes it into the outgoing `traceparent`: the callee's server span becomes
//! its child, so one request is one trace across every service it reaches.
//!
//! The spans are `tracing` spans; `tracing-opentelemetry` makes OpenTelemetry spans of them
//! (`otel.name`, `otel.kind` and `otel.status_code` are its special fields). The wire format
//! is the text-map propagator installed globally (`phantom_kit::telemetry` installs the
//! W3C one); with none installed, nothing is read or written and only the spans remain.
//!
//! The server span declares fields the layers below it fill in, so that every log line of
//! the call carries them: `correlation_id` ([`crate::RequestIdLayer`]) and `tenant`
//! ([`crate::TenantLayer`]). Both spans carry `service`: the PHANTOM service whose span it
//! is, which the exporter turns into the span's `service.name` (several services may share
//! one process under `phantom up`).
//!
//! Health checks and reflection (`/grpc.*`) get no span: probes every few seconds would
//! bury the traces that matter.
//!
//! Each call also logs one `api.response` event (server side, INFO) or `external.call`
//! event (client side, DEBUG) with its code and duration; except calls a server refused
//! before any work (RESOURCE_EXHAUSTED: shed or limited; UNAUTHENTICATED), which are counted
//! and written as one `api.rejections` line per [`REJECTIONS_EVERY`] with the count per code
//! (see [`crate::tally`]): a flood of refusals never becomes a flood of logs.

/// How often refused calls are summed up in one `api.rejections` line.
pub const REJECTIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

mod layer;
mod outcome;
mod propagation;
mod service;

pub use layer::{ClientSpanLayer, ServerSpanLayer};
pub use outcome::SpanOutcome;
pub use propagation::{HeaderExtractor, HeaderInjector};
pub use service::{ClientSpan, ResponseFuture, ServerSpan};

/// Whether calls to `path` get spans: not health checks and reflection.
fn traced(path: &str) -> bool {
    !path.starts_with("/grpc.")
}

/// `/phantom.v1.Notifier/Publish` as `("phantom.v1.Notifier", "Publish")`.
fn split_path(path: &str) -> (&str, &str) {
    crate::classify::service_and_method(path)
        .unwrap_or((path.strip_prefix('/').unwrap_or(path), ""))
}

#[cfg(test)]
mod tests;
