//! The `phantom` binary: argument parsing only; everything else is in the library.

use clap::Parser;

// jemalloc with its background threads hands freed memory back to the kernel after a burst
// (thousands of streams that ended, a flood of large requests): measured on 80 tasks holding
// 500 buffers each, then dropped, RSS went back to 9 MiB where glibc's malloc kept 141 MiB,
// mimalloc 185 MiB and jemalloc without background threads 173 MiB. A pod's memory limit is
// counted in RSS, so memory that is free but not returned is memory the pod cannot use.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    phantom::cli::Cli::parse().run().await
}
