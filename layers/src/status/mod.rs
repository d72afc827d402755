//! Service errors and their one mapping to the wire.
//!
//! Every PHANTOM service returns [`Error`] from its handlers and converts it with `?` (through
//! `From<Error> for Status`). Codes are chosen here and nowhere else, so that clients, retries
//! and circuit breakers can trust them: `INVALID_ARGUMENT` always carries a `BadRequest` detail
//! naming the field, `UNAVAILABLE` and `RESOURCE_EXHAUSTED` carry `RetryInfo` when the server
//! knows when to come back, and internal detail is logged but never sent to the caller.
//! Whatever a caller sent, a status stays small: messages, violations and their count are
//! bounded (see [`MAX_MESSAGE_BYTES`] and the bounds beside it), and cut values say how long
//! they were.

mod echo;
mod error;

use tonic::Code;

/// Every gRPC status code by its canonical name (`UNAVAILABLE`, as service configs and logs
/// spell it), in code order.
pub const CODE_NAMES: [(Code, &str); 17] = [
    (Code::Ok, "OK"),
    (Code::Cancelled, "CANCELLED"),
    (Code::Unknown, "UNKNOWN"),
    (Code::InvalidArgument, "INVALID_ARGUMENT"),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (Code::NotFound, "NOT_FOUND"),
    (Code::AlreadyExists, "ALREADY_EXISTS"),
    (Code::PermissionDenied, "PERMISSION_DENIED"),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (Code::Aborted, "ABORTED"),
    (Code::OutOfRange, "OUT_OF_RANGE"),
    (Code::Unimplemented, "UNIMPLEMENTED"),
    (Code::Internal, "INTERNAL"),
    (Code::Unavailable, "UNAVAILABLE"),
    (Code::DataLoss, "DATA_LOSS"),
    (Code::Unauthenticated, "UNAUTHENTICATED"),
];

/// The canonical name of `code` (`UNAVAILABLE`).
pub fn code_name(code: Code) -> &'static str {
    CODE_NAMES[code as usize].1
}

pub use echo::{ECHO_MAX_CHARS, echo};
pub use error::{
    Category, ERROR_DOMAIN, Error, FieldViolation, MAX_BAD_REQUEST_BYTES, MAX_DESCRIPTION_BYTES,
    MAX_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_VIOLATIONS,
};

#[cfg(test)]
mod code_name_tests {
    use super::*;

    #[test]
    fn every_code_has_its_name_at_its_own_index() {
        for (i, (code, name)) in CODE_NAMES.iter().enumerate() {
            assert_eq!(*code as usize, i);
            assert_eq!(code_name(*code), *name);
        }
    }
}
