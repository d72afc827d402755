//! Targets: what a scan is pointed at.
//!
//! A scanner is a weapon: it only points where it is allowed. Every target is parsed (IPv4,
//! IPv6, CIDR, hostname; nothing that starts with `-`, so nothing can be read as an option by
//! an engine), hostnames are resolved once and every resolved address is checked against the
//! [`Scope`], and the scanner is handed the addresses, never the name, so DNS cannot change
//! between the check and the scan.
//!
//! One request's cost is bounded before any work: the number of targets, each target's
//! length, the addresses its blocks cover, and one deadline for resolving all its names.
//! Errors quote targets through [`echo`], so an oversized one comes back short.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use crate::repository::ResolvedTarget;
use async_trait::async_trait;
use futures::{StreamExt, stream::FuturesUnordered};
use ipnet::IpNet;
use phantom_layers::{Error, FieldViolation, status::echo};

pub use crate::scope::Scope;

/// Most targets one request may list.
pub const MAX_TARGETS: usize = 1024;
/// Longest target, in bytes, checked before it is parsed. A host name is at most 253
/// characters (254 with its final dot) and an address or a block is shorter, so no valid
/// target comes near it.
pub const MAX_TARGET_BYTES: usize = 256;
/// How long resolving all the host names of one request may take.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);
/// Host names of one request resolved at once.
pub const RESOLVE_CONCURRENCY: usize = 16;

/// A target as written by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One address.
    Addr(IpAddr),
    /// A block of addresses.
    Net(IpNet),
    /// A DNS name.
    Host(String),
}

/// Why a target cannot be parsed. Values are quoted through [`echo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing but blanks.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_TARGET_BYTES`].
    #[error("is {len} bytes long; a target is at most {MAX_TARGET_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// It starts with `-`, so an engine could read it as an option.
    #[error("{0} starts with '-'")]
    OptionLike(String),
    /// It has a `/` but is not a CIDR block.
    #[error("{0} is not a valid CIDR block")]
    BadBlock(String),
    /// Neither an address, a block nor a host name.
    #[error("{0} is not an IP address, CIDR block or hostname")]
    Unrecognized(String),
}

/// Parses one target.
pub fn parse(s: &str) -> Result<Target, TargetError> {
    if s.len() > MAX_TARGET_BYTES {
        return Err(TargetError::TooLong { len: s.len() });
    }
    let s = s.trim();
    if s.is_empty() {
        return Err(TargetError::Empty);
    }
    if s.starts_with('-') {
        return Err(TargetError::OptionLike(echo(s)));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(Target::Addr(addr));
    }
    if s.contains('/') {
        return s
            .parse::<IpNet>()
            .map(|n| Target::Net(n.trunc()))
            .map_err(|_| TargetError::BadBlock(echo(s)));
    }
    if valid_hostname(s) {
        return Ok(Target::Host(s.trim_end_matches('.').to_ascii_lowercase()));
    }
    Err(TargetError::Unrecognized(echo(s)))
}

fn valid_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // An all-numeric name is a mistyped address, not a host.
        && !s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Resolves host names: the system resolver in service, a stand-in in tests.
#[async_trait]
pub trait Lookup: Send + Sync {
    /// The addresses of `name`.
    async fn lookup(&self, name: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((name, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

fn net_size(n: &IpNet) -> u128 {
    let host_bits = u32::from(n.max_prefix_len() - n.prefix_len());
    if host_bits >= 127 {
        u128::MAX
    } else {
        1u128 << host_bits
    }
}

fn out_of_scope(i: usize, raw: &str, addr: Option<IpAddr>, why: &dyn std::fmt::Display) -> Error {
    let at = addr.map(|a| format!(" ({a})")).unwrap_or_default();
    Error::SecurityViolation {
        reason: "TARGET_OUT_OF_SCOPE",
        message: format!("target {}{at} is out of scope: {why}", echo(raw.trim())),
        field: Some(format!("targets[{i}]")),
    }
}

/// Parses, checks, resolves and expands targets into the addresses to scan, with the system
/// resolver.
///
/// Malformed targets are `INVALID_ARGUMENT` (all of them reported at once); a target with
/// any address outside the scope is `PERMISSION_DENIED` naming the target and the rule.
pub async fn resolve(
    targets: &[String],
    scope: &Scope,
    max_hosts: u32,
) -> Result<Vec<ResolvedTarget>, Error> {
    resolve_with(targets, scope, max_hosts, &SystemLookup).await
}

/// [`resolve`], with host names resolved by `lookup`.
pub async fn resolve_with(
    targets: &[String],
    scope: &Scope,
    max_hosts: u32,
    lookup: &dyn Lookup,
) -> Result<Vec<ResolvedTarget>, Error> {
    if targets.is_empty() {
        return Err(Error::invalid("targets", "at least one target is required"));
    }
    if targets.len() > MAX_TARGETS {
        return Err(Error::invalid(
            "targets",
            format!("at most {MAX_TARGETS} targets per scan"),
        ));
    }
    let mut parsed = Vec::with_capacity(targets.len());
    let mut violations = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        match parse(t) {
            Ok(target) => parsed.push((i, t.as_str(), target)),
            Err(why) => {
                violations.push(FieldViolation::new(
                    format!("targets[{i}]"),
                    why.to_string(),
                ));
            }
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }

    let max = u128::from(max_hosts);
    let planned: u128 = parsed
        .iter()
        .map(|(_, _, t)| {
            if let Target::Net(n) = t {
                net_size(n)
            } else {
                1
            }
        })
        .fold(0u128, u128::saturating_add);
    if planned > max {
        return Err(Error::invalid(
            "targets",
            format!(
                "the targets cover {planned} addresses, over the limit of {max_hosts} (scan.max_hosts_per_scan)"
            ),
        ));
    }

    // Addresses and blocks are checked, and names against the allowed domains, before any
    // name is resolved: a request that is out of scope costs no DNS query.
    for (i, raw, target) in &parsed {
        let refused = match target {
            Target::Addr(addr) => scope.refusal(*addr).map(|why| (Some(*addr), why)),
            // Every address of the block is checked, not only its first.
            Target::Net(n) => n
                .hosts()
                .find_map(|addr| scope.refusal(addr).map(|why| (Some(addr), why))),
            Target::Host(name) => {
                if let Some(why) = scope.name_refusal(name) {
                    return Err(out_of_scope(*i, raw, None, &why));
                }
                None
            }
        };
        if let Some((addr, why)) = refused {
            return Err(out_of_scope(*i, raw, addr, &why));
        }
    }

    let mut names: Vec<&str> = Vec::new();
    let mut distinct = HashSet::new();
    for (_, _, target) in &parsed {
        if let Target::Host(name) = target
            && distinct.insert(name.as_str())
        {
            names.push(name);
        }
    }
    let resolved = resolve_names(&names, lookup).await;

    // Every resolved address is checked; then the names that did not resolve are reported,
    // each on its own field.
    let mut unresolved = Vec::new();
    for (i, raw, target) in &parsed {
        if let Target::Host(name) = target {
            match &resolved[name.as_str()] {
                Ok(addrs) => {
                    if let Some((addr, why)) = addrs
                        .iter()
                        .find_map(|a| scope.refusal(*a).map(|why| (*a, why)))
                    {
                        return Err(out_of_scope(*i, raw, Some(addr), &why));
                    }
                }
                Err(why) => unresolved.push(FieldViolation::new(format!("targets[{i}]"), why)),
            }
        }
    }
    if !unresolved.is_empty() {
        return Err(Error::InvalidArgument(unresolved));
    }

    // Deduplicated in a set: a block and the addresses inside it cost one probe each.
    let mut out: Vec<ResolvedTarget> = Vec::new();
    let mut seen: HashSet<IpAddr> = HashSet::new();
    let mut push = |hostname: Option<&str>, address: IpAddr| {
        if seen.insert(address) {
            out.push(ResolvedTarget {
                hostname: hostname.map(str::to_owned),
                address,
            });
        }
    };
    for (_, _, target) in &parsed {
        match target {
            Target::Addr(addr) => push(None, *addr),
            Target::Net(n) => n.hosts().for_each(|addr| push(None, addr)),
            Target::Host(name) => {
                if let Ok(addrs) = &resolved[name.as_str()] {
                    addrs.iter().for_each(|addr| push(Some(name), *addr));
                }
            }
        }
    }
    if out.len() as u128 > max {
        return Err(Error::invalid(
            "targets",
            format!(
                "the targets resolve to {} addresses, over the limit of {max_hosts}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// Resolves each of `names` (distinct) to its sorted, distinct addresses, or says why not:
/// [`RESOLVE_CONCURRENCY`] at a time, all within [`RESOLVE_DEADLINE`]. A name still pending
/// at the deadline is reported as such; its lookup is dropped (a `getaddrinfo` already on a
/// blocking thread finishes there, unheard).
async fn resolve_names<'a>(
    names: &[&'a str],
    lookup: &dyn Lookup,
) -> HashMap<&'a str, Result<Vec<IpAddr>, String>> {
    async fn one<'n>(
        lookup: &dyn Lookup,
        name: &'n str,
    ) -> (&'n str, std::io::Result<Vec<IpAddr>>) {
        (name, lookup.lookup(name).await)
    }

    let mut out = HashMap::with_capacity(names.len());
    let mut queue = names.iter().copied();
    let mut running: FuturesUnordered<_> = queue
        .by_ref()
        .take(RESOLVE_CONCURRENCY)
        .map(|name| one(lookup, name))
        .collect();
    let deadline = tokio::time::sleep(RESOLVE_DEADLINE);
    tokio::pin!(deadline);
    loop {
        let (name, result) = tokio::select! {
            next = running.next() => match next {
                Some(done) => done,
                None => break,
            },
            () = &mut deadline => break,
        };
        if let Some(next) = queue.next() {
            running.push(one(lookup, next));
        }
        let result = match result {
            Err(e) => Err(format!("cannot resolve {}: {e}", echo(name))),
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                if addrs.is_empty() {
                    Err(format!("{} has no addresses", echo(name)))
                } else {
                    Ok(addrs)
                }
            }
        };
        out.insert(name, result);
    }
    for name in names {
        out.entry(*name).or_insert_with(|| {
            Err(format!(
                "resolving {} did not finish within the request's {}s",
                echo(name),
                RESOLVE_DEADLINE.as_secs()
            ))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use crate::settings::ScanConfig;
    use tonic_types::StatusExt;

    use super::*;

    fn scope() -> Scope {
        Scope::new(&ScanConfig::default())
    }

    fn strings(targets: &[&str]) -> Vec<String> {
        targets.iter().map(|t| (*t).to_owned()).collect()
    }

    /// A resolver stand-in: each name takes `delay` (on the paused test clock) and resolves
    /// to 127.0.0.1, unless it starts with `hang` (never answers) or `fail` (an error). It
    /// records how many lookups were in flight at most.
    #[derive(Debug)]
    struct SlowLookup {
        delay: Duration,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        asked: Mutex<Vec<String>>,
    }

    impl SlowLookup {
        fn new(delay: Duration) -> Self {
            Self {
                delay,
                in_flight: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl Lookup for SlowLookup {
        async fn lookup(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
            self.asked.lock().unwrap().push(name.to_owned());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            if name.starts_with("hang") {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if name.starts_with("fail") {
                return Err(std::io::Error::other("no such host"));
            }
            Ok(vec!["127.0.0.1".parse().unwrap()])
        }
    }

    #[test]
    fn parses_every_kind_of_target() {
        assert_eq!(
            parse("10.0.0.1").unwrap(),
            Target::Addr("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse("::1").unwrap(), Target::Addr("::1".parse().unwrap()));
        assert_eq!(
            parse("10.0.0.7/30").unwrap(),
            Target::Net("10.0.0.4/30".parse().unwrap())
        );
        assert_eq!(
            parse("Scan.Example.com.").unwrap(),
            Target::Host("scan.example.com".into())
        );
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}.", "a".repeat(61));
        assert_eq!(longest.len(), 254);
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn refuses_option_like_and_malformed_targets() {
        for bad in [
            "-sV",
            "--script=x",
            "10.0.0.1/33",
            "a..b",
            "exa mple.com",
            "1.2.3.4.5",
            "999.1.1.1",
            "",
            "host-.com",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_target_over_the_length_limit_is_refused_before_it_is_parsed() {
        let padded = format!("{}10.0.0.1", " ".repeat(MAX_TARGET_BYTES));
        assert_eq!(
            parse(&padded),
            Err(TargetError::TooLong {
                len: MAX_TARGET_BYTES + 8
            })
        );
    }

    #[test]
    fn a_huge_target_is_quoted_short_in_its_error() {
        let huge = "a".repeat(3_900_000);
        let why = parse(&huge).unwrap_err().to_string();
        assert!(why.len() < 200, "{} bytes", why.len());
        let long = "a".repeat(200);
        let why = parse(&long).unwrap_err().to_string();
        assert!(why.contains("(200 bytes)"), "{why}");
    }

    #[tokio::test]
    async fn a_huge_target_comes_back_as_a_short_status() {
        let err = resolve(&["a".repeat(3_900_000)], &scope(), 256)
            .await
            .unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 300, "{}", status.message().len());
        assert!(status.details().len() < 1024, "{}", status.details().len());
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "targets[0]");
    }

    #[tokio::test]
    async fn a_block_touching_a_refused_range_is_refused_naming_target_and_rule() {
        let err = resolve(&["169.254.169.252/30".into()], &scope(), 256)
            .await
            .unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status
                .message()
                .contains("\"169.254.169.252/30\" (169.254.169.253)"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("Amazon VPC DNS resolver"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn an_ipv6_target_carrying_the_metadata_address_is_refused() {
        let err = resolve(&["64:ff9b::a9fe:a9fe".into()], &scope(), 256)
            .await
            .unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("169.254.169.254 (NAT64"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn expansion_is_bounded_before_it_happens() {
        let err = resolve(&["10.0.0.0/8".into()], &scope(), 256)
            .await
            .unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
        let ok = resolve(&["10.0.0.0/30".into(), "10.0.0.1".into()], &scope(), 256)
            .await
            .unwrap();
        assert_eq!(ok.len(), 2, "hosts of a /30, deduplicated");
    }

    #[tokio::test]
    async fn a_large_block_expands_in_linear_time() {
        let started = std::time::Instant::now();
        let out = resolve(&["10.1.0.0/16".into()], &scope(), 65_536)
            .await
            .unwrap();
        assert_eq!(out.len(), 65_534);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a /16 took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_name_outside_the_allowed_domains_is_refused_before_it_is_resolved() {
        let scope = Scope::new(&ScanConfig {
            allowed_domains: vec!["corp.internal".into()],
            ..ScanConfig::default()
        });
        let lookup = SlowLookup::new(Duration::ZERO);
        let err = resolve_with(&strings(&["localhost"]), &scope, 10, &lookup)
            .await
            .unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::PermissionDenied
        );
        assert!(lookup.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn hostnames_are_resolved_and_every_address_checked() {
        let out = resolve(&["localhost".into()], &scope(), 256).await.unwrap();
        assert!(out.iter().all(|r| r.address.is_loopback()));
        assert!(
            out.iter()
                .all(|r| r.hostname.as_deref() == Some("localhost"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn names_resolve_concurrently_within_one_deadline_for_the_request() {
        let lookup = SlowLookup::new(Duration::from_secs(4));
        let names: Vec<String> = (0..8).map(|i| format!("host{i}.example")).collect();
        let started = tokio::time::Instant::now();
        let out = resolve_with(&names, &scope(), 256, &lookup).await.unwrap();
        assert_eq!(out.len(), 1, "all resolve to 127.0.0.1");
        assert!(
            started.elapsed() <= RESOLVE_DEADLINE,
            "8 names of 4s each took {:?}",
            started.elapsed()
        );
        assert!(lookup.most.load(Ordering::SeqCst) > 1, "one at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn every_name_left_unresolved_at_the_deadline_is_reported() {
        let lookup = SlowLookup::new(Duration::from_millis(10));
        let targets = strings(&[
            "hang1.example",
            "ok.example",
            "hang2.example",
            "fail.example",
        ]);
        let started = tokio::time::Instant::now();
        let err = resolve_with(&targets, &scope(), 256, &lookup)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() <= RESOLVE_DEADLINE + Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["targets[0]", "targets[2]", "targets[3]"]);
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_are_bounded_and_each_name_is_asked_once() {
        let lookup = SlowLookup::new(Duration::from_millis(100));
        let mut targets: Vec<String> = (0..100).map(|i| format!("host{i}.example")).collect();
        targets.extend(targets.clone());
        resolve_with(&targets, &scope(), 256, &lookup)
            .await
            .unwrap();
        assert_eq!(lookup.asked.lock().unwrap().len(), 100);
        assert!(lookup.most.load(Ordering::SeqCst) <= RESOLVE_CONCURRENCY);
    }
}
