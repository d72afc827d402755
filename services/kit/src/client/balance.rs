//! Client-side load balancing over every replica of a peer, with per-endpoint ejection.
//!
//! Behind a Kubernetes ClusterIP Service, one HTTP/2 connection goes to one pod: a client
//! with one channel sends all its calls to one replica, and when that pod dies the client's
//! breaker opens for the whole service instead of moving on. So a client keeps a connection
//! to every endpoint of the peer and picks one per call:
//!
//! - **Discovery** ([`Targets`]): a name is resolved (A/AAAA: a headless Service gives one
//!   address per ready pod) every [`BalanceConfig::resolve_every`], and again soon after an
//!   endpoint is ejected; endpoints that appear are added, those that vanish are dropped,
//!   without a restart. A comma-separated list of URLs is a fixed set (`phantom up`, tests).
//! - **Choice**: power of two choices on a load estimate, as linkerd2-proxy does: two
//!   endpoints drawn at random, the one with the lower `(in flight + 1) × latency` wins. The
//!   latency is a peak-sensitive moving average (a slower answer counts at once, a faster
//!   one decays in), and an overload answer (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, a broken
//!   connection) counts as [`OVERLOAD_PENALTY`], never as the fast success its speed would
//!   suggest: an endpoint that refuses quickly must not attract more calls (the trap
//!   linkerd's balancer fell into).
//! - **Ejection** (gRPC A50 outlier detection): an endpoint with
//!   [`BalanceConfig::consecutive_failures`] failures in a row, or a failure share of
//!   [`BalanceConfig::failure_rate`] over [`BalanceConfig::window`] (with enough calls), or
//!   whose connection is refused, is taken out for [`BalanceConfig::base_ejection`] times
//!   the number of ejections in a row (up to [`BalanceConfig::max_ejection`]); then it is
//!   probed back in with one call at a time, and its next answer decides. At most
//!   [`BalanceConfig::max_ejected_share`] of the endpoints are out at once (one can always
//!   be, but never the last), so a fault shared by all cannot eject them all. An endpoint
//!   that sheds a call (`RESOURCE_EXHAUSTED`) is protecting itself: that counts as slow, not
//!   as a failure.
//! - **Retries go elsewhere**: an attempt carries the retry layer's [`TriedEndpoints`]; the
//!   endpoints earlier attempts (or hedges) of the call went to are chosen only when no
//!   other is usable, and the one chosen is recorded at once, so hedges in flight together
//!   avoid each other.
//!
//! When no endpoint is usable the call is answered `UNAVAILABLE` at once: the service-level
//! breaker above sees failures only then, so it opens when the service is gone, not when one
//! of its pods is.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http::Uri;
use phantom_layers::{
    classify::{Classify as _, GrpcClassifier, Outcome, code_in_headers},
    exposition::{Families, Source},
    retry::{NeverSent, TriedEndpoints},
};
use serde::Serialize;

use crate::config::BalanceConfig;
use tokio::{sync::Notify, time::Instant};
use tonic::{Code, body::Body, transport::Channel};
use tower::ServiceExt as _;

/// What an overload answer counts as in an endpoint's latency.
pub const OVERLOAD_PENALTY: Duration = Duration::from_secs(1);

/// The latency assumed of an endpoint nothing is known of yet.
const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// How fast a latency lower than the average decays in (its time constant).
const DECAY: Duration = Duration::from_secs(10);

/// Resolutions of a name never come closer than this, however often they are asked for.
const MIN_RESOLVE_INTERVAL: Duration = crate::config::MIN_RESOLVE_INTERVAL;

/// Where a peer's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These URLs, fixed.
    Fixed(Vec<Uri>),
    /// Every address `host` resolves to, on `port`, re-resolved.
    Dns {
        /// `http` or `https`.
        scheme: String,
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Targets {
    /// The targets a peer URL names: a comma-separated list of URLs is fixed, as is a URL
    /// whose host is an address; a URL with a name is resolved.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uris = url
            .split(',')
            .map(|u| {
                u.trim()
                    .parse::<Uri>()
                    .map_err(|e| format!("{u:?} is not a URL: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for uri in &uris {
            if uri.scheme().is_none() || uri.host().is_none() {
                return Err(format!("{uri} is not a URL such as http://host:port"));
            }
        }
        if let [uri] = uris.as_slice() {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if host.parse::<std::net::IpAddr>().is_err() {
                let scheme = uri.scheme_str().unwrap_or("http").to_owned();
                let port = uri
                    .port_u16()
                    .unwrap_or(if scheme == "https" { 443 } else { 80 });
                return Ok(Self::Dns {
                    scheme,
                    host: host.to_owned(),
                    port,
                });
            }
        }
        Ok(Self::Fixed(uris))
    }
}

/// Makes the channel of one endpoint: its URL, and the name its certificate must show (the
/// peer's host, when the URL holds an address the name resolved to).
pub type Connect = Arc<dyn Fn(&str, &str) -> Result<Channel, String> + Send + Sync>;

/// What one endpoint's calls said.
#[derive(Debug)]
struct Health {
    /// Seconds; see [`DECAY`].
    rtt: f64,
    updated: Instant,
    consecutive: u32,
    window_start: Instant,
    window_calls: u32,
    window_failures: u32,
    /// Out until then.
    ejected_until: Option<Instant>,
    /// Ejections in a row (the next lasts one more base ejection).
    ejections: u32,
    /// Its ejection lapsed: the next answer decides whether it stays.
    probing: bool,
}

/// One replica of the peer.
#[derive(Debug)]
struct Endpoint {
    /// `host:port` as dialled.
    addr: String,
    channel: Channel,
    in_flight: AtomicU32,
    calls: AtomicU64,
    failures: AtomicU64,
    ejected_total: AtomicU64,
    health: Mutex<Health>,
}

impl Endpoint {
    fn new(addr: String, channel: Channel) -> Self {
        let now = Instant::now();
        Self {
            addr,
            channel,
            in_flight: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejected_total: AtomicU64::new(0),
            health: Mutex::new(Health {
                rtt: DEFAULT_RTT.as_secs_f64(),
                updated: now,
                consecutive: 0,
                window_start: now,
                window_calls: 0,
                window_failures: 0,
                ejected_until: None,
                ejections: 0,
                probing: false,
            }),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_ejected(&self, now: Instant) -> bool {
        self.health().ejected_until.is_some_and(|until| until > now)
    }

    /// Whether it may take a call now: not ejected, and, while it is probed back in, not
    /// already answering its probe.
    fn usable(&self, now: Instant) -> bool {
        let mut h = self.health();
        match h.ejected_until {
            Some(until) if until > now => false,
            Some(_) => {
                h.ejected_until = None;
                h.probing = true;
                true
            }
            None => !h.probing || self.in_flight.load(Ordering::Relaxed) == 0,
        }
    }

    /// The load estimate: calls in flight (this one included) times the latency.
    fn load(&self, now: Instant) -> f64 {
        let h = self.health();
        let age = now.saturating_duration_since(h.updated).as_secs_f64();
        // A peak decays towards the default while nothing new is learned.
        let w = (-age / DECAY.as_secs_f64()).exp();
        let rtt = h.rtt * w + DEFAULT_RTT.as_secs_f64() * (1.0 - w);
        f64::from(self.in_flight.load(Ordering::Relaxed) + 1) * rtt
    }
}

/// A verdict on one answer, for the endpoint that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Fine (whatever its status said about the request).
    Ok,
    /// A failure of the endpoint.
    Failed,
    /// The endpoint is unavailable: a failure that also counts as slow.
    Overloaded,
    /// The endpoint shed the call (RESOURCE_EXHAUSTED): healthy and protecting itself, so
    /// not a failure (ejecting it would move its load onto the others), but slow.
    Shed,
    /// The connection could not be made or broke: out at once.
    Refused,
}

fn answer(outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Transport => Answer::Refused,
        Outcome::Status(Code::ResourceExhausted) => Answer::Shed,
        Outcome::Status(Code::Unavailable) => Answer::Overloaded,
        o if GrpcClassifier.classify(o).failure => Answer::Failed,
        _ => Answer::Ok,
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    config: BalanceConfig,
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    resolve_now: Arc<Notify>,
    /// The last resolution's error, if it failed.
    resolve_error: Mutex<Option<String>>,
}

impl Shared {
    fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Power of two choices among the usable endpoints not in `tried` (or, when every usable
    /// one was tried, among them all).
    fn pick(&self, tried: &[String]) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        let all = self.endpoints();
        let usable: Vec<&Arc<Endpoint>> = all.iter().filter(|e| e.usable(now)).collect();
        let fresh: Vec<&Arc<Endpoint>> = usable
            .iter()
            .copied()
            .filter(|e| !tried.contains(&e.addr))
            .collect();
        let pool = if fresh.is_empty() { usable } else { fresh };
        match pool.len() {
            0 => None,
            1 => Some(pool[0].clone()),
            n => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (pool[a], pool[b]);
                Some(if a.load(now) <= b.load(now) { a } else { b }.clone())
            }
        }
    }

    /// Learns from `answer`, after `rtt`, of `endpoint`.
    fn observe(&self, endpoint: &Endpoint, answer: Answer, rtt: Duration) {
        let now = Instant::now();
        endpoint.calls.fetch_add(1, Ordering::Relaxed);
        let failed = !matches!(answer, Answer::Ok | Answer::Shed);
        if failed {
            endpoint.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut h = endpoint.health();
        let rtt = match answer {
            Answer::Ok | Answer::Failed => rtt,
            Answer::Overloaded | Answer::Shed | Answer::Refused => rtt.max(OVERLOAD_PENALTY),
        }
        .as_secs_f64();
        let age = now.saturating_duration_since(h.updated).as_secs_f64();
        h.rtt = if rtt > h.rtt {
            rtt
        } else {
            let w = (-age / DECAY.as_secs_f64()).exp();
            h.rtt * w + rtt * (1.0 - w)
        };
        h.updated = now;
        if now.saturating_duration_since(h.window_start) > self.config.window {
            h.window_start = now;
            h.window_calls = 0;
            h.window_failures = 0;
        }
        h.window_calls += 1;
        if failed {
            h.consecutive += 1;
            h.window_failures += 1;
        } else {
            h.consecutive = 0;
        }
        let probing = std::mem::replace(&mut h.probing, false);
        if !failed {
            if probing {
                tracing::info!(peer = %self.name, endpoint = %endpoint.addr, "Endpoint back in");
            }
            h.ejections = 0;
            return;
        }
        let eject = probing
            || answer == Answer::Refused
            || h.consecutive >= self.config.consecutive_failures
            || (h.window_calls >= self.config.min_calls
                && f64::from(h.window_failures)
                    >= self.config.failure_rate * f64::from(h.window_calls));
        if eject && h.ejected_until.is_none() {
            drop(h);
            self.eject(endpoint, now);
        }
    }

    /// Takes `endpoint` out, unless as many as may be are out already. The last usable one
    /// never is: with no other to take its calls, ejecting it would only turn them into
    /// refusals (the breaker above is what fails fast for a peer that is down).
    fn eject(&self, endpoint: &Endpoint, now: Instant) {
        let all = self.endpoints();
        let out = all.iter().filter(|e| e.is_ejected(now)).count();
        let allowed = ((all.len() as f64 * self.config.max_ejected_share).floor() as usize)
            .max(1)
            .min(all.len().saturating_sub(1));
        if out >= allowed {
            return;
        }
        let mut h = endpoint.health();
        h.ejections = h.ejections.saturating_add(1);
        let lasts = (self.config.base_ejection * h.ejections).min(self.config.max_ejection);
        h.ejected_until = Some(now + lasts);
        h.consecutive = 0;
        h.window_calls = 0;
        h.window_failures = 0;
        drop(h);
        endpoint.ejected_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = %self.name, endpoint = %endpoint.addr, for_ = ?lasts, "Endpoint ejected");
        // Its pod may have been replaced: look again soon.
        self.resolve_now.notify_one();
    }

    /// Makes the endpoints those of `addrs`, keeping what is known of those that stay.
    fn update(&self, addrs: Vec<(String, Channel)>) {
        let current = self.endpoints();
        let known: HashMap<&str, &Arc<Endpoint>> =
            current.iter().map(|e| (e.addr.as_str(), e)).collect();
        let next: Vec<Arc<Endpoint>> = addrs
            .into_iter()
            .map(|(addr, channel)| match known.get(addr.as_str()) {
                Some(e) => (*e).clone(),
                None => Arc::new(Endpoint::new(addr, channel)),
            })
            .collect();
        if next.len() != current.len()
            || next
                .iter()
                .zip(current.iter())
                .any(|(a, b)| a.addr != b.addr)
        {
            tracing::info!(
                peer = %self.name,
                endpoints = ?next.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>(),
                "Endpoints"
            );
        }
        *self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }
}

/// Every replica of one peer, as one service: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Balance {
    shared: Arc<Shared>,
}

impl Balance {
    /// Calls to `name` at `targets`, each endpoint's channel made by `connect`. A name is
    /// resolved in the background (the first resolution before the first call needs it is
    /// not awaited: until it lands, calls are answered UNAVAILABLE, as for a peer that is
    /// down).
    pub fn new(
        name: &str,
        targets: Targets,
        config: BalanceConfig,
        connect: Connect,
    ) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config,
            endpoints: RwLock::new(Arc::new(Vec::new())),
            resolve_now: Arc::new(Notify::new()),
            resolve_error: Mutex::new(None),
        });
        match targets {
            Targets::Fixed(uris) => {
                let endpoints = uris
                    .iter()
                    .map(|uri| {
                        let host = uri.host().unwrap_or_default();
                        let channel = connect(&uri.to_string(), host)?;
                        Ok((
                            uri.authority()
                                .map_or_else(String::new, ToString::to_string),
                            channel,
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                shared.update(endpoints);
            }
            Targets::Dns { scheme, host, port } => {
                tokio::spawn(resolve(
                    Arc::downgrade(&shared),
                    scheme,
                    host,
                    port,
                    connect,
                ));
            }
        }
        Ok(Self { shared })
    }

    /// The endpoints and their state, for `/health/metrics` and tests.
    pub fn snapshot(&self) -> BalanceSnapshot {
        let now = Instant::now();
        BalanceSnapshot {
            name: self.shared.name.clone(),
            resolve_error: self
                .shared
                .resolve_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            endpoints: self
                .shared
                .endpoints()
                .iter()
                .map(|e| {
                    let h = e.health();
                    EndpointSnapshot {
                        addr: e.addr.clone(),
                        state: match h.ejected_until {
                            Some(until) if until > now => "ejected",
                            _ if h.probing => "probing",
                            _ => "active",
                        },
                        in_flight: e.in_flight.load(Ordering::Relaxed),
                        rtt_ms: h.rtt * 1000.0,
                        calls: e.calls.load(Ordering::Relaxed),
                        failures: e.failures.load(Ordering::Relaxed),
                        ejections: e.ejected_total.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }
}

/// Resolves `host` every `resolve_every` (and soon after an ejection) while the balancer
/// lives.
async fn resolve(shared: Weak<Shared>, scheme: String, host: String, port: u16, connect: Connect) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                addrs.sort_unstable();
                addrs.dedup();
                let endpoints = addrs
                    .into_iter()
                    .filter_map(|addr| {
                        let url = format!("{scheme}://{addr}");
                        match connect(&url, &host) {
                            Ok(channel) => Some((addr.to_string(), channel)),
                            Err(e) => {
                                tracing::warn!(peer = %s.name, %url, error = %e, "Endpoint skipped");
                                None
                            }
                        }
                    })
                    .collect();
                s.update(endpoints);
                *s.resolve_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Err(e) => {
                // What was resolved last stays: a DNS hiccup must not empty the peer.
                tracing::warn!(peer = %s.name, %host, error = %e, "Resolution failed");
                *s.resolve_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
            }
        }
        let (every, wake) = (s.config.resolve_every, s.resolve_now.clone());
        // Only the balancer's clients keep it alive: not this task while it waits.
        drop(s);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => tokio::time::sleep(MIN_RESOLVE_INTERVAL).await,
        }
    }
}

impl tower::Service<http::Request<Body>> for Balance {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each endpoint's channel is made ready when a call is sent to it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let attempts = req.extensions().get::<TriedEndpoints>().cloned();
        let tried = attempts
            .as_ref()
            .map(TriedEndpoints::tried)
            .unwrap_or_default();
        let Some(endpoint) = self.shared.pick(&tried) else {
            let status = tonic::Status::unavailable(format!(
                "no endpoint of {} is usable (all ejected or none resolved)",
                self.shared.name
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        if let Some(attempts) = &attempts {
            attempts.record(endpoint.addr.clone());
        }
        let shared = self.shared.clone();
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            shared,
            endpoint,
            started: Instant::now(),
            outcome: Outcome::Abandoned,
        };
        // A call the retry layer may send again (it carries TriedEndpoints: an idempotent
        // unary call) has its answer read whole here, so that a connection lost in the middle
        // of it is an UNAVAILABLE the retry layer retries, not a committed answer that breaks.
        let whole = attempts.is_some();
        Box::pin(async move {
            let mut guard = guard;
            let mut result = guard.endpoint.channel.clone().oneshot(req).await;
            if whole && let Ok(response) = result {
                result = Ok(read_whole(response, &guard.endpoint.addr).await);
            }
            guard.outcome = match &result {
                Ok(response) => Outcome::Status(
                    code_in_headers(response.headers())
                        .or_else(|| response.extensions().get::<Trailed>().map(|t| t.0))
                        .unwrap_or(Code::Ok),
                ),
                Err(_) => Outcome::Transport,
            };
            match result {
                // Nothing was sent: the retry layer may send it elsewhere at no cost.
                Err(e) if connect_refused(&e) => {
                    let status = tonic::Status::unavailable(format!(
                        "{} refused the connection",
                        guard.endpoint.addr
                    ));
                    let mut response = status.into_http();
                    response.extensions_mut().insert(NeverSent);
                    Ok(response)
                }
                other => other,
            }
        })
    }
}

/// The status a whole answer's trailers gave (for the endpoint's health).
#[derive(Debug, Clone, Copy)]
struct Trailed(Code);

/// `response` read to its end and rebuilt with its data and trailers; a body that breaks is
/// answered UNAVAILABLE (its call is safe to send again: the retry layer said so).
async fn read_whole(response: http::Response<Body>, endpoint: &str) -> http::Response<Body> {
    use http_body_util::BodyExt as _;

    if code_in_headers(response.headers()).is_some() {
        return response; // trailers-only: nothing more to read
    }
    let (mut parts, body) = response.into_parts();
    match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            if let Some(code) = trailers.as_ref().and_then(code_in_headers) {
                parts.extensions.insert(Trailed(code));
            }
            let mut frames = vec![Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                collected.to_bytes(),
            ))];
            frames.extend(trailers.map(|t| Ok(http_body::Frame::trailers(t))));
            let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
            http::Response::from_parts(parts, Body::new(body))
        }
        Err(e) => tonic::Status::unavailable(format!(
            "the connection to {endpoint} broke in the middle of the answer: {e}"
        ))
        .into_http(),
    }
}

/// Whether `e` is a connection the endpoint refused: the call never left this client.
fn connect_refused(e: &tonic::transport::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// A call in flight to an endpoint: counted until it ends, observed when it does (a call
/// its caller gave up on teaches nothing about the endpoint).
struct InFlight {
    shared: Arc<Shared>,
    endpoint: Arc<Endpoint>,
    started: Instant,
    outcome: Outcome,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.outcome != Outcome::Abandoned {
            self.shared
                .observe(&self.endpoint, answer(self.outcome), self.started.elapsed());
        }
    }
}

/// A balancer's state.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceSnapshot {
    /// The peer, as `caller->peer`.
    pub name: String,
    /// Why the last resolution of its name failed, if it did.
    pub resolve_error: Option<String>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointSnapshot>,
}

/// One endpoint's state.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSnapshot {
    /// `host:port`.
    pub addr: String,
    /// `active`, `ejected`, or `probing` (back after an ejection, on trial).
    pub state: &'static str,
    /// Calls in flight.
    pub in_flight: u32,
    /// The latency estimate, milliseconds.
    pub rtt_ms: f64,
    /// Calls answered.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Times ejected.
    pub ejections: u64,
}

impl Source for Balance {
    fn describe(&self, out: &mut Families) {
        let snapshot = self.snapshot();
        for e in &snapshot.endpoints {
            let l = [
                ("client", snapshot.name.as_str()),
                ("endpoint", e.addr.as_str()),
            ];
            out.gauge(
                "phantom_client_endpoint_ejected",
                "1 while the endpoint is ejected.",
                &l,
                f64::from(u8::from(e.state == "ejected")),
            );
            out.gauge(
                "phantom_client_endpoint_in_flight",
                "Calls in flight to the endpoint.",
                &l,
                f64::from(e.in_flight),
            );
            out.gauge(
                "phantom_client_endpoint_rtt_seconds",
                "The endpoint's latency estimate (peak-sensitive moving average).",
                &l,
                e.rtt_ms / 1000.0,
            );
            out.counter(
                "phantom_client_endpoint_calls_total",
                "Calls answered by the endpoint.",
                &l,
                e.calls as f64,
            );
            out.counter(
                "phantom_client_endpoint_failures_total",
                "Calls the endpoint failed.",
                &l,
                e.failures as f64,
            );
            out.counter(
                "phantom_client_endpoint_ejections_total",
                "Times the endpoint was ejected.",
                &l,
                e.ejections as f64,
            );
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.snapshot()).unwrap_or_default()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn kind(&self) -> &'static str {
        "balancer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy(url: &str, _host: &str) -> Result<Channel, String> {
        Ok(tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| e.to_string())?
            .connect_lazy())
    }

    fn balance(n: usize, config: BalanceConfig) -> Balance {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 1000 + i))
            .collect();
        Balance::new(
            "test",
            Targets::parse(&urls.join(",")).unwrap(),
            config,
            Arc::new(lazy),
        )
        .unwrap()
    }

    fn endpoint(b: &Balance, i: usize) -> Arc<Endpoint> {
        b.shared.endpoints()[i].clone()
    }

    #[test]
    fn urls_name_fixed_sets_or_names_to_resolve() {
        assert_eq!(
            Targets::parse("http://vuln-analyzer-headless.phantom.svc:50052").unwrap(),
            Targets::Dns {
                scheme: "http".into(),
                host: "vuln-analyzer-headless.phantom.svc".into(),
                port: 50052
            }
        );
        assert!(matches!(
            Targets::parse("http://127.0.0.1:1, http://[::1]:2").unwrap(),
            Targets::Fixed(u) if u.len() == 2
        ));
        assert!(matches!(
            Targets::parse("https://10.0.0.1:50052").unwrap(),
            Targets::Fixed(u) if u.len() == 1
        ));
        assert!(Targets::parse("not a url").is_err());
        assert!(Targets::parse("http://a:1,").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_less_loaded_of_two_is_chosen_and_overload_is_not_speed() {
        let b = balance(2, BalanceConfig::default());
        let (fast, slow) = (endpoint(&b, 0), endpoint(&b, 1));
        b.shared
            .observe(&fast, Answer::Ok, Duration::from_millis(5));
        b.shared
            .observe(&slow, Answer::Ok, Duration::from_millis(500));
        for _ in 0..20 {
            assert_eq!(b.shared.pick(&[]).unwrap().addr, fast.addr);
        }
        // The fast one starts refusing quickly (RESOURCE_EXHAUSTED in 1 ms): it is now the
        // one to avoid, not the one to favour.
        b.shared
            .observe(&fast, Answer::Overloaded, Duration::from_millis(1));
        assert_eq!(b.shared.pick(&[]).unwrap().addr, slow.addr);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_then_a_probe_takes_it_back() {
        let config = BalanceConfig {
            consecutive_failures: 3,
            ..BalanceConfig::default()
        };
        let b = balance(3, config);
        let bad = endpoint(&b, 0);
        for _ in 0..2 {
            b.shared
                .observe(&bad, Answer::Failed, Duration::from_millis(5));
        }
        assert_eq!(b.snapshot().endpoints[0].state, "active");
        b.shared
            .observe(&bad, Answer::Failed, Duration::from_millis(5));
        assert_eq!(b.snapshot().endpoints[0].state, "ejected");
        for _ in 0..50 {
            assert_ne!(b.shared.pick(&[]).unwrap().addr, bad.addr);
        }
        // After the ejection, one probe at a time; its failure ejects it again, longer.
        tokio::time::advance(config.base_ejection).await;
        assert!(bad.usable(Instant::now()));
        b.shared
            .observe(&bad, Answer::Failed, Duration::from_millis(5));
        assert_eq!(b.snapshot().endpoints[0].state, "ejected");
        tokio::time::advance(config.base_ejection).await;
        assert!(
            !bad.usable(Instant::now()),
            "the second ejection lasts longer"
        );
        tokio::time::advance(config.base_ejection).await;
        assert!(bad.usable(Instant::now()));
        assert_eq!(b.snapshot().endpoints[0].state, "probing");
        b.shared.observe(&bad, Answer::Ok, Duration::from_millis(5));
        assert_eq!(b.snapshot().endpoints[0].state, "active");
        assert_eq!(b.snapshot().endpoints[0].ejections, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_ejects_at_once_but_never_more_than_the_share() {
        let b = balance(4, BalanceConfig::default());
        for i in 0..4 {
            b.shared
                .observe(&endpoint(&b, i), Answer::Refused, Duration::from_millis(1));
        }
        let out = b
            .snapshot()
            .endpoints
            .iter()
            .filter(|e| e.state == "ejected")
            .count();
        assert_eq!(out, 2, "half of four at most");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_ejects_even_between_successes() {
        let config = BalanceConfig {
            min_calls: 10,
            failure_rate: 0.5,
            ..BalanceConfig::default()
        };
        let b = balance(2, config);
        let flaky = endpoint(&b, 0);
        // Never two failures in a row, but six of eleven.
        for i in 0..11 {
            let answer = if i % 2 == 0 {
                Answer::Failed
            } else {
                Answer::Ok
            };
            b.shared.observe(&flaky, answer, Duration::from_millis(5));
        }
        assert_eq!(b.snapshot().endpoints[0].state, "ejected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_goes_to_another_endpoint_while_one_is_left() {
        let b = balance(3, BalanceConfig::default());
        let all: Vec<String> = b
            .shared
            .endpoints()
            .iter()
            .map(|e| e.addr.clone())
            .collect();
        for _ in 0..20 {
            let picked = b.shared.pick(&all[..2]).unwrap();
            assert_eq!(picked.addr, all[2]);
        }
        // Every one tried: any usable one rather than none.
        assert!(b.shared.pick(&all).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_that_stay_keep_their_state_across_resolutions() {
        let b = balance(2, BalanceConfig::default());
        let kept = endpoint(&b, 0);
        b.shared
            .observe(&kept, Answer::Ok, Duration::from_millis(7));
        let url = format!("http://{}", kept.addr);
        b.shared.update(vec![
            (kept.addr.clone(), lazy(&url, "").unwrap()),
            (
                "127.0.0.1:2000".into(),
                lazy("http://127.0.0.1:2000", "").unwrap(),
            ),
        ]);
        let snapshot = b.snapshot();
        assert_eq!(snapshot.endpoints.len(), 2);
        assert_eq!(snapshot.endpoints[0].calls, 1);
        assert_eq!(snapshot.endpoints[1].addr, "127.0.0.1:2000");
    }

    #[tokio::test]
    async fn a_name_is_resolved_to_its_addresses() {
        let b = Balance::new(
            "test",
            Targets::parse("http://localhost:1").unwrap(),
            BalanceConfig::default(),
            Arc::new(lazy),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.snapshot().endpoints.is_empty() {
            assert!(Instant::now() < deadline, "{:?}", b.snapshot());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            b.snapshot()
                .endpoints
                .iter()
                .any(|e| e.addr == "127.0.0.1:1" || e.addr == "[::1]:1"),
            "{:?}",
            b.snapshot()
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_answered_unavailable_and_marked_never_sent() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Balance::new(
            "test",
            Targets::parse(&format!("http://127.0.0.1:{closed}")).unwrap(),
            BalanceConfig::default(),
            Arc::new(lazy),
        )
        .unwrap();
        let request = http::Request::builder()
            .uri(format!(
                "http://127.0.0.1:{closed}/phantom.v1.VulnAnalyzer/ScoreCvss"
            ))
            .body(Body::empty())
            .unwrap();
        let response = tower::Service::call(&mut b, request).await.unwrap();
        assert_eq!(code_in_headers(response.headers()), Some(Code::Unavailable));
        assert!(response.extensions().get::<NeverSent>().is_some());
        // Counted against it (alone, it is not ejected: there is no other to go to).
        assert_eq!(b.snapshot().endpoints[0].failures, 1);
    }

    #[tokio::test]
    async fn an_answer_that_breaks_midway_is_unavailable_and_a_whole_one_keeps_its_trailers() {
        use http_body::Frame;
        use http_body_util::{BodyExt as _, StreamBody};

        let data = || Frame::data(bytes::Bytes::from_static(b"abc"));
        let broken = StreamBody::new(futures::stream::iter(vec![
            Ok(data()),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ]));
        let answer = read_whole(http::Response::new(Body::new(broken)), "e").await;
        assert_eq!(code_in_headers(answer.headers()), Some(Code::Unavailable));

        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
        let whole = StreamBody::new(futures::stream::iter(vec![
            Ok::<_, std::convert::Infallible>(data()),
            Ok(Frame::trailers(trailers.clone())),
        ]));
        let answer = read_whole(http::Response::new(Body::new(whole)), "e").await;
        assert_eq!(
            answer.extensions().get::<Trailed>().map(|t| t.0),
            Some(Code::NotFound)
        );
        let collected = answer.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(&collected.to_bytes()[..], b"abc");
    }

    #[tokio::test(start_paused = true)]
    async fn shedding_is_slow_not_failing_and_the_last_endpoint_is_never_ejected() {
        let b = balance(2, BalanceConfig::default());
        let busy = endpoint(&b, 0);
        for _ in 0..50 {
            b.shared
                .observe(&busy, Answer::Shed, Duration::from_millis(1));
        }
        assert_eq!(b.snapshot().endpoints[0].state, "active");
        assert_eq!(b.snapshot().endpoints[0].failures, 0);
        assert_eq!(b.shared.pick(&[]).unwrap().addr, endpoint(&b, 1).addr);

        let alone = balance(1, BalanceConfig::default());
        alone.shared.observe(
            &endpoint(&alone, 0),
            Answer::Refused,
            Duration::from_millis(1),
        );
        assert_eq!(alone.snapshot().endpoints[0].state, "active");
    }
}
