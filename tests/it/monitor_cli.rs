//! `microseg parse-log` end to end: the real binary, lines on stdin, JSON on stdout, the summary
//! of unparsed lines on stderr; `--format loginsight`: a saved webhook payload on stdin, one JSON
//! object per message on stdout, what the webhook would answer on stderr and in the exit status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

fn run(input: &[u8], args: &[&str]) -> (String, String, bool) {
    let (stdout, stderr, code) = run_code(input, args);
    (stdout, stderr, code == Some(0))
}

fn run_code(input: &[u8], args: &[&str]) -> (String, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .arg("parse-log")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code(),
    )
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn parse_log_writes_json_per_line_and_summarises_unparsed_lines() {
    let mut input = Vec::new();
    input.extend_from_slice(b"<182>2024-05-02T10:15:31.204Z esx01.lab.local dfwpktlogs: 2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny\n");
    input.extend_from_slice(b"<13>1 2026-09-23T12:00:00.001Z host01 FIREWALL-PKTLOG - - - INET TERM PASS 5096 OUT TCP RST 192.0.2.11/60517->192.0.2.10/443 9/8 1461/4677 DR-Allow\r\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"2018-07-06T18:19:54.764Z 028cd586 INET6 match DROP mainrs/1027 OUT 143 UDP fe80:0:0:0:68c2:8472:2364:9be/546->ff02:0:0:0:0:0:1:2/547\n");
    input.extend_from_slice(b"2018-07-03T19:44:09.749Z b6507827 INET match PASS mainrs/x IN 52 TCP 1.1.1.1/1->1.1.1.2/2 S\n");
    input.extend_from_slice(b"\xff\xfe not utf-8\n");
    input.extend_from_slice(b"2026-03-03T00:02:11.678Z No(13) FIREWALL-PKTLOG[1069031]: 8b4a1980 INET match PASS 25577 OUT 84 ICMP 192.168.72.10->192.168.72.17"); // no final newline

    let (stdout, stderr, ok) = run(&input, &[]);
    assert!(ok, "{stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "{stdout}");

    let r = &records[0];
    assert_eq!(r["timestamp"], "2024-05-02T10:15:31.204Z");
    assert_eq!(r["time"], "2024-05-02T10:15:31.204Z");
    assert_eq!(r["time_source"], "syslog_header");
    assert_eq!(r["host"], "esx01.lab.local");
    assert_eq!(r["syslog"]["format"], "rfc3164");
    assert_eq!(r["syslog"]["app"], "dfwpktlogs");
    assert_eq!(r["filter_hash"], "2d4b6e2d");
    assert_eq!(r["af"], "INET");
    assert_eq!(r["reason"], "match");
    assert_eq!(r["action"], "DROP");
    assert_eq!(r["ruleset"], serde_json::Value::Null);
    assert_eq!(r["rule_id"], 3084);
    assert_eq!(r["direction"], "IN");
    assert_eq!(r["length"], 60);
    assert_eq!(r["protocol"], "TCP");
    assert_eq!(r["protocol_number"], 6);
    assert_eq!(r["src"], "10.10.10.5");
    assert_eq!(r["src_port"], 51204);
    assert_eq!(r["dst"], "10.10.20.5");
    assert_eq!(r["dst_port"], 3389);
    assert_eq!(r["tcp_flags"], "S");
    assert_eq!(r["extras"], serde_json::json!([]));
    assert_eq!(r["rule_tag"], "web-deny");

    let r = &records[1];
    assert_eq!(r["syslog"]["format"], "rfc5424");
    assert_eq!(r["filter_hash"], serde_json::Value::Null);
    assert_eq!(r["reason"], "TERM");
    assert_eq!(r["close_reason"], "RST");
    assert_eq!(
        (
            &r["pkts_in"],
            &r["pkts_out"],
            &r["bytes_in"],
            &r["bytes_out"]
        ),
        (&9.into(), &8.into(), &1461.into(), &4677.into())
    );
    assert_eq!(r["length"], serde_json::Value::Null);
    assert_eq!(r["rule_tag"], "DR-Allow");

    assert_eq!(records[2]["af"], "INET6");
    assert_eq!(records[2]["ruleset"], "mainrs");
    assert_eq!(records[2]["src"], "fe80::68c2:8472:2364:9be");
    assert_eq!(records[3]["protocol"], "ICMP");
    assert_eq!(records[3]["src_port"], serde_json::Value::Null);
    assert_eq!(records[3]["syslog"]["severity"], "No(13)");

    assert!(
        stderr.contains("parse-log: 7 lines read, 4 parsed, 2 unparsed, 1 blank"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unparsed by field: not_utf8=1, rule=1"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5: rule (byte 50):"), "{stderr}");
    assert!(stderr.contains("\"mainrs/x\""), "{stderr}");
    assert!(
        stderr.contains("line 6: line is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn parse_log_samples_are_bounded_but_every_line_is_counted() {
    let input = "junk\n".repeat(50);
    let (stdout, stderr, ok) = run(input.as_bytes(), &["--samples", "3"]);
    assert!(ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("50 lines read, 0 parsed, 50 unparsed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sample of unparsed lines (3 of 50)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("  line ").count(), 3, "{stderr}");
}

#[test]
fn parse_log_reads_message_bodies_with_the_receipt_time() {
    // §9 bodies alone (forwarded example; TERM/tag example without filter hash), and a
    // documented line with its own timestamp.
    let input = "2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny\n\
                 INET TERM PASS 5096 OUT TCP RST 192.0.2.11/60517->192.0.2.10/443 9/8 1461/4677 DR-Allow\n\
                 2018-07-03T19:44:09.749Z b6507827 INET match PASS mainrs/1024 IN 52 TCP 192.168.4.3/49627->192.168.4.4/49153 SEW\n";
    let (stdout, stderr, ok) = run(input.as_bytes(), &["--received-at", "2026-01-02T03:04:05Z"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("3 lines read, 3 parsed, 0 unparsed"),
        "{stderr}"
    );
    let r = json_lines(&stdout);
    assert_eq!(r.len(), 3, "{stdout}");
    assert_eq!(r[0]["timestamp"], serde_json::Value::Null);
    assert_eq!(r[0]["time"], "2026-01-02T03:04:05Z");
    assert_eq!(r[0]["time_source"], "receipt");
    assert_eq!(r[0]["filter_hash"], "2d4b6e2d");
    assert_eq!(r[0]["rule_tag"], "web-deny");
    assert_eq!(r[1]["filter_hash"], serde_json::Value::Null);
    assert_eq!(r[1]["reason"], "TERM");
    assert_eq!(r[1]["time_source"], "receipt");
    assert_eq!(r[2]["time"], "2018-07-03T19:44:09.749Z");
    assert_eq!(r[2]["time_source"], "line");

    // A wrong --received-at is a usage error.
    let (_, stderr, code) = run_code(b"", &["--received-at", "yesterday"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--received-at"), "{stderr}");
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/monitor");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

#[test]
fn parse_log_loginsight_shows_each_message_and_the_answer_for_a_dfw_alert() {
    // §10 message-query shape with §9 bodies alone and a full line (see tests/monitor_loginsight.rs).
    let (stdout, stderr, code) = run_code(
        &fixture("loginsight-dfw-bodies.json"),
        &[
            "--format",
            "loginsight",
            "--received-at",
            "2026-01-02T03:04:05Z",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let r = json_lines(&stdout);
    assert_eq!(r.len(), 3, "{stdout}");
    assert_eq!(r[0]["at"], "messages[0]");
    assert_eq!(r[0]["entry"], "line");
    assert_eq!(r[0]["record"]["time_source"], "envelope");
    assert_eq!(r[0]["record"]["time"], "2024-05-02T10:15:31.204Z");
    assert_eq!(r[0]["record"]["rule_id"], 3084);
    assert_eq!(r[1]["record"]["time_source"], "receipt");
    assert_eq!(r[1]["record"]["time"], "2026-01-02T03:04:05Z");
    assert_eq!(r[2]["record"]["time_source"], "syslog_header");
    assert_eq!(r[2]["record"]["host"], "esx02.lab.local");
    assert!(
        stderr.contains("message_query \"NSX-T DFW - Dropped traffic\" (AlertType 1, NumHits 3)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 DFW lines, 0 from content-pack fields, 0 unusable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("microseg would answer 200 once recorded"),
        "{stderr}"
    );

    // The §10 example: a full line.
    let (stdout, stderr, code) = run_code(
        &fixture("loginsight-dfw-drop.json"),
        &["--format", "loginsight"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json_lines(&stdout)[0]["record"]["rule_tag"], "web-deny");
}

#[test]
fn parse_log_loginsight_fields_and_unusable_messages() {
    let body = serde_json::json!({
        "AlertType": 1, "AlertName": "mixed", "SearchPeriod": 300000, "NumHits": 2,
        "messages": [
            {"text": "no DFW here", "timestamp": 1714644931204i64, "fields": [
                {"name": "vmw_nsxt_firewall_ruleid", "content": "3084"},
                {"name": "vmw_nsxt_firewall_action", "content": "DROP"},
                {"name": "vmw_nsxt_firewall_protocol", "content": "TCP"}
            ]},
            {"text": "nor here", "timestamp": 0, "fields": []}
        ]
    });
    let (stdout, stderr, code) = run_code(body.to_string().as_bytes(), &["--format", "loginsight"]);
    assert_eq!(code, Some(0), "{stderr}");
    let r = json_lines(&stdout);
    assert_eq!(r[0]["entry"], "fields");
    assert_eq!(r[0]["record"]["rule_id"], 3084);
    assert_eq!(r[0]["record"]["action"], "DROP");
    assert_eq!(r[0]["record"]["protocol"], "TCP");
    assert_eq!(r[0]["record"]["time_source"], "envelope");
    assert!(
        r[0]["text_error"].as_str().unwrap().contains("\"no\""),
        "{stdout}"
    );
    assert_eq!(r[1]["entry"], "unusable");
    assert!(
        r[1]["reason"].as_str().unwrap().contains("messages[1]"),
        "{stdout}"
    );
    assert!(stderr.contains("0 DFW lines"), "{stderr}");
    assert!(
        stderr.contains("1 from content-pack fields, 1 unusable"),
        "{stderr}"
    );
    assert!(stderr.contains("1 counted as unparsed"), "{stderr}");
}

#[test]
fn parse_log_loginsight_says_which_payloads_would_be_acknowledged_or_refused() {
    // (fixture, exit status, what stderr says)
    let cases: &[(&[u8], i32, &str)] = &[
        (
            &fixture("loginsight-test-alert.json"),
            0,
            "microseg would answer 200: Log Insight test alert",
        ),
        (
            &fixture("loginsight-system-notification.json"),
            0,
            "microseg would answer 200: Log Insight system notification",
        ),
        (
            &fixture("loginsight-misrouted.json"),
            2,
            "microseg would answer 422: alert \"vCenter - failed logins\"",
        ),
        (
            &fixture("loginsight-aggregate.json"),
            2,
            "microseg would answer 422: alert \"NSX-T DFW - drops per host\" is an aggregate-query",
        ),
        (
            b"{\"messages\": [",
            2,
            "microseg would answer 400: body: not JSON",
        ),
        (b"", 2, "microseg would answer 400: body: not JSON"),
    ];
    for (body, status, says) in cases {
        let (_, stderr, code) = run_code(body, &["--format", "loginsight"]);
        assert_eq!(code, Some(*status), "{says}: {stderr}");
        assert!(stderr.contains(says), "{stderr} does not say {says:?}");
    }
}
