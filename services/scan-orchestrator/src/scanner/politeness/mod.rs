//! Per-target politeness: at most `scan.per_host_rate` connection attempts per second and
//! `scan.per_host_in_flight` connections open to any one host, whichever scans make them.
//!
//! A cap kept in one process is a cap per replica: N orchestrator replicas scanning one host
//! together would make N times the rate a host's owner agreed to. So when Redis is configured
//! (`REDIS_URL`), the caps are kept there and shared by every replica ([`shared`]): one Lua
//! script per connection checks both caps and takes a slot atomically, on Redis's clock.
//! Without Redis, the caps hold per process, as a single replica needs.
//!
//! # Semantics
//! - The rate is a GCRA with a burst of one: admissions to one host are at least
//!   `1 / per_host_rate` apart, so no one-second window holds more than `per_host_rate`.
//! - A slot in flight is held from before the connect until the connection is closed. In
//!   Redis it is a lease (a member of a sorted set scored by its expiry) that outlives the
//!   longest probe: a replica that crashes holding slots gives them back when their leases
//!   end, and the keys expire once their host is left alone.
//!
//! # When Redis fails
//! A Redis that does not answer within [`REDIS_TIMEOUT`] makes the caps fall back to this
//! process's own for [`REDIS_RETRY_AFTER`], then Redis is tried again. Falling back to the
//! local caps, not to no cap at all (fail-open) and not to no scanning (fail-closed): the
//! hosts are third parties, so a Redis outage must never unleash a scan on them, and a
//! per-replica cap is the politeness a single replica already promises; while it lasts, a
//! host scanned by N replicas sees at most N times its caps. Connections let in locally are
//! not in Redis: for the longest probe after Redis comes back, a host may see them on top of
//! its shared caps. A slot Redis could not be told about when it was given back stays taken
//! until its lease ends (capacity lost for a while, never a cap exceeded).
//!
//! # Layout
//! - this module: [`HostCaps`] (the limiter the builtin engine asks before each connect) and
//!   its [`Permit`];
//! - [`shared`]: the Redis side, its scripts and their tests.

pub mod shared;

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::settings::ScanConfig;

pub use shared::{Attempt, SharedCaps};

/// Longest wait for Redis before the local caps apply.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the local caps apply after Redis failed, before Redis is tried again: long enough
/// that a Redis outage costs one timeout now and then, not one per connection.
pub const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Longest sleep between two attempts on a full host: a slot given back by another replica
/// is seen this late at most. One task per host and replica polls (the others queue behind
/// it); a wait for the rate is exact, not polled.
const POLL_AT_MOST: Duration = Duration::from_millis(20);
/// What a lease in Redis adds to the longest probe: slack for the round trips around it.
const LEASE_SLACK: Duration = Duration::from_secs(2);

type HostLimiter = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;

/// The per-host caps of one process, shared through Redis when it has one (see the module).
#[derive(Debug, Clone)]
pub struct HostCaps {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// The rate, for the local fallback (a burst of one, as in Redis).
    local_rate: Option<HostLimiter>,
    /// Connections in flight per host, per process.
    in_flight: Option<NonZeroU32>,
    /// The hosts with a probe waiting or in flight (forgotten when none is left).
    hosts: Mutex<HashMap<IpAddr, Arc<Host>>>,
    /// The caps shared with the other replicas, when Redis is configured.
    shared: Option<SharedCaps>,
    /// Until when Redis is left alone after a failure.
    redis_down_until: Mutex<Option<Instant>>,
}

/// One host's local state.
#[derive(Debug)]
struct Host {
    /// Its slots in flight in this process.
    slots: Option<Arc<Semaphore>>,
    /// Taken by the one task of this process that asks Redis for this host; the others queue
    /// behind it in order, so a full host is polled once per replica, not once per probe.
    turn: tokio::sync::Mutex<()>,
}

/// Leave to connect to one host, held until the connection is closed.
#[derive(Debug)]
#[must_use = "the slot is given back when the permit is dropped"]
pub struct Permit {
    /// The host's state, to forget it when its last permit goes.
    held: Option<(Arc<Inner>, IpAddr, Arc<Host>)>,
    /// The local slot.
    _local: Option<OwnedSemaphorePermit>,
    /// The slot in Redis (its lease's member), given back on drop.
    shared: Option<String>,
}

impl HostCaps {
    /// The caps of `config` (`per_host_rate`, `per_host_in_flight`), kept in this process.
    pub fn local(config: &ScanConfig) -> Self {
        let rate = NonZeroU32::new(config.per_host_rate);
        let in_flight = NonZeroU32::new(config.per_host_in_flight);
        if rate.is_none() && in_flight.is_none() {
            return Self { inner: None };
        }
        Self {
            inner: Some(Arc::new(Inner {
                local_rate: rate.map(|r| {
                    governor::RateLimiter::keyed(
                        governor::Quota::per_second(r).allow_burst(NonZeroU32::MIN),
                    )
                }),
                in_flight,
                hosts: Mutex::new(HashMap::new()),
                shared: None,
                redis_down_until: Mutex::new(None),
            })),
        }
    }

    /// The caps of `config`, shared with every replica through the Redis at `redis_url`
    /// (which connects in the background: a Redis down at start-up makes the local caps apply
    /// until it answers). No caps configured: no connection either.
    pub fn shared(
        config: &ScanConfig,
        redis_url: &str,
    ) -> Result<Self, phantom_layers::redis::Error> {
        let mut caps = Self::local(config);
        if let Some(inner) = caps.inner.take() {
            let mut inner = Arc::into_inner(inner).expect("just made");
            inner.shared = Some(SharedCaps::connect(
                redis_url,
                config.per_host_rate,
                config.per_host_in_flight,
                lease_for(config),
                REDIS_TIMEOUT,
            )?);
            caps.inner = Some(Arc::new(inner));
        }
        Ok(caps)
    }

    /// Whether the caps are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.shared.is_some())
    }

    /// Waits until a connection to `host` is within its caps, and takes a slot.
    pub async fn acquire(&self, host: IpAddr) -> Permit {
        let Some(inner) = &self.inner else {
            return Permit {
                held: None,
                _local: None,
                shared: None,
            };
        };
        let state = inner.host(host);
        let local = match &state.slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let mut permit = Permit {
            held: Some((inner.clone(), host, state.clone())),
            _local: local,
            shared: None,
        };
        let _turn = state.turn.lock().await;
        loop {
            let Some(shared) = inner.shared.as_ref().filter(|_| inner.redis_up()) else {
                inner.wait_local_rate(host).await;
                return permit;
            };
            match shared.try_acquire(host).await {
                Ok(Attempt::Admitted(token)) => {
                    permit.shared = Some(token);
                    return permit;
                }
                Ok(Attempt::Wait(wait)) => tokio::time::sleep(wait).await,
                Ok(Attempt::Full(wait)) => tokio::time::sleep(wait.min(POLL_AT_MOST)).await,
                Err(error) => {
                    tracing::warn!(%host, %error, retry_after = ?REDIS_RETRY_AFTER, "Redis unavailable: per-host caps fall back to this replica's own");
                    *inner.redis_down_until.lock().expect("not poisoned") =
                        Some(Instant::now() + REDIS_RETRY_AFTER);
                }
            }
        }
    }
}

/// How long a probe may hold its slot: the connect, the wait for a banner, and the wait for
/// the answer to a `HEAD /` (the builtin engine bounds each probe by this).
pub fn longest_probe(config: &ScanConfig) -> Duration {
    config.connect_timeout + config.banner_timeout * 2 + Duration::from_secs(1)
}

/// The lease of a slot in Redis: longer than any probe, so that only a crashed replica's
/// slots ever expire.
fn lease_for(config: &ScanConfig) -> Duration {
    longest_probe(config) + LEASE_SLACK
}

impl Inner {
    fn host(&self, host: IpAddr) -> Arc<Host> {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        hosts
            .entry(host)
            .or_insert_with(|| {
                Arc::new(Host {
                    slots: self
                        .in_flight
                        .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
                    turn: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    fn redis_up(&self) -> bool {
        let mut down = self.redis_down_until.lock().expect("not poisoned");
        match *down {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *down = None;
                tracing::info!("Trying Redis again for the per-host caps");
                true
            }
            None => true,
        }
    }

    async fn wait_local_rate(&self, host: IpAddr) {
        let Some(limiter) = &self.local_rate else {
            return;
        };
        while let Err(not_until) = limiter.check_key(&host) {
            use governor::clock::Clock as _;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            tokio::time::sleep(wait).await;
        }
    }

    /// Forgets `host` when `state` is its last user (the map's reference and the caller's).
    fn forget_if_idle(&self, host: IpAddr, state: Arc<Host>) {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        // References are only cloned under this lock: the count cannot grow meanwhile.
        if Arc::strong_count(&state) == 2 {
            hosts.remove(&host);
            if hosts.is_empty()
                && let Some(limiter) = &self.local_rate
            {
                // The rate's state outlives the map entry (a host forgotten and probed again
                // at once keeps its spacing); idle hosts' states are dropped here.
                limiter.retain_recent();
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some((inner, host, state)) = self.held.take() else {
            return;
        };
        if let (Some(token), Some(shared)) = (self.shared.take(), inner.shared.clone()) {
            // Dropped at the end of a probe, in a task of the runtime; without one (a runtime
            // shutting down), the lease gives the slot back.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { shared.release(host, &token).await });
            }
        }
        inner.forget_if_idle(host, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(rate: u32, in_flight: u32) -> HostCaps {
        HostCaps::local(&ScanConfig {
            per_host_rate: rate,
            per_host_in_flight: in_flight,
            ..ScanConfig::default()
        })
    }

    #[tokio::test]
    async fn local_slots_in_flight_are_capped_per_host_and_given_back() {
        let caps = caps(0, 2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = caps.acquire(a).await;
        let _second = caps.acquire(a).await;
        let third = tokio::time::timeout(Duration::from_millis(50), caps.acquire(a)).await;
        assert!(third.is_err(), "a third slot on a host capped at two");
        // Another host has its own slots.
        let _other = caps.acquire(b).await;
        drop(first);
        let _third = tokio::time::timeout(Duration::from_millis(50), caps.acquire(a))
            .await
            .expect("a slot given back is taken again");
    }

    #[tokio::test]
    async fn idle_hosts_are_forgotten() {
        let caps = caps(0, 1);
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let permit = caps.acquire(host).await;
        let inner = caps.inner.as_ref().unwrap();
        assert_eq!(inner.hosts.lock().unwrap().len(), 1);
        drop(permit);
        assert!(inner.hosts.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn no_caps_means_no_waiting_and_no_state() {
        let caps = caps(0, 0);
        assert!(caps.inner.is_none());
        let _many: Vec<Permit> =
            futures::future::join_all((0..100).map(|_| caps.acquire("127.0.0.1".parse().unwrap())))
                .await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_the_local_caps() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let caps = HostCaps::shared(
            &ScanConfig {
                per_host_in_flight: 1,
                ..ScanConfig::default()
            },
            &format!("redis://127.0.0.1:{port}"),
        )
        .unwrap();
        assert!(caps.is_shared());
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let started = Instant::now();
        let first = tokio::time::timeout(Duration::from_secs(2), caps.acquire(host))
            .await
            .expect("the local caps apply after one timeout");
        assert!(started.elapsed() >= REDIS_TIMEOUT);
        // The local cap still holds, and Redis is not waited for again meanwhile.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), caps.acquire(host))
                .await
                .is_err()
        );
        drop(first);
        let started = Instant::now();
        let _second = caps.acquire(host).await;
        assert!(started.elapsed() < REDIS_TIMEOUT);
    }
}
