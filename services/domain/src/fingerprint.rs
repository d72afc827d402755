//! Stable identity of a finding across scans, for dedup.
//!
//! Two findings are the same issue when the engine, its check, the CVE/CWE ids and the
//! normalized endpoint (`scheme://host:port/path`) agree. Leaving the endpoint out merges
//! the same issue on different hosts into one (DefectDojo #12397); keeping volatile fields
//! (the banner, the time, the finding id) in would make every re-scan look new.

use phantom_proto::pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The fingerprint of a finding: computed by [`Fingerprint::of`] (hex SHA-256 of the
/// identifying fields), or received from a peer ([`Fingerprint::new`], taken as given).
/// Serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A fingerprint as a peer or the store gave it (not recomputed, not checked).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The fingerprint of `f`, versioned so the recipe can change.
    pub fn of(f: &pb::Finding) -> Self {
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
        Self(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Fingerprint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Fingerprint> for String {
    fn from(fp: Fingerprint) -> Self {
        fp.0
    }
}

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
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
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
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&other_host));
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&other_cve));
    }

    #[test]
    fn the_recipe_is_unchanged() {
        // Stored fingerprints must keep matching: pinned output of the v1 recipe.
        let fp = Fingerprint::of(&finding());
        assert_eq!(fp.as_str().len(), 64);
        assert_eq!(fp.as_str(), PINNED);
    }

    const PINNED: &str = "143bd86d46867dde6eecb29070c38e6df2eafc9302128697b2385f2cdf262d9f";

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

    #[test]
    fn serialized_as_text() {
        let fp = Fingerprint::new("fp");
        assert_eq!(serde_json::to_string(&fp).unwrap(), "\"fp\"");
    }
}
