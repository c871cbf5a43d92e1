//! Parser tests over every example line of `nsx-policy-api.md` §9 (copied verbatim) and every
//! layout variant, plus `format(parse(line)) == line` for each example; the message body alone
//! (no timestamp, with or without filter hash and header) and where each record's time comes from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use microseg::monitor::format::format_line;
use microseg::monitor::parse::{
    Action, AddressFamily, Arrival, CloseReason, Counters, Direction, Field, LogRecord, Protocol,
    Reason, SyslogHeader, TimeSource, is_dfw_line, parse_line, parse_line_with,
};

/// §9 "Examples — documented".
const DOCUMENTED: &[&str] = &[
    "2018-07-03T19:44:09.749Z b6507827 INET match PASS mainrs/1024 IN 52 TCP 192.168.4.3/49627->192.168.4.4/49153 SEW",
    "2018-07-03T19:46:02.338Z 7396c504 INET match DROP mainrs/1024 OUT 52 TCP 192.168.4.3/49676->192.168.4.4/135 SEW",
    "2018-07-06T18:15:49.647Z 028cd586 INET match DROP mainrs/1027 IN 36 PROTO 2 0.0.0.0->224.0.0.1",
    "2018-07-06T18:19:54.764Z 028cd586 INET6 match DROP mainrs/1027 OUT 143 UDP fe80:0:0:0:68c2:8472:2364:9be/546->ff02:0:0:0:0:0:1:2/547",
    "2026-03-03T00:02:11.678Z No(13) FIREWALL-PKTLOG[1069031]: 8b4a1980 INET match PASS 25577 OUT 84 ICMP 192.168.72.10->192.168.72.17",
    "2026-03-03T00:02:11.678Z No(13) FIREWALL-PKTLOG[1069031]: 14b4051d INET match PASS 25577 IN 84 ICMP 192.168.72.10->192.168.72.17",
];

/// §9 "Examples — TERM / tag / annotation variants".
const TERM_TAG_ANNOTATION: &[&str] = &[
    "2026-09-23T12:00:00.000Z b6507827 INET TERM mainrs/1024 OUT TCP RST 192.0.2.3/49627->192.0.2.4/49153 20/16 1718/76308",
    "2026-09-23T12:00:00.000Z b6507827 INET match PASS 1031 OUT 48 TCP 192.0.2.5/32808->203.0.113.7/80 S www.example.com(00000000-0000-0000-0000-000000000001)",
    "2026-09-23T12:00:00.000Z b6507827 INET match PASS 1030 OUT 48 UDP 192.0.2.5/42035->192.0.2.1/53 APP_DNS",
    "<13>1 2026-09-23T12:00:00.001Z host01 FIREWALL-PKTLOG - - - INET TERM PASS 5096 OUT TCP RST 192.0.2.11/60517->192.0.2.10/443 9/8 1461/4677 DR-Allow",
];

/// §9 "Examples — as forwarded by ESXi syslog".
const FORWARDED: &[&str] = &[
    "<182>2024-05-02T10:15:31.204Z esx01.lab.local dfwpktlogs: 2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny",
    "<182>2024-05-02T10:15:31.204Z esx01.lab.local FIREWALL_PKTLOG: 2d4b6e2d INET match PASS 3081 OUT 60 TCP 10.10.20.5/443->10.10.30.7/51844 SA",
    "<14>1 2024-05-02T10:15:31.204Z esx01.lab.local FIREWALL-PKTLOG 2099123 - - 2d4b6e2d INET TERM PASS 3081 IN TCP FIN 10.10.30.7/51844->10.10.20.5/443 12/10 2040/15322 web-allow-https",
    "<182>2024-05-02T10:15:33.870Z esx02.lab.local dfwpktlogs: 9a01c3e2 INET match REJECT 3090 IN 40 UDP 10.10.30.7/53122->10.10.20.5/161",
];

/// §10 example `text` (Log Insight strips `<pri>`).
const LOG_INSIGHT_TEXT: &str = "2024-05-02T10:15:31.204Z esx01.lab.local dfwpktlogs: 2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny";

/// The message body alone, as KB articles and admin guides quote it, Log Insight's `text` may
/// hold it, and relays that strip the syslog header forward it: each is the body of a §9 example
/// (source named), cut after its header.
const BODIES: &[(&str, &str)] = &[
    (
        "§9 documented (NSX 3.2/4.1 Admin Guide): match, ruleset, TCP flags",
        "b6507827 INET match PASS mainrs/1024 IN 52 TCP 192.168.4.3/49627->192.168.4.4/49153 SEW",
    ),
    (
        "§9 documented (NSX 3.2/4.1 Admin Guide): PROTO n, no ports",
        "028cd586 INET match DROP mainrs/1027 IN 36 PROTO 2 0.0.0.0->224.0.0.1",
    ),
    (
        "§9 documented (NSX 3.2/4.1 Admin Guide): IPv6",
        "028cd586 INET6 match DROP mainrs/1027 OUT 143 UDP fe80:0:0:0:68c2:8472:2364:9be/546->ff02:0:0:0:0:0:1:2/547",
    ),
    (
        "§9 documented (KB 431735, ESXi 8 FIREWALL-PKTLOG): the message after the header",
        "8b4a1980 INET match PASS 25577 OUT 84 ICMP 192.168.72.10->192.168.72.17",
    ),
    (
        "§9 TERM variant (NSX 4.0 guide layout): TERM without action, counters",
        "b6507827 INET TERM mainrs/1024 OUT TCP RST 192.0.2.3/49627->192.0.2.4/49153 20/16 1718/76308",
    ),
    (
        "§9 annotation variant: FQDN extra",
        "b6507827 INET match PASS 1031 OUT 48 TCP 192.0.2.5/32808->203.0.113.7/80 S www.example.com(00000000-0000-0000-0000-000000000001)",
    ),
    (
        "§9 TERM/tag variant (RFC 5424, NSX 4): no filter hash, TERM PASS, counters, rule tag",
        "INET TERM PASS 5096 OUT TCP RST 192.0.2.11/60517->192.0.2.10/443 9/8 1461/4677 DR-Allow",
    ),
    (
        "§9 forwarded by ESXi syslog: match with rule tag (the body Log Insight's text holds)",
        "2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny",
    ),
    (
        "§9 forwarded by ESXi syslog: TERM PASS with close reason, counters and tag",
        "2d4b6e2d INET TERM PASS 3081 IN TCP FIN 10.10.30.7/51844->10.10.20.5/443 12/10 2040/15322 web-allow-https",
    ),
    (
        "§9 forwarded by ESXi syslog: match without filter hash (relay dropped it)",
        "INET match REJECT 3090 IN 40 UDP 10.10.30.7/53122->10.10.20.5/161",
    ),
];

/// A §9 header kept without its timestamp (relay templates `%HOSTNAME% %syslogtag%%msg%`,
/// `%syslogtag%%msg%`, and RFC 5424 with the nil TIMESTAMP `-`).
const HEADERS_WITHOUT_TIMESTAMP: &[(&str, &str)] = &[
    (
        "§9 forwarded (ESXi 6.x/7.x ident dfwpktlogs), host and tag kept",
        "esx01.lab.local dfwpktlogs: 2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny",
    ),
    (
        "§9 documented (KB 431735, ESXi 8): severity and tag kept",
        "No(13) FIREWALL-PKTLOG[1069031]: 8b4a1980 INET match PASS 25577 OUT 84 ICMP 192.168.72.10->192.168.72.17",
    ),
    (
        "§9 forwarded (sapcc grok ident FIREWALL_PKTLOG), tag only",
        "FIREWALL_PKTLOG: 2d4b6e2d INET match PASS 3081 OUT 60 TCP 10.10.20.5/443->10.10.30.7/51844 SA",
    ),
    (
        "§9 forwarded RFC 3164, <pri> and host kept",
        "<182>esx02.lab.local dfwpktlogs: 9a01c3e2 INET match REJECT 3090 IN 40 UDP 10.10.30.7/53122->10.10.20.5/161",
    ),
    (
        "§9 forwarded RFC 3164, <pri> glued to the body",
        "<182>2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny",
    ),
    (
        "§9 forwarded RFC 5424 (ESXi 8 / NSX 4), nil TIMESTAMP",
        "<14>1 - esx01.lab.local FIREWALL-PKTLOG 2099123 - - 2d4b6e2d INET TERM PASS 3081 IN TCP FIN 10.10.30.7/51844->10.10.20.5/443 12/10 2040/15322 web-allow-https",
    ),
];

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ok(line: &str) -> LogRecord<'_> {
    parse_line(line).unwrap_or_else(|e| panic!("{line}\n{e}: {:?}", e.token(line)))
}

/// The ESXi 8 local header `No(13) FIREWALL-PKTLOG[1069031]:` (no host, no PRI).
fn esxi8_local_header() -> Option<SyslogHeader<'static>> {
    Some(SyslogHeader::Rfc3164 {
        pri: None,
        host: None,
        severity: Some("No(13)"),
        app: Some("FIREWALL-PKTLOG"),
        procid: Some("1069031"),
    })
}

/// The header `esx01.lab.local dfwpktlogs:`, with `pri` glued to the timestamp or not.
fn esx01_dfwpktlogs_header(pri: Option<u8>) -> Option<SyslogHeader<'static>> {
    Some(SyslogHeader::Rfc3164 {
        pri,
        host: Some("esx01.lab.local"),
        severity: None,
        app: Some("dfwpktlogs"),
        procid: None,
    })
}

#[test]
fn every_reference_example_parses_and_formats_back_verbatim() {
    for line in DOCUMENTED
        .iter()
        .chain(TERM_TAG_ANNOTATION)
        .chain(FORWARDED)
        .chain([&LOG_INSIGHT_TEXT])
    {
        let r = ok(line);
        assert_eq!(format_line(&r), *line);
        assert_eq!(parse_line(&format_line(&r)), Ok(r));
    }
}

#[test]
fn documented_match_line_with_ruleset_and_tcp_flags() {
    let r = ok(DOCUMENTED[0]);
    assert_eq!(r.syslog, None);
    assert_eq!(r.timestamp, Some("2018-07-03T19:44:09.749Z"));
    assert_eq!(r.time, "2018-07-03T19:44:09.749Z".parse().unwrap());
    assert_eq!(r.time_source, TimeSource::Line);
    assert_eq!(r.filter_hash, Some("b6507827"));
    assert_eq!(r.af, AddressFamily::Inet);
    assert_eq!(r.reason, Reason::Match);
    assert_eq!(r.action, Some(Action::Pass));
    assert_eq!(r.ruleset, Some("mainrs"));
    assert_eq!(r.rule_id, 1024);
    assert_eq!(r.direction, Direction::In);
    assert_eq!(r.length, Some(52));
    assert_eq!(r.protocol, Protocol::Tcp);
    assert_eq!((r.src, r.src_port), (ip("192.168.4.3"), Some(49627)));
    assert_eq!((r.dst, r.dst_port), (ip("192.168.4.4"), Some(49153)));
    assert_eq!(r.tcp_flags, Some("SEW"));
    assert_eq!(r.counters, None);
    assert!(r.extras.is_empty());
    assert_eq!(r.rule_tag, None);
}

#[test]
fn proto_n_line_has_no_ports() {
    let r = ok(DOCUMENTED[2]);
    assert_eq!(r.protocol, Protocol::Other(2));
    assert_eq!(r.protocol.number(), Some(2));
    assert_eq!((r.src, r.src_port), (ip("0.0.0.0"), None));
    assert_eq!((r.dst, r.dst_port), (ip("224.0.0.1"), None));
    assert_eq!(r.tcp_flags, None);
}

#[test]
fn ipv6_uncompressed_addresses_parse() {
    let r = ok(DOCUMENTED[3]);
    assert_eq!(r.af, AddressFamily::Inet6);
    assert_eq!(r.protocol, Protocol::Udp);
    assert_eq!(
        (r.src, r.src_port),
        (ip("fe80::68c2:8472:2364:9be"), Some(546))
    );
    assert_eq!((r.dst, r.dst_port), (ip("ff02::1:2"), Some(547)));
}

#[test]
fn esxi8_local_header_with_severity_and_pid() {
    let r = ok(DOCUMENTED[4]);
    assert_eq!(r.syslog, esxi8_local_header());
    assert_eq!(r.host(), None);
    assert_eq!(r.ruleset, None);
    assert_eq!(r.rule_id, 25577);
    assert_eq!(r.protocol, Protocol::Icmp);
    assert_eq!(r.src_port, None);
}

#[test]
fn term_line_without_action_has_close_reason_and_counters() {
    let r = ok(TERM_TAG_ANNOTATION[0]);
    assert_eq!(r.reason, Reason::Term);
    assert_eq!(r.action, None);
    assert_eq!(r.length, None);
    assert_eq!(r.close_reason, Some(CloseReason::Rst));
    assert_eq!(r.tcp_flags, None);
    assert_eq!(
        r.counters,
        Some(Counters {
            pkts_in: 20,
            pkts_out: 16,
            bytes_in: 1718,
            bytes_out: 76308
        })
    );
    assert_eq!(r.rule_tag, None);
}

#[test]
fn fqdn_annotation_is_an_extra_not_a_tag() {
    let r = ok(TERM_TAG_ANNOTATION[1]);
    assert_eq!(r.tcp_flags, Some("S"));
    assert_eq!(
        r.extras.iter().collect::<Vec<_>>(),
        ["www.example.com(00000000-0000-0000-0000-000000000001)"]
    );
    assert_eq!(r.rule_tag, None);
}

#[test]
fn app_id_is_an_extra_not_a_tag() {
    let r = ok(TERM_TAG_ANNOTATION[2]);
    assert_eq!(r.extras.iter().collect::<Vec<_>>(), ["APP_DNS"]);
    assert_eq!(r.rule_tag, None);
}

#[test]
fn rfc5424_with_nil_fields_and_no_filter_hash() {
    let r = ok(TERM_TAG_ANNOTATION[3]);
    assert_eq!(
        r.syslog,
        Some(SyslogHeader::Rfc5424 {
            pri: 13,
            host: Some("host01"),
            app: Some("FIREWALL-PKTLOG"),
            procid: None,
            msgid: None,
            structured_data: None,
        })
    );
    assert_eq!(r.host(), Some("host01"));
    assert_eq!(r.filter_hash, None);
    assert_eq!(r.reason, Reason::Term);
    assert_eq!(r.action, Some(Action::Pass));
    assert_eq!(r.rule_id, 5096);
    assert_eq!(r.close_reason, Some(CloseReason::Rst));
    assert_eq!(r.counters.map(|c| c.bytes_out), Some(4677));
    assert_eq!(r.rule_tag, Some("DR-Allow"));
}

#[test]
fn rfc3164_forwarded_lines_carry_host_app_and_tag() {
    let r = ok(FORWARDED[0]);
    assert_eq!(r.syslog, esx01_dfwpktlogs_header(Some(182)));
    assert_eq!(r.filter_hash, Some("2d4b6e2d"));
    assert_eq!(r.action, Some(Action::Drop));
    assert_eq!(r.tcp_flags, Some("S"));
    assert_eq!(r.rule_tag, Some("web-deny"));

    let r = ok(FORWARDED[1]);
    assert_eq!(r.syslog.and_then(|h| h.app()), Some("FIREWALL_PKTLOG"));
    assert_eq!(r.tcp_flags, Some("SA"));
    assert_eq!(r.rule_tag, None);

    let r = ok(FORWARDED[3]);
    assert_eq!(r.action, Some(Action::Reject));
    assert_eq!(r.protocol, Protocol::Udp);
    assert_eq!(r.rule_tag, None);
}

#[test]
fn rfc5424_with_procid_term_fin_and_tag() {
    let r = ok(FORWARDED[2]);
    assert_eq!(
        r.syslog,
        Some(SyslogHeader::Rfc5424 {
            pri: 14,
            host: Some("esx01.lab.local"),
            app: Some("FIREWALL-PKTLOG"),
            procid: Some("2099123"),
            msgid: None,
            structured_data: None,
        })
    );
    assert_eq!(r.close_reason, Some(CloseReason::Fin));
    assert_eq!(
        r.counters,
        Some(Counters {
            pkts_in: 12,
            pkts_out: 10,
            bytes_in: 2040,
            bytes_out: 15322
        })
    );
    assert_eq!(r.rule_tag, Some("web-allow-https"));
}

#[test]
fn log_insight_text_has_host_without_pri() {
    let r = ok(LOG_INSIGHT_TEXT);
    assert_eq!(r.host(), Some("esx01.lab.local"));
    assert_eq!(r.rule_id, 3084);
}

#[test]
fn other_variants_parse() {
    // Each: line, and a check.
    type Check = fn(&LogRecord<'_>) -> bool;
    let cases: &[(&str, Check)] = &[
        // NSX-V ruleset, TERM for UDP with TIMEOUT and no action.
        (
            "2018-07-03T19:44:09.749Z b6507827 INET TERM domain-c7/1001 IN UDP TIMEOUT 10.0.0.1/53->10.0.0.2/5353 1/1 80/120",
            |r| r.ruleset == Some("domain-c7") && r.close_reason == Some(CloseReason::Timeout),
        ),
        // Compressed IPv6 with ICMP (not how NSX writes it, but valid).
        (
            "2024-01-01T00:00:00.000Z 0a0b0c0d INET6 match DROP 2 OUT 64 ICMP fe80::1->ff02::2",
            |r| r.protocol == Protocol::Icmp && r.dst == "ff02::2".parse::<IpAddr>().unwrap(),
        ),
        // ESXi syslog with pri but no host.
        (
            "<182>2024-05-02T10:15:31.204Z dfwpktlogs: 2d4b6e2d INET match PASS 3081 OUT 60 TCP 10.0.0.1/1->10.0.0.2/2 S",
            |r| r.host().is_none() && r.syslog.and_then(|h| h.app()) == Some("dfwpktlogs"),
        ),
        // pri glued to the timestamp, then directly the message.
        (
            "<182>2024-05-02T10:15:31.204Z 2d4b6e2d INET match PASS 3081 OUT 60 UDP 10.0.0.1/1->10.0.0.2/2",
            |r| {
                matches!(
                    r.syslog,
                    Some(SyslogHeader::Rfc3164 {
                        pri: Some(182),
                        app: None,
                        ..
                    })
                )
            },
        ),
        // RFC 5424 with structured data holding spaces and an escaped bracket.
        (
            r#"<14>1 2024-05-02T10:15:31.204+02:00 esx01 FIREWALL-PKTLOG 7 pkt [meta a="x y" b="\]"][x@1 c="d"] 2d4b6e2d INET match PASS 3081 OUT 60 TCP 10.0.0.1/1->10.0.0.2/2 SA web"#,
            |r| {
                matches!(r.syslog, Some(SyslogHeader::Rfc5424 { msgid: Some("pkt"), structured_data: Some(sd), .. }) if sd == r#"[meta a="x y" b="\]"][x@1 c="d"]"#)
                    && r.time == "2024-05-02T08:15:31.204Z".parse().unwrap()
                    && r.rule_tag == Some("web")
            },
        ),
        // Extras then a tag; CRLF line end.
        (
            "2026-09-23T12:00:00.000Z b6507827 INET match PASS 1031 OUT 48 TCP 192.0.2.5/32808->203.0.113.7/80 S www.example.com(1) APP_HTTP my_tag\r\n",
            |r| r.extras.iter().count() == 2 && r.rule_tag == Some("my_tag"),
        ),
        // Other reason code.
        (
            "2026-09-23T12:00:00.000Z b6507827 INET state-mismatch DROP 2 IN 40 TCP 192.0.2.5/1->192.0.2.6/2 A",
            |r| r.reason == Reason::StateMismatch,
        ),
    ];
    for (line, check) in cases {
        let r = ok(line);
        assert!(check(&r), "{line}\n{r:#?}");
    }
}

#[test]
fn errors_name_the_field_and_token() {
    let cases: &[(&str, Field, &str)] = &[
        ("", Field::Line, ""),
        ("hello world", Field::Timestamp, "hello"),
        (
            "May  2 10:15:31 esx01 dfwpktlogs: x",
            Field::Timestamp,
            "May",
        ),
        ("2018-07-03T19:44:09.749Z", Field::Line, ""),
        (
            "2018-13-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Timestamp,
            "2018-13-03T19:44:09.749Z",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET4 match PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::AddressFamily,
            "INET4",
        ),
        (
            "2018-07-03T19:44:09.749Z xyz INET match PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::FilterHash,
            "xyz",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET matched PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Reason,
            "matched",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match ALLOW 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Rule,
            "ALLOW",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS mainrs/x IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Rule,
            "mainrs/x",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 99999999999 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Rule,
            "99999999999",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 UP 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Direction,
            "UP",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 SCTP 1.1.1.1/1->1.1.1.1/1",
            Field::Protocol,
            "SCTP",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 PROTO 256 1.1.1.1->1.1.1.1",
            Field::Protocol,
            "256",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 TCP 1.1.1.1/1-1.1.1.1/1",
            Field::Endpoints,
            "1.1.1.1/1-1.1.1.1/1",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 TCP 1.1.1.1/70000->1.1.1.1/1",
            Field::Endpoints,
            "1.1.1.1/70000->1.1.1.1/1",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 TCP fe80::1/1->fe80::2/1",
            Field::Endpoints,
            "fe80::1/1->fe80::2/1",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET TERM 1 IN TCP FIN 1.1.1.1/1->1.1.1.1/1 1/2",
            Field::Counters,
            "",
        ),
        (
            "2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 1 TCP",
            Field::Endpoints,
            "",
        ),
        (
            "<999>2018-07-03T19:44:09.749Z b6507827 INET",
            Field::SyslogHeader,
            "<999>",
        ),
        (
            "<14>1 2018-07-03T19:44:09.749Z host app - - [unclosed b6507827 INET",
            Field::SyslogHeader,
            "[unclosed b6507827 INET",
        ),
    ];
    let e = parse_line("<182>May  2 10:15:31 esx01 dfwpktlogs: x").unwrap_err();
    assert!(e.reason.contains("BSD timestamp"), "{e}");
    for (line, field, token) in cases {
        let e = parse_line(line).expect_err(line);
        assert_eq!((e.field, e.token(line)), (*field, *token), "{line}: {e}");
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn truncating_any_example_never_panics_and_errs_or_parses() {
    for line in DOCUMENTED
        .iter()
        .chain(TERM_TAG_ANNOTATION)
        .chain(FORWARDED)
    {
        for cut in 0..=line.len() {
            if let Some(prefix) = line.get(..cut) {
                let _ = parse_line(prefix);
            }
        }
    }
}

#[test]
fn trailing_whitespace_after_a_newline_is_ignored_and_the_record_formats_back() {
    // Found by the fuzzer: a `\n` followed by tabs at the end of the line.
    let line = "2026-09-23T12:00:00.000Z b6507827 INET match PASS 1 OUT 48 UDP 192.0.2.5/1->192.0.2.1/53 a.b(c) x\n\t\t";
    let r = ok(line);
    assert_eq!(r.rule_tag, Some("x"));
    assert_eq!(parse_line(&format_line(&r)), Ok(r));
}

#[test]
fn every_body_alone_parses_with_the_receipt_time_and_formats_back_verbatim() {
    let received = at("2026-05-02T10:15:31.204Z");
    for (source, body) in BODIES.iter().chain(HEADERS_WITHOUT_TIMESTAMP) {
        let r = parse_line_with(body, Arrival::received(received))
            .unwrap_or_else(|e| panic!("{source}: {body}\n{e}: {:?}", e.token(body)));
        assert_eq!(r.timestamp, None, "{source}");
        assert_eq!(
            (r.time, r.time_source),
            (received, TimeSource::Receipt),
            "{source}"
        );
        assert_eq!(format_line(&r), *body, "{source}");
        assert_eq!(
            parse_line_with(&format_line(&r), Arrival::received(received)),
            Ok(r),
            "{source}"
        );
        assert!(is_dfw_line(body), "{source}");
    }
}

#[test]
fn a_body_alone_reads_the_same_fields_as_the_full_line() {
    // Each §9 example with a header and timestamp, and its body alone: every field of the message
    // is the same, only the framing and the time differ.
    let received = at("2026-05-02T10:15:31.204Z");
    for line in DOCUMENTED
        .iter()
        .chain(TERM_TAG_ANNOTATION)
        .chain(FORWARDED)
    {
        let full = ok(line);
        let af = line.find(" INET").unwrap();
        let hash_start = match full.filter_hash {
            Some(h) => line.find(h).unwrap(),
            None => af + 1,
        };
        let body = &line[hash_start..];
        let alone = parse_line_with(body, Arrival::received(received)).unwrap();
        assert_eq!(
            LogRecord {
                syslog: None,
                timestamp: None,
                time: received,
                time_source: TimeSource::Receipt,
                ..full
            },
            alone,
            "{body}"
        );
    }
}

#[test]
fn bare_match_body_with_filter_hash() {
    // The form of the issue: `<filter hash> INET match PASS <rule> IN 60 TCP a/p->b/q S`.
    let (_, body) = BODIES[7];
    let r = parse_line_with(body, Arrival::received(at("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(r.syslog, None);
    assert_eq!(r.filter_hash, Some("2d4b6e2d"));
    assert_eq!((r.reason, r.action), (Reason::Match, Some(Action::Drop)));
    assert_eq!(r.rule_id, 3084);
    assert_eq!((r.direction, r.length), (Direction::In, Some(60)));
    assert_eq!((r.dst, r.dst_port), (ip("10.10.20.5"), Some(3389)));
    assert_eq!(r.tcp_flags, Some("S"));
    assert_eq!(r.rule_tag, Some("web-deny"));
}

#[test]
fn bare_term_body_without_filter_hash_with_counters_and_tag() {
    // `INET TERM ...` with counters and a tag (§9 TERM/tag variant, NSX 4).
    let (_, body) = BODIES[6];
    let r = parse_line_with(body, Arrival::received(at("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(r.filter_hash, None);
    assert_eq!((r.reason, r.action), (Reason::Term, Some(Action::Pass)));
    assert_eq!(r.close_reason, Some(CloseReason::Rst));
    assert_eq!(r.length, None);
    assert_eq!(
        r.counters,
        Some(Counters {
            pkts_in: 9,
            pkts_out: 8,
            bytes_in: 1461,
            bytes_out: 4677
        })
    );
    assert_eq!(r.rule_tag, Some("DR-Allow"));
    // TERM without action and with a ruleset (§9 TERM variant).
    let (_, body) = BODIES[4];
    let r = parse_line_with(body, Arrival::received(at("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(
        (r.reason, r.action, r.ruleset),
        (Reason::Term, None, Some("mainrs"))
    );
}

#[test]
fn headers_without_timestamp_keep_their_fields() {
    let received = Arrival::received(at("2026-01-01T00:00:00Z"));
    let r = parse_line_with(HEADERS_WITHOUT_TIMESTAMP[0].1, received).unwrap();
    assert_eq!(r.syslog, esx01_dfwpktlogs_header(None));
    let r = parse_line_with(HEADERS_WITHOUT_TIMESTAMP[1].1, received).unwrap();
    assert_eq!(r.syslog, esxi8_local_header());
    let r = parse_line_with(HEADERS_WITHOUT_TIMESTAMP[4].1, received).unwrap();
    assert!(matches!(
        r.syslog,
        Some(SyslogHeader::Rfc3164 {
            pri: Some(182),
            host: None,
            app: None,
            ..
        })
    ));
    let r = parse_line_with(HEADERS_WITHOUT_TIMESTAMP[5].1, received).unwrap();
    assert!(matches!(
        r.syslog,
        Some(SyslogHeader::Rfc5424 {
            pri: 14,
            host: Some("esx01.lab.local"),
            procid: Some("2099123"),
            ..
        })
    ));
    assert_eq!((r.timestamp, r.time_source), (None, TimeSource::Receipt));
    assert_eq!(r.rule_tag, Some("web-allow-https"));
}

#[test]
fn time_comes_from_the_line_then_the_header_then_the_envelope_then_receipt() {
    let envelope = at("2024-05-02T10:15:31.204Z");
    let received = at("2024-05-02T10:15:35Z");
    let both = Arrival::received(received).with_envelope(Some(envelope));
    // Line: the plain dfwpktlogs.log line (§9 documented); the envelope does not override it.
    let r = parse_line_with(DOCUMENTED[0], both).unwrap();
    assert_eq!(
        (r.time, r.time_source),
        (at("2018-07-03T19:44:09.749Z"), TimeSource::Line)
    );
    // SyslogHeader: RFC 3164 (§9 forwarded), ESXi 8 local (§9 documented, KB 431735), RFC 5424.
    for (line, time) in [
        (FORWARDED[0], "2024-05-02T10:15:31.204Z"),
        (DOCUMENTED[4], "2026-03-03T00:02:11.678Z"),
        (FORWARDED[2], "2024-05-02T10:15:31.204Z"),
        (LOG_INSIGHT_TEXT, "2024-05-02T10:15:31.204Z"),
    ] {
        let r = parse_line_with(line, both).unwrap();
        assert_eq!(
            (r.time, r.time_source),
            (at(time), TimeSource::SyslogHeader),
            "{line}"
        );
    }
    // Envelope: the body alone in an envelope with a time (Log Insight message `timestamp`).
    let (_, body) = BODIES[7];
    let r = parse_line_with(body, both).unwrap();
    assert_eq!((r.time, r.time_source), (envelope, TimeSource::Envelope));
    // Receipt: no envelope time.
    let r = parse_line_with(body, Arrival::received(received).with_envelope(None)).unwrap();
    assert_eq!((r.time, r.time_source), (received, TimeSource::Receipt));
    // An envelope alone (no receipt time) is enough too.
    let r = parse_line_with(body, Arrival::NONE.with_envelope(Some(envelope))).unwrap();
    assert_eq!(r.time_source, TimeSource::Envelope);
}

#[test]
fn a_body_alone_without_any_time_is_refused_by_parse_line_naming_the_timestamp() {
    for (source, body) in BODIES.iter().chain(HEADERS_WITHOUT_TIMESTAMP) {
        let e = parse_line(body).expect_err(source);
        assert_eq!(e.field, Field::Timestamp, "{source}: {e}");
        assert!(e.reason.contains("no timestamp"), "{source}: {e}");
        assert!(e.start <= body.len() && e.end <= body.len());
    }
}

#[test]
fn not_dfw_lines_are_still_refused_without_a_timestamp() {
    let received = Arrival::received(at("2026-01-01T00:00:00Z"));
    let cases: &[(&str, Field, &str)] = &[
        ("hello world", Field::Timestamp, "hello"),
        ("vpxd: user logged in", Field::FilterHash, "user"),
        ("abc INET4 match", Field::AddressFamily, "INET4"),
        (
            "INET matched PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Reason,
            "matched",
        ),
        ("2d4b6e2d INET match PASS 1 IN 1 TCP", Field::Endpoints, ""),
        ("<182> 2d4b6e2d INET match", Field::Timestamp, " "),
        ("<182>", Field::Line, ""),
        ("<14>1 - host", Field::SyslogHeader, ""),
        (
            "2018-07-03 b6507827 INET match PASS 1 IN 1 TCP 1.1.1.1/1->1.1.1.1/1",
            Field::Timestamp,
            "2018-07-03",
        ),
    ];
    for (line, field, token) in cases {
        let e = parse_line_with(line, received).expect_err(line);
        assert_eq!((e.field, e.token(line)), (*field, *token), "{line}: {e}");
        assert!(!is_dfw_line(line), "{line}");
    }
}

#[test]
fn truncating_any_body_never_panics() {
    let received = Arrival::received(at("2026-01-01T00:00:00Z"));
    for (_, line) in BODIES.iter().chain(HEADERS_WITHOUT_TIMESTAMP) {
        for cut in 0..=line.len() {
            if let Some(prefix) = line.get(..cut)
                && let Ok(r) = parse_line_with(prefix, received)
            {
                assert_eq!(parse_line_with(&format_line(&r), received), Ok(r));
            }
        }
    }
}
