//! Port specifications: `22,80,443,8000-8100`.
//!
//! A specification comes from the caller, so its cost is bounded before it is read: at most
//! [`MAX_SPEC_BYTES`] bytes and [`MAX_ITEMS`] items, then one pass over the items and one over
//! the port space (a difference array), whatever the ranges overlap. Errors quote it through
//! [`echo`], never whole.

use phantom_layers::{Error, status::echo};

/// Longest port specification, in bytes. Every port as its own item would take ~350 KB, but
/// nobody writes that: ranges say the same in a few bytes, and the longest lists in real use
/// (nmap's top 1000 ports) fit in about 4 KB as ranges.
pub const MAX_SPEC_BYTES: usize = 4096;
/// Most comma-separated items in a port specification.
pub const MAX_ITEMS: usize = 1024;

/// Why a port specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// Nothing but blanks.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_SPEC_BYTES`].
    #[error("is {len} bytes long; a port specification is at most {MAX_SPEC_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More items than [`MAX_ITEMS`].
    #[error("has {items} items; a port specification has at most {MAX_ITEMS}")]
    TooManyItems {
        /// How many.
        items: usize,
    },
    /// Two commas with nothing between them (item `index`, from 1).
    #[error("item {index} is empty")]
    EmptyItem {
        /// Which item, from 1.
        index: usize,
    },
    /// Not a number (the value, quoted).
    #[error("{0} is not a port number")]
    NotANumber(String),
    /// A number outside 1-65535 (the value, quoted).
    #[error("{0} is not a port between 1 and 65535")]
    OutOfRange(String),
    /// A range whose start is above its end (the item, quoted).
    #[error("range {0} runs backwards")]
    Backwards(String),
}

/// Parses a port specification from a caller into sorted, distinct ports, refusing one over
/// [`MAX_SPEC_BYTES`] or [`MAX_ITEMS`] before reading it.
pub fn parse(spec: &str) -> Result<Vec<u16>, PortSpecError> {
    if spec.len() > MAX_SPEC_BYTES {
        return Err(PortSpecError::TooLong { len: spec.len() });
    }
    let items = spec.bytes().filter(|b| *b == b',').count() + 1;
    if items > MAX_ITEMS {
        return Err(PortSpecError::TooManyItems { items });
    }
    parse_stored(spec)
}

/// Parses the port specification of a stored scan, in linear time and without the request
/// limits: it was accepted when the scan was created (perhaps by a version with other
/// limits), and a scan resumed after an upgrade scans what it was created with.
pub fn parse_stored(spec: &str) -> Result<Vec<u16>, PortSpecError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(PortSpecError::Empty);
    }
    // +1 where a range starts, -1 just after it ends: a port is in when the running sum is
    // positive, so each item costs O(1) however wide it is.
    let mut edges = vec![0i32; 65537];
    for (index, item) in spec.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(PortSpecError::EmptyItem { index: index + 1 });
        }
        let (lo, hi) = match item.split_once('-') {
            Some((lo, hi)) => (port(lo.trim())?, port(hi.trim())?),
            None => {
                let p = port(item)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(PortSpecError::Backwards(echo(item)));
        }
        edges[usize::from(lo)] += 1;
        edges[usize::from(hi) + 1] -= 1;
    }
    let mut ports = Vec::new();
    let mut depth = 0;
    for (p, edge) in edges.iter().enumerate().take(65536) {
        depth += edge;
        if depth > 0 {
            ports.push(u16::try_from(p).expect("below 65536"));
        }
    }
    Ok(ports)
}

/// The ports of a `CreateScan` request: its `ports` field, or the configured default when
/// that is blank. A bad `ports` is the caller's `INVALID_ARGUMENT` on that field; a bad
/// default is the server's `FAILED_PRECONDITION` naming the setting, never a `BadRequest` on
/// a field the caller left empty.
pub fn for_request(requested: &str, default: &str) -> Result<Vec<u16>, Error> {
    match parse(requested) {
        Err(PortSpecError::Empty) => parse(default).map_err(|why| Error::FailedPrecondition {
            reason: "INVALID_DEFAULT_PORTS",
            message: format!("the configured scan.default_ports {why}; name ports in the request"),
        }),
        Err(why) => Err(Error::invalid("ports", why.to_string())),
        Ok(ports) => Ok(ports),
    }
}

fn port(s: &str) -> Result<u16, PortSpecError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortSpecError::NotANumber(echo(s)));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(u16::try_from(p).expect("in range")),
        _ => Err(PortSpecError::OutOfRange(echo(s))),
    }
}

/// The canonical text of sorted ports: consecutive runs become ranges.
pub fn normalize(ports: &[u16]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end + 1 {
            i += 1;
            end = ports[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn parses_lists_and_ranges_into_sorted_distinct_ports() {
        assert_eq!(parse("80, 22,21-23,80").unwrap(), vec![21, 22, 23, 80]);
        assert_eq!(parse("1-1024").unwrap().len(), 1024);
        assert_eq!(parse("65535").unwrap(), vec![65535]);
        assert_eq!(parse("1-65535").unwrap().len(), 65535);
        assert_eq!(
            parse("10-20,15-30,30").unwrap(),
            (10..=30).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_stored_spec_is_read_without_the_request_limits_but_with_its_syntax() {
        let many = (1..=3000)
            .map(|p| (p * 2).to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse(&many).is_err(), "over the request limits");
        assert_eq!(parse_stored(&many).unwrap().len(), 3000);
        assert!(parse_stored("80,,81").is_err());
        assert!(parse_stored("").is_err());
    }

    #[test]
    fn refuses_malformed_specifications() {
        for bad in [
            "", "0", "65536", "80-", "-80", "a", "10-5", "22,,80", "1-99999", "+80", "-p-", " , ",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_spec_over_the_length_limit_is_refused_before_parsing() {
        let spec = "1-65535,".repeat(1000);
        assert_eq!(
            parse(spec.trim_end_matches(',')),
            Err(PortSpecError::TooLong { len: 7999 })
        );
        let measured = "1-65535,".repeat(500_000);
        assert_eq!(
            parse(&measured),
            Err(PortSpecError::TooLong { len: 4_000_000 })
        );
        assert_eq!(
            parse(&"1,".repeat(MAX_ITEMS)),
            Err(PortSpecError::TooManyItems {
                items: MAX_ITEMS + 1
            })
        );
        assert!(parse(&vec!["443"; MAX_ITEMS].join(",")).is_ok());
    }

    #[test]
    fn the_largest_spec_within_the_limits_parses_in_one_pass() {
        // 512 full ranges: the old parser marked 33 million ports for it.
        let spec = vec!["1-65535"; MAX_SPEC_BYTES / 8].join(",");
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(parse(&spec).unwrap().len(), 65535);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "20 parses took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn errors_quote_a_huge_spec_short() {
        let spec = format!("{},,80", "1-65535,".repeat(1000));
        let why = parse(&spec).unwrap_err().to_string();
        assert!(why.len() < 200, "{} bytes: {}", why.len(), &why[..100]);
        let why = parse(&format!("80,{}", "9".repeat(3000)))
            .unwrap_err()
            .to_string();
        assert!(why.len() < 200, "{why}");
        assert!(why.contains("(3000 bytes)"), "{why}");
    }

    #[test]
    fn a_bad_request_names_the_ports_field_and_a_bad_default_names_the_setting() {
        let status = tonic::Status::from(
            for_request("1-65535,".repeat(1000).as_str(), "1-1024").unwrap_err(),
        );
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            "ports"
        );
        assert!(status.message().len() < 200, "{}", status.message());

        assert_eq!(for_request("  ", "22,80").unwrap(), vec![22, 80]);
        let status = tonic::Status::from(for_request("", "0-80").unwrap_err());
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("scan.default_ports"),
            "{}",
            status.message()
        );
        assert!(status.get_details_bad_request().is_none());
    }

    #[test]
    fn normalizes_runs_to_ranges() {
        assert_eq!(normalize(&parse("3,1,2,5,7-9").unwrap()), "1-3,5,7-9");
    }
}
