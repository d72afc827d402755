//! The scope's decisions, its tables, and the Helm chart's copy of them.
//!
//! Every test here asserts on the decision itself: nothing is sent to any address.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
};

use crate::settings::{Cidr, ScanConfig};
use ipnet::IpNet;

use super::{
    Refusal, Scope,
    embedded::Embedding,
    ranges::{Listed, NEVER_SCANNED, PLATFORM_ENDPOINTS, SPECIAL_PURPOSE},
};

fn scope() -> Scope {
    Scope::new(&ScanConfig::default())
}

fn with(allowed: &[&str], denied: &[&str]) -> Scope {
    Scope::new(&ScanConfig {
        allowed_cidrs: allowed.iter().map(|s| s.parse().unwrap()).collect(),
        denied_cidrs: denied.iter().map(|s| s.parse().unwrap()).collect(),
        ..ScanConfig::default()
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The addresses of `addrs` that `scope` allows.
fn allowed_of<'a>(scope: &Scope, addrs: &[&'a str]) -> Vec<&'a str> {
    addrs
        .iter()
        .copied()
        .filter(|a| scope.refusal(ip(a)).is_none())
        .collect()
}

#[test]
fn never_scanned_ranges_are_refused_whatever_the_configuration_says() {
    let never = [
        "169.254.169.254",
        "fd00:ec2::254",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "fe80::1",
        "::ffff:169.254.169.254",
    ];
    assert_eq!(allowed_of(&scope(), &never), Vec::<&str>::new());
    let open = with(&["0.0.0.0/0", "::/0", "169.254.0.0/16", "fc00::/7"], &[]);
    assert_eq!(allowed_of(&open, &never), Vec::<&str>::new());
    assert_eq!(
        allowed_of(&scope(), &["127.0.0.1", "::1", "10.1.2.3", "fd12::1"]).len(),
        4,
        "loopback and private ranges stay open by default (a local tool)"
    );
}

#[test]
fn platform_endpoints_outside_link_local_are_always_refused_naming_the_entry() {
    let open = with(&["0.0.0.0/0", "::/0", "100.64.0.0/10", "fc00::/7"], &[]);
    for (addr, name) in [
        ("168.63.129.16", "Azure"),
        ("100.100.100.200", "Alibaba"),
        ("fd20:ce::254", "Google"),
        ("fd00:ec2::23", "EKS"),
        ("fd00:c1::a9fe:a9fe", "Oracle"),
    ] {
        for scope in [scope(), open.clone()] {
            let why = scope.refusal(ip(addr)).map(|r| r.to_string());
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains(name) && w.contains("never scanned")),
                "{addr}: {why:?}"
            );
        }
    }
}

#[test]
fn every_platform_endpoint_is_refused_as_itself() {
    for entry in PLATFORM_ENDPOINTS {
        let addr = entry.cidr.parse::<IpNet>().unwrap().addr();
        assert_eq!(
            scope().refusal(addr),
            Some(Refusal::Never(entry)),
            "{}",
            entry.cidr
        );
    }
}

#[test]
fn the_tables_are_canonical_blocks_with_a_source() {
    for entry in PLATFORM_ENDPOINTS
        .iter()
        .chain(NEVER_SCANNED)
        .chain(SPECIAL_PURPOSE)
    {
        let net: IpNet = entry
            .cidr
            .parse()
            .unwrap_or_else(|_| panic!("{}", entry.cidr));
        assert_eq!(net, net.trunc(), "{} has host bits", entry.cidr);
        assert!(entry.source.starts_with("https://"), "{}", entry.cidr);
        assert!(!entry.what.is_empty(), "{}", entry.cidr);
    }
}

#[test]
fn ipv6_forms_that_carry_a_refused_ipv4_address_are_refused() {
    let metadata = [
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::169.254.169.254",
        "::a9fe:a9fe",
        "::ffff:0:a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "2001:db8:1:2:200:5efe:a9fe:a9fe",
    ];
    assert_eq!(allowed_of(&scope(), &metadata), Vec::<&str>::new());
    // Opening the carrying prefixes does not open what they carry.
    let open = with(&["::/0", "0.0.0.0/0"], &[]);
    let carried = [
        &metadata[..],
        &[
            "64:ff9b:1:a9fe:a9:fe00::",
            "2001:0:a9fe:a9fe::1",
            // Teredo client 169.254.169.254 behind server 65.54.227.120.
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "64:ff9b::a83f:8110",
            "2002:6464:64c8::",
        ],
    ]
    .concat();
    assert_eq!(allowed_of(&open, &carried), Vec::<&str>::new());
}

#[test]
fn a_carried_address_is_refused_naming_how_it_is_carried_and_why() {
    let why = scope().refusal(ip("64:ff9b::a9fe:a9fe")).unwrap();
    assert!(
        matches!(
            &why,
            Refusal::Carried { how: Embedding::Nat64, ipv4, why }
                if *ipv4 == Ipv4Addr::new(169, 254, 169, 254)
                    && matches!(**why, Refusal::Never(e) if e.cidr == "169.254.169.254/32")
        ),
        "{why:?}"
    );
    let message = why.to_string();
    assert!(message.contains("169.254.169.254 (NAT64"), "{message}");
    assert!(message.contains("never scanned"), "{message}");
}

#[test]
fn a_carried_address_is_decided_on_the_configured_rules_too() {
    let scope = with(&[], &["10.0.0.0/8"]);
    for addr in ["64:ff9b::a00:1", "2002:a00:1::1", "::a00:1"] {
        assert!(
            matches!(
                scope.refusal(ip(addr)),
                Some(Refusal::Carried { why, .. }) if matches!(*why, Refusal::Denied(_))
            ),
            "{addr}"
        );
    }
}

#[test]
fn ipv6_forms_that_carry_an_allowed_address_stay_allowed() {
    assert_eq!(
        allowed_of(
            &scope(),
            &[
                "64:ff9b::808:808",
                "2002:808:808::1",
                "::ffff:8.8.8.8",
                "::ffff:127.0.0.1",
                "2606:4700::1111",
                "::1",
            ]
        )
        .len(),
        6
    );
}

#[test]
fn an_ipv4_mapped_address_is_decided_as_its_ipv4_address() {
    let scope = with(&["10.0.0.0/8"], &[]);
    assert!(scope.refusal(ip("::ffff:10.0.0.1")).is_none());
    assert_eq!(
        scope.refusal(ip("::ffff:192.168.0.1")),
        Some(Refusal::NotAllowed)
    );
}

#[test]
fn a_teredo_address_is_decided_on_its_server_and_its_client() {
    let scope = with(
        &["2001::/32", "65.54.227.120/32", "8.8.8.8/32"],
        &["65.54.227.0/24"],
    );
    // Server 65.54.227.120 (allowed by the more specific rule), client 8.8.8.8.
    assert!(
        scope
            .refusal(ip("2001:0:4136:e378:8000:63bf:f7f7:f7f7"))
            .is_none()
    );
    // Client 192.0.2.45: a documentation address no allow rule names.
    assert!(matches!(
        scope.refusal(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
        Some(Refusal::Carried {
            how: Embedding::TeredoClient,
            ..
        })
    ));
    // Server 65.54.227.1: denied.
    assert!(matches!(
        scope.refusal(ip("2001:0:4136:e301:8000:63bf:f7f7:f7f7")),
        Some(Refusal::Carried {
            how: Embedding::TeredoServer,
            ..
        })
    ));
}

#[test]
fn special_purpose_ranges_are_refused_unless_an_allow_rule_names_them() {
    let special = [
        "192.0.2.1",
        "198.18.0.1",
        "240.0.0.1",
        "100.64.0.1",
        "192.88.99.1",
        "2001:db8::1",
        "3fff::1",
        "100::1",
        "2001:2::1",
        "64:ff9b:1::1",
    ];
    assert_eq!(allowed_of(&scope(), &special), Vec::<&str>::new());
    // A catch-all allow rule is not a name for them.
    assert_eq!(
        allowed_of(&with(&["0.0.0.0/0", "::/0"], &[]), &special),
        Vec::<&str>::new()
    );
    let why = scope().refusal(ip("192.0.2.1")).unwrap();
    assert_eq!(why, Refusal::SpecialPurpose(&SPECIAL_PURPOSE[2]));
    assert!(why.to_string().contains("scan.allowed_cidrs"), "{why}");

    // Named (or a part of one named), they open; what is around them does not.
    let lab = with(&["203.0.113.0/24", "198.18.0.0/16", "2001:db8::/32"], &[]);
    assert_eq!(
        allowed_of(
            &lab,
            &["203.0.113.7", "198.18.1.1", "198.19.1.1", "2001:db8::1"]
        ),
        vec!["203.0.113.7", "198.18.1.1", "2001:db8::1"]
    );
    // Opening carrier-grade NAT does not open the platform endpoint inside it.
    let cgn = with(&["100.64.0.0/10"], &[]);
    assert!(cgn.refusal(ip("100.64.0.1")).is_none());
    assert!(matches!(
        cgn.refusal(ip("100.100.100.200")),
        Some(Refusal::Never(_))
    ));
    // A deny inside a named special-purpose range still wins.
    let carved = with(&["198.18.0.0/15"], &["198.18.5.0/24"]);
    assert!(carved.refusal(ip("198.18.4.1")).is_none());
    assert!(matches!(
        carved.refusal(ip("198.18.5.1")),
        Some(Refusal::Denied(_))
    ));
}

#[test]
fn the_most_specific_rule_decides_and_a_tie_denies() {
    let scope = with(
        &["10.20.0.0/16", "192.168.1.0/24"],
        &["10.0.0.0/8", "192.168.1.0/24", "10.20.5.0/24"],
    );
    assert!(scope.refusal(ip("10.20.1.1")).is_none());
    assert!(scope.refusal(ip("10.20.5.1")).is_some());
    assert!(scope.refusal(ip("10.30.0.1")).is_some());
    assert!(scope.refusal(ip("192.168.1.7")).is_some());
    assert_eq!(scope.refusal(ip("8.8.8.8")), Some(Refusal::NotAllowed));
    assert!(
        scope
            .refusal(ip("8.8.8.8"))
            .unwrap()
            .to_string()
            .contains("allowed_cidrs")
    );
    // Configuration cannot open a never-scanned range.
    assert!(
        with(&["169.254.0.0/16"], &[])
            .refusal(ip("169.254.169.254"))
            .is_some()
    );
}

#[test]
fn configured_allow_and_deny_lists_apply() {
    let scope = with(&["10.0.0.0/8"], &["10.9.0.0/16"]);
    assert!(scope.refusal(ip("10.1.1.1")).is_none());
    assert_eq!(
        scope.refusal(ip("10.9.1.1")).unwrap().to_string(),
        "10.9.0.0/16 is in scan.denied_cidrs"
    );
    assert_eq!(
        scope.refusal(ip("192.168.1.1")).unwrap().to_string(),
        "it is outside scan.allowed_cidrs"
    );
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

// ---- The Helm chart's copy ----

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart() -> PathBuf {
    workspace().join("deploy/helm/phantom")
}

/// The CIDR blocks of one `define` of the chart's `_scope.tpl`.
fn chart_list(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(chart().join("templates/_scope.tpl")).unwrap();
    let start = text
        .find(&format!("{{{{- define \"{name}\" -}}}}"))
        .unwrap_or_else(|| panic!("no {name} in _scope.tpl"));
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("{{- end"))
        .filter_map(|l| l.strip_prefix("- "))
        .map(|l| l.split('#').next().unwrap().trim().to_owned())
        .collect()
}

fn cidrs(entries: &[&[Listed]]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|list| list.iter().map(|e| e.cidr.to_owned()))
        .collect()
}

#[test]
fn the_charts_lists_are_the_scopes_lists() {
    assert_eq!(
        chart_list("phantom.scope.neverScanned"),
        cidrs(&[PLATFORM_ENDPOINTS, NEVER_SCANNED])
    );
    assert_eq!(
        chart_list("phantom.scope.specialPurpose"),
        cidrs(&[SPECIAL_PURPOSE])
    );
}

/// The pinned helm of `deploy/tools.sh`: `PHANTOM_TEST_HELM` (tests/support/with-backends.sh
/// sets it), else `target/tools/helm` when a chart script has fetched it.
/// Under `make test` the variable is set, and a helm that is not there fails the test
/// rather than skipping it.
fn helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PHANTOM_TEST_HELM").map(PathBuf::from) {
        assert!(
            path.is_file(),
            "PHANTOM_TEST_HELM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    Some(workspace().join("target/tools/helm")).filter(|p| p.is_file())
}

/// One ipBlock of the scan-orchestrator's egress to scan targets.
#[derive(Debug)]
struct Block {
    cidr: IpNet,
    except: Vec<IpNet>,
}

/// What the chart renders with `args`: the scan-orchestrator's egress to scan targets, and
/// the scope of its configuration file.
fn render(helm: &Path, args: &[&str]) -> (Vec<Block>, Scope) {
    let out = Command::new(helm)
        .args(["template", "phantom"])
        .arg(chart())
        .args([
            "--namespace",
            "phantom",
            "--set",
            "database.existingSecret=db",
            "--set",
            "auth.existingSecret=auth",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let policy = text
        .split("\n---")
        .find(|d| {
            d.contains("kind: NetworkPolicy") && d.contains("name: phantom-scan-orchestrator")
        })
        .expect("the scan-orchestrator's NetworkPolicy");
    let mut blocks: Vec<Block> = Vec::new();
    let mut lines = policy
        .lines()
        .skip_while(|l| !l.contains("# Scan targets"))
        .skip(2);
    for line in lines.by_ref() {
        let indent = line.len() - line.trim_start().len();
        if indent < 8 {
            break;
        }
        let line = line.trim();
        if let Some(cidr) = line.strip_prefix("cidr: ") {
            blocks.push(Block {
                cidr: cidr.parse().unwrap(),
                except: Vec::new(),
            });
        } else if let Some(except) = line.strip_prefix("except: ") {
            let except: Vec<String> = serde_json::from_str(except).unwrap();
            blocks.last_mut().unwrap().except = except.iter().map(|c| c.parse().unwrap()).collect();
        }
    }
    let list = |key: &str| -> Vec<Cidr> {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in the configuration"));
        serde_json::from_str(line).unwrap()
    };
    let config = ScanConfig {
        allowed_cidrs: list("allowed_cidrs"),
        denied_cidrs: list("denied_cidrs"),
        ..ScanConfig::default()
    };
    (blocks, Scope::new(&config))
}

fn policy_allows(blocks: &[Block], addr: IpAddr) -> bool {
    blocks
        .iter()
        .any(|b| b.cidr.contains(&addr) && !b.except.iter().any(|e| e.contains(&addr)))
}

/// The IPv6 forms of `v4` a NetworkPolicy can refuse (NAT64, local-use NAT64 as a /48,
/// 6to4, IPv4-compatible, Teredo server with client 8.8.8.8).
fn carriers(v4: Ipv4Addr) -> Vec<IpAddr> {
    let [a, b, c, d] = v4.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    let mut local = [0u8; 16];
    local[..6].copy_from_slice(&[0, 0x64, 0xff, 0x9b, 0, 1]);
    local[6..8].copy_from_slice(&[a, b]);
    local[9..11].copy_from_slice(&[c, d]);
    [
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::from(local),
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2001, 0, hi, lo, 0, 0, 0xf7f7, 0xf7f7),
    ]
    .into_iter()
    .map(IpAddr::V6)
    .collect()
}

/// Addresses at the edges of each listed block and of the configured ones, with their
/// carriers.
fn probes(configured: &[&str]) -> Vec<IpAddr> {
    let mut nets: Vec<IpNet> = PLATFORM_ENDPOINTS
        .iter()
        .chain(NEVER_SCANNED)
        .chain(SPECIAL_PURPOSE)
        .map(|e| e.cidr.parse().unwrap())
        .collect();
    nets.extend(configured.iter().map(|c| c.parse::<IpNet>().unwrap()));
    let mut out = Vec::new();
    for net in nets {
        for addr in [net.network(), net.broadcast()] {
            out.push(addr);
            if let IpAddr::V4(v4) = addr {
                out.extend(carriers(v4));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_charts_network_policy_refuses_what_the_scope_refuses() {
    let Some(helm) = helm() else {
        eprintln!(
            "skipped: no helm (PHANTOM_TEST_HELM, or target/tools/helm from deploy/tools.sh)"
        );
        return;
    };
    let public = [
        "8.8.8.8",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ];
    for (args, configured, open) in [
        // The chart's defaults.
        (
            vec![],
            vec![
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ],
            &public[..],
        ),
        // Everything allowed that can be: the never-scanned blocks and what carries them
        // stay closed, the named special-purpose ranges open.
        (
            vec![
                "--set",
                "scope.allowedCidrs={0.0.0.0/0,::/0,203.0.113.0/24,64:ff9b::/96,2001::/32,2002::/16,fc00::/7,169.254.0.0/24}",
                "--set",
                "scope.deniedCidrs={10.0.0.0/8,fc00::/8}",
            ],
            vec!["10.0.0.0/8", "fc00::/8"],
            &["203.0.113.9", "8.8.8.8", "64:ff9b::808:808", "fd12::1"][..],
        ),
        // A lab network inside a denied block.
        (
            vec!["--set", "scope.allowedCidrs={10.20.0.0/16,198.18.0.0/15}"],
            vec!["10.20.0.0/16", "198.18.0.0/15", "10.0.0.0/8"],
            &["10.20.3.4", "198.19.0.1"][..],
        ),
    ] {
        let (blocks, scope) = render(&helm, &args);
        let mut leaks = Vec::new();
        for addr in probes(&configured) {
            if let Some(why) = scope.refusal(addr)
                && policy_allows(&blocks, addr)
            {
                leaks.push(format!("{addr} ({why})"));
            }
        }
        assert!(
            leaks.is_empty(),
            "{args:?}: the policy lets through {leaks:#?}"
        );
        for addr in open {
            let addr = ip(addr);
            assert_eq!(scope.refusal(addr), None, "{args:?}: {addr}");
            assert!(policy_allows(&blocks, addr), "{args:?}: {addr} is blocked");
        }
    }
}
