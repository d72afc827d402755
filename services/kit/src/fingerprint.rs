//! Stable identity of a finding across scans, for dedup.
//!
//! Two findings are the same issue when the engine, its check, the CVE/CWE ids and the
//! normalized endpoint (`scheme://host:port/path`) agree. Leaving the endpoint out merges
//! the same issue on different hosts into one (DefectDojo #12397); keeping volatile fields
//! (the banner, the time, the finding id) in would make every re-scan look new.

use phantom_proto::pb;
use sha2::{Digest, Sha256};

/// The normalized endpoint of a finding: lowercase scheme and host, explicit port, no query.
pub fn endpoint(f: &pb::Finding) -> String {
    let host = if f.hostname.is_empty() {
        &f.target
    } else {
        &f.hostname
    };
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = match f.service.as_str() {
        "http" | "https" => f.service.as_str(),
        _ if f.protocol.is_empty() => "tcp",
        _ => f.protocol.as_str(),
    };
    format!("{scheme}://{host}:{}/", f.port)
}

/// The fingerprint: hex SHA-256 of the identifying fields, versioned so the recipe can change.
pub fn fingerprint(f: &pb::Finding) -> String {
    let mut cves: Vec<String> = f
        .cve_ids
        .iter()
        .map(|c| c.trim().to_ascii_uppercase())
        .collect();
    cves.sort();
    cves.dedup();
    let mut h = Sha256::new();
    for part in [
        "v1",
        f.engine.trim(),
        f.check_id.trim(),
        &cves.join(","),
        &endpoint(f),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> pb::Finding {
        pb::Finding {
            target: "10.0.0.5".into(),
            port: 80,
            protocol: "tcp".into(),
            service: "http".into(),
            engine: "builtin".into(),
            check_id: "open-port".into(),
            banner: "nginx".into(),
            ..Default::default()
        }
    }

    #[test]
    fn volatile_fields_do_not_change_the_fingerprint() {
        let a = finding();
        let b = pb::Finding {
            id: "x".into(),
            scan_id: "y".into(),
            banner: "nginx/1.25".into(),
            cve_ids: vec![],
            ..finding()
        };
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn the_endpoint_and_cves_do() {
        let a = finding();
        let other_host = pb::Finding {
            target: "10.0.0.6".into(),
            ..finding()
        };
        let other_cve = pb::Finding {
            cve_ids: vec!["CVE-2021-44228".into()],
            ..finding()
        };
        assert_ne!(fingerprint(&a), fingerprint(&other_host));
        assert_ne!(fingerprint(&a), fingerprint(&other_cve));
    }

    #[test]
    fn endpoints_are_normalized() {
        let f = pb::Finding {
            hostname: "WWW.Example.COM.".into(),
            ..finding()
        };
        assert_eq!(endpoint(&f), "http://www.example.com:80/");
        let v6 = pb::Finding {
            target: "::1".into(),
            service: "ssh".into(),
            ..finding()
        };
        assert_eq!(endpoint(&v6), "tcp://[::1]:80/");
    }
}
