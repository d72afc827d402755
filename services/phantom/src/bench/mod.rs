//! `phantom bench`: the benchmarks (never run by `make test`; each has a smoke test with a
//! tiny duration).
//!
//! - [`rpc`]: one real RPC with the resilience layers on and off, twice the saturating load,
//!   and the scanners against nmap;
//! - [`notify`]: the notifier's delivery latency, CRITICAL alone and under a LOW flood;
//! - [`attacks`]: the attacks that used to take a process down, replayed;
//! - [`probes`]: liveness latency and RSS of one service under twice its capacity;
//! - [`hedging`]: hedged calls against three replicas, one of them stalling.

pub mod attacks;
pub mod hedging;
pub mod notify;
pub mod probes;
pub mod rpc;

use std::time::Duration;

/// The `p` quantile (0 to 1) of `v`, nearest rank; zero for no samples.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}
