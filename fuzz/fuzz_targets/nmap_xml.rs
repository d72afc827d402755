//! nmap's XML as it may arrive: truncated, corrupted or hostile. Never a panic, and every
//! reported port is a real port number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_scan_orchestrator::scanner::nmap_xml::{NmapEvent, parse};

fuzz_target!(|data: &[u8]| {
    for event in parse(data) {
        match event {
            NmapEvent::Port(p) => assert!(p.port > 0),
            NmapEvent::Progress(p) => assert!((0.0..=100.0).contains(&p)),
        }
    }
});
