//! Ends a call's span with its gRPC status, and logs the call.

use std::sync::Arc;

use tokio::time::Instant;
use tonic::Code;
use tracing::Span;

use crate::{
    classify::{OnOutcome, Outcome},
    tally::Tally,
};

/// Which side of the call a span is.
#[derive(Debug, Clone)]
enum Side {
    /// A call this server serves: `rejected` counts the calls refused before any work.
    Server {
        service: &'static str,
        rejected: Arc<Tally>,
    },
    Client,
}

/// Records how a call ended on its span (`rpc.grpc.status_code`, `otel.status_code`) and
/// logs it with its duration; the span ends when the last handle to it, this one, drops.
#[derive(Debug)]
pub struct SpanOutcome {
    span: Span,
    side: Side,
    started: Instant,
}

impl SpanOutcome {
    pub(super) fn server(span: Span, service: &'static str, rejected: Arc<Tally>) -> Self {
        Self {
            span,
            side: Side::Server { service, rejected },
            started: Instant::now(),
        }
    }

    pub(super) fn client(span: Span) -> Self {
        Self {
            span,
            side: Side::Client,
            started: Instant::now(),
        }
    }

    /// Whether the span is an error, as the OpenTelemetry RPC conventions say: for a server,
    /// only codes that are its own fault; for a client, any code but OK.
    fn is_error(&self, code: Code) -> bool {
        match self.side {
            Side::Client => code != Code::Ok,
            Side::Server { .. } => matches!(
                code,
                Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::Unavailable
                    | Code::DataLoss
            ),
        }
    }
}

impl OnOutcome for SpanOutcome {
    fn on_outcome(self, outcome: Outcome) {
        if self.span.is_none() {
            return;
        }
        let (code, error) = match outcome {
            Outcome::Status(code) => {
                self.span.record("rpc.grpc.status_code", code as i64);
                (crate::status::code_name(code), self.is_error(code))
            }
            Outcome::Transport => ("TRANSPORT_ERROR", true),
            // The caller went away: nothing is known of how the call would have ended.
            Outcome::Abandoned => ("ABANDONED", false),
        };
        if error {
            self.span.record("otel.status_code", "error");
        }
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match &self.side {
            // Refused before any work (shed, limited, unauthenticated): counted, and written
            // as one line per interval.
            Side::Server { service, rejected }
                if matches!(
                    outcome,
                    Outcome::Status(Code::ResourceExhausted | Code::Unauthenticated)
                ) =>
            {
                rejected.count(code, |interval, counts| {
                    tracing::info!(
                        event = "api.rejections",
                        service = *service,
                        interval_s = interval.as_secs(),
                        total = counts.values().sum::<u64>(),
                        codes = %crate::tally::render(&counts),
                        "Calls refused before any work, counted over the interval"
                    );
                });
            }
            Side::Server { .. } => tracing::info!(
                parent: &self.span,
                event = "api.response",
                code,
                duration_ms,
                "Call served"
            ),
            Side::Client => tracing::debug!(
                parent: &self.span,
                event = "external.call",
                code,
                duration_ms,
                "Call made"
            ),
        }
    }
}
