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

pub use echo::{ECHO_MAX_CHARS, echo};
pub use error::{
    Category, ERROR_DOMAIN, Error, FieldViolation, MAX_BAD_REQUEST_BYTES, MAX_DESCRIPTION_BYTES,
    MAX_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_VIOLATIONS,
};
