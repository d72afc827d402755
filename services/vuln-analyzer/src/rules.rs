//! Rule-based analysis: what the analyzer says without an LLM.
//!
//! A finding with a CVSS vector is scored from it. Otherwise a rule matching its service,
//! port or banner assigns a representative CVSS vector (so every score is explainable as a
//! vector, not a magic number), a summary and a remediation. Confidence follows the spirit
//! of Greenbone's Quality of Detection: a vector the engine supplied is trusted most, a
//! banner-confirmed service more than a guess from the port number alone.

use phantom_proto::pb::{self, Severity};

use crate::cvss::Vector;

/// A rule's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// 0.0-10.0.
    pub score: f64,
    /// Band of `score`.
    pub severity: Severity,
    /// 0-100.
    pub confidence: u32,
    /// Why.
    pub summary: String,
    /// What to do.
    pub remediation: String,
    /// The vector the score comes from, if any.
    pub vector: Option<String>,
}

/// Severity band of a score (INFO for 0).
pub fn severity_of(score: f64) -> Severity {
    match score {
        s if s <= 0.0 => Severity::Info,
        s if s < 4.0 => Severity::Low,
        s if s < 7.0 => Severity::Medium,
        s if s < 9.0 => Severity::High,
        _ => Severity::Critical,
    }
}

struct Rule {
    /// Matches when the service is one of these...
    services: &'static [&'static str],
    /// ...or the port is one of these (confidence is lower then).
    ports: &'static [u16],
    vector: &'static str,
    summary: &'static str,
    remediation: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        services: &["telnet"],
        ports: &[23],
        vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N",
        summary: "Telnet is exposed: credentials and sessions cross the network in cleartext.",
        remediation: "Disable telnet and use SSH; if it must stay, restrict it to a management network.",
    },
    Rule {
        services: &["redis"],
        ports: &[6379],
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:L/A:L",
        summary: "Redis is reachable from the network; Redis without AUTH gives full read/write access to its data and, through CONFIG, often to the host.",
        remediation: "Bind Redis to trusted interfaces, enable ACLs/requirepass, and enable protected-mode.",
    },
    Rule {
        services: &["memcached"],
        ports: &[11211],
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        summary: "Memcached has no authentication: anyone who reaches it reads the cached data.",
        remediation: "Bind memcached to localhost or a private network and firewall the port.",
    },
    Rule {
        services: &["mongodb", "elasticsearch"],
        ports: &[27017, 9200],
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        summary: "A document store is exposed; default installations of older versions answer without authentication.",
        remediation: "Require authentication and restrict network access to the application tier.",
    },
    Rule {
        services: &["ftp"],
        ports: &[21],
        vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
        summary: "FTP is exposed: credentials and files cross the network in cleartext.",
        remediation: "Replace FTP with SFTP or FTPS; disable anonymous login.",
    },
    Rule {
        services: &["smb", "rdp", "vnc"],
        ports: &[445, 139, 3389, 5900],
        vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:L/A:L",
        summary: "A remote-access or file-sharing service is exposed; these are a frequent entry point for worms and ransomware.",
        remediation: "Expose it only through a VPN or bastion and keep it patched.",
    },
    Rule {
        services: &["mysql", "postgresql", "mssql", "oracle"],
        ports: &[3306, 5432, 1433, 1521],
        vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N",
        summary: "A database server is reachable from the scanner's network.",
        remediation: "Restrict database access to the application hosts.",
    },
];

/// Version disclosure ("Server: Apache/2.4.41", "OpenSSH_7.4"): lets an attacker pick exploits.
const DISCLOSURE_VECTOR: &str = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N";

fn vector_score(vector: &str) -> Option<f64> {
    vector.parse::<Vector>().ok().map(|v| v.scores().base)
}

/// Whether a banner names a software version.
fn discloses_version(banner: &str) -> bool {
    let b = banner.to_ascii_lowercase();
    [
        "server:",
        "ssh-",
        "openssh",
        "apache/",
        "nginx/",
        "microsoft-iis/",
        "vsftpd",
        "proftpd",
        "postfix",
        "exim",
    ]
    .iter()
    .any(|m| b.contains(m))
        && banner.chars().any(|c| c.is_ascii_digit())
}

/// The rule-based verdict on a finding.
pub fn analyze(f: &pb::Finding) -> Verdict {
    if !f.cvss_vector.is_empty()
        && let Ok(v) = f.cvss_vector.parse::<Vector>()
    {
        let score = v.scores().base;
        return Verdict {
            score,
            severity: severity_of(score),
            confidence: 95,
            summary: format!("{} (scored from the engine's CVSS vector)", f.title),
            remediation: "Apply the vendor's fix for the referenced issue.".into(),
            vector: Some(v.to_string()),
        };
    }

    if f.engine == "nuclei" {
        // nuclei's own severity, when its template carries no vector.
        let score = match Severity::try_from(f.severity).unwrap_or(Severity::Unspecified) {
            Severity::Critical => 9.0,
            Severity::High => 7.5,
            Severity::Medium => 5.0,
            Severity::Low => 3.0,
            _ => 0.0,
        };
        return Verdict {
            score,
            severity: severity_of(score),
            confidence: 70,
            summary: format!("{} (severity from the nuclei template)", f.title),
            remediation: "See the template's references for the fix.".into(),
            vector: None,
        };
    }

    let port = u16::try_from(f.port).unwrap_or(0);
    let by_service = RULES
        .iter()
        .find(|r| r.services.contains(&f.service.as_str()));
    let by_port = || RULES.iter().find(|r| r.ports.contains(&port));
    // A service recognised from its banner is evidence; a port number is a guess.
    let banner_backed = !f.banner.is_empty();
    if let Some((rule, confidence)) = by_service
        .map(|r| (r, if banner_backed { 80 } else { 60 }))
        .or_else(|| by_port().map(|r| (r, 40)))
    {
        let score = vector_score(rule.vector).unwrap_or(0.0);
        return Verdict {
            score,
            severity: severity_of(score),
            confidence,
            summary: rule.summary.to_owned(),
            remediation: rule.remediation.to_owned(),
            vector: Some(rule.vector.to_owned()),
        };
    }

    if discloses_version(&f.banner) {
        let score = vector_score(DISCLOSURE_VECTOR).unwrap_or(0.0);
        return Verdict {
            score,
            severity: severity_of(score),
            confidence: 80,
            summary: format!(
                "The service on port {} discloses its software and version ({}).",
                f.port,
                f.banner.lines().next().unwrap_or_default()
            ),
            remediation: "Hide version strings (ServerTokens Prod, server_tokens off, DebianBanner no) and keep the software patched.".into(),
            vector: Some(DISCLOSURE_VECTOR.to_owned()),
        };
    }

    Verdict {
        score: 0.0,
        severity: Severity::Info,
        confidence: if banner_backed { 80 } else { 50 },
        summary: format!(
            "Port {}/{} is open{}.",
            f.port,
            if f.protocol.is_empty() {
                "tcp"
            } else {
                &f.protocol
            },
            if f.service.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.service)
            }
        ),
        remediation: "Confirm the service is meant to be reachable from this network.".into(),
        vector: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(port: u32, service: &str, banner: &str) -> pb::Finding {
        pb::Finding {
            target: "10.0.0.1".into(),
            port,
            protocol: "tcp".into(),
            service: service.into(),
            banner: banner.into(),
            engine: "builtin".into(),
            check_id: "open-port".into(),
            title: format!("Port {port}/tcp open"),
            ..Default::default()
        }
    }

    #[test]
    fn telnet_is_high() {
        let v = analyze(&open(23, "telnet", "Ubuntu 22.04 login:"));
        assert_eq!(v.severity, Severity::High);
        assert_eq!(v.score, 7.4);
        assert_eq!(v.confidence, 80);
    }

    #[test]
    fn redis_by_port_alone_is_a_low_confidence_high() {
        let v = analyze(&open(6379, "", ""));
        assert_eq!(v.severity, Severity::High);
        assert_eq!(v.confidence, 40);
    }

    #[test]
    fn a_version_banner_is_low() {
        let v = analyze(&open(
            8080,
            "http",
            "HTTP/1.1 200 OK\r\nServer: Apache/2.4.41 (Ubuntu)",
        ));
        assert_eq!(v.severity, Severity::Low);
        assert_eq!(v.score, 3.7);
    }

    #[test]
    fn a_plain_open_port_is_info() {
        let v = analyze(&open(8443, "https", ""));
        assert_eq!(v.severity, Severity::Info);
        assert_eq!(v.score, 0.0);
    }

    #[test]
    fn an_engine_vector_wins() {
        let f = pb::Finding {
            cvss_vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H".into(),
            ..open(80, "http", "")
        };
        let v = analyze(&f);
        assert_eq!(v.score, 10.0);
        assert_eq!(v.severity, Severity::Critical);
        assert_eq!(v.confidence, 95);
    }
}
