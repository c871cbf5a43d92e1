//! Canary enforcement end to end (issue #20): a real API server, the NSX simulator and the
//! controller as its ServiceAccount. Two applications enforce on evidence with canary steps:
//! - `trial` (4 VMs, one step of 1 VM): DROP applies to its canary VM only (a flow to it is
//!   dropped, the same flow to another member passes); dropped flows of the canary roll the
//!   whole application back to PASS, canary rule gone;
//! - `steady` (3 VMs, steps of 1 VM then 50%): each step widens when it has lasted, and after
//!   the last one the whole application enforces, the canary groups deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::time::Duration;

use common::e2e::{Env, Feeder, at, ingest};
use serde_json::json;

const TOKEN: &str = "e2e-canary-ingest-token-0123456789";

struct App {
    name: &'static str,
    ips: &'static [&'static str],
}

const TRIAL: App = App {
    name: "trial",
    ips: &["10.78.0.1", "10.78.0.2", "10.78.0.3", "10.78.0.4"],
};
const STEADY: App = App {
    name: "steady",
    ips: &["10.78.1.1", "10.78.1.2", "10.78.1.3"],
};

fn vm_name(app: &App, i: usize) -> String {
    format!("canary-{}-{}", app.name, i + 1)
}

fn manifests(env: &Env, app: &App, enforce: i64, gates: &str, steps: &str) -> String {
    format!(
        "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: w-{name}, namespace: {ns}}}\nspec:\n  notifyAt: \"{}\"\n  monitorFrom: \"{}\"\n  enforceAt: \"{}\"\n  minimumNotice: 3s\n  postEnforcementMonitoring: 600s\n  gates: {gates}\n  canary:\n    steps: {steps}\n---\napiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  owners: [{{name: Team {name}, email: {name}@example.com}}]\n  criticality: Low\n  window: {{name: w-{name}}}\n  members: [{{vmTag: {{scope: app, tag: canary-{name}}}}}]\n  rules:\n    - name: https-in\n      direction: Inbound\n      peers: [{{cidr: 10.0.0.0/8}}]\n      ports: [{{protocol: TCP, port: 443}}]\n      logged: true\n",
        at(0),
        at(2),
        at(enforce),
        name = app.name,
        ns = env.ns,
    )
}

/// `(rule id, action)` of the application's catch-alls in NSX, in order.
async fn catch_alls(env: &Env, name: &str) -> Vec<(String, String)> {
    env.nsx_policy(name)
        .await
        .rules
        .iter()
        .filter(|r| r.id.starts_with("catchall"))
        .map(|r| (r.id.clone(), r.action.to_string()))
        .collect()
}

fn canary_summary(env: &Env, name: &str) -> String {
    env.policy(name)["status"]["canary"]["summary"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn canary_vms(env: &Env, name: &str) -> Vec<String> {
    env.policy(name)["status"]["canary"]["vms"]
        .as_array()
        .map(|v| v.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_drops_rolls_back_and_one_that_holds_completes_every_step() {
    let env = Env::new("canary").await;
    let token = env.secret_file("ingest-token", TOKEN);
    let ctl = env.controller("a", &["--ingest-token-file", &token]);
    let http = ctl.ingest;

    env.put_vms([&TRIAL, &STEADY].into_iter().flat_map(|app| {
        app.ips.iter().enumerate().map(move |(i, ip)| {
            json!({"name": vm_name(app, i), "ips": [ip],
                "tags": [{"scope": "app", "tag": format!("canary-{}", app.name)}]})
        })
    }))
    .await;

    let mut yaml = manifests(
        &env,
        &TRIAL,
        10,
        "{quietPeriod: 3s, rollback: {droppedFlows: 2, period: 2m}}",
        "[{members: 1, for: 600s}]",
    );
    yaml.push_str("---\n");
    yaml.push_str(&manifests(
        &env,
        &STEADY,
        10,
        "{quietPeriod: 3s}",
        "[{members: 1, for: 5s}, {percent: 50, for: 5s}]",
    ));
    env.apply(&yaml);

    // Evidence: HTTPS to every VM, logged by the explicit rule, every second.
    let feeder = Feeder::start(
        &env,
        http,
        TOKEN,
        TRIAL.ips.iter().chain(STEADY.ips).copied(),
    );

    // trial: step 1 of 1, one VM of four at DROP.
    env.wait_phase(TRIAL.name, "Enforcing", Duration::from_secs(60));
    env.eventually("trial shows its canary", Duration::from_secs(20), || {
        canary_summary(&env, TRIAL.name) == "1/4 VMs (step 1 of 1)"
    });
    let table = env.cp.kubectl_ok(&["get", "segpol", "-n", &env.ns]);
    eprintln!("{table}");
    assert!(table.contains("CANARY"), "{table}");
    assert!(table.contains("1/4 VMs (step 1 of 1)"), "{table}");
    assert_eq!(
        catch_alls(&env, TRIAL.name).await,
        vec![
            ("catchall_in_canary".to_string(), "DROP".to_string()),
            ("catchall_in".to_string(), "ALLOW".to_string()),
        ]
    );
    let canary = canary_vms(&env, TRIAL.name);
    assert_eq!(canary.len(), 1);
    let index = (0..TRIAL.ips.len())
        .find(|i| vm_name(&TRIAL, *i) == canary[0])
        .unwrap();
    let canary_ip = TRIAL.ips[index];
    let other_ip = TRIAL.ips[(index + 1) % TRIAL.ips.len()];
    // The Enforced notice names the canary VM and the date the step widens.
    env.eventually(
        "trial's owner is told which VM is the canary",
        Duration::from_secs(20),
        || {
            env.smtp.messages().iter().any(|m| {
                m["text"].as_str().is_some_and(|t| {
                    t.contains("Enforcement starts as a canary")
                        && t.contains(&format!("1 of 4 VMs only: {}", canary[0]))
                        && t.contains("widens no earlier than")
                })
            })
        },
    );
    let dropped = env.flow_lines(canary_ip, 8080).await;
    assert!(dropped[0].contains(" DROP "), "{dropped:?}");
    let passed = env.flow_lines(other_ip, 8080).await;
    eprintln!("to the canary VM: {dropped:?}\nto another member: {passed:?}");
    assert!(passed[0].contains(" PASS "), "{passed:?}");

    // The canary's dropped flows roll the whole application back: every VM at PASS.
    for ip in TRIAL.ips {
        feeder.stop(ip);
    }
    for _ in 0..3 {
        ingest(http, TOKEN, &env.flow_lines(canary_ip, 8080).await).await;
    }
    env.wait_phase(TRIAL.name, "RolledBack", Duration::from_secs(30));
    env.eventually(
        "trial's canary rule is gone from NSX",
        Duration::from_secs(20),
        || {
            let rt = tokio::runtime::Handle::current();
            let rules = tokio::task::block_in_place(|| rt.block_on(catch_alls(&env, TRIAL.name)));
            rules == vec![("catchall_in".to_string(), "ALLOW".to_string())]
        },
    );
    assert!(env.flow_lines(canary_ip, 8080).await[0].contains(" PASS "));
    assert_eq!(canary_summary(&env, TRIAL.name), "");

    // steady: step 1 (1 VM), step 2 (50% of 3 = 2 VMs), then every VM.
    env.wait_phase(STEADY.name, "Enforcing", Duration::from_secs(60));
    env.eventually("steady reaches step 2", Duration::from_secs(30), || {
        canary_summary(&env, STEADY.name) == "2/3 VMs (step 2 of 2)"
    });
    env.eventually(
        "steady enforces on every VM",
        Duration::from_secs(30),
        || canary_summary(&env, STEADY.name).is_empty(),
    );
    assert_eq!(env.phase(STEADY.name), "Enforcing");
    assert_eq!(
        catch_alls(&env, STEADY.name).await,
        vec![("catchall_in".to_string(), "DROP".to_string())]
    );
    for ip in STEADY.ips {
        assert!(env.flow_lines(ip, 8080).await[0].contains(" DROP "), "{ip}");
    }
    let id = env.object_id(STEADY.name);
    assert!(
        !env.nsx_group_exists(&format!("{id}_canary1")).await,
        "the canary group went with the canary"
    );
    let history: Vec<String> = env.policy(STEADY.name)["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(history.contains(&"Canary".to_string()), "{history:?}");
    feeder.abort();
}
