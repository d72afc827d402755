use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo` domain of every PHANTOM error.
pub const ERROR_DOMAIN: &str = "phantom.security";

/// One invalid field of a request, reported in a `google.rpc.BadRequest` detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request message (`targets[2]`, `ports`).
    pub field: String,
    /// What is wrong with it, for a human.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`, described by `description`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Everything a PHANTOM handler can fail with.
///
/// Variants name the caller-visible situation, not the internal cause: a database error and a
/// bug are both [`Error::Internal`], because the caller can do nothing different about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist (or belongs to another tenant: the two are not told apart).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Kind of resource ("scan").
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The caller may not do this; `reason` is a stable machine-readable code.
    #[error("{message}")]
    PermissionDenied {
        /// Stable reason code for `ErrorInfo` ("TARGET_OUT_OF_SCOPE").
        reason: &'static str,
        /// Human-readable explanation naming the offending input and rule.
        message: String,
        /// The request field that was refused, if one was.
        field: Option<String>,
    },
    /// The system is not in a state to do this ("nmap is not installed").
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code for `ErrorInfo`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// A dependency is down; retry later.
    #[error("{message}")]
    Unavailable {
        /// Human-readable explanation.
        message: String,
        /// When to retry, if known.
        retry_after: Option<Duration>,
    },
    /// A limit was hit; retry later.
    #[error("{message}")]
    ResourceExhausted {
        /// Human-readable explanation.
        message: String,
        /// When to retry, if known.
        retry_after: Option<Duration>,
    },
    /// Anything the caller cannot act on. The source is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A single-field [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// An [`Error::NotFound`] for `kind` `id`.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Wraps any error as [`Error::Internal`].
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        let mut details = ErrorDetails::new();
        let message = match &err {
            Error::InvalidArgument(violations) => {
                details.set_bad_request(
                    violations
                        .iter()
                        .map(|v| {
                            tonic_types::FieldViolation::new(v.field.clone(), v.description.clone())
                        })
                        .collect::<Vec<_>>(),
                );
                err.to_string()
            }
            Error::NotFound { kind, id } => {
                details.set_resource_info(*kind, id.clone(), "", err.to_string());
                err.to_string()
            }
            Error::PermissionDenied { reason, field, .. } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                if let Some(field) = field {
                    details.add_bad_request_violation(field.clone(), err.to_string());
                }
                err.to_string()
            }
            Error::FailedPrecondition { reason, .. } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                err.to_string()
            }
            Error::Unavailable { retry_after, .. }
            | Error::ResourceExhausted { retry_after, .. } => {
                if let Some(after) = retry_after {
                    details.set_retry_info(Some(*after));
                }
                err.to_string()
            }
            Error::Internal(source) => {
                // The source may name hosts, paths or queries: log it, send a generic message.
                tracing::error!(error = %source, "Internal error");
                "internal error".to_owned()
            }
        };
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_bad_request_naming_the_field() {
        let status = Status::from(Error::invalid("targets", "at least one target is required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status
            .get_details_bad_request()
            .expect("BadRequest detail present");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "targets");
        assert!(status.message().contains("at least one target"));
    }

    #[test]
    fn internal_errors_do_not_leak_their_source() {
        let status = Status::from(Error::internal("connection to 10.1.2.3:5432 refused"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn unavailable_carries_retry_info() {
        let status = Status::from(Error::Unavailable {
            message: "analyzer down".into(),
            retry_after: Some(Duration::from_secs(3)),
        });
        let info = status.get_details_retry_info().expect("RetryInfo present");
        assert_eq!(info.retry_delay, Some(Duration::from_secs(3)));
    }
}
