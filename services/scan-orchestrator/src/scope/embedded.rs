//! IPv4 addresses carried inside IPv6 ones.
//!
//! A packet to `64:ff9b::a9fe:a9fe` reaches `169.254.169.254` through any NAT64 translator on
//! the path; one to `2002:a9fe:a9fe::1` is sent inside IPv4 to `169.254.169.254` by a 6to4
//! interface. Deciding on the IPv6 form alone opens a side door to every IPv4 address the
//! scope refuses, so the scope decides on each address an IPv6 one carries as well.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// IPv4-compatible `::a.b.c.d` (`::/96`, RFC 4291 section 2.5.5.1; deprecated). `::` and
    /// `::1` are not of this form: they are the unspecified and the loopback address.
    Compatible,
    /// IPv4-translated `::ffff:0:a.b.c.d` (`::ffff:0:0:0/96`, RFC 2765 section 2.1; SIIT).
    Translated,
    /// The NAT64 well-known prefix `64:ff9b::/96` (RFC 6052 section 2.1).
    Nat64,
    /// The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215), read as an RFC 6052 `/48`:
    /// the IPv4 address in bytes 6-7 and 9-10, around the reserved `u` byte 8.
    Nat64LocalUse,
    /// 6to4 `2002:AABB:CCDD::/48` (RFC 3056 section 2): the IPv4 address in bits 16-47.
    SixToFour,
    /// The Teredo server of a `2001:0::/32` address (RFC 4380 section 4): bits 32-63.
    TeredoServer,
    /// The Teredo client (its NAT's public address) of a `2001:0::/32` address (RFC 4380
    /// section 4): the last 32 bits, each inverted.
    TeredoClient,
    /// An ISATAP interface identifier `::0000:5efe:a.b.c.d` or `::0200:5efe:a.b.c.d` under any
    /// /64 prefix (RFC 5214 section 6.1): an ISATAP router sends it inside IPv4 to `a.b.c.d`.
    Isatap,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Compatible => "IPv4-compatible, RFC 4291",
            Self::Translated => "IPv4-translated, RFC 2765",
            Self::Nat64 => "NAT64 64:ff9b::/96, RFC 6052",
            Self::Nat64LocalUse => "local-use NAT64 64:ff9b:1::/48, RFC 8215",
            Self::SixToFour => "6to4 2002::/16, RFC 3056",
            Self::TeredoServer => "Teredo server, RFC 4380",
            Self::TeredoClient => "Teredo client, RFC 4380",
            Self::Isatap => "ISATAP, RFC 5214",
        })
    }
}

/// Every IPv4 address `addr` carries, and how (at most two: a Teredo address carries its
/// server and its client). The IPv4-mapped form `::ffff:a.b.c.d` is not here: it is not an
/// IPv6 address on the wire but an IPv4 one, and the scope decides it as such.
pub fn carried(addr: Ipv6Addr) -> impl Iterator<Item = (Embedding, Ipv4Addr)> {
    let o = addr.octets();
    let s = addr.segments();
    let v4 = |a: usize, b: usize, c: usize, d: usize| Ipv4Addr::new(o[a], o[b], o[c], o[d]);
    let last = v4(12, 13, 14, 15);
    let mut found: [Option<(Embedding, Ipv4Addr)>; 2] = [None, None];
    match s {
        [0, 0, 0, 0, 0, 0, ..] if u32::from(last) > 1 => {
            found[0] = Some((Embedding::Compatible, last));
        }
        [0, 0, 0, 0, 0xffff, 0, ..] => found[0] = Some((Embedding::Translated, last)),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => found[0] = Some((Embedding::Nat64, last)),
        [0x64, 0xff9b, 1, ..] => found[0] = Some((Embedding::Nat64LocalUse, v4(6, 7, 9, 10))),
        [0x2002, ..] => found[0] = Some((Embedding::SixToFour, v4(2, 3, 4, 5))),
        [0x2001, 0, ..] => {
            found[0] = Some((Embedding::TeredoServer, v4(4, 5, 6, 7)));
            found[1] = Some((Embedding::TeredoClient, Ipv4Addr::from(!u32::from(last))));
        }
        [_, _, _, _, 0x0000 | 0x0200, 0x5efe, ..] => found[0] = Some((Embedding::Isatap, last)),
        _ => {}
    }
    found.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(addr: &str) -> Vec<(Embedding, Ipv4Addr)> {
        carried(addr.parse().unwrap()).collect()
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn nat64_6to4_and_compatible_forms_give_their_ipv4_address() {
        let metadata = v4("169.254.169.254");
        assert_eq!(of("64:ff9b::a9fe:a9fe"), vec![(Embedding::Nat64, metadata)]);
        assert_eq!(
            of("64:ff9b::169.254.169.254"),
            vec![(Embedding::Nat64, metadata)]
        );
        assert_eq!(
            of("2002:a9fe:a9fe::1"),
            vec![(Embedding::SixToFour, metadata)]
        );
        assert_eq!(of("::a9fe:a9fe"), vec![(Embedding::Compatible, metadata)]);
        assert_eq!(
            of("::ffff:0:a9fe:a9fe"),
            vec![(Embedding::Translated, metadata)]
        );
        assert_eq!(
            of("fe80::5efe:a9fe:a9fe"),
            vec![(Embedding::Isatap, metadata)]
        );
        assert_eq!(
            of("2001:db8::200:5efe:a9fe:a9fe"),
            vec![(Embedding::Isatap, metadata)]
        );
    }

    #[test]
    fn local_use_nat64_is_read_around_the_u_octet() {
        // RFC 6052 section 2.4's /48 example: 192.0.2.33 in 2001:db8:122:3c0:0:221::, here
        // under 64:ff9b:1::/48 (bytes 6-7 = c000, byte 8 = u, bytes 9-10 = 0221).
        assert_eq!(
            of("64:ff9b:1:c000:2:2100::"),
            vec![(Embedding::Nat64LocalUse, v4("192.0.2.33"))]
        );
        assert_eq!(
            of("64:ff9b:1:a9fe:a9:fe00::"),
            vec![(Embedding::Nat64LocalUse, v4("169.254.169.254"))]
        );
    }

    #[test]
    fn teredo_gives_its_server_and_its_inverted_client() {
        // RFC 4380 section 4's example: server 65.54.227.120, client 192.0.2.45 behind a NAT.
        assert_eq!(
            of("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            vec![
                (Embedding::TeredoServer, v4("65.54.227.120")),
                (Embedding::TeredoClient, v4("192.0.2.45")),
            ]
        );
    }

    #[test]
    fn unspecified_loopback_mapped_and_plain_addresses_carry_nothing() {
        for addr in [
            "::",
            "::1",
            "::ffff:169.254.169.254",
            "2606:4700::1111",
            "fd00:ec2::254",
            "64:ff9b:0:1::a9fe:a9fe",
        ] {
            assert_eq!(of(addr), vec![], "{addr}");
        }
    }
}
