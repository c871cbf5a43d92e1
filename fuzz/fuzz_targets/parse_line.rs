//! Fuzz target: the DFW packet-log parser never panics, and every line it accepts (with its own
//! timestamp or the message body alone, given a receipt time) formats back into a line that
//! parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microseg::monitor::format::format_line;
use microseg::monitor::parse::{Arrival, parse_line, parse_line_with};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let received = jiff::Timestamp::from_second(1_714_644_931).unwrap_or_default();
    let envelope = jiff::Timestamp::from_second(1_714_644_900).ok();
    for arrival in [
        Arrival::NONE,
        Arrival::received(received),
        Arrival::received(received).with_envelope(envelope),
    ] {
        match parse_line_with(line, arrival) {
            Ok(record) => {
                let again = format_line(&record);
                assert_eq!(
                    parse_line_with(&again, arrival),
                    Ok(record),
                    "{line:?} -> {again:?}"
                );
            }
            Err(e) => {
                // The error's token must be a slice of the line.
                let _ = e.token(line);
                assert!(
                    e.start <= e.end && e.end <= line.len(),
                    "{e:?} for {line:?}"
                );
            }
        }
    }
    // Without an arrival, parse_line is parse_line_with(Arrival::NONE).
    assert_eq!(parse_line(line), parse_line_with(line, Arrival::NONE));
});
