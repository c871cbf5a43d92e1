//! Fuzz target: the Log Insight webhook payload reader never panics, every message yields an
//! entry (a line, a field record or a reason), and every alert gets a disposition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microseg::monitor::loginsight::parse_payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(alert) = parse_payload(data) {
        let received = jiff::Timestamp::from_second(1_714_644_931).unwrap_or_default();
        let entries: Vec<_> = alert.entries(received).collect();
        assert_eq!(entries.len(), alert.messages.len());
        let status = alert.disposition(&entries).status();
        assert!(status == 200 || status == 422, "{status}");
        let _ = alert.is_test();
    }
});
