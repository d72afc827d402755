//! A tolerant reader of nuclei's JSONL output (`-jsonl`): one finding per line.
//!
//! nuclei's schema drifts between versions: classification ids come as a string, an array or
//! null; `port` as a string or a number; `host` as `host:port` or a URL. Each line is read on
//! its own: a malformed line is skipped (and counted), it never stops the scan or panics.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// One nuclei result, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NucleiResult {
    /// The template that matched (`CVE-2021-44228`).
    pub template_id: String,
    /// Its title.
    pub name: String,
    /// `info`, `low`, `medium`, `high`, `critical` (lowercase; `unknown` when absent).
    pub severity: String,
    /// CVE ids, uppercase.
    pub cve_ids: Vec<String>,
    /// CWE ids, uppercase.
    pub cwe_ids: Vec<String>,
    /// CVSS vector, when the template gives one.
    pub cvss_vector: String,
    /// Where it matched (a URL, or host:port).
    pub matched_at: String,
    /// The address nuclei connected to, when it says.
    pub ip: Option<IpAddr>,
    /// The port, when known.
    pub port: Option<u16>,
    /// `http`, `https`, `tcp`… from the scheme or the protocol type.
    pub scheme: String,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "template-id")]
    template_id: Option<String>,
    info: Option<RawInfo>,
    #[serde(rename = "matched-at")]
    matched_at: Option<String>,
    host: Option<String>,
    ip: Option<String>,
    port: Option<Value>,
    scheme: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawInfo {
    name: Option<String>,
    severity: Option<String>,
    classification: Option<RawClassification>,
}

#[derive(Debug, Deserialize)]
struct RawClassification {
    #[serde(rename = "cve-id")]
    cve_id: Option<Value>,
    #[serde(rename = "cwe-id")]
    cwe_id: Option<Value>,
    #[serde(rename = "cvss-metrics")]
    cvss_metrics: Option<Value>,
}

/// A string, an array of strings, or nothing, as a list.
fn strings(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_ascii_uppercase())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(|s| s.trim().to_ascii_uppercase()))
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

fn port_of(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|p| *p > 0)
}

/// `host:port`, `[v6]:port` or a URL: the host part and the port, if any.
fn split_host(s: &str) -> (String, Option<u16>) {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
        return (
            host.to_owned(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
        _ => (authority.to_owned(), None),
    }
}

/// Parses one line; `None` for lines that are not a usable result.
pub fn parse_line(line: &str) -> Option<NucleiResult> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    let raw: Raw = serde_json::from_str(line).ok()?;
    let template_id = raw.template_id.filter(|t| !t.trim().is_empty())?;
    let info = raw.info;
    let (name, severity, classification) = match info {
        Some(i) => (i.name, i.severity, i.classification),
        None => (None, None, None),
    };
    let (cve_ids, cwe_ids, cvss_vector) = match classification {
        Some(c) => (
            strings(c.cve_id),
            strings(c.cwe_id),
            c.cvss_metrics
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new(), String::new()),
    };
    let matched_at = raw.matched_at.or(raw.host.clone()).unwrap_or_default();
    let (host, host_port) = split_host(raw.host.as_deref().unwrap_or(&matched_at));
    let (_, matched_port) = split_host(&matched_at);
    let ip = raw
        .ip
        .as_deref()
        .and_then(|i| i.parse().ok())
        .or_else(|| host.parse().ok());
    let scheme = raw
        .scheme
        .or_else(|| matched_at.split_once("://").map(|(s, _)| s.to_owned()))
        .or(raw.kind)
        .unwrap_or_else(|| "tcp".to_owned())
        .to_ascii_lowercase();
    Some(NucleiResult {
        template_id: template_id.trim().to_owned(),
        name: name.unwrap_or_else(|| template_id.clone()),
        severity: severity.map_or_else(|| "unknown".to_owned(), |s| s.trim().to_ascii_lowercase()),
        cve_ids,
        cwe_ids,
        cvss_vector,
        matched_at,
        ip,
        port: port_of(raw.port.as_ref()).or(host_port).or(matched_port),
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_recorded_result() {
        let line = r#"{"template":"http/cves/2021/CVE-2021-44228.yaml","template-id":"CVE-2021-44228","info":{"name":"Apache Log4j2 Remote Code Injection","author":["melbadry9"],"tags":["cve","rce"],"severity":"critical","classification":{"cve-id":["cve-2021-44228"],"cwe-id":["cwe-502"],"cvss-metrics":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H","cvss-score":10}},"type":"http","host":"127.0.0.1:8080","port":"8080","scheme":"http","url":"http://127.0.0.1:8080","matched-at":"http://127.0.0.1:8080/api/login","ip":"127.0.0.1","timestamp":"2024-01-01T00:00:00Z","matcher-status":true}"#;
        let r = parse_line(line).unwrap();
        assert_eq!(r.template_id, "CVE-2021-44228");
        assert_eq!(r.severity, "critical");
        assert_eq!(r.cve_ids, vec!["CVE-2021-44228"]);
        assert_eq!(r.cwe_ids, vec!["CWE-502"]);
        assert_eq!(
            r.cvss_vector,
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"
        );
        assert_eq!(r.port, Some(8080));
        assert_eq!(r.ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(r.scheme, "http");
    }

    #[test]
    fn tolerates_strings_for_arrays_numbers_for_strings_and_missing_fields() {
        let r = parse_line(r#"{"template-id":"redis-default-login","info":{"severity":"HIGH","classification":{"cve-id":"CVE-2022-0543, cve-2015-4335","cwe-id":null}},"host":"10.0.0.5:6379","port":6379,"type":"tcp"}"#).unwrap();
        assert_eq!(r.cve_ids, vec!["CVE-2022-0543", "CVE-2015-4335"]);
        assert!(r.cwe_ids.is_empty());
        assert_eq!(r.severity, "high");
        assert_eq!(r.port, Some(6379));
        assert_eq!(r.scheme, "tcp");
        assert_eq!(r.name, "redis-default-login");
        let v6 = parse_line(r#"{"template-id":"t","matched-at":"https://[::1]:8443/x"}"#).unwrap();
        assert_eq!(
            (v6.ip, v6.port, v6.scheme.as_str()),
            (Some("::1".parse().unwrap()), Some(8443), "https")
        );
    }

    #[test]
    fn malformed_lines_are_skipped_never_fatal() {
        for bad in [
            "",
            "[INF] Using nuclei",
            "{",
            "{}",
            r#"{"template-id": 3}"#,
            r#"{"template-id":""}"#,
            "\u{0}\u{1}",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }
}
