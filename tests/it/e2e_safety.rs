//! End-to-end safety table (issue #14): on a real API server, with the NSX simulator and the
//! controller running as its ServiceAccount, every way a user could get a DROP without evidence
//! ends with the catch-all still ALLOW in NSX; the one case with evidence (logs arriving, no
//! alert, quiet period passed) enforces. All cases share one controller, so the windows parked
//! at the end of time also show that one object never stops the others.
//!
//! Every application is one address of its own (`10.77.0.N`), so the DFW lines the simulator
//! writes for its flows belong to it alone: TCP/443 from 10.0.0.10 hits its logged allow rule
//! (evidence that its logs arrive), TCP/8080 hits its catch-all (an unmatched flow, an alert).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::time::{Duration, Instant};

use common::e2e::{Controller, Env, Feeder, at, ingest};
use jiff::Timestamp;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-safety-ingest-token-0123456789";
const DASHBOARD_TOKEN: &str = "e2e-safety-dashboard-token-0123456789";

/// One row of the table: the policy name and its address.
struct Case {
    name: &'static str,
    ip: &'static str,
}

const BLIND: Case = Case {
    name: "blind",
    ip: "10.77.0.1",
};
const SILENT: Case = Case {
    name: "silent",
    ip: "10.77.0.2",
};
const ALERTS: Case = Case {
    name: "alerts",
    ip: "10.77.0.3",
};
const OVERFLOW: Case = Case {
    name: "overflow",
    ip: "10.77.0.4",
};
const ORPHAN: Case = Case {
    name: "orphan",
    ip: "10.77.0.5",
};
const ROLLBACK: Case = Case {
    name: "rollback",
    ip: "10.77.0.6",
};
const WIDEN: Case = Case {
    name: "widen",
    ip: "10.77.0.7",
};
const OLD_APPROVAL: Case = Case {
    name: "oldapproval",
    ip: "10.77.0.8",
};
const POSITIVE: Case = Case {
    name: "positive",
    ip: "10.77.0.9",
};
const FAR: Case = Case {
    name: "far",
    ip: "10.77.0.10",
};
const EDGE: Case = Case {
    name: "edge",
    ip: "10.77.0.11",
};

/// The last instant the CRD accepts (jiff's range ends on 9999-12-30 because of UTC offsets).
const EDGE_OF_TIME: &str = "9999-12-30T22:00:00Z";

fn policy(env: &Env, c: &Case, window: &str, extra_member: Option<&str>) -> String {
    // The VM by name (the simulator scopes DFW rules to VMs, as NSX applies them at vNICs).
    let members = match extra_member {
        Some(ip) => format!(
            "[{{vmName: {{equals: safety-{}}}}}, {{ipAddress: {ip}}}]",
            c.name
        ),
        None => format!("[{{vmName: {{equals: safety-{}}}}}]", c.name),
    };
    format!(
        "apiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  owners: [{{name: Team {name}, email: {name}@example.com}}]\n  criticality: Low\n  window: {{name: {window}}}\n  members: {members}\n  rules:\n    - name: https-in\n      direction: Inbound\n      peers: [{{cidr: 10.0.0.0/8}}]\n      ports: [{{protocol: TCP, port: 443}}]\n      logged: true\n",
        name = c.name,
        ns = env.ns,
    )
}

/// A window: notice now, monitor mode from +2 s, enforcement at +`enforce` s, with `gates`.
fn window(env: &Env, c: &Case, enforce: i64, gates: &str) -> String {
    format!(
        "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: w-{name}, namespace: {ns}}}\nspec:\n  notifyAt: \"{}\"\n  monitorFrom: \"{}\"\n  enforceAt: \"{}\"\n  cleanupAt: \"{}\"\n  minimumNotice: 3s\n  postEnforcementMonitoring: 600s\n  gates: {gates}\n",
        at(0),
        at(2),
        at(enforce),
        at(3600),
        name = c.name,
        ns = env.ns,
    )
}

/// A window parked at the end of time.
fn far_window(env: &Env, c: &Case, notify: &str, enforce: &str) -> String {
    format!(
        "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: w-{name}, namespace: {ns}}}\nspec:\n  notifyAt: \"{notify}\"\n  monitorFrom: \"{notify}\"\n  enforceAt: \"{enforce}\"\n",
        name = c.name,
        ns = env.ns,
    )
}

/// The action of the application's inbound catch-all in NSX.
async fn catch_all(env: &Env, name: &str) -> String {
    let policy = env.nsx_policy(name).await;
    let rule = policy
        .rules
        .iter()
        .find(|r| r.id == "catchall_in")
        .unwrap_or_else(|| panic!("{name}: no catch-all rule"));
    rule.action.to_string()
}

fn reason(env: &Env, name: &str, type_: &str) -> String {
    env.condition(name, type_).1
}

fn gate_message(env: &Env, name: &str) -> String {
    env.condition_message(name, "EnforcementGate")
}

fn history_reasons(env: &Env, name: &str) -> Vec<String> {
    env.policy(name)["status"]["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    format!(
                        "{}:{}",
                        e["phase"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The cases on a near window, in the table's order: each reaches monitor mode.
const NEAR: [&Case; 9] = [
    &BLIND,
    &SILENT,
    &ALERTS,
    &OVERFLOW,
    &ORPHAN,
    &ROLLBACK,
    &WIDEN,
    &OLD_APPROVAL,
    &POSITIVE,
];

/// The cases parked at the end of time.
const PARKED: [&Case; 2] = [&FAR, &EDGE];

/// The controller with the ingest and dashboard tokens, and room for one flow per application.
fn start_controller(env: &Env) -> Controller {
    let token = env.secret_file("ingest-token", TOKEN);
    let dash = env.secret_file("dashboard-token", DASHBOARD_TOKEN);
    env.controller(
        "a",
        &[
            "--ingest-token-file",
            &token,
            "--dashboard-token-file",
            &dash,
            "--monitor-max-flows",
            "1",
        ],
    )
}

/// Every case's window and policy. Quiet periods are explicit and short: the default (72h)
/// would hold a compressed schedule for days.
fn manifests(env: &Env) -> String {
    let quick = "{quietPeriod: 3s}";
    let table: Vec<(&Case, i64, &str)> = vec![
        (&BLIND, 12, quick),
        // Later than the rest: its lines must stop more than maxLogSilence before enforceAt
        // however slow the machine is to reach monitor mode.
        (&SILENT, 22, "{quietPeriod: 3s, maxLogSilence: 4s}"),
        (&ALERTS, 12, quick),
        (&OVERFLOW, 12, quick),
        (&ORPHAN, 10, quick),
        (
            &ROLLBACK,
            10,
            "{quietPeriod: 3s, rollback: {droppedFlows: 2, period: 2m}}",
        ),
        (&WIDEN, 10, quick),
        (
            &OLD_APPROVAL,
            12,
            "{quietPeriod: 3s, requireApproval: true}",
        ),
        (&POSITIVE, 10, quick),
    ];
    let mut yaml = String::new();
    for (c, enforce, gates) in &table {
        yaml.push_str(&window(env, c, *enforce, gates));
        yaml.push_str("---\n");
        yaml.push_str(&policy(env, c, &format!("w-{}", c.name), None));
        yaml.push_str("---\n");
    }
    // Parked at the end of time: accepted by the API server, represented by the controller.
    yaml.push_str(&far_window(
        env,
        &FAR,
        "9999-12-01T00:00:00Z",
        "9999-12-20T00:00:00Z",
    ));
    yaml.push_str("---\n");
    yaml.push_str(&policy(env, &FAR, "w-far", None));
    yaml.push_str("---\n");
    yaml.push_str(&far_window(
        env,
        &EDGE,
        "9999-12-10T00:00:00Z",
        EDGE_OF_TIME,
    ));
    yaml.push_str("---\n");
    yaml.push_str(&policy(env, &EDGE, "w-edge", None));
    yaml
}

/// One unmatched flow for `alerts`; two distinct ones for `overflow` (one fits, one
/// overflows), then the visible one is acknowledged and only the overflow stays open.
async fn open_alerts(env: &Env, http: u16, dashboard: u16) {
    // The controller attributes the feeder's lines to them (its policy store follows the API
    // server a moment later than kubectl does).
    for c in [&ALERTS, &OVERFLOW] {
        env.eventually(
            &format!("{}'s lines are attributed", c.name),
            Duration::from_secs(20),
            || {
                env.policy(c.name)["status"]["monitor"]["healthyTotal"]
                    .as_i64()
                    .unwrap_or(0)
                    > 0
            },
        );
    }
    ingest(http, TOKEN, &env.flow_lines(ALERTS.ip, 8080).await).await;
    ingest(http, TOKEN, &env.flow_lines(OVERFLOW.ip, 8080).await).await;
    ingest(http, TOKEN, &env.flow_lines(OVERFLOW.ip, 8081).await).await;
    env.eventually(
        "overflow counts the flow that did not fit",
        Duration::from_secs(20),
        || {
            let m = env.policy(OVERFLOW.name)["status"]["monitor"].clone();
            m["overflow"].as_i64() == Some(1)
        },
    );
    let flow_id = env.policy(OVERFLOW.name)["status"]["monitor"]["flows"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{dashboard}/api/v1/alerts/acknowledge"))
        .bearer_auth(DASHBOARD_TOKEN)
        .json(&json!({"namespace": env.ns, "name": OVERFLOW.name, "flowIds": [flow_id], "comment": "known backup job", "by": "e2e"}))
        .send()
        .await
        .unwrap();
    assert!(
        ack.status().is_success(),
        "acknowledge: {}",
        ack.text().await.unwrap_or_default()
    );
}

/// `silent` had logs for a few seconds of monitor mode, then they stop: stopped as soon as one
/// line of monitor mode is recorded (status.monitor.lastLogAt), well before its enforceAt.
fn silence(env: &Env, feeder: &Feeder) {
    let instant = |v: &Value| v.as_str().and_then(|t| t.parse::<Timestamp>().ok());
    env.eventually("silent's logs arrive", Duration::from_secs(20), || {
        let p = env.policy(SILENT.name);
        let status = &p["status"];
        matches!(
            (instant(&status["monitor"]["lastLogAt"]), instant(&status["schedule"]["monitorFrom"])),
            (Some(last), Some(from)) if last >= from
        )
    });
    feeder.stop(SILENT.ip);
    let enforce_at = instant(&env.policy(SILENT.name)["status"]["schedule"]["enforceAt"]).unwrap();
    let left = Timestamp::now().duration_until(enforce_at);
    assert!(
        left > jiff::SignedDuration::from_secs(5),
        "the machine is too slow for this case: silent's lines stopped only {left:#} before its enforceAt (maxLogSilence 4s)"
    );
}

/// Window deleted while Enforcing: the application keeps its schedule, and suspend still
/// turns it back to PASS within seconds.
fn orphan_still_suspends(env: &Env) {
    env.cp.kubectl_ok(&[
        "delete",
        "enforcementwindow",
        "-n",
        &env.ns,
        "w-orphan",
        "--wait=true",
    ]);
    env.eventually(
        "orphan says WindowNotFound and keeps its schedule",
        Duration::from_secs(15),
        || {
            reason(env, ORPHAN.name, "Ready") == "WindowNotFound"
                && env.phase(ORPHAN.name) == "Enforcing"
        },
    );
    env.cp.kubectl_ok(&[
        "patch",
        "segpol",
        "-n",
        &env.ns,
        ORPHAN.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let suspended = Instant::now();
    env.wait_phase(ORPHAN.name, "Held", Duration::from_secs(15));
    assert!(suspended.elapsed() < Duration::from_secs(15));
    assert_eq!(reason(env, ORPHAN.name, "Ready"), "WindowNotFound");
    assert_eq!(reason(env, ORPHAN.name, "EnforcementGate"), "Suspended");
}

/// Rollback, then a spec edit: not straight back to DROP.
async fn rollback_then_edit(env: &Env, http: u16, feeder: &Feeder) {
    feeder.stop(ROLLBACK.ip);
    for _ in 0..3 {
        let dropped = env.flow_lines(ROLLBACK.ip, 8080).await;
        assert!(dropped[0].contains(" DROP "), "{dropped:?}");
        ingest(http, TOKEN, &dropped).await;
    }
    env.wait_phase(ROLLBACK.name, "RolledBack", Duration::from_secs(30));
    env.apply(&policy(env, &ROLLBACK, "w-rollback", None).replace(
        "logged: true",
        "logged: true\n      description: fixed after the rollback",
    ));
    env.eventually(
        "rollback sees its new generation",
        Duration::from_secs(20),
        || {
            let p = env.policy(ROLLBACK.name);
            p["status"]["observedGeneration"] == p["metadata"]["generation"]
                && p["status"]["phase"] == "Held"
        },
    );
}

/// Members widened under DROP: back to PASS.
fn widen_under_drop(env: &Env, feeder: &Feeder) {
    feeder.stop(WIDEN.ip);
    env.apply(&policy(env, &WIDEN, "w-widen", Some("10.77.1.0/24")));
    env.wait_phase(WIDEN.name, "Held", Duration::from_secs(20));
    assert!(
        history_reasons(env, WIDEN.name).contains(&"Held:ChangeUnderDrop".to_string()),
        "{:?}",
        history_reasons(env, WIDEN.name)
    );
}

/// Held cases stay held: nothing flips to DROP a few seconds later.
async fn held_cases_stay_at_pass(env: &Env) {
    tokio::time::sleep(Duration::from_secs(4)).await;
    for c in NEAR.iter().filter(|c| c.name != POSITIVE.name) {
        assert_ne!(
            env.phase(c.name),
            "Enforcing",
            "{}: {:?}",
            c.name,
            history_reasons(env, c.name)
        );
        assert_eq!(
            catch_all(env, c.name).await,
            "ALLOW",
            "{}: catch-all must pass",
            c.name
        );
    }
}

/// The windows at the end of time: the controller is up, both are scheduled and pending.
fn parked_windows_are_scheduled(env: &Env, ctl: &mut Controller) {
    assert!(
        ctl.alive(),
        "the controller must survive windows at the end of time:\n{}",
        ctl.log_text()
    );
    for (c, enforce) in [(&FAR, "9999-12-20T00:00:00Z"), (&EDGE, EDGE_OF_TIME)] {
        env.eventually(
            &format!("{} is scheduled", c.name),
            Duration::from_secs(20),
            || {
                let p = env.policy(c.name);
                p["status"]["phase"] == "Pending" && p["status"]["schedule"]["enforceAt"] == enforce
            },
        );
    }
    assert!(!ctl.log_text().contains("panicked"), "{}", ctl.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_drop_without_evidence_and_no_object_takes_the_brakes_away() {
    let env = Env::new("safety").await;
    let mut ctl = start_controller(&env);
    let (http, dashboard) = (ctl.ingest, ctl.dashboard);

    // One VM per application: DFW lines are written at a VM's vNIC.
    env.put_vms(
        NEAR.iter()
            .chain(&PARKED)
            .map(|c| json!({"name": format!("safety-{}", c.name), "ips": [c.ip], "tags": []})),
    )
    .await;
    env.apply(&manifests(&env));
    env.approve(OLD_APPROVAL.name);

    // Logs arrive for the applications that should have evidence (every near case but
    // `blind`), every second, until told to stop per application.
    let feeder = Feeder::start(
        &env,
        http,
        TOKEN,
        NEAR.iter().filter(|c| c.name != BLIND.name).map(|c| c.ip),
    );

    for c in NEAR {
        env.wait_phase(c.name, "Monitoring", Duration::from_secs(30));
    }
    // Approval of generation 1, then a spec edit: generation 2 is not approved.
    env.apply(&policy(&env, &OLD_APPROVAL, "w-oldapproval", None).replace(
        "logged: true",
        "logged: true\n      description: edited after the approval",
    ));
    open_alerts(&env, http, dashboard).await;
    silence(&env, &feeder);

    // The positive case and those that must first enforce.
    for c in [&POSITIVE, &ORPHAN, &ROLLBACK, &WIDEN] {
        env.wait_phase(c.name, "Enforcing", Duration::from_secs(40));
        assert_eq!(
            catch_all(&env, c.name).await,
            "DROP",
            "{} enforces on evidence",
            c.name
        );
    }
    assert!(
        gate_message(&env, POSITIVE.name).starts_with("enforcing since"),
        "{}",
        gate_message(&env, POSITIVE.name)
    );

    orphan_still_suspends(&env);
    rollback_then_edit(&env, http, &feeder).await;
    widen_under_drop(&env, &feeder);

    // Every other case reached its enforceAt and is held for its own reason.
    let held = [
        (&BLIND, "MonitoringBlind"),
        (&SILENT, "MonitoringBlind"),
        (&ALERTS, "TooManyOpenAlerts"),
        (&OVERFLOW, "TooManyOpenAlerts"),
        (&OLD_APPROVAL, "ApprovalMissing"),
    ];
    for (c, why) in held {
        env.eventually(
            &format!("{} held: {why}", c.name),
            Duration::from_secs(40),
            || env.phase(c.name) == "Held" && reason(&env, c.name, "EnforcementGate") == why,
        );
    }
    assert!(
        gate_message(&env, BLIND.name).contains("no DFW log line"),
        "{}",
        gate_message(&env, BLIND.name)
    );

    held_cases_stay_at_pass(&env).await;
    parked_windows_are_scheduled(&env, &mut ctl);
    feeder.abort();
    ctl.kill();
}
