//! CVSS vectors from callers: never a panic; every accepted vector scores within 0-10 and
//! round-trips through its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_vuln_analyzer::cvss::Vector;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(v) = s.parse::<Vector>() {
        let scores = v.scores();
        assert!((0.0..=10.0).contains(&scores.base));
        let again: Vector = v.to_string().parse().unwrap();
        assert_eq!(again.scores(), scores);
    }
});
