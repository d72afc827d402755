//! The authorized scope: which addresses a scan may touch.
//!
//! An address is decided in three tiers:
//! 1. **Never scanned** ([`ranges::PLATFORM_ENDPOINTS`], [`ranges::NEVER_SCANNED`]): cloud
//!    metadata and other platform endpoints, link-local, multicast, broadcast, unspecified.
//!    No configuration opens them.
//! 2. **Special-purpose** ([`ranges::SPECIAL_PURPOSE`]): documentation, benchmarking,
//!    reserved, protocol anycast, carrier-grade NAT. Refused unless a configured allow rule at
//!    least as specific as the range covers the address (it competes as a deny rule that loses
//!    a tie to an allow).
//! 3. **Configured rules** (`scan.allowed_cidrs`, `scan.denied_cidrs`): the most specific
//!    matching rule decides, a deny on a tie; an address no rule matches is allowed when
//!    `allowed_cidrs` is empty and refused otherwise.
//!
//! An IPv6 address that carries an IPv4 one (NAT64, 6to4, Teredo, IPv4-compatible, ISATAP:
//! [`embedded`]) is decided on both: it is refused when either is. An IPv4-mapped address
//! (`::ffff:a.b.c.d`) is the IPv4 address, and is decided as that alone.

pub mod embedded;
pub mod ranges;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use crate::settings::{Cidr, ScanConfig};
use ipnet::IpNet;

use self::{
    embedded::Embedding,
    ranges::{Listed, NEVER_SCANNED, PLATFORM_ENDPOINTS, SPECIAL_PURPOSE},
};

/// Why an address may not be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It is in a range no scan may touch.
    Never(&'static Listed),
    /// It is in a special-purpose range no allow rule names.
    SpecialPurpose(&'static Listed),
    /// It is in this block of `scan.denied_cidrs`, and no more specific allow rule opens it.
    Denied(IpNet),
    /// `scan.allowed_cidrs` is set and no rule covers it.
    NotAllowed,
    /// The IPv6 address carries an IPv4 address that is refused.
    Carried {
        /// How the IPv4 address is carried.
        how: Embedding,
        /// The IPv4 address.
        ipv4: Ipv4Addr,
        /// Why the IPv4 address is refused (never [`Refusal::Carried`] itself).
        why: Box<Refusal>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never(entry) => write!(f, "{} is never scanned: {}", entry.cidr, entry.what),
            Self::SpecialPurpose(entry) => write!(
                f,
                "{} is special-purpose ({}): scanned only when scan.allowed_cidrs names it",
                entry.cidr, entry.what
            ),
            Self::Denied(net) => write!(f, "{net} is in scan.denied_cidrs"),
            Self::NotAllowed => f.write_str("it is outside scan.allowed_cidrs"),
            Self::Carried { how, ipv4, why } => {
                write!(f, "it carries the IPv4 address {ipv4} ({how}), and {why}")
            }
        }
    }
}

/// A configured rule, or a special-purpose range competing with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Special(&'static Listed),
    Allow,
    Deny,
}

impl Rule {
    /// The tie-break between rules of the same prefix length: a deny beats an allow, which
    /// beats a special-purpose range (so an allow rule that names such a range opens it).
    fn rank(self) -> u8 {
        match self {
            Self::Special(_) => 0,
            Self::Allow => 1,
            Self::Deny => 2,
        }
    }
}

/// The authorized scope: the tiers of the module documentation, parsed once.
#[derive(Debug, Clone)]
pub struct Scope {
    domains: Vec<String>,
    never: Vec<(IpNet, &'static Listed)>,
    rules: Vec<(IpNet, Rule)>,
    default_allow: bool,
}

/// A CIDR block or a single address of the ranges' tables (checked by their tests).
fn net(s: &str) -> IpNet {
    s.parse::<Cidr>()
        .map(|c| c.net().trunc())
        .expect("the tables' CIDRs are checked by their tests")
}

impl Scope {
    /// The scope of `config`, with the never-scanned and special-purpose ranges.
    pub fn new(config: &ScanConfig) -> Self {
        let never = PLATFORM_ENDPOINTS
            .iter()
            .chain(NEVER_SCANNED)
            .map(|entry| (net(entry.cidr), entry))
            .collect();
        let rules = SPECIAL_PURPOSE
            .iter()
            .map(|entry| (net(entry.cidr), Rule::Special(entry)))
            .chain(
                config
                    .denied_cidrs
                    .iter()
                    .map(|c| (c.net().trunc(), Rule::Deny)),
            )
            .chain(
                config
                    .allowed_cidrs
                    .iter()
                    .map(|c| (c.net().trunc(), Rule::Allow)),
            )
            .collect();
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
            never,
            rules,
            default_allow: config.allowed_cidrs.is_empty(),
        }
    }

    /// Why the hostname `name` may not be scanned, if it may not (before resolving it).
    pub fn name_refusal(&self, name: &str) -> Option<String> {
        let inside = |d: &String| {
            name == d
                || name
                    .strip_suffix(d.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        };
        if self.domains.is_empty() || self.domains.iter().any(inside) {
            None
        } else {
            Some("it is outside scan.allowed_domains".into())
        }
    }

    /// Why `addr` may not be scanned, if it may not.
    pub fn refusal(&self, addr: IpAddr) -> Option<Refusal> {
        let IpAddr::V6(v6) = addr else {
            return self.decide(addr);
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return self.decide(IpAddr::V4(v4));
        }
        self.decide(addr).or_else(|| {
            embedded::carried(v6).find_map(|(how, ipv4)| {
                self.decide(IpAddr::V4(ipv4)).map(|why| Refusal::Carried {
                    how,
                    ipv4,
                    why: Box::new(why),
                })
            })
        })
    }

    /// The decision on one address as it is, without looking inside it.
    fn decide(&self, addr: IpAddr) -> Option<Refusal> {
        // The most specific never-scanned entry, so that a refusal names the service
        // (`169.254.169.254/32`) rather than the range around it (`169.254.0.0/16`).
        if let Some((_, entry)) = self
            .never
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, _)| n.prefix_len())
        {
            return Some(Refusal::Never(entry));
        }
        let decisive = self
            .rules
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, rule)| (n.prefix_len(), rule.rank()));
        match decisive {
            Some((_, Rule::Special(entry))) => Some(Refusal::SpecialPurpose(entry)),
            Some((net, Rule::Deny)) => Some(Refusal::Denied(*net)),
            Some((_, Rule::Allow)) => None,
            None if self.default_allow => None,
            None => Some(Refusal::NotAllowed),
        }
    }
}
