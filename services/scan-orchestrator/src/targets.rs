//! Targets and the authorized scope.
//!
//! A scanner is a weapon: it only points where it is allowed. Every target is parsed (IPv4,
//! IPv6, CIDR, hostname; nothing that starts with `-`, so nothing can be read as an option by
//! an engine), hostnames are resolved once and every resolved address is checked, and the
//! scanner is handed the addresses, never the name, so DNS cannot change between the check
//! and the scan.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use phantom_layers::{Error, FieldViolation};
use phantom_runtime::{config::ScanConfig, storage::ResolvedTarget};

/// Most targets one request may list.
pub const MAX_TARGETS: usize = 1024;
/// How long resolving one hostname may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Parses one target.
pub fn parse(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} starts with '-'"));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(Target::Addr(addr));
    }
    if s.contains('/') {
        return s
            .parse::<IpNet>()
            .map(|n| Target::Net(n.trunc()))
            .map_err(|_| format!("{s:?} is not a valid CIDR block"));
    }
    if valid_hostname(s) {
        return Ok(Target::Host(s.trim_end_matches('.').to_ascii_lowercase()));
    }
    Err(format!(
        "{s:?} is not an IP address, CIDR block or hostname"
    ))
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

/// Ranges no scan may touch, whatever the configuration says, and why.
const ALWAYS_DENIED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified addresses"),
    ("::/128", "unspecified addresses"),
    (
        "169.254.0.0/16",
        "link-local and cloud metadata (169.254.169.254)",
    ),
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "cloud metadata (AWS IPv6)"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "broadcast"),
];

/// The authorized scope.
///
/// The always-denied ranges win over everything. Among the configured rules, the most specific
/// matching one decides (a deny on a tie), so `allowed_cidrs = ["10.20.0.0/16"]` opens a lab
/// network inside a `denied_cidrs = ["10.0.0.0/8"]`. An address no rule matches is allowed
/// when `allowed_cidrs` is empty, and refused otherwise.
#[derive(Debug, Clone)]
pub struct Scope {
    domains: Vec<String>,
    always_denied: Vec<(IpNet, String)>,
    rules: Vec<(IpNet, Rule)>,
    default_allow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Allow,
    Deny(String),
}

fn net(s: &str) -> IpNet {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .expect("CIDRs validated at config load")
}

impl Scope {
    /// The scope of `config` plus the always-denied ranges.
    pub fn new(config: &ScanConfig) -> Self {
        let always_denied = ALWAYS_DENIED
            .iter()
            .map(|(cidr, why)| (net(cidr), format!("{cidr} is never scanned ({why})")))
            .collect();
        let mut rules: Vec<(IpNet, Rule)> = config
            .denied_cidrs
            .iter()
            .map(|c| (net(c), Rule::Deny(format!("{c} is in scan.denied_cidrs"))))
            .collect();
        rules.extend(config.allowed_cidrs.iter().map(|c| (net(c), Rule::Allow)));
        Self {
            domains: config
                .allowed_domains
                .iter()
                .map(|d| {
                    d.trim()
                        .trim_start_matches('.')
                        .trim_end_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|d| !d.is_empty())
                .collect(),
            always_denied,
            rules,
            default_allow: config.allowed_cidrs.is_empty(),
        }
    }

    /// Why the hostname `name` may not be scanned, if it may not (before resolving it).
    pub fn name_refusal(&self, name: &str) -> Option<String> {
        if self.domains.is_empty()
            || self
                .domains
                .iter()
                .any(|d| name == d || name.ends_with(&format!(".{d}")))
        {
            None
        } else {
            Some("it is outside scan.allowed_domains".into())
        }
    }

    /// Why `addr` may not be scanned, if it may not.
    pub fn refusal(&self, addr: IpAddr) -> Option<String> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        if let Some((_, why)) = self.always_denied.iter().find(|(n, _)| n.contains(&addr)) {
            return Some(why.clone());
        }
        let decisive = self
            .rules
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, rule)| (n.prefix_len(), matches!(rule, Rule::Deny(_))));
        match decisive {
            Some((_, Rule::Deny(why))) => Some(why.clone()),
            Some((_, Rule::Allow)) => None,
            None if self.default_allow => None,
            None => Some("it is outside scan.allowed_cidrs".into()),
        }
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

/// Parses, checks, resolves and expands targets into the addresses to scan.
///
/// Malformed targets are `INVALID_ARGUMENT` (all of them reported at once); a target with
/// any address outside the scope is `PERMISSION_DENIED` naming the target and the rule.
pub async fn resolve(
    targets: &[String],
    scope: &Scope,
    max_hosts: u32,
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
    let mut parsed = Vec::new();
    let mut violations = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        match parse(t) {
            Ok(target) => parsed.push((i, t, target)),
            Err(why) => violations.push(FieldViolation::new(format!("targets[{i}]"), why)),
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

    let deny = |i: usize, t: &str, addr: IpAddr, why: String| Error::SecurityViolation {
        reason: "TARGET_OUT_OF_SCOPE",
        message: format!("target {t:?} ({addr}) is out of scope: {why}"),
        field: Some(format!("targets[{i}]")),
    };

    let mut out: Vec<ResolvedTarget> = Vec::new();
    let mut push = |r: ResolvedTarget| {
        if !out.iter().any(|o| o.address == r.address) {
            out.push(r);
        }
    };
    for (i, raw, target) in parsed {
        match target {
            Target::Addr(addr) => {
                if let Some(why) = scope.refusal(addr) {
                    return Err(deny(i, raw, addr, why));
                }
                push(ResolvedTarget {
                    hostname: None,
                    address: addr,
                });
            }
            Target::Net(n) => {
                // Every address of the block is checked, not only its first.
                let hosts: Vec<IpAddr> = n.hosts().collect();
                for addr in &hosts {
                    if let Some(why) = scope.refusal(*addr) {
                        return Err(deny(i, raw, *addr, why));
                    }
                }
                for addr in hosts {
                    push(ResolvedTarget {
                        hostname: None,
                        address: addr,
                    });
                }
            }
            Target::Host(name) => {
                if let Some(why) = scope.name_refusal(&name) {
                    return Err(Error::SecurityViolation {
                        reason: "TARGET_OUT_OF_SCOPE",
                        message: format!("target {raw:?} is out of scope: {why}"),
                        field: Some(format!("targets[{i}]")),
                    });
                }
                let addrs = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((name.as_str(), 0)),
                )
                .await
                .map_err(|_| {
                    Error::invalid(
                        format!("targets[{i}]"),
                        format!("resolving {name:?} timed out"),
                    )
                })?
                .map_err(|e| {
                    Error::invalid(
                        format!("targets[{i}]"),
                        format!("cannot resolve {name:?}: {e}"),
                    )
                })?;
                let mut addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                addrs.sort();
                addrs.dedup();
                if addrs.is_empty() {
                    return Err(Error::invalid(
                        format!("targets[{i}]"),
                        format!("{name:?} has no addresses"),
                    ));
                }
                for addr in &addrs {
                    if let Some(why) = scope.refusal(*addr) {
                        return Err(deny(i, raw, *addr, why));
                    }
                }
                for addr in addrs {
                    push(ResolvedTarget {
                        hostname: Some(name.clone()),
                        address: addr,
                    });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new(&ScanConfig::default())
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
    fn metadata_link_local_multicast_and_unspecified_are_always_denied() {
        for addr in [
            "169.254.169.254",
            "fd00:ec2::254",
            "224.0.0.1",
            "ff02::1",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "fe80::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                scope().refusal(addr.parse().unwrap()).is_some(),
                "{addr} allowed"
            );
        }
        assert!(scope().refusal("127.0.0.1".parse().unwrap()).is_none());
        assert!(scope().refusal("10.1.2.3".parse().unwrap()).is_none());
    }

    #[test]
    fn the_most_specific_rule_decides_and_a_tie_denies() {
        let config = ScanConfig {
            allowed_cidrs: vec!["10.20.0.0/16".into(), "192.168.1.0/24".into()],
            denied_cidrs: vec![
                "10.0.0.0/8".into(),
                "192.168.1.0/24".into(),
                "10.20.5.0/24".into(),
            ],
            ..ScanConfig::default()
        };
        let scope = Scope::new(&config);
        assert!(scope.refusal("10.20.1.1".parse().unwrap()).is_none());
        assert!(scope.refusal("10.20.5.1".parse().unwrap()).is_some());
        assert!(scope.refusal("10.30.0.1".parse().unwrap()).is_some());
        assert!(scope.refusal("192.168.1.7".parse().unwrap()).is_some());
        assert!(
            scope
                .refusal("8.8.8.8".parse().unwrap())
                .unwrap()
                .contains("allowed_cidrs")
        );
        // Configuration cannot open an always-denied range.
        let config = ScanConfig {
            allowed_cidrs: vec!["169.254.0.0/16".into()],
            ..ScanConfig::default()
        };
        assert!(
            Scope::new(&config)
                .refusal("169.254.169.254".parse().unwrap())
                .is_some()
        );
    }

    #[test]
    fn configured_allow_and_deny_lists_apply() {
        let config = ScanConfig {
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            denied_cidrs: vec!["10.9.0.0/16".into()],
            ..ScanConfig::default()
        };
        let scope = Scope::new(&config);
        assert!(scope.refusal("10.1.1.1".parse().unwrap()).is_none());
        assert!(
            scope
                .refusal("10.9.1.1".parse().unwrap())
                .unwrap()
                .contains("denied_cidrs")
        );
        assert!(
            scope
                .refusal("192.168.1.1".parse().unwrap())
                .unwrap()
                .contains("allowed_cidrs")
        );
    }

    #[tokio::test]
    async fn a_block_touching_a_denied_range_is_refused_naming_target_and_rule() {
        let err = resolve(&["169.254.169.252/30".into()], &scope(), 256)
            .await
            .unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("169.254.169.252/30"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("metadata"),
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

    #[test]
    fn hostnames_must_be_in_the_allowed_domains_when_there_are_some() {
        let scope = Scope::new(&ScanConfig {
            allowed_domains: vec![".Example.com".into()],
            ..ScanConfig::default()
        });
        assert!(scope.name_refusal("example.com").is_none());
        assert!(scope.name_refusal("www.example.com").is_none());
        assert!(scope.name_refusal("badexample.com").is_some());
        assert!(scope.name_refusal("example.com.evil.net").is_some());
        assert!(
            Scope::new(&ScanConfig::default())
                .name_refusal("anything.net")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_name_outside_the_allowed_domains_is_refused_before_it_is_resolved() {
        let scope = Scope::new(&ScanConfig {
            allowed_domains: vec!["corp.internal".into()],
            ..ScanConfig::default()
        });
        let err = resolve(&["localhost".into()], &scope, 10)
            .await
            .unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::PermissionDenied
        );
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
}
