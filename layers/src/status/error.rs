use std::{borrow::Cow, time::Duration};

use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::echo::ECHO_MAX_CHARS;
use crate::classify::GrpcClassifier;

/// The `google.rpc.ErrorInfo` domain of every PHANTOM error.
pub const ERROR_DOMAIN: &str = "phantom.security";

// What an error may cost its reader. A status travels in headers (`grpc-message`, and
// `grpc-status-details-bin`, which repeats the message and adds the details, base64-encoded),
// and clients refuse headers past 16 KiB (hyper's and so tonic's default) with an error of
// their own in place of ours. With these bounds a status stays under 8 KiB of headers
// whatever a caller sent.

/// Bytes of a status message at most; a longer one is cut (on a character boundary) and
/// says how long it was.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Field violations a `BadRequest` lists at most; one more says how many were left out.
pub const MAX_VIOLATIONS: usize = 10;

/// Bytes of a violation's field path at most (twice what [`echo`](super::echo) quotes of a
/// value: paths are ours, indexes and map keys are the caller's).
pub const MAX_FIELD_BYTES: usize = 2 * ECHO_MAX_CHARS;

/// Bytes of a violation's description at most: room for an [`echo`](super::echo)ed value and
/// the words around it.
pub const MAX_DESCRIPTION_BYTES: usize = 4 * ECHO_MAX_CHARS;

/// Bytes of fields and descriptions a `BadRequest` lists at most, over all its violations:
/// past it, the rest are counted in the last one.
pub const MAX_BAD_REQUEST_BYTES: usize = 2048;

/// `text` whole when it fits in `max` bytes, otherwise its head (cut on a character boundary)
/// followed by `…` and how long it was, the whole within `max` bytes.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let tail = format!("… ({} bytes)", text.len());
    let mut end = max.saturating_sub(tail.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{tail}", &text[..end]))
}

/// The violations a `BadRequest` lists: at most [`MAX_VIOLATIONS`] within
/// [`MAX_BAD_REQUEST_BYTES`], each cut to its bounds, and then one saying how many more there
/// were.
fn listed(violations: &[FieldViolation]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut listed = Vec::new();
    let mut bytes = 0;
    for v in violations.iter().take(MAX_VIOLATIONS) {
        let field = cut(&v.field, MAX_FIELD_BYTES);
        let description = cut(&v.description, MAX_DESCRIPTION_BYTES);
        bytes += field.len() + description.len();
        if bytes > MAX_BAD_REQUEST_BYTES && !listed.is_empty() {
            break;
        }
        listed.push((field, description));
    }
    let more = violations.len() - listed.len();
    if more > 0 {
        listed.push((
            Cow::Borrowed("…"),
            Cow::Owned(format!("{more} more violations not listed")),
        ));
    }
    listed
}

/// The kinds of failure PHANTOM distinguishes (the original design's exception hierarchy).
/// Each is sent as the `category` metadata of the status's `ErrorInfo`, so clients and
/// dashboards can group failures without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// The caller could not be identified.
    Authentication,
    /// The caller may not do this.
    Authorization,
    /// The request is malformed or names something that does not exist.
    Validation,
    /// The request is well-formed but the system's rules refuse it now.
    BusinessRule,
    /// A service this one depends on failed.
    ExternalService,
    /// The network between this service and another failed.
    Network,
    /// The database failed.
    Database,
    /// A rate limit or a load shedder refused the call.
    RateLimited,
    /// A circuit breaker refused the call.
    CircuitOpen,
    /// The call ran out of time.
    Timeout,
    /// The request tried to do something the security policy forbids (scanning out of scope).
    SecurityViolation,
    /// A fault of this service.
    System,
    /// A file could not be read or written.
    FileSystem,
}

impl Category {
    /// The category's wire name (`RATE_LIMITED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "AUTHENTICATION",
            Self::Authorization => "AUTHORIZATION",
            Self::Validation => "VALIDATION",
            Self::BusinessRule => "BUSINESS_RULE",
            Self::ExternalService => "EXTERNAL_SERVICE",
            Self::Network => "NETWORK",
            Self::Database => "DATABASE",
            Self::RateLimited => "RATE_LIMITED",
            Self::CircuitOpen => "CIRCUIT_OPEN",
            Self::Timeout => "TIMEOUT",
            Self::SecurityViolation => "SECURITY_VIOLATION",
            Self::System => "SYSTEM",
            Self::FileSystem => "FILE_SYSTEM",
        }
    }
}

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

/// Everything a PHANTOM handler or layer can fail with.
///
/// Variants name the caller-visible situation, not the internal cause: a database error and a
/// bug are both [`Error::Internal`] (with their [`Category`]), because the caller can do
/// nothing different about them.
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
    /// The caller could not be identified.
    #[error("{message}")]
    Unauthenticated {
        /// Human-readable explanation.
        message: String,
    },
    /// The caller may not do this; `reason` is a stable machine-readable code.
    #[error("{message}")]
    PermissionDenied {
        /// Stable reason code for `ErrorInfo` ("NOT_AN_ADMIN").
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The request asks for something the security policy forbids.
    #[error("{message}")]
    SecurityViolation {
        /// Stable reason code for `ErrorInfo` ("TARGET_OUT_OF_SCOPE").
        reason: &'static str,
        /// Human-readable explanation naming the offending input and the rule.
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
    /// A circuit breaker refused the call; retry after it.
    #[error("{message}")]
    CircuitOpen {
        /// Human-readable explanation.
        message: String,
        /// When the breaker lets calls through again, if known.
        retry_after: Option<Duration>,
    },
    /// The call ran out of time.
    #[error("{message}")]
    Timeout {
        /// Human-readable explanation.
        message: String,
    },
    /// The call collided with another write: a unique value already taken (`ALREADY_EXISTS`),
    /// or a transaction the database aborted to keep them serializable (`ABORTED`, retryable).
    #[error("{message}")]
    Conflict {
        /// Stable reason code for `ErrorInfo` ("ALREADY_EXISTS", "SERIALIZATION_FAILURE").
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
        /// Whether running the call again may succeed (an aborted transaction).
        retryable: bool,
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
    #[error("internal error ({category:?}): {source}")]
    Internal {
        /// Where it failed.
        category: Category,
        /// Why (logged only).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn describe(violations: &[FieldViolation]) -> String {
    listed(violations)
        .iter()
        .map(|(field, description)| format!("{field}: {description}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// `Ok` when a request had no violation, else [`Error::InvalidArgument`] with them all:
    /// the conversion to a status lists at most [`MAX_VIOLATIONS`] and counts the rest.
    pub fn unless_violated(violations: Vec<FieldViolation>) -> Result<(), Self> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::InvalidArgument(violations))
        }
    }

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

    /// Wraps any error as a [`Category::System`] [`Error::Internal`].
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::internal_in(Category::System, err)
    }

    /// Wraps any error as an [`Error::Internal`] of `category`.
    pub fn internal_in(
        category: Category,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            category,
            source: err.into(),
        }
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::Unauthenticated { .. } => Code::Unauthenticated,
            Self::PermissionDenied { .. } | Self::SecurityViolation { .. } => {
                Code::PermissionDenied
            }
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Unavailable { .. } | Self::CircuitOpen { .. } => Code::Unavailable,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::Conflict {
                retryable: true, ..
            } => Code::Aborted,
            Self::Conflict { .. } => Code::AlreadyExists,
            Self::Internal { .. } => Code::Internal,
        }
    }

    /// The error's category.
    pub fn category(&self) -> Category {
        match self {
            Self::InvalidArgument(_) | Self::NotFound { .. } => Category::Validation,
            Self::Unauthenticated { .. } => Category::Authentication,
            Self::PermissionDenied { .. } => Category::Authorization,
            Self::SecurityViolation { .. } => Category::SecurityViolation,
            Self::FailedPrecondition { .. } => Category::BusinessRule,
            Self::Unavailable { .. } => Category::ExternalService,
            Self::CircuitOpen { .. } => Category::CircuitOpen,
            Self::Timeout { .. } => Category::Timeout,
            Self::ResourceExhausted { .. } => Category::RateLimited,
            Self::Conflict { .. } => Category::Database,
            Self::Internal { category, .. } => *category,
        }
    }

    /// Whether another attempt may succeed: the verdict of the one classification table
    /// ([`crate::classify`]) on this error's code, so errors and layers always agree.
    pub fn retryable(&self) -> bool {
        GrpcClassifier::verdict(self.code()).retryable
    }

    /// What the caller is told: the message for the caller's own mistakes and for
    /// dependency trouble; nothing of the cause for internal faults.
    pub fn user_message(&self) -> String {
        match self {
            Self::Internal { .. } => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::PermissionDenied { reason, .. }
            | Self::SecurityViolation { reason, .. }
            | Self::FailedPrecondition { reason, .. }
            | Self::Conflict { reason, .. } => reason,
            other => other.category().as_str(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        let request_id = crate::request_id::current().map(|c| c.request_id.to_string());
        let mut details = ErrorDetails::new();
        let mut metadata = std::collections::HashMap::from([(
            "category".to_owned(),
            err.category().as_str().to_owned(),
        )]);
        if let Some(id) = &request_id {
            metadata.insert("request_id".to_owned(), id.clone());
        }
        details.set_error_info(err.reason(), ERROR_DOMAIN, metadata);
        match &err {
            Error::InvalidArgument(violations) => {
                details.set_bad_request(
                    listed(violations)
                        .into_iter()
                        .map(|(field, description)| {
                            tonic_types::FieldViolation::new(field, description)
                        })
                        .collect::<Vec<_>>(),
                );
            }
            Error::NotFound { kind, id } => {
                details.set_resource_info(
                    *kind,
                    cut(id, MAX_FIELD_BYTES),
                    "",
                    cut(&err.to_string(), MAX_DESCRIPTION_BYTES),
                );
            }
            Error::SecurityViolation {
                field: Some(field), ..
            } => {
                details.add_bad_request_violation(
                    cut(field, MAX_FIELD_BYTES),
                    cut(&err.to_string(), MAX_DESCRIPTION_BYTES),
                );
            }
            Error::Unavailable {
                retry_after: Some(after),
                ..
            }
            | Error::CircuitOpen {
                retry_after: Some(after),
                ..
            }
            | Error::ResourceExhausted {
                retry_after: Some(after),
                ..
            } => {
                details.set_retry_info(Some(*after));
            }
            Error::Internal { category, source } => {
                // The source may name hosts, paths or queries: log it with the request id, so
                // an operator can find it from what the caller reports.
                tracing::error!(category = category.as_str(), request_id = request_id.as_deref().unwrap_or(""), error = %source, "Internal error");
            }
            _ => {}
        }
        let message = err.user_message();
        let message = if message.len() > MAX_MESSAGE_BYTES {
            let tail = format!("… (message cut from {} bytes)", message.len());
            let mut end = MAX_MESSAGE_BYTES - tail.len();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}{tail}", &message[..end])
        } else {
            message
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
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["category"], "VALIDATION");
    }

    #[test]
    fn internal_errors_do_not_leak_their_source() {
        let status = Status::from(Error::internal_in(
            Category::Database,
            "connection to 10.1.2.3:5432 refused",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(
            status.get_details_error_info().unwrap().metadata["category"],
            "DATABASE"
        );
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

    #[test]
    fn every_category_knows_its_code_and_whether_to_retry() {
        let cases: Vec<(Error, Code, Category, bool)> = vec![
            (
                Error::Unauthenticated {
                    message: "who?".into(),
                },
                Code::Unauthenticated,
                Category::Authentication,
                false,
            ),
            (
                Error::PermissionDenied {
                    reason: "R",
                    message: "no".into(),
                },
                Code::PermissionDenied,
                Category::Authorization,
                false,
            ),
            (
                Error::invalid("f", "bad"),
                Code::InvalidArgument,
                Category::Validation,
                false,
            ),
            (
                Error::FailedPrecondition {
                    reason: "R",
                    message: "m".into(),
                },
                Code::FailedPrecondition,
                Category::BusinessRule,
                false,
            ),
            (
                Error::Unavailable {
                    message: "m".into(),
                    retry_after: None,
                },
                Code::Unavailable,
                Category::ExternalService,
                true,
            ),
            (
                Error::internal_in(Category::Network, "reset"),
                Code::Internal,
                Category::Network,
                false,
            ),
            (
                Error::internal_in(Category::Database, "db"),
                Code::Internal,
                Category::Database,
                false,
            ),
            (
                Error::ResourceExhausted {
                    message: "m".into(),
                    retry_after: None,
                },
                Code::ResourceExhausted,
                Category::RateLimited,
                true,
            ),
            (
                Error::CircuitOpen {
                    message: "m".into(),
                    retry_after: None,
                },
                Code::Unavailable,
                Category::CircuitOpen,
                true,
            ),
            (
                Error::Timeout {
                    message: "m".into(),
                },
                Code::DeadlineExceeded,
                Category::Timeout,
                true,
            ),
            (
                Error::SecurityViolation {
                    reason: "R",
                    message: "m".into(),
                    field: None,
                },
                Code::PermissionDenied,
                Category::SecurityViolation,
                false,
            ),
            (
                Error::internal("bug"),
                Code::Internal,
                Category::System,
                false,
            ),
            (
                Error::internal_in(Category::FileSystem, "disk"),
                Code::Internal,
                Category::FileSystem,
                false,
            ),
        ];
        for (err, code, category, retryable) in cases {
            assert_eq!(
                (err.code(), err.category(), err.retryable()),
                (code, category, retryable),
                "{err:?}"
            );
            let status = Status::from(err);
            assert_eq!(
                status.get_details_error_info().unwrap().metadata["category"],
                category.as_str()
            );
        }
    }

    /// Bytes of every header of `status` as sent.
    fn header_bytes(status: Status) -> usize {
        let res = status.into_http::<tonic::body::Body>();
        res.headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum()
    }

    #[test]
    fn a_huge_echoed_value_makes_a_bounded_message() {
        let junk = "CVSS:3.1/AV:N/".to_owned() + &"X".repeat(10_000) + "é";
        let status = Status::from(Error::FailedPrecondition {
            reason: "R",
            message: format!("cannot score {junk}"),
        });
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES,
            "message of {} bytes",
            status.message().len()
        );
        assert!(
            status
                .message()
                .ends_with("… (message cut from 10029 bytes)"),
            "{}",
            status.message()
        );
        assert!(
            status
                .message()
                .starts_with("cannot score CVSS:3.1/AV:N/XXX")
        );
        assert!(header_bytes(status) < 8 * 1024);
        // Cut on a character boundary, however wide the characters.
        let wide = Status::from(Error::FailedPrecondition {
            reason: "R",
            message: "é€😀".repeat(5_000),
        });
        assert!(wide.message().len() <= MAX_MESSAGE_BYTES);
        assert!(header_bytes(wide) < 8 * 1024);
    }

    #[test]
    fn bad_request_lists_a_bounded_number_of_bounded_violations() {
        let violations = (0..1000)
            .map(|i| {
                FieldViolation::new(
                    format!("targets[{i}]{}", "f".repeat(10_000)),
                    "d".repeat(10_000),
                )
            })
            .collect();
        let status = Status::from(Error::InvalidArgument(violations));
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES,
            "message of {} bytes",
            status.message().len()
        );
        let bad = status.get_details_bad_request().expect("BadRequest");
        let last = bad.field_violations.last().unwrap();
        let listed = bad.field_violations.len() - 1;
        assert!((1..=MAX_VIOLATIONS).contains(&listed), "{listed} listed");
        assert!(
            last.description == format!("{} more violations not listed", 1000 - listed),
            "{last:?}"
        );
        for v in &bad.field_violations[..listed] {
            assert!(
                v.field.len() <= MAX_FIELD_BYTES && v.description.len() <= MAX_DESCRIPTION_BYTES,
                "{} / {} bytes",
                v.field.len(),
                v.description.len()
            );
            assert!(
                v.description.ends_with("… (10000 bytes)"),
                "{}",
                v.description
            );
        }
        assert!(header_bytes(status) < 8 * 1024);

        // Short violations: ten listed, and one saying how many more.
        let short = (0..25)
            .map(|i| FieldViolation::new(format!("targets[{i}]"), "bad"))
            .collect();
        let bad = Status::from(Error::InvalidArgument(short))
            .get_details_bad_request()
            .unwrap();
        assert_eq!(bad.field_violations.len(), MAX_VIOLATIONS + 1);
        assert_eq!(bad.field_violations[9].field, "targets[9]");
        assert_eq!(
            bad.field_violations[10].description,
            "15 more violations not listed"
        );
    }

    #[test]
    fn not_found_does_not_echo_a_huge_id() {
        let status = Status::from(Error::not_found("scan", "x".repeat(4_000_000)));
        assert!(header_bytes(status) < 8 * 1024);
    }
}
