//! Port specifications: `22,80,443,8000-8100`.

/// Parses a port specification into sorted, distinct ports.
pub fn parse(spec: &str) -> Result<Vec<u16>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("is empty".into());
    }
    let mut seen = vec![false; 65536];
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("{spec:?} has an empty item"));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((lo, hi)) => (port(lo.trim())?, port(hi.trim())?),
            None => {
                let p = port(item)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("range {item:?} runs backwards"));
        }
        for p in lo..=hi {
            seen[usize::from(p)] = true;
        }
    }
    Ok((1..=u16::MAX).filter(|p| seen[usize::from(*p)]).collect())
}

fn port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(u16::try_from(p).expect("in range")),
        _ => Err(format!("{s} is not a port between 1 and 65535")),
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
    use super::*;

    #[test]
    fn parses_lists_and_ranges_into_sorted_distinct_ports() {
        assert_eq!(parse("80, 22,21-23,80").unwrap(), vec![21, 22, 23, 80]);
        assert_eq!(parse("1-1024").unwrap().len(), 1024);
        assert_eq!(parse("65535").unwrap(), vec![65535]);
    }

    #[test]
    fn refuses_malformed_specifications() {
        for bad in [
            "", "0", "65536", "80-", "-80", "a", "10-5", "22,,80", "1-99999", "+80", "-p-",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn normalizes_runs_to_ranges() {
        assert_eq!(normalize(&parse("3,1,2,5,7-9").unwrap()), "1-3,5,7-9");
    }
}
