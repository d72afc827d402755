//! One classification table for every layer: is this outcome a failure of the dependency,
//! and is it worth retrying?
//!
//! The circuit breaker counts failures, the retry layer retries what is retryable, the
//! adaptive limiter and the metrics read the same verdicts, so the four can never disagree
//! about what went wrong. The verdict comes from the gRPC status, read from the response
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

/// Decides the [`Verdict`] of an [`Outcome`].
pub trait Classify: Clone + Send + Sync + 'static {
    /// The verdict on `outcome`.
    fn classify(&self, outcome: Outcome) -> Verdict;
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
    fn trailers_only_responses_carry_their_code_in_the_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(code_in_headers(&h), None);
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(code_in_headers(&h), Some(Code::Unavailable));
    }
}
