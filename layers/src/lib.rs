//! Tower middleware shared by every PHANTOM service and every client between them.
//!
//! Layers here never know about business code: they see `http::Request`s, gRPC metadata and
//! [`tonic::Status`]es, and take decisions from small configuration values.
//!
//! # Layout
//! - [`classify`]: the one table that says which outcomes are failures and which are
//!   retryable, read from gRPC statuses in headers or trailers.
//! - [`auth`]: who a call comes from ([`auth::Principal`]), what it may do (the one
//!   [`auth::Policy`] table), the tenant it acts for, and the `audit` trail.
//! - [`adaptive`]: adaptive concurrency limits (Gradient2, AIMD) learnt from latency and
//!   drops, rejecting (never queueing) beyond them; and the AIMD rate limiter of the LLM
//!   client.
//! - [`backoff`]: delays between attempts (fixed, linear, exponential, jittered, Fibonacci).
//! - [`bulkhead`]: a bound on calls in flight, rejecting (never queueing) beyond it.
//! - [`gate`]: refuses calls at once (`UNAVAILABLE`, `RetryInfo`) while a dependency the server
//!   cannot work without is down.
//! - [`deadline`]: `grpc-timeout`, read on the way in and passed on, shrunk, on the way out.
//! - [`circuit_breaker`]: stops calls to a failing dependency and probes its recovery.
//! - [`rate_limit`]: GCRA limits per caller and method, with `RetryInfo` on rejection.
//! - [`settings`]: [`settings::Invalid`], what every configuration's validation refuses.
//! - [`tally`]: events counted and written as one line per interval (calls refused before any
//!   work), so a flood never becomes a flood of logs.
//! - [`retry`]: retries and hedging of idempotent calls, with backoff, server pushback,
//!   deadline, budget and the gRFC A6 throttle; policies read and written as gRPC service
//!   configs.
//! - [`status`]: the one place where a service error becomes a wire [`tonic::Status`] with
//!   `google.rpc` details (`BadRequest`, `ErrorInfo`, `RetryInfo`).
//! - [`methods`]: the closed set of methods a server answers: what metric labels and limiter
//!   keys are made of, so a caller's made-up paths cannot grow them.
//! - [`registry`]: a service's breakers, limiters, retry policies, bulkheads, sources (caches)
//!   and counters, handed to whoever builds them (there is no process-wide registry), each map
//!   bounded.
//! - [`exposition`]: metrics as structured samples: what each snapshot says of itself
//!   ([`exposition::Describe`]) and what a component outside the layers reports
//!   ([`exposition::Source`]).
//! - [`metrics`]: the gRPC server's own metrics (`grpc_server_*`), labelled from its known
//!   methods.
//! - [`request_id`]: gives every call a correlation id (taken from `x-correlation-id` or
//!   `x-request-id`, or generated) and carries it to outgoing calls, so one id follows a
//!   request across hops.
//! - [`tenant`]: resolves the caller's tenant once, at the edge, and carries it to outgoing calls.
//! - [`trace`]: OpenTelemetry SERVER and CLIENT spans per call, with W3C trace context in the
//!   metadata, so one request is one trace across services.

pub mod adaptive;
pub mod auth;
pub mod backoff;
pub mod bulkhead;
pub mod circuit_breaker;
pub mod classify;
pub mod deadline;
pub mod exposition;
pub mod gate;
pub mod methods;
pub mod metrics;
pub mod rate_limit;
pub mod redis;
pub mod registry;
pub mod request_id;
pub mod retry;
pub mod settings;
pub mod status;
pub mod tally;
pub mod tenant;
pub mod trace;

pub use request_id::{PropagateContext, PropagateContextLayer, RequestId, RequestIdLayer};
pub use status::{Category, Error, FieldViolation};
pub use tenant::{TENANT_HEADER, Tenant, TenantLayer, TenantSource};
pub use trace::{ClientSpanLayer, ServerSpanLayer};
