//! nuclei's JSONL lines, whatever they contain: never a panic; a result always names its
//! template.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_scan_orchestrator::scanner::nuclei_jsonl::parse_line;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for line in s.lines() {
        if let Some(r) = parse_line(line) {
            assert!(!r.template_id.is_empty());
            assert!(r.port != Some(0));
        }
    }
});
