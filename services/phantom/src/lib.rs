//! PHANTOM's single binary, in the spirit of Loki's and Mimir's: one executable that runs the
//! whole system (`up`), one service (`serve`, what a Kubernetes pod runs), or talks to it
//! (`scan`, `health`).
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`bench`]: the load benchmark (`phantom bench`).
//! - [`up`]: binding listeners and running services in one process.
//! - [`commands`]: the client commands.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod up;
