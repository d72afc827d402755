//! One classification table for every layer: is this outcome a failure of the dependency,
//! and is it worth retrying?
//!
//! The circuit breaker counts failures, the retry layer retries what is retryable, the
//! adaptive limiter and the metrics read the same verdicts, so the four can never disagree
//! about what went wrong. The adaptive concurrency limit asks a second question of the same
//! outcome, [`Load`]: was the dependency overloaded, did it answer normally, or does the
//! answer say nothing about its load? The verdict comes from the gRPC status, read from the response
//! headers (trailers-only responses) or, for a normal response, from the trailers at the end
//! of the body: [`ClassifiedBody`] watches the body and reports once it ends.

mod body;

pub use body::{ClassifiedBody, OnOutcome};

use tonic::Code;

/// What one call's outcome means for the dependency that answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Counts as a failure of the dependency (breaker, adaptive limiter, error rate).
    pub failure: bool,
    /// Another attempt may succeed (for idempotent calls, within the deadline and budget).
    pub retryable: bool,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this gRPC status code.
    Status(Code),
    /// No answer: the connection failed or broke (connect refused, reset, h2 error).
    Transport,
    /// The caller went away before the end (the response or its body was dropped).
    Abandoned,
}

/// What one call's outcome says about the load of whoever answered it: what an adaptive
/// concurrency limit learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Answered normally: its latency measures the dependency's load.
    Served,
    /// Refused or timed out because the dependency (or the way to it) is overloaded: the
    /// limit must shrink, whatever the latency said.
    Overloaded,
    /// Says nothing about load: an error (answered fast, it would read as a fast success
    /// and raise the limit), or a caller that left before the end.
    Unknown,
}

/// Decides the [`Verdict`] of an [`Outcome`].
pub trait Classify: Clone + Send + Sync + 'static {
    /// The verdict on `outcome`.
    fn classify(&self, outcome: Outcome) -> Verdict;

    /// What `outcome` says about the dependency's load; the gRPC table by default.
    fn load(&self, outcome: Outcome) -> Load {
        GrpcClassifier::load(outcome)
    }
}

/// The gRPC table: server-side faults and unavailability are failures, the caller's own
/// mistakes are not (the dependency answered correctly), and only what a second attempt
/// can fix is retryable.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcClassifier;

const fn verdict(failure: bool, retryable: bool) -> Verdict {
    Verdict { failure, retryable }
}

impl GrpcClassifier {
    /// The table itself, for documentation and metrics labels.
    pub const fn verdict(code: Code) -> Verdict {
        match code {
            // The dependency is down or too slow: it failed, try again later.
            Code::Unavailable | Code::DeadlineExceeded => verdict(true, true),
            // The dependency is healthy and protecting itself from *this* caller (a rate limit,
            // load shedding): not its failure (opening a breaker on it would turn one caller's
            // excess into an outage) but worth retrying after its RetryInfo.
            Code::ResourceExhausted => verdict(false, true),
            // It broke while serving: a failure, but the same request would break it again.
            Code::Internal | Code::Unknown | Code::DataLoss => verdict(true, false),
            // A concurrency conflict: the dependency is fine; a fresh attempt can succeed.
            Code::Aborted => verdict(false, true),
            // Success, and the caller's own mistakes or decisions: the dependency is healthy.
            Code::Ok
            | Code::Cancelled
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated => verdict(false, false),
        }
    }

    /// The load table: shedding, unavailability, deadlines and broken connections are
    /// overload; only a success is a latency worth learning from.
    pub const fn load(outcome: Outcome) -> Load {
        match outcome {
            Outcome::Status(Code::Ok) => Load::Served,
            // Shedding and timeouts are how an overloaded server (or the one behind it)
            // answers; a connection that fails or breaks is the same, one level down.
            Outcome::Status(
                Code::ResourceExhausted | Code::Unavailable | Code::DeadlineExceeded,
            )
            | Outcome::Transport => Load::Overloaded,
            // Every other answer is an error, often a fast one (a validation, a lookup that
            // found nothing): counting its latency as a success would raise the limit on
            // errors. The caller leaving says nothing either.
            Outcome::Status(_) | Outcome::Abandoned => Load::Unknown,
        }
    }
}

impl Classify for GrpcClassifier {
    fn classify(&self, outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::Status(code) => Self::verdict(code),
            Outcome::Transport => verdict(true, true),
            // Nothing is known about the dependency; say nothing against it.
            Outcome::Abandoned => verdict(false, false),
        }
    }
}

/// The service and method of a gRPC request path (`/package.Service/Method`), if it is one.
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/').unwrap_or(path).split_once('/')
}

/// The gRPC status code of a response whose status is in its headers (a trailers-only
/// response: errors, mostly), or `None` when it will come in the trailers.
pub fn code_in_headers(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_separates_dependency_faults_from_caller_mistakes() {
        let c = GrpcClassifier;
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Internal] {
            assert!(c.classify(Outcome::Status(code)).failure, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Ok,
        ] {
            let v = c.classify(Outcome::Status(code));
            assert!(!v.failure && !v.retryable, "{code:?}");
        }
        assert!(c.classify(Outcome::Status(Code::Unavailable)).retryable);
        assert!(!c.classify(Outcome::Status(Code::Internal)).retryable);
        assert_eq!(c.classify(Outcome::Transport), verdict(true, true));
        assert_eq!(c.classify(Outcome::Abandoned), verdict(false, false));
    }

    #[test]
    fn only_successes_measure_load_and_overload_answers_shrink_it() {
        let c = GrpcClassifier;
        assert_eq!(c.load(Outcome::Status(Code::Ok)), Load::Served);
        for code in [
            Code::ResourceExhausted,
            Code::Unavailable,
            Code::DeadlineExceeded,
        ] {
            assert_eq!(c.load(Outcome::Status(code)), Load::Overloaded, "{code:?}");
        }
        assert_eq!(c.load(Outcome::Transport), Load::Overloaded);
        // A fast error is not a fast success.
        for code in [Code::Internal, Code::InvalidArgument, Code::NotFound] {
            assert_eq!(c.load(Outcome::Status(code)), Load::Unknown, "{code:?}");
        }
        assert_eq!(c.load(Outcome::Abandoned), Load::Unknown);
    }

    #[test]
    fn trailers_only_responses_carry_their_code_in_the_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(code_in_headers(&h), None);
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(code_in_headers(&h), Some(Code::Unavailable));
    }
}
