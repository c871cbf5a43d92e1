//! Property test: `parse_line_with(format_line(x), arrival) == x` for generated records across
//! every layout variant (no header, RFC 3164, ESXi 8 local, RFC 5424; with a timestamp or the
//! message body alone, its time from the envelope or the receipt; IPv4/IPv6; TCP/UDP/ICMP/PROTO n;
//! match/TERM and the other reasons; with/without action, ruleset, length, flags, counters,
//! extras and tag).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use microseg::monitor::format::{builder::timestamp_string, format_line};
use microseg::monitor::parse::{
    Action, AddressFamily, Arrival, CloseReason, Counters, Direction, Extras, LogRecord, Protocol,
    Reason, SyslogHeader, TimeSource, is_app_id, parse_line, parse_line_with,
};
use proptest::prelude::*;
use proptest::sample::select;

#[derive(Debug, Clone)]
enum Header {
    None,
    Rfc3164 {
        pri: Option<u8>,
        host: Option<String>,
        severity: Option<String>,
        app: Option<String>,
        procid: Option<String>,
    },
    Rfc5424 {
        pri: u8,
        host: Option<String>,
        app: Option<String>,
        procid: Option<String>,
        msgid: Option<String>,
        sd: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Gen {
    header: Header,
    /// `None`: the line carries no timestamp (the message body alone).
    timestamp: Option<String>,
    time: jiff::Timestamp,
    arrival: Arrival,
    filter_hash: Option<String>,
    af: AddressFamily,
    reason: Reason,
    action: Option<Action>,
    ruleset: Option<String>,
    rule_id: u32,
    direction: Direction,
    length: Option<u32>,
    protocol: Protocol,
    close_reason: Option<CloseReason>,
    src: IpAddr,
    src_port: Option<u16>,
    dst: IpAddr,
    dst_port: Option<u16>,
    tcp_flags: Option<String>,
    counters: Option<Counters>,
    extras: String,
    rule_tag: Option<String>,
}

impl Gen {
    fn record(&self) -> LogRecord<'_> {
        let syslog = match &self.header {
            Header::None => None,
            Header::Rfc3164 {
                pri,
                host,
                severity,
                app,
                procid,
            } => Some(SyslogHeader::Rfc3164 {
                pri: *pri,
                host: host.as_deref(),
                severity: severity.as_deref(),
                app: app.as_deref(),
                procid: procid.as_deref(),
            }),
            Header::Rfc5424 {
                pri,
                host,
                app,
                procid,
                msgid,
                sd,
            } => Some(SyslogHeader::Rfc5424 {
                pri: *pri,
                host: host.as_deref(),
                app: app.as_deref(),
                procid: procid.as_deref(),
                msgid: msgid.as_deref(),
                structured_data: sd.as_deref(),
            }),
        };
        let (time, time_source) = match (&self.timestamp, self.arrival) {
            (Some(_), _) => (self.time, TimeSource::written(syslog)),
            (
                None,
                Arrival {
                    envelope: Some(t), ..
                },
            ) => (t, TimeSource::Envelope),
            (None, a) => (a.received.unwrap(), TimeSource::Receipt),
        };
        LogRecord {
            syslog,
            timestamp: self.timestamp.as_deref(),
            time,
            time_source,
            filter_hash: self.filter_hash.as_deref(),
            af: self.af,
            reason: self.reason,
            action: self.action,
            ruleset: self.ruleset.as_deref(),
            rule_id: self.rule_id,
            direction: self.direction,
            length: self.length,
            protocol: self.protocol,
            close_reason: self.close_reason,
            src: self.src,
            src_port: self.src_port,
            dst: self.dst,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags.as_deref(),
            counters: self.counters,
            extras: Extras(&self.extras),
            rule_tag: self.rule_tag.as_deref(),
        }
    }
}

/// A header token that is not `-` (RFC 5424 nil).
fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._][A-Za-z0-9._-]{0,14}"
}

fn header() -> impl Strategy<Value = Header> {
    let severity = (
        select(vec!["Em", "Al", "Cr", "Er", "Wa", "No", "In", "Db"]),
        0u8..=191,
    )
        .prop_map(|(s, n)| format!("{s}({n})"));
    let rfc3164_with_app = (
        proptest::option::of(0u8..=191),
        proptest::option::of("[a-z][a-z0-9.-]{0,20}"),
        proptest::option::of(severity),
        "[A-Za-z][A-Za-z0-9_.-]{0,15}",
        proptest::option::of("[0-9]{1,7}"),
    )
        .prop_map(|(pri, host, severity, app, procid)| Header::Rfc3164 {
            pri,
            host,
            severity,
            app: Some(app),
            procid,
        });
    let rfc3164_pri_only = (0u8..=191).prop_map(|pri| Header::Rfc3164 {
        pri: Some(pri),
        host: None,
        severity: None,
        app: None,
        procid: None,
    });
    // Parameter values hold spaces and escaped `\]`.
    let sd_element = r#"\[[a-z]{1,5}(@[0-9]{1,4})?( [a-z]{1,3}="([a-z ]|\\\]){0,6}")?\]"#;
    let sd = proptest::collection::vec(sd_element, 1..3).prop_map(|v| v.concat());
    let rfc5424 = (
        0u8..=191,
        proptest::option::of(word()),
        proptest::option::of(word()),
        proptest::option::of(word()),
        proptest::option::of(word()),
        proptest::option::of(sd),
    )
        .prop_map(|(pri, host, app, procid, msgid, sd)| Header::Rfc5424 {
            pri,
            host,
            app,
            procid,
            msgid,
            sd,
        });
    prop_oneof![
        Just(Header::None),
        rfc3164_with_app,
        rfc3164_pri_only,
        rfc5424
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        any::<u8>().prop_map(Protocol::Other),
    ]
}

fn extra() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}\\.[a-z]{2,3}\\([0-9a-f-]{1,36}\\)",
        "APP_[A-Z0-9_]{1,8}",
        "[a-z]{1,8}\\.[a-z]{1,8}\\.[a-z]{2,3}",
    ]
}

fn counters() -> impl Strategy<Value = Counters> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(pkts_in, pkts_out, bytes_in, bytes_out)| Counters {
            pkts_in,
            pkts_out,
            bytes_in,
            bytes_out,
        },
    )
}

prop_compose! {
    fn generated()(
        header in header(),
        ms in 0i64..4_102_444_800_000,
        (written, envelope_ms, received_ms) in (
            any::<bool>(),
            proptest::option::of(1i64..4_102_444_800_000),
            0i64..4_102_444_800_000,
        ),
        filter_hash in proptest::option::of("[0-9a-f]{8}"),
        v6 in any::<bool>(),
        (a4, b4, a6, b6) in (any::<u32>(), any::<u32>(), any::<u128>(), any::<u128>()),
        reason in select(Reason::ALL.to_vec()),
        action in proptest::option::of(select(Action::ALL.to_vec())),
        ruleset in proptest::option::of("[a-z][a-z0-9-]{0,10}"),
        rule_id in any::<u32>(),
        direction in select(Direction::ALL.to_vec()),
        (length, protocol, close_reason) in (
            proptest::option::of(any::<u32>()),
            protocol(),
            proptest::option::of(select(CloseReason::ALL.to_vec())),
        ),
        (src_port, dst_port) in (proptest::option::of(any::<u16>()), proptest::option::of(any::<u16>())),
        (flags, counters, extras, rule_tag) in (
            "[SAPUFREWC]{1,9}",
            proptest::option::of(counters()),
            proptest::collection::vec(extra(), 0..3),
            proptest::option::of("[A-Za-z0-9_-]{1,32}".prop_filter("not an App-ID", |t| !is_app_id(t))),
        ),
    ) -> Gen {
        let time = jiff::Timestamp::from_millisecond(ms).unwrap();
        let (af, src, dst) = if v6 {
            (AddressFamily::Inet6, IpAddr::V6(Ipv6Addr::from(a6)), IpAddr::V6(Ipv6Addr::from(b6)))
        } else {
            (AddressFamily::Inet, IpAddr::V4(Ipv4Addr::from(a4)), IpAddr::V4(Ipv4Addr::from(b4)))
        };
        // NSX prints flags on every TCP line but TERM lines; the parser reads them only there.
        let tcp_flags = (protocol == Protocol::Tcp && reason != Reason::Term).then_some(flags);
        let arrival = Arrival::received(jiff::Timestamp::from_millisecond(received_ms).unwrap())
            .with_envelope(envelope_ms.map(|ms| jiff::Timestamp::from_millisecond(ms).unwrap()));
        Gen {
            header,
            timestamp: written.then(|| timestamp_string(time)),
            time,
            arrival,
            filter_hash,
            af,
            reason,
            action,
            ruleset,
            rule_id,
            direction,
            length,
            protocol,
            close_reason,
            src,
            src_port,
            dst,
            dst_port,
            tcp_flags,
            counters,
            extras: extras.join(" "),
            rule_tag,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn parse_of_format_is_identity(g in generated()) {
        let record = g.record();
        let line = format_line(&record);
        prop_assert_eq!(parse_line_with(&line, g.arrival), Ok(record), "line: {}", line);
        // Without an arrival, only a line with its own timestamp parses.
        match record.timestamp {
            Some(_) => prop_assert_eq!(parse_line(&line), Ok(record), "line: {}", line),
            None => prop_assert!(parse_line(&line).is_err(), "line: {}", line),
        }
    }
}

#[test]
fn timestamp_string_has_milliseconds() {
    let t = jiff::Timestamp::from_millisecond(1_714_644_931_000).unwrap();
    assert_eq!(timestamp_string(t), "2024-05-02T10:15:31.000Z");
}
