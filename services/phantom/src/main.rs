//! The `phantom` binary: argument parsing only; everything else is in the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    phantom::cli::Cli::parse().run().await
}
