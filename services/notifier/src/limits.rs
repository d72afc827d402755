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

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_caller: HashMap<Caller, usize>,
}

/// The subscriptions open on this replica.
#[derive(Debug)]
pub struct Subscriptions {
    max: usize,
    max_per_caller: usize,
    open: Mutex<Open>,
    refused_replica: Arc<AtomicU64>,
    refused_caller: Arc<AtomicU64>,
}

/// One open subscription's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Admission {
    subscriptions: Arc<Subscriptions>,
    caller: Caller,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.subscriptions.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.by_caller.remove(&self.caller);
            }
        }
    }
}

impl Subscriptions {
    /// At most `max` subscriptions at once, `max_per_caller` of them for one caller.
    pub fn new(max: usize, max_per_caller: usize) -> Arc<Self> {
        let r = phantom_layers::registry::global();
        let refused = |limit| {
            r.counter(
                "phantom_notifier_subscriptions_refused_total",
                "Subscriptions refused because the replica's or the caller's limit was reached.",
                &[("limit", limit)],
            )
        };
        Arc::new(Self {
            max: max.max(1),
            max_per_caller: max_per_caller.max(1),
            open: Mutex::default(),
            refused_replica: refused("replica"),
            refused_caller: refused("caller"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more subscription of `caller`, or `RESOURCE_EXHAUSTED` (with
    /// `RetryInfo`) when the replica or the caller has none left.
    pub fn admit(self: &Arc<Self>, caller: Caller) -> Result<Admission, Error> {
        let mut open = self.lock();
        let refuse = |counter: &AtomicU64, message: String| {
            counter.fetch_add(1, Ordering::Relaxed);
            Err(Error::ResourceExhausted {
                message,
                retry_after: Some(RETRY_AFTER),
            })
        };
        if open.total >= self.max {
            return refuse(
                &self.refused_replica,
                format!(
                    "this replica serves {} subscriptions, its limit (notifier.max_subscriptions)",
                    self.max
                ),
            );
        }
        let mine = open.by_caller.get(&caller).copied().unwrap_or(0);
        if mine >= self.max_per_caller {
            return refuse(
                &self.refused_caller,
                format!(
                    "this caller has {mine} subscriptions open, its limit \
                     (notifier.max_subscriptions_per_caller); close one first"
                ),
            );
        }
        open.total += 1;
        *open.by_caller.entry(caller.clone()).or_default() += 1;
        Ok(Admission {
            subscriptions: self.clone(),
            caller,
        })
    }

    /// Subscriptions open now, and callers that have at least one.
    pub fn open(&self) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.by_caller.len())
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
        let subs = Subscriptions::new(3, 2);
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
