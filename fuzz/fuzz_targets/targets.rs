//! Target and port specifications from users: never a panic, and whatever is accepted is
//! something a scanner can be handed safely (no option-looking targets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_scan_orchestrator::{ports, targets};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = targets::parse(s) {
        if let targets::Target::Host(h) = t {
            assert!(!h.starts_with('-'), "{h:?}");
        }
    }
    if let Ok(list) = ports::parse(s) {
        assert!(list.windows(2).all(|w| w[0] < w[1]));
        assert!(!list.contains(&0));
        assert_eq!(ports::parse(&ports::normalize(&list)).unwrap(), list);
    }
});
