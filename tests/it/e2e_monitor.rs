//! End-to-end monitor mode: DFW log lines produced by the NSX simulator for real flows reach the
//! right policy's status through the Log Insight webhook, the line endpoint and syslog (UDP and
//! TCP); unmatched flows hold enforcement until the quiet period; dropped flows after enforcement
//! roll back; a controller killed mid-stream loses no acknowledged batch; bad input gets a clear
//! answer and loses nothing already accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;
use crate::nsx_support;

use std::io::Write;
use std::time::{Duration, Instant};

use common::e2e::{Controller, Env, free_port};
use serde_json::{Value, json};

const TOKEN: &str = "e2e-ingest-token-0123456789";
const HMAC_KEY: &str = "e2e-hmac-key-0123456789";

/// A policy for the VMs whose names start with `prefix`: HTTPS in from 10/8 (logged), catch-alls.
fn policy(env: &Env, name: &str, prefix: &str, window: &str) -> String {
    format!(
        "apiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  owners: [{{name: Team {name}, email: {name}@example.com}}]\n  criticality: Low\n  window: {{name: {window}}}\n  members: [{{vmName: {{startsWith: {prefix}}}}}]\n  rules:\n    - name: https-in\n      direction: Inbound\n      peers: [{{cidr: 10.0.0.0/8}}]\n      ports: [{{protocol: TCP, port: 443}}]\n      logged: true\n  catchAll: {{inbound: true, outbound: true}}\n",
        ns = env.ns
    )
}

fn with_gates(window: String, gates: &str) -> String {
    window.replace(common::e2e::WAIVED, &format!("gates: {gates}"))
}

/// The controller with ingestion (token and HMAC key) and both syslog listeners.
fn controller(env: &Env, name: &str, extra: &[&str]) -> (Controller, u16, u16) {
    std::fs::write(env.dir.join("ingest-token"), TOKEN).unwrap();
    std::fs::write(env.dir.join("ingest-hmac"), HMAC_KEY).unwrap();
    let (udp, tcp) = (free_udp_port(), free_port());
    let token = env.dir.join("ingest-token");
    let hmac = env.dir.join("ingest-hmac");
    let mut args = vec![
        "--ingest-token-file".to_string(),
        token.display().to_string(),
        "--ingest-hmac-secret-file".to_string(),
        hmac.display().to_string(),
        "--syslog-udp-addr".to_string(),
        format!("127.0.0.1:{udp}"),
        "--syslog-tcp-addr".to_string(),
        format!("127.0.0.1:{tcp}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (env.controller(name, &refs), udp, tcp)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The DFW log lines NSX writes for this flow (as the simulator's rules decide).
async fn flow_lines(env: &Env, src: &str, dst: &str, port: u16) -> Vec<String> {
    nsx_support::flow_lines(&env.sim.url, src, dst, port).await
}

fn monitor(env: &Env, name: &str) -> Value {
    env.policy(name)["status"]["monitor"].clone()
}

fn unmatched_total(env: &Env, name: &str) -> i64 {
    monitor(env, name)["unmatchedTotal"].as_i64().unwrap_or(0)
}

fn wait_monitoring(env: &Env, name: &str) {
    env.eventually(
        &format!("{name} monitors with its catch-all rule ids in status"),
        Duration::from_secs(60),
        || {
            let p = env.policy(name);
            p["status"]["phase"] == "Monitoring"
                && p["status"]["nsx"]["ruleIds"]["catchall_in"].is_i64()
        },
    );
}

/// Waits until the controller attributes a healthy line (HTTPS from 10.0.0.10, a logged rule)
/// to the application at `dst`: its policy store follows the API server a moment later than
/// kubectl does.
async fn wait_attributed(env: &Env, ctl: &Controller, dst: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = flow_lines(env, "10.0.0.10", dst, 443).await;
        let (code, r, _) = post(
            ctl,
            "/ingest/lines",
            probe.join("\n").into_bytes(),
            &[BEARER],
        )
        .await;
        if code == 200 && !probe.is_empty() && r["healthy"].as_u64() == Some(probe.len() as u64) {
            return probe.len() as i64;
        }
        assert!(
            Instant::now() < deadline,
            "lines to {dst} are never attributed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn post(
    ctl: &Controller,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", ctl.ingest))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        retry,
    )
}

const BEARER: (&str, &str) = ("authorization", "Bearer e2e-ingest-token-0123456789");

fn loginsight(lines: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "AlertType": 1,
        "AlertName": "NSX DFW - unmatched",
        "SearchPeriod": 300000,
        "HitCount": 0.0,
        "HitOperator": 2,
        "messages": lines.iter().map(|l| json!({"text": l, "timestamp": 0, "fields": []})).collect::<Vec<_>>(),
        "HasMoreResults": false,
        "Url": "https://li.example/s/1",
        "EditUrl": null,
        "Info": "",
        "Recommendation": null,
        "NumHits": lines.len(),
    }))
    .unwrap()
}

/// `<182>ts host dfwpktlogs: rest` (RFC 3164) from a bare DFW line.
fn rfc3164(line: &str) -> String {
    let (ts, rest) = line.split_once(' ').unwrap();
    format!("<182>{ts} esx01.lab.local dfwpktlogs: {rest}")
}

/// `<14>1 ts host FIREWALL-PKTLOG - - - rest` (RFC 5424) from a bare DFW line.
fn rfc5424(line: &str) -> String {
    let (ts, rest) = line.split_once(' ').unwrap();
    format!("<14>1 {ts} esx02.lab.local FIREWALL-PKTLOG - - - {rest}")
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_flows_from_webhook_and_syslog_reach_the_right_policy_and_hold_enforcement_until_quiet()
 {
    let env = Env::new("mon-quiet").await;
    let (ctl, udp, tcp) = controller(&env, "a", &[]);
    env.apply(&with_gates(
        env.window("wave-m", 0, 2, 24, 120, "3s"),
        "{quietPeriod: 10s, maxOpenAlerts: 5}",
    ));
    env.apply(&policy(&env, "alpha", "shop-web-", "wave-m"));
    env.apply(&policy(&env, "beta", "shop-app-", "wave-m"));
    wait_monitoring(&env, "alpha");
    wait_monitoring(&env, "beta");
    let probed = wait_attributed(&env, &ctl, "10.1.0.11").await;
    wait_attributed(&env, &ctl, "10.1.1.21").await;

    // alpha: an unmatched flow (8080 has no rule) and a healthy one (443), via Log Insight.
    let unmatched = flow_lines(&env, "10.0.0.10", "10.1.0.11", 8080).await;
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    let healthy = flow_lines(&env, "10.0.0.10", "10.1.0.11", 443).await;
    let (code, body, _) = post(
        &ctl,
        "/ingest/loginsight",
        loginsight(&[unmatched.clone(), unmatched.clone(), healthy.clone()].concat()),
        &[BEARER, ("content-type", "application/json")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["unmatched"].as_u64(), body["healthy"].as_u64()),
        (Some(2), Some(1))
    );

    // beta: by syslog, UDP (RFC 3164) and TCP (RFC 5424, octet-counted, then newline framing).
    let beta_line = flow_lines(&env, "10.0.0.10", "10.1.1.21", 9000)
        .await
        .remove(0);
    let udp_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_socket
        .send_to(rfc3164(&beta_line).as_bytes(), ("127.0.0.1", udp))
        .unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let framed = rfc5424(&beta_line);
    write!(stream, "{} {framed}", framed.len()).unwrap();
    writeln!(stream, "{}", rfc3164(&beta_line)).unwrap();
    stream.flush().unwrap();

    env.eventually(
        "alpha and beta count their own flows",
        Duration::from_secs(20),
        || unmatched_total(&env, "alpha") == 2 && unmatched_total(&env, "beta") == 3,
    );
    let m = monitor(&env, "alpha");
    assert_eq!(m["healthyTotal"], 1 + probed);
    assert_eq!(m["openAlerts"], 1);
    let flow = &m["flows"][0];
    assert_eq!(
        (
            &flow["source"],
            &flow["destination"],
            &flow["port"],
            &flow["direction"],
            &flow["count"]
        ),
        (
            &json!("10.0.0.10"),
            &json!("10.1.0.11"),
            &json!(8080),
            &json!("Inbound"),
            &json!(2)
        )
    );
    assert_eq!(
        monitor(&env, "beta")["flows"][0]["destination"],
        "10.1.1.21"
    );
    env.eventually(
        "alpha says its logs arrive",
        Duration::from_secs(30),
        || env.condition("alpha", "MonitoringHealthy").0 == "True",
    );

    // alpha keeps seeing its flow past enforceAt: held. beta has been quiet: enforced.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut alpha_held = false;
    while Instant::now() < deadline {
        let line = flow_lines(&env, "10.0.0.10", "10.1.0.11", 8080).await;
        let (code, body, _) = post(
            &ctl,
            "/ingest/lines",
            line.join("\n").into_bytes(),
            &[BEARER],
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let phase = env.phase("alpha");
        assert_ne!(
            phase, "Enforcing",
            "alpha enforced while its unmatched flows continued"
        );
        if phase == "Held" {
            alpha_held = true;
            if env.phase("beta") == "Enforcing" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        alpha_held,
        "alpha was not held while its unmatched flows continued"
    );
    assert_eq!(env.phase("beta"), "Enforcing", "beta had been quiet");
    let (status, reason) = env.condition("alpha", "EnforcementGate");
    assert_eq!(status, "False", "{reason}");
    let gate_message = env.policy("alpha")["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "EnforcementGate")
        .unwrap()["message"]
        .to_string();
    assert!(
        gate_message.contains("quiet") || gate_message.contains("unmatched"),
        "{gate_message}"
    );

    // The flows stop: after the quiet period alpha is enforced.
    let stopped = Instant::now();
    env.wait_phase("alpha", "Enforcing", Duration::from_secs(40));
    assert!(
        stopped.elapsed() >= Duration::from_secs(5),
        "enforced before the quiet period"
    );
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_unmatched_flows_above_the_threshold_roll_enforcement_back() {
    let env = Env::new("mon-rollback").await;
    let (ctl, _, _) = controller(&env, "a", &[]);
    env.apply(&with_gates(
        env.window("wave-r", 0, 2, 10, 300, "3s"),
        "{rollback: {droppedFlows: 3, period: 2m}, waive: [Blind, QuietPeriod]}",
    ));
    env.apply(&policy(&env, "alpha", "shop-web-", "wave-r"));
    env.wait_phase("alpha", "Enforcing", Duration::from_secs(60));
    wait_attributed(&env, &ctl, "10.1.0.11").await;

    // Two drops: under the threshold.
    for port in [8080, 8081] {
        let lines = flow_lines(&env, "10.0.0.10", "10.1.0.11", port).await;
        assert!(lines[0].contains(" DROP "), "{lines:?}");
        let (code, body, _) = post(
            &ctl,
            "/ingest/lines",
            lines.join("\n").into_bytes(),
            &[BEARER],
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.phase("alpha"), "Enforcing");
    // The third crosses it.
    let lines = flow_lines(&env, "10.0.0.10", "10.1.0.11", 8082).await;
    let (code, _, _) = post(
        &ctl,
        "/ingest/lines",
        lines.join("\n").into_bytes(),
        &[BEARER],
    )
    .await;
    assert_eq!(code, 200);
    env.wait_phase("alpha", "RolledBack", Duration::from_secs(30));
    env.eventually(
        "the owner is told about the rollback",
        Duration::from_secs(30),
        || {
            env.policy("alpha")["status"]["notifications"]
                .as_array()
                .is_some_and(|n| n.iter().any(|r| r["kind"] == "RolledBack"))
        },
    );
    let events = env
        .cp
        .kubectl(&["get", "events", "-n", &env.ns, "-o", "json"]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("RolledBack")),
        "no RolledBack event"
    );
    // Back in monitor mode: the catch-all passes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flow_lines(&env, "10.0.0.10", "10.1.0.11", 8083)
        .await
        .first()
        .is_some_and(|l| l.contains(" PASS "))
    {
        assert!(
            Instant::now() < deadline,
            "the catch-all does not pass again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_stream_loses_no_acknowledged_batch() {
    let env = Env::new("mon-kill").await;
    let (ctl, udp, tcp) = controller(&env, "a", &[]);
    env.apply(&env.window("wave-k", 0, 2, 3600, 7200, "3s"));
    env.apply(&policy(&env, "alpha", "shop-web-", "wave-k"));
    wait_monitoring(&env, "alpha");
    wait_attributed(&env, &ctl, "10.1.0.11").await;
    let ports = ctl.ports();
    let http = ports.ingest;
    let template = flow_lines(&env, "10.0.0.10", "10.1.0.11", 8080)
        .await
        .remove(0);

    // A sender: 60 batches of 10 distinct lines, each retried with its key until answered 200.
    let sender = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acked_lines = 0u64;
        for batch in 0..60u16 {
            let body: Vec<String> = (0..10u16)
                .map(|i| template.replace("/49152->", &format!("/{}->", 20_000 + batch * 10 + i)))
                .collect();
            let key = format!("batch-{batch}");
            loop {
                let r = client
                    .post(format!("http://127.0.0.1:{http}/ingest/lines"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("idempotency-key", &key)
                    .body(body.join("\n"))
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status() == 200
                {
                    acked_lines += 10;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked_lines
    });

    // Kill the controller mid-stream and start another on the same port.
    env.eventually(
        "some batches are acknowledged",
        Duration::from_secs(30),
        || unmatched_total(&env, "alpha") >= 100,
    );
    let mut ctl = ctl;
    ctl.kill();
    let before = unmatched_total(&env, "alpha");
    assert!(before < 600, "the stream had ended before the kill");
    let _restarted = env.controller_on(
        "b",
        ports,
        &[
            "--ingest-token-file",
            &env.dir.join("ingest-token").display().to_string(),
            "--syslog-udp-addr",
            &format!("127.0.0.1:{udp}"),
            "--syslog-tcp-addr",
            &format!("127.0.0.1:{tcp}"),
        ],
    );
    let acked = tokio::time::timeout(Duration::from_secs(180), sender)
        .await
        .expect("the sender could not get every batch acknowledged")
        .unwrap();
    let after = unmatched_total(&env, "alpha");
    assert_eq!(acked, 600);
    assert!(
        after >= before,
        "{after} < {before}: acknowledged flows were lost"
    );
    assert_eq!(
        after, 600,
        "every acknowledged line is counted exactly once (retries were not counted twice)"
    );
    assert_eq!(monitor(&env, "alpha")["flows"][0]["count"], 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_answer_and_loses_nothing_already_accepted() {
    let env = Env::new("mon-bad").await;
    let (ctl, udp, _) = controller(
        &env,
        "a",
        &[
            "--ingest-max-body-bytes",
            "20000",
            "--ingest-rate",
            "20",
            "--ingest-burst-lines",
            "40",
        ],
    );
    env.apply(&env.window("wave-b", 0, 2, 3600, 7200, "3s"));
    env.apply(&policy(&env, "alpha", "shop-web-", "wave-b"));
    wait_monitoring(&env, "alpha");
    let line = flow_lines(&env, "10.0.0.10", "10.1.0.11", 8080)
        .await
        .remove(0);

    wait_attributed(&env, &ctl, "10.1.0.11").await;

    // Accepted first: 3 lines, signed with the HMAC key instead of the token.
    let body = [line.as_str(), line.as_str(), line.as_str()].join("\n");
    // Signed: the timestamp, the idempotency key (none here) and the body.
    let ts = k8s_openapi::jiff::Timestamp::now().as_second().to_string();
    let sig = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
        mac.update(&microseg::web::ingest::signed_message(
            &ts,
            "",
            body.as_bytes(),
        ));
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let signed = [
        ("x-microseg-signature", format!("sha256={sig}")),
        ("x-microseg-timestamp", ts.clone()),
    ];
    let signed: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, r, _) = post(&ctl, "/ingest/lines", body.clone().into_bytes(), &signed).await;
    assert_eq!((code, r["unmatched"].as_u64()), (200, Some(3)), "{r}");
    // The same body again is a retry: not counted twice.
    let (code, r, _) = post(&ctl, "/ingest/lines", body.clone().into_bytes(), &signed).await;
    assert_eq!((code, &r["duplicate"]), (200, &json!(true)), "{r}");

    struct Case {
        what: &'static str,
        path: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
        code: u16,
        says: &'static str,
    }
    let big = vec![b'x'; 30_000];
    let cases = vec![
        Case {
            what: "oversized body",
            path: "/ingest/lines",
            body: big,
            headers: vec![("authorization", format!("Bearer {TOKEN}"))],
            code: 413,
            says: "larger than 20000 bytes",
        },
        Case {
            what: "wrong token",
            path: "/ingest/lines",
            body: line.clone().into_bytes(),
            headers: vec![("authorization", "Bearer wrong-token-xxxxxxxx".into())],
            code: 401,
            says: "not the ingestion token",
        },
        Case {
            what: "no credentials",
            path: "/ingest/lines",
            body: line.clone().into_bytes(),
            headers: vec![],
            code: 401,
            says: "Authorization",
        },
        Case {
            what: "bad signature",
            path: "/ingest/lines",
            body: line.clone().into_bytes(),
            headers: vec![
                (
                    "x-microseg-signature",
                    format!("sha256={}", "00".repeat(32)),
                ),
                ("x-microseg-timestamp", ts.clone()),
            ],
            code: 401,
            says: "does not match",
        },
        Case {
            what: "bad JSON",
            path: "/ingest/loginsight",
            body: b"{\"messages\": [".to_vec(),
            headers: vec![("authorization", format!("Bearer {TOKEN}"))],
            code: 400,
            says: "not JSON",
        },
        Case {
            what: "truncated lines",
            path: "/ingest/lines",
            body: format!("{}\n{}", &line[..40], &line[..70]).into_bytes(),
            headers: vec![("authorization", format!("Bearer {TOKEN}"))],
            code: 422,
            says: "no line could be used",
        },
        Case {
            what: "empty body",
            path: "/ingest/lines",
            body: b"\n\n".to_vec(),
            headers: vec![("authorization", format!("Bearer {TOKEN}"))],
            code: 400,
            says: "empty",
        },
        Case {
            what: "a batch over the burst",
            path: "/ingest/lines",
            body: vec![line.as_str(); 41].join("\n").into_bytes(),
            headers: vec![("authorization", format!("Bearer {TOKEN}"))],
            code: 413,
            says: "--ingest-burst-lines",
        },
    ];
    for c in cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, r, _) = post(&ctl, c.path, c.body, &headers).await;
        assert_eq!(code, c.code, "{}: {r}", c.what);
        let said = r["error"].as_str().unwrap_or_default();
        assert!(
            said.contains(c.says),
            "{}: {said:?} does not say {:?}",
            c.what,
            c.says
        );
    }
    // Truncated lines are named by line number.
    let (_, r, _) = post(
        &ctl,
        "/ingest/lines",
        format!("{line}\n{}", &line[..70]).into_bytes(),
        &[BEARER],
    )
    .await;
    assert_eq!(r["errors"][0]["at"], "line 2", "{r}");

    // Non-UTF-8 syslog: counted as unparsed, nothing recorded.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(
        b"<182>2026-01-01T00:00:00.000Z esx \xff\xfe dfwpktlogs: \xc3\x28",
        ("127.0.0.1", udp),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::e2e::metric_sum(
        ctl.http,
        "microseg_ingest_lines_total",
        &["source=\"syslog_udp\"", "outcome=\"unparsed\""],
    )
    .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the non-UTF-8 datagram was not counted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A flood above the rate: 429 with Retry-After; what was refused is not recorded.
    let before = unmatched_total(&env, "alpha");
    let batch = vec![line.as_str(); 30].join("\n");
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..5 {
        let (code, r, retry) = post(
            &ctl,
            "/ingest/lines",
            batch.clone().into_bytes(),
            &[BEARER, ("idempotency-key", &format!("flood-{i}"))],
        )
        .await;
        match code {
            200 => accepted += 30,
            429 => {
                refused = Some((r, retry));
                break;
            }
            other => panic!("flood: {other} {r}"),
        }
    }
    let (r, retry) = refused.expect("the flood was not limited");
    assert!(r["error"].as_str().unwrap().contains("rate limit"), "{r}");
    assert!(retry.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    env.eventually(
        "accepted lines are all counted",
        Duration::from_secs(10),
        || unmatched_total(&env, "alpha") == before + accepted,
    );
    assert!(before >= 3, "what was accepted first is still there");
}
