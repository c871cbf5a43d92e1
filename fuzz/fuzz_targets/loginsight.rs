//! Fuzz target: the Log Insight webhook payload reader never panics, and every message yields an
//! entry (a line, a field record or a reason).
#![no_main]

use libfuzzer_sys::fuzz_target;
use microseg::monitor::loginsight::parse_payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(alert) = parse_payload(data) {
        assert_eq!(alert.entries().count(), alert.messages.len());
        let _ = alert.is_test();
    }
});
