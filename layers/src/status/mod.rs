//! Service errors and their one mapping to the wire.
//!
//! Every PHANTOM service returns [`Error`] from its handlers and converts it with `?` (through
//! `From<Error> for Status`). Codes are chosen here and nowhere else, so that clients, retries
//! and circuit breakers can trust them: `INVALID_ARGUMENT` always carries a `BadRequest` detail
//! naming the field, `UNAVAILABLE` and `RESOURCE_EXHAUSTED` carry `RetryInfo` when the server
//! knows when to come back, and internal detail is logged but never sent to the caller.

mod error;

pub use error::{Category, ERROR_DOMAIN, Error, FieldViolation};
