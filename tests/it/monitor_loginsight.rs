//! Log Insight alert webhook payloads (`nsx-policy-api.md` §10): the legacy shape, the test
//! alert, system notifications, misrouted and aggregate-query alerts, content-pack fields under
//! both protocol names, the message body alone and where its time comes from, the user-defined
//! shape, and bad JSON; and what the webhook endpoint answers each (2xx or 4xx, never 5xx).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::Duration;

use microseg::monitor::loginsight::{
    Disposition, Entry, Error, FieldRecord, Kind, Shape, parse_payload,
};
use microseg::monitor::parse::{Action, Protocol, Reason, TimeSource};

/// The §10 example, verbatim.
const DFW_DROP: &str = include_str!("../fixtures/monitor/loginsight-dfw-drop.json");
/// §10 "Send Test Alert" (`messages: []`, `Url: null`, `EditUrl: null`, `NumHits: 0`; the shape of
/// S9 `webhook-shims` `payloadLI_test`), with the §10 example's names.
const TEST_ALERT: &str = include_str!("../fixtures/monitor/loginsight-test-alert.json");
/// §10 system notification (no `AlertType`, `AlertName` verbatim from §10, `messages` of
/// `{text, timestamp, fields: []}`; S9 `payloadLI_sys`); the text is made up.
const SYSTEM_NOTIFICATION: &str =
    include_str!("../fixtures/monitor/loginsight-system-notification.json");
/// §10 message-query shape whose query selects vCenter events, not DFW packet logs (made up).
const MISROUTED: &str = include_str!("../fixtures/monitor/loginsight-misrouted.json");
/// §10 aggregate-query shape (`AlertType: 2`, rows of `fields` only; S9 `payloadLI_AQ`), grouped
/// by host without DFW content-pack fields (made up).
const AGGREGATE: &str = include_str!("../fixtures/monitor/loginsight-aggregate.json");
/// §10 message-query shape whose `text` is the §9 message body alone: with the message's
/// `timestamp`, with `timestamp: 0` (none), and a full §9 forwarded line for contrast.
const DFW_BODIES: &str = include_str!("../fixtures/monitor/loginsight-dfw-bodies.json");

fn received() -> jiff::Timestamp {
    "2026-01-02T03:04:05Z".parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fields_only(text: Option<&str>, fields: &[(&str, &str)]) -> String {
    let fields: Vec<_> = fields
        .iter()
        .map(|(n, c)| serde_json::json!({"name": n, "content": c}))
        .collect();
    let mut m = serde_json::json!({"timestamp": 1714644931204i64, "fields": fields});
    if let Some(t) = text {
        m["text"] = t.into();
    }
    serde_json::json!({"AlertType": 1, "AlertName": "x", "messages": [m], "NumHits": 1}).to_string()
}

#[test]
fn reference_example_yields_the_parsed_line() {
    let alert = parse_payload(DFW_DROP.as_bytes()).unwrap();
    assert_eq!(alert.shape, Shape::Legacy);
    assert_eq!(alert.name.as_deref(), Some("NSX-T DFW - Dropped traffic"));
    assert_eq!(alert.alert_type, Some(1));
    assert_eq!(alert.num_hits, Some(1));
    assert_eq!(alert.has_more_results, Some(false));
    assert_eq!(alert.url.as_deref(), Some("https://li.lab.local/s/8pgzq6"));
    assert!(!alert.is_test());
    let entries: Vec<_> = alert.entries(received()).collect();
    let [Entry::Line { at, record }] = entries.as_slice() else {
        panic!("{entries:?}");
    };
    assert_eq!(*at, "messages[0]");
    assert_eq!(record.host(), Some("esx01.lab.local"));
    assert_eq!(record.action, Some(Action::Drop));
    assert_eq!(record.rule_id, 3084);
    assert_eq!(
        (record.src, record.src_port),
        (ip("10.10.10.5"), Some(51204))
    );
    assert_eq!(
        (record.dst, record.dst_port),
        (ip("10.10.20.5"), Some(3389))
    );
    assert_eq!(record.rule_tag, Some("web-deny"));
}

#[test]
fn test_alert_has_no_entries() {
    let body = r#"{"AlertName":"Test","SearchPeriod":300000,"HitCount":0.0,"HitOperator":2,
        "messages":[],"HasMoreResults":false,"Url":null,"EditUrl":null,"Info":"i",
        "Recommendation":null,"NumHits":0}"#;
    let alert = parse_payload(body.as_bytes()).unwrap();
    assert!(alert.is_test());
    assert_eq!(alert.entries(received()).count(), 0);
}

#[test]
fn fields_are_used_when_text_is_missing_or_unparseable() {
    let fields = [
        ("hostname", "esx01"),
        ("vmw_nsxt_firewall_action", "DROP"),
        ("vmw_nsxt_firewall_ruleid", "3084"),
        ("vmw_nsxt_firewall_src", "10.10.10.5"),
        ("vmw_nsxt_firewall_src_port", "51204"),
        ("vmw_nsxt_firewall_dst", "10.10.20.5"),
        ("vmw_nsxt_firewall_dst_port", "3389"),
        ("vmw_nsxt_firewall_protocol", "TCP"),
    ];
    let expected = FieldRecord {
        time: Some(jiff::Timestamp::from_millisecond(1714644931204).unwrap()),
        host: Some("esx01"),
        action: Some(Action::Drop),
        rule_id: 3084,
        src: Some(ip("10.10.10.5")),
        src_port: Some(51204),
        dst: Some(ip("10.10.20.5")),
        dst_port: Some(3389),
        protocol: Some(Protocol::Tcp),
    };
    for text in [None, Some("DFW said something odd")] {
        let body = fields_only(text, &fields);
        let alert = parse_payload(body.as_bytes()).unwrap();
        let entries: Vec<_> = alert.entries(received()).collect();
        let [
            Entry::Fields {
                record, text_error, ..
            },
        ] = entries.as_slice()
        else {
            panic!("{entries:?}");
        };
        assert_eq!(*record, expected);
        assert_eq!(text_error.is_some(), text.is_some());
    }
}

#[test]
fn protocol_is_read_under_either_field_name_and_dst_from_ip_port() {
    let body = fields_only(
        None,
        &[
            ("vmw_nsxt_firewall_ruleid", "1031"),
            ("vmw_nsx_firewall_protocol", "UDP"),
            ("vmw_nsxt_firewall_dst_ip_port", "10.0.0.53/53"),
            ("vmw_nsxt_firewall_action", "ALLOW"),
        ],
    );
    let alert = parse_payload(body.as_bytes()).unwrap();
    let Some(Entry::Fields { record, .. }) = alert.entries(received()).next() else {
        panic!();
    };
    assert_eq!(record.protocol, Some(Protocol::Udp));
    assert_eq!(
        (record.dst, record.dst_port),
        (Some(ip("10.0.0.53")), Some(53))
    );
    assert_eq!(record.action, Some(Action::Pass));
}

#[test]
fn unusable_messages_say_why() {
    let cases = [
        (
            fields_only(Some("garbage"), &[]),
            "messages[0].text: timestamp",
        ),
        (
            fields_only(None, &[("hostname", "x")]),
            "messages[0].fields: no vmw_nsxt_firewall_ruleid",
        ),
        (
            fields_only(
                None,
                &[
                    ("vmw_nsxt_firewall_ruleid", "1"),
                    ("vmw_nsxt_firewall_src_port", "http"),
                ],
            ),
            "messages[0].fields[vmw_nsxt_firewall_src_port]: \"http\" is not a port",
        ),
    ];
    for (body, want) in cases {
        let alert = parse_payload(body.as_bytes()).unwrap();
        let Some(Entry::Unusable { reason, .. }) = alert.entries(received()).next() else {
            panic!("{body}");
        };
        assert!(reason.contains(want), "{reason} does not contain {want}");
    }
}

#[test]
fn bad_json_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("{", "body: not JSON"),
        ("[]", "body: expected a JSON object, found an array"),
        (
            r#"{"messages": {}}"#,
            "messages: expected an array, found an object",
        ),
        (
            r#"{"messages": [1]}"#,
            "messages[0]: expected an object, found a number",
        ),
        (
            r#"{"messages": [{"text": 5}]}"#,
            "messages[0].text: expected a string, found a number",
        ),
        (
            r#"{"messages": [{"fields": [{"content": "x"}]}]}"#,
            "messages[0].fields[0].name: expected a string, found nothing",
        ),
        (
            r#"{"messages": [{"fields": "x"}]}"#,
            "messages[0].fields: expected an array, found a string",
        ),
        (
            r#"{"messages": [], "NumHits": "many"}"#,
            "NumHits: expected a number, found a string",
        ),
        (
            r#"{"messages": [], "HasMoreResults": 1}"#,
            "HasMoreResults: expected a boolean, found a number",
        ),
        (
            r#"{"name": "a", "severity": "high", "sourceInfo": "li"}"#,
            "user-defined payload (keys: name, severity, sourceInfo)",
        ),
    ];
    for (body, want) in cases {
        let e: Error = parse_payload(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
}

#[test]
fn user_defined_payload_yields_lines_from_text_like_fields() {
    let line = "2024-05-02T10:15:31.204Z esx01.lab.local dfwpktlogs: 2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny";
    let body = serde_json::json!({
        "name": "DFW drops",
        "alertType": "EVERY_MATCH",
        "sourceInfo": "li-cloud",
        "resultsUrl": "https://li/x",
        "messages": null,
        "additionalInfo": serde_json::json!({"logs": [line, "not a dfw line"]}).to_string(),
        "description": line,
    });
    // "messages": null is not the legacy shape's array.
    assert!(parse_payload(body.to_string().as_bytes()).is_err());
    let mut body = body;
    body.as_object_mut().unwrap().remove("messages");
    let alert = parse_payload(body.to_string().as_bytes()).unwrap();
    assert_eq!(alert.shape, Shape::UserDefined);
    assert_eq!(alert.name.as_deref(), Some("DFW drops"));
    let entries: Vec<_> = alert.entries(received()).collect();
    let lines = entries
        .iter()
        .filter(|e| matches!(e, Entry::Line { record, .. } if record.rule_id == 3084))
        .count();
    // One from additionalInfo.logs, one from description (a string that parses).
    assert_eq!(lines, 2, "{entries:?}");
    assert!(entries.iter().any(
        |e| matches!(e, Entry::Unusable { at, .. } if at.starts_with("$.additionalInfo.logs[1]"))
    ));
}

#[test]
fn send_test_alert_is_acknowledged_with_nothing_to_record() {
    let alert = parse_payload(TEST_ALERT.as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::TestAlert);
    assert!(alert.is_test());
    let entries: Vec<_> = alert.entries(received()).collect();
    assert!(entries.is_empty());
    let d = alert.disposition(&entries);
    assert_eq!(d.status(), 200);
    let Disposition::Acknowledge { note } = d else {
        panic!("{d:?}");
    };
    assert!(note.contains("test alert"), "{note}");
    assert!(note.contains("NSX-T DFW - Dropped traffic"), "{note}");
}

#[test]
fn system_notification_is_acknowledged_and_its_text_is_not_a_flow() {
    let alert = parse_payload(SYSTEM_NOTIFICATION.as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::SystemNotification);
    assert!(!alert.is_test());
    let entries: Vec<_> = alert.entries(received()).collect();
    assert!(matches!(entries.as_slice(), [Entry::Unusable { .. }]));
    let d = alert.disposition(&entries);
    assert_eq!(d.status(), 200);
    let Disposition::Acknowledge { note } = d else {
        panic!("{d:?}");
    };
    assert!(note.contains("system notification"), "{note}");
    assert!(
        note.contains("Worker node has returned to service"),
        "{note}"
    );
}

#[test]
fn a_system_notification_or_aggregate_row_with_dfw_content_is_still_recorded() {
    // Nothing DFW is dropped, whatever the kind.
    let line =
        "2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny";
    let body = serde_json::json!({
        "AlertName": "relay", "messages": [{"text": line, "timestamp": 0, "fields": []}]
    });
    let alert = parse_payload(body.to_string().as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::SystemNotification);
    let entries: Vec<_> = alert.entries(received()).collect();
    assert_eq!(alert.disposition(&entries), Disposition::Record);

    let body = serde_json::json!({
        "AlertType": 2, "AlertName": "drops per rule", "SearchPeriod": 300000,
        "messages": [{"fields": [
            {"name": "vmw_nsxt_firewall_ruleid", "content": "3084"},
            {"name": "count", "content": "17"}
        ]}],
        "NumHits": 1
    });
    let alert = parse_payload(body.to_string().as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::AggregateQuery);
    let entries: Vec<_> = alert.entries(received()).collect();
    let [Entry::Fields { record, .. }] = entries.as_slice() else {
        panic!("{entries:?}");
    };
    assert_eq!(record.rule_id, 3084);
    assert_eq!(record.time_source(), TimeSource::Receipt);
    assert_eq!(alert.disposition(&entries), Disposition::Record);
}

#[test]
fn an_alert_whose_messages_are_not_dfw_lines_is_refused_saying_what_to_change() {
    let alert = parse_payload(MISROUTED.as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::MessageQuery);
    let entries: Vec<_> = alert.entries(received()).collect();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| matches!(e, Entry::Unusable { .. })));
    let d = alert.disposition(&entries);
    assert_eq!(d.status(), 422);
    let Disposition::Refuse { error } = d else {
        panic!("{d:?}");
    };
    for want in [
        "vCenter - failed logins",
        "none of its 2 messages",
        "does not select DFW packet logs",
    ] {
        assert!(error.contains(want), "{error} does not say {want:?}");
    }
}

#[test]
fn an_aggregate_query_alert_without_dfw_fields_is_refused() {
    let alert = parse_payload(AGGREGATE.as_bytes()).unwrap();
    assert_eq!(alert.kind(), Kind::AggregateQuery);
    let entries: Vec<_> = alert.entries(received()).collect();
    let d = alert.disposition(&entries);
    assert_eq!(d.status(), 422);
    let Disposition::Refuse { error } = d else {
        panic!("{d:?}");
    };
    assert!(
        error.contains("aggregate-query alert (AlertType 2)"),
        "{error}"
    );
    assert!(error.contains("message-query alert"), "{error}");
}

#[test]
fn message_bodies_take_the_message_timestamp_else_the_receipt_time() {
    let alert = parse_payload(DFW_BODIES.as_bytes()).unwrap();
    let entries: Vec<_> = alert.entries(received()).collect();
    let [
        Entry::Line { record: a, .. },
        Entry::Line { record: b, .. },
        Entry::Line { record: c, .. },
    ] = entries.as_slice()
    else {
        panic!("{entries:?}");
    };
    // Envelope: the body alone, `timestamp` 1714644931204 (epoch ms).
    assert_eq!(a.timestamp, None);
    assert_eq!(
        (a.time, a.time_source),
        (
            jiff::Timestamp::from_millisecond(1_714_644_931_204).unwrap(),
            TimeSource::Envelope
        )
    );
    assert_eq!((a.rule_id, a.rule_tag), (3084, Some("web-deny")));
    // Receipt: the body alone (no filter hash, TERM), `timestamp: 0` means none.
    assert_eq!((b.time, b.time_source), (received(), TimeSource::Receipt));
    assert_eq!((b.reason, b.filter_hash), (Reason::Term, None));
    // SyslogHeader: a full line keeps its own time, not the envelope's.
    assert_eq!(
        (c.time, c.time_source),
        (
            "2024-05-02T10:15:33.870Z".parse().unwrap(),
            TimeSource::SyslogHeader
        )
    );
    assert_eq!(alert.disposition(&entries), Disposition::Record);
}

#[test]
fn field_records_treat_timestamp_zero_as_absent() {
    let body = serde_json::json!({
        "AlertType": 1, "AlertName": "x", "SearchPeriod": 300000, "NumHits": 2,
        "messages": [
            {"timestamp": 0, "fields": [{"name": "vmw_nsxt_firewall_ruleid", "content": "1"}]},
            {"timestamp": 1714644931204i64,
             "fields": [{"name": "vmw_nsxt_firewall_ruleid", "content": "1"}]}
        ]
    });
    let alert = parse_payload(body.to_string().as_bytes()).unwrap();
    assert_eq!(alert.messages[0].time(), None);
    let times: Vec<_> = alert
        .entries(received())
        .map(|e| match e {
            Entry::Fields { record, .. } => (record.time, record.time_source()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        times,
        [
            (None, TimeSource::Receipt),
            (
                Some(jiff::Timestamp::from_millisecond(1_714_644_931_204).unwrap()),
                TimeSource::Envelope
            )
        ]
    );
}

#[test]
fn a_user_defined_payload_finds_message_bodies_outside_text_keys() {
    let body = serde_json::json!({
        "name": "DFW drops",
        "sourceInfo": "li-cloud",
        "description": "2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny",
    });
    let alert = parse_payload(body.to_string().as_bytes()).unwrap();
    let entries: Vec<_> = alert.entries(received()).collect();
    let [Entry::Line { at, record }] = entries.as_slice() else {
        panic!("{entries:?}");
    };
    assert_eq!(*at, "$.description");
    assert_eq!(record.time_source, TimeSource::Receipt);
}

// --- The webhook endpoint itself (no cluster: no policy is known, so nothing is written). ---

mod endpoint {
    use super::*;
    use microseg::api::SegmentationPolicy;
    use microseg::monitor::recorder::{Recorder, RecorderConfig, RecorderMetrics};
    use microseg::web::ingest::{Ingest, IngestConfig, IngestMetrics, router};
    use prometheus_client::registry::Registry;

    const TOKEN: &str = "loginsight-test-token";

    struct Server {
        url: String,
        task: tokio::task::JoinHandle<()>,
        _writer: kube::runtime::reflector::store::Writer<SegmentationPolicy>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve() -> Server {
        serve_listed(true).await
    }

    /// `listed`: whether the policy watch has delivered its first (empty) list.
    async fn serve_listed(listed: bool) -> Server {
        // A client that is never used: with no policy in the store, no batch has anything to
        // write, so every answer here comes before the recorder.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let mut registry = Registry::default();
        let (recorder, _task) = Recorder::spawn(
            client,
            RecorderConfig { max_flows: 100 },
            RecorderMetrics::register(&mut registry),
            None,
        );
        let (store, writer) = kube::runtime::reflector::store::<SegmentationPolicy>();
        let ingest = Ingest::new(
            IngestConfig {
                token: Some(TOKEN.into()),
                hmac_secret: None,
                max_body_bytes: 1 << 20,
                rate_lines_per_second: 10_000,
                burst_lines: 10_000,
                commit_timeout: Duration::from_secs(5),
                ..IngestConfig::default()
            },
            recorder,
            store,
            {
                // An empty cluster, listed: the index is ready.
                let index = microseg::monitor::attribution::LiveIndex::new(
                    microseg::nsx::naming::Identity::new("test").unwrap(),
                );
                if listed {
                    index.observe(&kube::runtime::watcher::Event::Init);
                    index.observe(&kube::runtime::watcher::Event::InitDone);
                }
                index
            },
            microseg::nsx::naming::Identity::new("test").unwrap(),
            IngestMetrics::register(&mut registry),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/ingest/loginsight",
            listener.local_addr().unwrap()
        );
        let app = router(Some(ingest));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url,
            task,
            _writer: writer,
        }
    }

    async fn post(server: &Server, body: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(&server.url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap())
    }

    #[tokio::test]
    async fn a_batch_before_the_first_list_of_policies_is_refused_for_a_retry() {
        // Answering 200 with every line unattributed would lose an acknowledged batch (seen after
        // a restart: the retried batch arrived before the watch had listed the policies).
        let server = serve_listed(false).await;
        let resp = reqwest::Client::new()
            .post(&server.url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(TEST_ALERT)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let answer: serde_json::Value = resp.json().await.unwrap();
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("starting"), "{answer}");
        assert!(error.contains("retry the same batch"), "{answer}");
    }

    #[tokio::test]
    async fn each_reference_shape_gets_2xx_or_a_4xx_that_says_why() {
        let server = serve().await;
        // (what, body, status, a field of the answer that must say something, what)
        let cases: &[(&str, &str, u16, &str, &str)] = &[
            ("test alert", TEST_ALERT, 200, "note", "test alert"),
            (
                "system notification",
                SYSTEM_NOTIFICATION,
                200,
                "note",
                "system notification",
            ),
            (
                "misrouted query",
                MISROUTED,
                422,
                "error",
                "does not select DFW packet logs",
            ),
            (
                "aggregate query",
                AGGREGATE,
                422,
                "error",
                "aggregate-query alert",
            ),
            ("bad JSON", "{\"messages\": [", 400, "error", "not JSON"),
        ];
        for (what, body, status, key, says) in cases {
            let (code, answer) = post(&server, body).await;
            assert_eq!(code, *status, "{what}: {answer}");
            let said = answer[key].as_str().unwrap_or_default();
            assert!(
                said.contains(says),
                "{what}: {answer} does not say {says:?}"
            );
        }
        // The misrouted query's answer still names each message and why.
        let (_, answer) = post(&server, MISROUTED).await;
        assert_eq!(answer["unparsed"], 2, "{answer}");
        assert_eq!(answer["errors"][0]["at"], "messages[0]", "{answer}");
        // DFW alerts (with a timestamp, and bodies alone) are delivered: no application knows the
        // rules here, so they are counted as unattributed.
        for body in [DFW_DROP, DFW_BODIES] {
            let (code, answer) = post(&server, body).await;
            assert_eq!(code, 200, "{answer}");
            assert_eq!(answer["unparsed"], 0, "{answer}");
            assert_eq!(answer["unattributed"], answer["lines"], "{answer}");
            assert!(answer.get("error").is_none(), "{answer}");
        }
    }

    #[tokio::test]
    async fn message_bodies_on_the_lines_endpoint_take_the_receipt_time() {
        let server = serve().await;
        let url = server.url.replace("/ingest/loginsight", "/ingest/lines");
        let body = "2d4b6e2d INET match DROP 3084 IN 60 TCP 10.10.10.5/51204->10.10.20.5/3389 S web-deny\n\
                    INET TERM PASS 5096 OUT TCP RST 192.0.2.11/60517->192.0.2.10/443 9/8 1461/4677 DR-Allow\n";
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (
                &answer["lines"],
                &answer["unparsed"],
                &answer["unattributed"]
            ),
            (&2.into(), &0.into(), &2.into()),
            "{answer}"
        );
    }
}

/// Issue 16: a long key is not copied into every message found under it, and a payload holds
/// at most the batch limit of messages (the handler answers 413).
#[test]
fn a_long_key_over_many_lines_is_bounded() {
    let key = "k".repeat(100_000);
    let body = format!(
        "{{\"{key}\": {{\"messages\": {}}}}}",
        serde_json::to_string(&"x\n".repeat(1_000)).unwrap()
    );
    let alert = microseg::monitor::loginsight::parse_payload(body.as_bytes()).unwrap();
    assert_eq!(alert.messages.len(), 1_000);
    assert!(
        alert.messages.iter().all(|m| m.at.len() < 200),
        "{}",
        alert.messages[0].at.len()
    );
    let e = microseg::monitor::loginsight::parse_payload_limited(body.as_bytes(), 999).unwrap_err();
    assert_eq!(
        e,
        microseg::monitor::loginsight::Error::TooManyMessages { limit: 999 }
    );
    assert!(e.to_string().contains("more than 999 log messages"), "{e}");
    // The legacy shape too.
    let legacy = format!(
        "{{\"messages\": [{}]}}",
        ["{\"text\": \"x\"}"; 10].join(",")
    );
    assert!(matches!(
        microseg::monitor::loginsight::parse_payload_limited(legacy.as_bytes(), 9),
        Err(microseg::monitor::loginsight::Error::TooManyMessages { limit: 9 })
    ));
    // An offending value is quoted at most 64 characters long.
    let long = format!(
        "{{\"messages\": [{{\"text\": \"x\", \"fields\": [{{\"name\": \"vmw_nsxt_firewall_ruleid\", \"content\": \"{}\"}}]}}], \"AlertName\": \"{}\"}}",
        "9".repeat(10_000),
        "n".repeat(10_000)
    );
    let alert = microseg::monitor::loginsight::parse_payload(long.as_bytes()).unwrap();
    let entries: Vec<_> = alert.entries(k8s_openapi::jiff::Timestamp::now()).collect();
    for e in &entries {
        if let microseg::monitor::loginsight::Entry::Unusable { reason, .. } = e {
            assert!(
                reason.len() < 400 && reason.contains("10000 bytes in all"),
                "{reason}"
            );
        }
    }
    let said = match alert.disposition(&entries) {
        microseg::monitor::loginsight::Disposition::Refuse { error } => error,
        microseg::monitor::loginsight::Disposition::Acknowledge { note } => note,
        other => panic!("{other:?}"),
    };
    assert!(
        said.len() < 800 && said.contains("10000 bytes in all"),
        "{said}"
    );
    // A payload without log lines names its keys, each cut short.
    let none = format!("{{\"{key}\": 1}}");
    let e = microseg::monitor::loginsight::parse_payload(none.as_bytes()).unwrap_err();
    assert!(e.to_string().len() < 400, "{e}");
}
