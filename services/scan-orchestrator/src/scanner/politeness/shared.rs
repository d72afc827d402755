//! The per-host caps in Redis, shared by every orchestrator replica.
//!
//! Two keys per host, in one hash slot (`{address}`) so that one script may use both on a
//! Redis Cluster too:
//! - `phantom:polite:{addr}:rate`: the GCRA's theoretical arrival time (the layers crate's
//!   [`GCRA_LUA_FUNCTIONS`], with a burst of one), expiring once the host is idle;
//! - `phantom:polite:{addr}:busy`: the slots in flight, a sorted set of holders scored by the
//!   end of their lease. Expired leases (a replica that crashed holding them) are dropped
//!   before counting, and the set expires with its latest lease.
//!
//! One script checks both caps and takes both (or neither) atomically: a connection that
//! waits for a slot does not spend a rate token, and one refused by the rate does not hold a
//! slot. Giving a slot back is one `ZREM`.
//!
//! [`GCRA_LUA_FUNCTIONS`]: phantom_layers::rate_limit::GCRA_LUA_FUNCTIONS

use std::{
    net::IpAddr,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use phantom_layers::{
    rate_limit::GCRA_LUA_FUNCTIONS,
    redis::{self, Client},
};

/// Takes a slot on one host. KEYS[1]: the rate key, KEYS[2]: the slots' set. ARGV: the
/// emission interval in microseconds (0: no rate cap), the slots (0: no cap), the lease in
/// microseconds, the holder's name. Returns {1, 0} when taken; {0, wait in microseconds, 0}
/// when the rate refuses (the wait is exact); {0, wait, 1} when the host is full (the wait is
/// until its first lease ends: a bound, the slot may come back sooner).
const ACQUIRE_LUA: &str = r"
local now = redis_now()
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= cap then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {0, math.max(1, tonumber(first[2]) - now), 1}
  end
end
if interval > 0 then
  local wait, new_tat = gcra_check(KEYS[1], now, interval, 0)
  if wait > 0 then
    return {0, wait}
  end
  gcra_commit(KEYS[1], now, new_tat)
end
if cap > 0 then
  redis.call('ZADD', KEYS[2], now + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) + 1)
end
return {1, 0}
";

/// Gives a slot back. KEYS[1]: the slots' set; ARGV[1]: the holder's name.
const RELEASE_LUA: &str = "return {redis.call('ZREM', KEYS[1], ARGV[1])}";

/// The GCRA functions and [`ACQUIRE_LUA`], made into one script once.
static ACQUIRE_SCRIPT: LazyLock<String> =
    LazyLock::new(|| format!("{GCRA_LUA_FUNCTIONS}{ACQUIRE_LUA}"));

/// What Redis said to a request for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Taken: the holder's name, to give it back with.
    Admitted(String),
    /// Over the rate: ask again after this long.
    Wait(Duration),
    /// The host's slots are taken: one may come back any time, and within this long at the
    /// latest (the first lease's end).
    Full(Duration),
}

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Redis answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::Error),
    /// Redis did not answer in time.
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
}

/// The per-host caps in Redis (see the module).
#[derive(Clone)]
pub struct SharedCaps {
    client: Client,
    /// Microseconds between two connections to one host (0: no rate cap).
    interval_us: i64,
    /// Slots per host (0: no cap).
    in_flight: i64,
    /// A slot's lease, in microseconds.
    lease_us: i64,
    /// Longest wait for one answer.
    timeout: Duration,
    /// This replica's name, unique, so that holders' names never collide across replicas.
    replica: Arc<str>,
    /// Slots taken by this replica, to name each holder.
    taken: Arc<AtomicU64>,
}

impl std::fmt::Debug for SharedCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCaps")
            .field("interval_us", &self.interval_us)
            .field("in_flight", &self.in_flight)
            .field("lease_us", &self.lease_us)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl SharedCaps {
    /// Caps of `per_second` connections (0: none) and `in_flight` slots (0: none) per host,
    /// slots leased for `lease`, each call to Redis bounded by `timeout`. The client connects
    /// in the background (see [`phantom_layers::redis`]).
    pub fn connect(
        url: &str,
        per_second: u32,
        in_flight: u32,
        lease: Duration,
        timeout: Duration,
    ) -> Result<Self, redis::Error> {
        // Calls are timed here, not by the client.
        let client = redis::connect(url, Duration::ZERO)?;
        let interval_us = if per_second == 0 {
            0
        } else {
            // Rounded up: never faster than the cap.
            i64::from(1_000_000_u32.div_ceil(per_second))
        };
        Ok(Self {
            client,
            interval_us,
            in_flight: i64::from(in_flight),
            lease_us: i64::try_from(lease.as_micros()).unwrap_or(i64::MAX),
            timeout,
            replica: uuid::Uuid::now_v7().to_string().into(),
            taken: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Asks once for a slot on `host`.
    pub async fn try_acquire(&self, host: IpAddr) -> Result<Attempt, SharedError> {
        let holder = format!(
            "{}:{}",
            self.replica,
            self.taken.fetch_add(1, Ordering::Relaxed)
        );
        let call = redis::eval_integers(
            &self.client,
            &ACQUIRE_SCRIPT,
            vec![rate_key(host), busy_key(host)],
            vec![
                self.interval_us.to_string(),
                self.in_flight.to_string(),
                self.lease_us.to_string(),
                holder.clone(),
            ],
        );
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(SharedError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(v)) if v.first() == Some(&1) => Ok(Attempt::Admitted(holder)),
            Ok(Ok(v)) => {
                let wait =
                    Duration::from_micros(v.get(1).copied().unwrap_or(1).max(1).unsigned_abs());
                Ok(if v.get(2) == Some(&1) {
                    Attempt::Full(wait)
                } else {
                    Attempt::Wait(wait)
                })
            }
        }
    }

    /// Gives back the slot `holder` took on `host` (a failure leaves it to its lease).
    pub async fn release(&self, host: IpAddr, holder: &str) {
        let call = redis::eval_integers(
            &self.client,
            RELEASE_LUA,
            vec![busy_key(host)],
            vec![holder.to_owned()],
        );
        if let Err(error) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SharedError::Timeout(self.timeout))
            .and_then(|r| r.map(drop).map_err(SharedError::from))
        {
            tracing::debug!(%host, %error, "A slot was not given back: its lease will end it");
        }
    }
}

fn rate_key(host: IpAddr) -> String {
    format!("phantom:polite:{{{host}}}:rate")
}

fn busy_key(host: IpAddr) -> String {
    format!("phantom:polite:{{{host}}}:busy")
}

#[cfg(test)]
mod tests {
    //! Against a real Redis (`PHANTOM_TEST_REDIS_URL`, which `tests/support/with-backends.sh`
    //! provides); skipped without one. Each test uses its own address, so they run together.

    use super::*;

    async fn caps(url: &str, per_second: u32, in_flight: u32, lease: Duration) -> SharedCaps {
        let caps =
            SharedCaps::connect(url, per_second, in_flight, lease, Duration::from_secs(2)).unwrap();
        // Wait for the background connection, so a first timeout is not the test's subject.
        for _ in 0..100 {
            if caps
                .try_acquire("192.0.2.255".parse().unwrap())
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        caps
    }

    fn admitted(a: &Attempt) -> Option<&str> {
        match a {
            Attempt::Admitted(holder) => Some(holder),
            Attempt::Wait(_) | Attempt::Full(_) => None,
        }
    }

    #[tokio::test]
    async fn slots_are_shared_by_replicas_and_given_back() {
        let Some(url) = phantom_storage::testing::redis_url() else {
            return;
        };
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let lease = Duration::from_secs(30);
        let (a, b) = (caps(&url, 0, 2, lease).await, caps(&url, 0, 2, lease).await);
        let first = a.try_acquire(host).await.unwrap();
        let second = b.try_acquire(host).await.unwrap();
        let (first, _second) = (admitted(&first).unwrap(), admitted(&second).unwrap());
        // Two replicas, one cap of two: the third slot waits, whichever replica asks.
        for replica in [&a, &b] {
            match replica.try_acquire(host).await.unwrap() {
                Attempt::Full(wait) => assert!(wait <= lease, "{wait:?}"),
                other => panic!("a third slot on a host capped at two: {other:?}"),
            }
        }
        // Another host has its own slots.
        assert!(admitted(&a.try_acquire("192.0.2.2".parse().unwrap()).await.unwrap()).is_some());
        a.release(host, first).await;
        assert!(admitted(&b.try_acquire(host).await.unwrap()).is_some());
        assert!(admitted(&b.try_acquire(host).await.unwrap()).is_none());
    }

    #[tokio::test]
    async fn a_crashed_holders_slots_come_back_when_their_lease_ends() {
        let Some(url) = phantom_storage::testing::redis_url() else {
            return;
        };
        let host: IpAddr = "192.0.2.3".parse().unwrap();
        let lease = Duration::from_millis(300);
        let crashed = caps(&url, 0, 1, lease).await;
        assert!(admitted(&crashed.try_acquire(host).await.unwrap()).is_some());
        drop(crashed); // never gives its slot back
        let alive = caps(&url, 0, 1, lease).await;
        let Attempt::Full(wait) = alive.try_acquire(host).await.unwrap() else {
            panic!("the crashed holder's slot is still leased");
        };
        assert!(wait <= lease, "{wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert!(admitted(&alive.try_acquire(host).await.unwrap()).is_some());
    }

    #[tokio::test]
    async fn the_rate_spaces_connections_across_replicas_and_a_wait_spends_nothing() {
        let Some(url) = phantom_storage::testing::redis_url() else {
            return;
        };
        let host: IpAddr = "192.0.2.4".parse().unwrap();
        let lease = Duration::from_secs(30);
        // 2 per second, a burst of one: 500 ms apart, whichever replica connects.
        let (a, b) = (caps(&url, 2, 1, lease).await, caps(&url, 2, 1, lease).await);
        let first = a.try_acquire(host).await.unwrap();
        let first = admitted(&first).unwrap();
        a.release(host, first).await;
        let Attempt::Wait(wait) = b.try_acquire(host).await.unwrap() else {
            panic!("a second connection within 500 ms");
        };
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        tokio::time::sleep(wait).await;
        let second = b.try_acquire(host).await.unwrap();
        assert!(admitted(&second).is_some());
        // The host is full (one slot): a refusal for the slot does not spend the next token,
        // so the next connection waits for the slot and then the rate, no longer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(matches!(
            a.try_acquire(host).await.unwrap(),
            Attempt::Full(_)
        ));
        b.release(host, admitted(&second).unwrap()).await;
        assert!(admitted(&a.try_acquire(host).await.unwrap()).is_some());
    }

    #[tokio::test]
    async fn keys_expire_once_their_host_is_idle() {
        let Some(url) = phantom_storage::testing::redis_url() else {
            return;
        };
        let host: IpAddr = "192.0.2.5".parse().unwrap();
        let caps = caps(&url, 1000, 1, Duration::from_millis(200)).await;
        let holder = caps.try_acquire(host).await.unwrap();
        caps.release(host, admitted(&holder).unwrap()).await;
        let ttl = "local r = redis.call('PTTL', KEYS[1]) local b = redis.call('PTTL', KEYS[2]) return {r, b}";
        let ttls = redis::eval_integers(
            &caps.client,
            ttl,
            vec![rate_key(host), busy_key(host)],
            vec![],
        )
        .await
        .unwrap();
        // The rate key lives one interval (plus a millisecond); the set, at most one lease
        // (-2: already gone, once empty).
        assert!(ttls[0] == -2 || (0..=2).contains(&ttls[0]), "{ttls:?}");
        assert!(ttls[1] == -2 || (0..=201).contains(&ttls[1]), "{ttls:?}");
    }
}
