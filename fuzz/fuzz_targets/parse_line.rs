//! Fuzz target: the DFW packet-log parser never panics, and every line it accepts formats back
//! into a line that parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microseg::monitor::format::format_line;
use microseg::monitor::parse::parse_line;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = parse_line(line) {
        let again = format_line(&record);
        assert_eq!(parse_line(&again), Ok(record), "{line:?} -> {again:?}");
    } else if let Err(e) = parse_line(line) {
        // The error's token must be a slice of the line.
        let _ = e.token(line);
        assert!(
            e.start <= e.end && e.end <= line.len(),
            "{e:?} for {line:?}"
        );
    }
});
