//! PHANTOM's single binary, in the spirit of Loki's and Mimir's: one executable that runs the
//! whole system (`up`), one service (`serve`, what a Kubernetes pod runs), or talks to it
//! (`scan`, `health`, `watch`), or prepares its database (`migrate`).
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`config`]: the configuration of the whole system, composed of the services' sections,
//!   and what each service runs with; the list of services ([`config::ServiceName`]).
//! - [`bench`]: the load benchmark (`phantom bench`).
//! - [`bench_probes`]: the probe port under twice a service's capacity
//!   (`phantom bench probes`).
//! - [`bench_notify`]: the notifier's delivery benchmark (`phantom bench notify`).
//! - [`auth`]: the authenticator a process's services share, what `phantom up` sets up by
//!   itself (the key secret, the services' token, the local admin key), `phantom auth key`.
//! - [`up`]: binding listeners and running services in one process.
//! - [`commands`]: the client commands.

pub mod auth;
pub mod bench;
pub mod bench_attacks;
pub mod bench_hedging;
pub mod bench_notify;
pub mod bench_probes;
pub mod cli;
pub mod commands;
pub mod config;
pub mod up;
