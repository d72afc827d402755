//! PHANTOM's single binary, in the spirit of Loki's and Mimir's: one executable that runs the
//! whole system (`up`), one service (`serve`, what a Kubernetes pod runs), or talks to it
//! (`scan`, `health`, `watch`), or prepares its database (`migrate`).
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`config`]: the configuration of the whole system, composed of the services' sections,
//!   and what each service runs with; the list of services ([`config::ServiceName`]).
//! - [`bench`]: the benchmarks (`phantom bench`).
//! - [`auth`]: the authenticator a process's services share, what `phantom up` sets up by
//!   itself (the key secret, the services' token, the local admin key), `phantom auth key`.
//! - [`up`]: binding listeners and running services in one process.
//! - [`commands`]: the client commands.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod up;
