//! The load generator: closed-loop and constant-rate load, every call's gRPC status checked,
//! every latency in an HDR histogram, the warm-up left out.
//!
//! - **Closed loop** (`Mode::Closed`): `n` callers, each calling again as soon as it is
//!   answered. It finds the throughput a server sustains; its latencies are only those of
//!   the calls it managed to send (a stalled server also stalls the callers, and the calls
//!   they would have sent are never counted: coordinated omission).
//! - **Constant rate** (`Mode::Rate`): calls are due at a fixed rate whatever happens to
//!   earlier ones, and each call's latency counts from when it was *due*, not from when it
//!   was sent; so a stall shows in full in the percentiles. A call that cannot even be sent
//!   because `max_in_flight` calls are outstanding counts as `NOT_SENT`.
//!
//! [`RawGrpc`] is the caller for throughput measurements: it speaks HTTP/2 itself (h2),
//! sends a request encoded once, and reads the status from the trailers (or from the headers
//! of a trailers-only answer), so the client costs far less than the server it measures.
//! [`pin_to_core`] puts the generator's thread on a core of its own.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use phantom_layers::status::code_name;
use tokio::time::Instant;

/// How calls are offered.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `concurrency` callers, each calling again when answered.
    Closed {
        /// Callers.
        concurrency: usize,
    },
    /// `per_second` calls due at a constant rate.
    Rate {
        /// Calls per second.
        per_second: f64,
        /// Outstanding calls at most; a call due beyond is not sent (counted `NOT_SENT`).
        max_in_flight: usize,
    },
}

/// A measurement: how calls are offered, for how long, after how long a warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// How.
    pub mode: Mode,
    /// Measured for this long, after the warm-up.
    pub duration: Duration,
    /// Calls that start in the first `warmup` are made but not counted.
    pub warmup: Duration,
}

/// What one call came back with: `Ok`, or the gRPC code's name (`UNAVAILABLE`), or a
/// transport failure (`TRANSPORT`).
pub type Outcome = Result<(), &'static str>;

/// Width of a throughput timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// One measurement's figures.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Latency of the successful calls, nanoseconds.
    pub latency: Histogram<u64>,
    /// Calls by outcome (`OK`, `UNAVAILABLE`, `NOT_SENT`, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Successful calls per [`BUCKET`], from the end of the warm-up.
    pub timeline: Vec<u64>,
    /// Length of the counted part.
    pub elapsed: Duration,
    /// Calls made, the warm-up's included (what a server's CPU time is divided by).
    pub made: u64,
}

impl Measured {
    fn new() -> Self {
        Self {
            // 1 ns to 10 minutes, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds"),
            outcomes: BTreeMap::new(),
            timeline: Vec::new(),
            elapsed: Duration::ZERO,
            made: 0,
        }
    }

    /// Successful calls.
    pub fn ok(&self) -> u64 {
        self.outcomes.get("OK").copied().unwrap_or(0)
    }

    /// Calls counted, whatever their outcome.
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0 to 1) of successful calls' latency, ms (0 for none).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1e6
    }

    /// The latency CDF, (ms, share), at the quantiles a person reads.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        if self.latency.is_empty() {
            return Vec::new();
        }
        let mut q = Vec::new();
        for i in 0..=90 {
            q.push(f64::from(i) / 100.0);
        }
        q.extend([0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0]);
        q.into_iter()
            .map(|q| (self.latency.value_at_quantile(q) as f64 / 1e6, q))
            .collect()
    }

    /// Successful calls per second over time, (s, calls/s).
    pub fn timeline_points(&self) -> Vec<(f64, f64)> {
        let per_s = 1.0 / BUCKET.as_secs_f64();
        self.timeline
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as f64 * BUCKET.as_secs_f64(), n as f64 * per_s))
            .collect()
    }

    fn record(&mut self, outcome: Outcome, latency: Duration, at: Duration) {
        match outcome {
            Ok(()) => {
                *self.outcomes.entry("OK").or_default() += 1;
                let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.latency.saturating_record(ns.max(1));
                let bucket = (at.as_nanos() / BUCKET.as_nanos()) as usize;
                if self.timeline.len() <= bucket {
                    self.timeline.resize(bucket + 1, 0);
                }
                self.timeline[bucket] += 1;
            }
            Err(code) => *self.outcomes.entry(code).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Measured) {
        self.latency.add(&other.latency).expect("same bounds");
        self.made += other.made;
        for (code, n) in other.outcomes {
            *self.outcomes.entry(code).or_default() += n;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (i, n) in other.timeline.into_iter().enumerate() {
            self.timeline[i] += n;
        }
    }
}

/// Offers `load` to `call` (a new call each time it is invoked) and measures it.
pub async fn run<F, Fut>(load: Load, call: F) -> Measured
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let counted_from = start + load.warmup;
    let end = counted_from + load.duration;
    let mut measured = match load.mode {
        Mode::Closed { concurrency } => {
            let mut tasks = Vec::new();
            for _ in 0..concurrency.max(1) {
                let call = call.clone();
                tasks.push(tokio::spawn(async move {
                    let mut m = Measured::new();
                    loop {
                        let sent = Instant::now();
                        if sent >= end {
                            break;
                        }
                        let outcome = call().await;
                        m.made += 1;
                        if sent >= counted_from {
                            m.record(outcome, sent.elapsed(), sent - counted_from);
                        }
                        if outcome.is_err() {
                            // A refusal can be ready at once: without a yield, callers
                            // refused in a loop would starve the runtime's timers.
                            tokio::task::yield_now().await;
                        }
                    }
                    m
                }));
            }
            let mut all = Measured::new();
            for t in tasks {
                if let Ok(m) = t.await {
                    all.merge(m);
                }
            }
            all
        }
        Mode::Rate {
            per_second,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(1.0 / per_second.max(1e-3));
            let shared = Arc::new(Mutex::new(Measured::new()));
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            let mut due = start;
            while due < end {
                tokio::time::sleep_until(due).await;
                // Every call due by now goes (a late wake-up sends the backlog at once, each
                // timed from when it was due).
                while due <= Instant::now() && due < end {
                    let counted = due >= counted_from;
                    if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                        if counted {
                            shared.lock().expect("measured").record(
                                Err("NOT_SENT"),
                                Duration::ZERO,
                                due - counted_from,
                            );
                        }
                    } else {
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        let (call, shared, in_flight) =
                            (call.clone(), shared.clone(), in_flight.clone());
                        let was_due = due;
                        tasks.spawn(async move {
                            let outcome = call().await;
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                            shared.lock().expect("measured").made += 1;
                            if counted {
                                shared.lock().expect("measured").record(
                                    outcome,
                                    was_due.elapsed(),
                                    was_due - counted_from,
                                );
                            }
                        });
                    }
                    due += interval;
                }
                // Reap finished calls now and then, so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            Arc::try_unwrap(shared)
                .map(|m| m.into_inner().expect("measured"))
                .unwrap_or_else(|s| s.lock().expect("measured").clone())
        }
    };
    measured.elapsed = load.duration;
    measured
}

/// Runs `f` on a thread of its own with a current-thread runtime, pinned to `core` when the
/// machine has it (so the load generator and the servers it measures do not share a core);
/// returns what `f` returns, and whether the pin took.
pub async fn pinned<F, Fut, T>(core: Option<usize>, f: F) -> anyhow::Result<(T, bool)>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            let pinned = core.is_some_and(pin_to_core);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the load generator");
            let out = runtime.block_on(f());
            let _ = tx.send((out, pinned));
        })?;
    Ok(rx.await?)
}

/// Pins the calling thread to `core`; false when the machine has no such core or refuses.
pub fn pin_to_core(core: usize) -> bool {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|c| c.id == core))
        .is_some_and(core_affinity::set_for_current)
}

/// A gRPC caller that sends one request, encoded once, over HTTP/2 connections of its own,
/// and reads only the status of each answer.
#[derive(Debug, Clone)]
pub struct RawGrpc {
    senders: Arc<Vec<h2::client::SendRequest<Bytes>>>,
    next: Arc<AtomicUsize>,
    uri: http::Uri,
    /// The request message, framed (`0`, length, bytes).
    body: Bytes,
    /// The request's headers, made once.
    headers: http::HeaderMap,
}

impl RawGrpc {
    /// `connections` HTTP/2 connections to `addr` for calls of `path`
    /// (`/phantom.v1.VulnAnalyzer/ScoreCvss`) with `message` (the encoded request), and
    /// `authorization` sent with each call when given.
    pub async fn connect(
        addr: std::net::SocketAddr,
        path: &str,
        message: &[u8],
        connections: usize,
        authorization: Option<http::HeaderValue>,
    ) -> anyhow::Result<Self> {
        let mut senders = Vec::new();
        for _ in 0..connections.max(1) {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (send, connection) = h2::client::Builder::new()
                .initial_window_size(1 << 20)
                .initial_connection_window_size(1 << 24)
                .handshake::<_, Bytes>(stream)
                .await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            senders.push(send);
        }
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
        framed.extend_from_slice(message);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        if let Some(a) = authorization {
            headers.insert(http::header::AUTHORIZATION, a);
        }
        Ok(Self {
            senders: Arc::new(senders),
            next: Arc::default(),
            uri: format!("http://{addr}{path}").parse()?,
            body: Bytes::from(framed),
            headers,
        })
    }

    /// One call.
    pub async fn call(&self) -> Outcome {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let send = self.senders[i].clone();
        self.call_on(send).await.unwrap_or(Err("TRANSPORT"))
    }

    async fn call_on(&self, send: h2::client::SendRequest<Bytes>) -> Result<Outcome, h2::Error> {
        let mut send = send.ready().await?;
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(self.body.clone(), true)?;
        let response = response.await?;
        if let Some(status) = response.headers().get("grpc-status") {
            // Trailers-only: the call ended with its headers.
            return Ok(status_of(status));
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok(match body.trailers().await? {
            Some(trailers) => trailers
                .get("grpc-status")
                .map_or(Err("TRANSPORT"), status_of),
            None => Err("TRANSPORT"),
        })
    }
}

fn status_of(value: &http::HeaderValue) -> Outcome {
    match value.to_str().ok().and_then(|s| s.parse::<i32>().ok()) {
        Some(0) => Ok(()),
        Some(code) => Err(code_name(tonic::Code::from_i32(code))),
        None => Err("UNKNOWN"),
    }
}

/// The outcome of a tonic call.
pub fn outcome<T>(result: &Result<T, tonic::Status>) -> Outcome {
    match result {
        Ok(_) => Ok(()),
        Err(status) => Err(code_name(status.code())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_constant_rate_times_calls_from_when_they_were_due_and_counts_what_it_could_not_send()
    {
        // A server that answers in 10 ms, but stalls for 500 ms once, at 1 s.
        let started = Instant::now();
        let load = Load {
            mode: Mode::Rate {
                per_second: 100.0,
                max_in_flight: 30,
            },
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(200),
        };
        let m = run(load, move || async move {
            let now = started.elapsed();
            let stall = Duration::from_secs(1)..Duration::from_millis(1500);
            if stall.contains(&now) {
                tokio::time::sleep(stall.end - now).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .await;
        // 200 calls due in the counted 2 s; during the stall at most 30 wait, the others
        // are not sent.
        assert_eq!(m.total(), 200, "{:?}", m.outcomes);
        let not_sent = m.outcomes.get("NOT_SENT").copied().unwrap_or(0);
        assert!(not_sent > 0 && not_sent < 50, "not sent: {not_sent}");
        // The stalled calls count from when they were due: the max is the stall, not 10 ms.
        assert!(m.quantile_ms(1.0) >= 300.0, "max {} ms", m.quantile_ms(1.0));
        assert!(m.quantile_ms(0.5) < 20.0, "p50 {} ms", m.quantile_ms(0.5));
        assert_eq!(m.timeline.iter().sum::<u64>(), m.ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_counts_every_outcome_after_the_warm_up_only() {
        let n = Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        let load = Load {
            mode: Mode::Closed { concurrency: 4 },
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
        };
        let m = run(load, move || {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if i.is_multiple_of(4) {
                    Err("UNAVAILABLE")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // 4 callers, 10 ms each: 400 calls in the counted second, 200 in the warm-up.
        let made = n.load(Ordering::Relaxed) as u64;
        assert!((590..=610).contains(&made), "made {made}");
        assert!((395..=405).contains(&m.total()), "{:?}", m.outcomes);
        assert_eq!(m.outcomes["UNAVAILABLE"], m.total() / 4);
        assert!((m.throughput() - 300.0).abs() < 5.0, "{}", m.throughput());
        assert!((m.quantile_ms(0.99) - 10.0).abs() < 0.5);
    }
}
