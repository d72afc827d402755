//! Who may open another subscription: a cap per caller and one per replica.
//!
//! Every open subscription (a gRPC `Subscribe` stream or a WebSocket connection) holds memory
//! until it ends, up to a bound ([`crate::service::SUBSCRIPTION_BYTES`] and the queue's byte
//! budget), so the number open at once is capped: per caller, so that one client cannot take
//! every place, and per replica, so that all of them fit in its memory. A caller is a tenant
//! at one client address; IPv6 clients are told apart by their /64 (one host usually has a
//! whole /64 to pick addresses from), and IPv4-mapped IPv6 peers are the IPv4 peer.
//!
//! A place is held by an [`Admission`] for the subscription's whole life and given back when it
//! is dropped, however the subscription ends.

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, atomic::AtomicU64, atomic::Ordering},
    time::Duration,
};

use phantom_layers::Error;

/// How long a refused subscriber is told to wait: places free up as other streams end.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The client an address belongs to: the address itself for IPv4 (and IPv4-mapped IPv6), the
/// /64 network for IPv6.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// Who a subscription is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    tenant: String,
    /// Its client ([`client_of`]); unknown for transports that do not say (in-process).
    client: Option<IpAddr>,
}

impl Caller {
    /// `tenant` calling from `peer`.
    pub fn new(tenant: impl Into<String>, peer: Option<IpAddr>) -> Self {
        Self {
            tenant: tenant.into(),
            client: peer.map(client_of),
        }
    }
}

/// Places counted in total and per key (a caller, a client address), each held by a
/// [`Place`] until it is dropped: the one admission count behind the subscription caps and
/// the WebSocket gateway's connection caps.
#[derive(Debug)]
pub struct Places<K: Eq + Hash> {
    max: usize,
    max_per_key: usize,
    open: Mutex<Open<K>>,
}

#[derive(Debug)]
struct Open<K> {
    total: usize,
    by_key: HashMap<K, usize>,
}

/// Why [`Places::take`] found no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// All `max` places are taken.
    Total(usize),
    /// The key has its `max_per_key` (the count it has).
    Key(usize),
}

/// One place taken; dropping it gives the place back.
#[derive(Debug)]
pub struct Place<K: Eq + Hash + Clone> {
    places: Arc<Places<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let mut open = self.places.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.by_key.remove(&self.key);
            }
        }
    }
}

impl<K: Eq + Hash + Clone> Places<K> {
    /// At most `max` places at once, `max_per_key` of them for one key.
    pub fn new(max: usize, max_per_key: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            max_per_key: max_per_key.max(1),
            open: Mutex::new(Open {
                total: 0,
                by_key: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open<K>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more place for `key`, if the total and the key's count allow it.
    pub fn take(self: &Arc<Self>, key: K) -> Result<Place<K>, Full> {
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Full::Total(self.max));
        }
        let mine = open.by_key.get(&key).copied().unwrap_or(0);
        if mine >= self.max_per_key {
            return Err(Full::Key(mine));
        }
        open.total += 1;
        *open.by_key.entry(key.clone()).or_default() += 1;
        Ok(Place {
            places: self.clone(),
            key,
        })
    }

    /// Places taken now, and keys that hold at least one.
    pub fn open(&self) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.by_key.len())
    }
}

/// The subscriptions open on this replica.
#[derive(Debug)]
pub struct Subscriptions {
    places: Arc<Places<Caller>>,
    refused_replica: Arc<AtomicU64>,
    refused_caller: Arc<AtomicU64>,
}

/// One open subscription's place; dropping it gives the place back.
pub type Admission = Place<Caller>;

impl Subscriptions {
    /// At most `max` subscriptions at once, `max_per_caller` of them for one caller; refusals
    /// are counted in `r`.
    pub fn new(
        max: usize,
        max_per_caller: usize,
        r: &phantom_layers::registry::Registry,
    ) -> Arc<Self> {
        let refused = |limit| {
            r.counter(
                "phantom_notifier_subscriptions_refused_total",
                "Subscriptions refused because the replica's or the caller's limit was reached.",
                &[("limit", limit)],
            )
        };
        Arc::new(Self {
            places: Places::new(max, max_per_caller),
            refused_replica: refused("replica"),
            refused_caller: refused("caller"),
        })
    }

    /// A place for one more subscription of `caller`, or `RESOURCE_EXHAUSTED` (with
    /// `RetryInfo`) when the replica or the caller has none left.
    pub fn admit(self: &Arc<Self>, caller: Caller) -> Result<Admission, Error> {
        let refuse = |counter: &AtomicU64, message: String| {
            counter.fetch_add(1, Ordering::Relaxed);
            Error::ResourceExhausted {
                message,
                retry_after: Some(RETRY_AFTER),
            }
        };
        self.places.take(caller).map_err(|full| match full {
            Full::Total(max) => refuse(
                &self.refused_replica,
                format!(
                    "this replica serves {max} subscriptions, its limit (notifier.max_subscriptions)"
                ),
            ),
            Full::Key(mine) => refuse(
                &self.refused_caller,
                format!(
                    "this caller has {mine} subscriptions open, its limit \
                     (notifier.max_subscriptions_per_caller); close one first"
                ),
            ),
        })
    }

    /// Subscriptions open now, and callers that have at least one.
    pub fn open(&self) -> (usize, usize) {
        self.places.open()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(client_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_of(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn places_are_capped_per_caller_and_per_replica_and_given_back() {
        let subs = Subscriptions::new(3, 2, &Default::default());
        let a = |host: &str| Caller::new("t", Some(ip(host)));
        let first = subs.admit(a("2001:db8::1")).unwrap();
        let _second = subs.admit(a("2001:db8::2")).unwrap();
        let refused = subs.admit(a("2001:db8::3")).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let _other_tenant = subs.admit(Caller::new("u", Some(ip("2001:db8::3"))));
        let full = subs.admit(a("192.0.2.9")).unwrap_err();
        assert!(full.to_string().contains("max_subscriptions"), "{full}");
        drop(first);
        assert!(subs.admit(a("2001:db8::4")).is_ok());
        assert_eq!(
            subs.open(),
            (2, 2),
            "the place taken just now was given back too"
        );
    }
}
