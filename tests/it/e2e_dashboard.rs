//! End-to-end: the dashboard in headless Chromium (tests/browser/dashboard.mjs, Playwright driving
//! /usr/bin/chromium) against the controller on the local control plane with the NSX simulator.
//! Unmatched flows are injected through `/ingest/lines`; the programme shows the wave, the alert
//! appears without a reload, acknowledging it removes it from the open queue and records it on the
//! policy, and the suggested rule, once applied, makes the flow explicit: the next matching log
//! line counts as healthy. Screenshots of every page land in `target/screenshots/`.
//! Needs `bash tests/support/setup.sh` (chromium, playwright-core) first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::e2e::Env;
use k8s_openapi::jiff::Timestamp;
use microseg::api::PolicyRule;
use serde_json::Value;

const DASHBOARD_TOKEN: &str = "dashboard-e2e-token-0123456789abcdef";
const INGEST_TOKEN: &str = "ingest-e2e-token-0123456789abcdef";
const COMMENT: &str = "Nightly backup from the storage VLAN; rule follows in the next release";

fn now() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn line(at: &str, rule_id: i64, src: &str, sport: u16, dport: u16) -> String {
    format!("{at} b6507827 INET match PASS {rule_id} IN 60 TCP {src}/{sport}->10.1.0.5/{dport} S")
}

async fn ingest(http: u16, body: String) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/ingest/lines"))
        .bearer_auth(INGEST_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "ingest: {status}: {text}");
}

fn monitor(env: &Env, field: &str) -> i64 {
    env.policy("web")["status"]["monitor"][field]
        .as_i64()
        .unwrap_or(0)
}

fn rule_id(env: &Env, name: &str) -> Option<i64> {
    env.policy("web")["status"]["nsx"]["ruleIds"][name].as_i64()
}

/// Reads the browser script's stdout lines.
struct Browser {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Browser {
    fn next(&self, what: &str) -> String {
        match self.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => {
                eprintln!("browser: {l}");
                l
            }
            Err(_) => panic!("browser: no {what} within 120 s (its stderr is above)"),
        }
    }

    fn expect(&self, want: &str) -> String {
        loop {
            let l = self.next(want);
            if l.starts_with(want) {
                return l;
            }
        }
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_wave_live_alerts_acknowledges_and_suggests_a_rule_that_works() {
    let script = common::repo().join("tests/browser/dashboard.mjs");
    assert!(
        common::repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "run `bash tests/support/setup.sh` first (chromium and playwright-core)"
    );
    let env = Env::new("dash").await;
    let token_file = env.dir.join("dashboard-token");
    std::fs::write(&token_file, format!("{DASHBOARD_TOKEN}\n")).unwrap();
    let ingest_file = env.dir.join("ingest-token");
    std::fs::write(&ingest_file, INGEST_TOKEN).unwrap();
    let controller = env.controller(
        "a",
        &[
            "--dashboard-token-file",
            token_file.to_str().unwrap(),
            "--ingest-token-file",
            ingest_file.to_str().unwrap(),
        ],
    );
    // Two waves a long way off enforcement: the applications stay in monitor mode.
    env.apply(&format!(
        "{}---\n{}",
        env.window("wave-1", 1, 3, 3600, 7200, "20s"),
        env.window("wave-critical", 1, 3, 5400, 9000, "20s")
    ));
    for f in ["10-web.yaml", "11-app.yaml", "12-db.yaml", "20-dns.yaml"] {
        env.apply(&env.example(f));
    }
    env.wait_phase("web", "Monitoring", Duration::from_secs(90));
    env.eventually("web's catch-all rule id", Duration::from_secs(60), || {
        rule_id(&env, "catchall_in").is_some()
    });
    let catchall = rule_id(&env, "catchall_in").unwrap();

    // The JSON API refuses requests without the token, answers with it.
    let base = format!("http://127.0.0.1:{}", controller.dashboard);
    let http = reqwest::Client::new();
    for path in ["/api/v1/programme", "/api/v1/alerts", "/api/v1/events"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without the token");
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(INGEST_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with another token");
    }
    let programme: Value = http
        .get(format!("{base}/api/v1/programme?namespace={}", env.ns))
        .bearer_auth(DASHBOARD_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let waves: Vec<&str> = programme["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(waves, ["wave-1", "wave-critical"], "{programme}");
    assert_eq!(programme["applications"], 4);

    // The browser.
    let shots = common::repo().join("target/screenshots");
    let mut child = Command::new("node")
        .arg(&script)
        .env("DASHBOARD_URL", &base)
        .env("DASHBOARD_TOKEN", DASHBOARD_TOKEN)
        .env("NAMESPACE", &env.ns)
        .env("POLICY", "web")
        .env("APPLICATION", "Shop web frontend")
        .env("WAVE", "wave-1")
        .env("FLOW_SOURCE", "10.20.30.40")
        .env("SCREENSHOT_DIR", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (apt-get install nodejs)");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut browser = Browser { child, lines };

    // Inject two unmatched flows while the alert queue is open: 3 × 10.20.30.40 → 8443, 1 × .41 → 22.
    browser.expect("STEP inject");
    let at = now(); // one instant: the queue orders the two flows by count alone
    let batch = [
        line(&at, catchall, "10.20.30.40", 51001, 8443),
        line(&at, catchall, "10.20.30.40", 51002, 8443),
        line(&at, catchall, "10.20.30.40", 51003, 8443),
        line(&at, catchall, "10.20.30.41", 52001, 22),
    ]
    .join("\n");
    ingest(controller.ingest, batch).await;
    env.eventually("two open alerts on web", Duration::from_secs(30), || {
        monitor(&env, "openAlerts") == 2
    });
    browser.go();

    // The page acknowledged the loudest flow and handed over the suggested rule.
    let yaml_line = browser.expect("YAML ");
    let yaml: String = serde_json::from_str(yaml_line.trim_start_matches("YAML ")).unwrap();
    let flows = env.policy("web")["status"]["monitor"]["flows"].clone();
    let acked = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["source"] == "10.20.30.40")
        .unwrap();
    assert_eq!(acked["acknowledged"]["comment"], COMMENT, "{flows}");
    assert_eq!(
        acked["acknowledged"]["by"], "Alice Example (dashboard token)",
        "{flows}"
    );
    assert_eq!(acked["count"], 3);
    let other = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["source"] == "10.20.30.41")
        .unwrap();
    assert!(other["acknowledged"].is_null(), "{flows}");
    assert_eq!(monitor(&env, "openAlerts"), 1);

    // Apply the suggestion as written: the flow becomes an explicit, logged rule.
    browser.expect("STEP applied");
    let rules: Vec<PolicyRule> = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(rules.len(), 1, "{yaml}");
    let rule = &rules[0];
    assert!(rule.logged, "{yaml}");
    let patch = serde_json::json!([{ "op": "add", "path": "/spec/rules/-", "value": rule }]);
    env.cp.kubectl_ok(&[
        "patch",
        "segpol",
        "web",
        "-n",
        &env.ns,
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
    env.eventually(
        "the new rule's NSX id in status",
        Duration::from_secs(60),
        || rule_id(&env, &rule.name).is_some(),
    );
    let id = rule_id(&env, &rule.name).unwrap();
    assert_ne!(id, catchall);
    let (healthy, unmatched) = (
        monitor(&env, "healthyTotal"),
        monitor(&env, "unmatchedTotal"),
    );
    // NSX now logs the flow on the explicit rule.
    ingest(
        controller.ingest,
        line(&now(), id, "10.20.30.40", 51004, 8443),
    )
    .await;
    env.eventually("healthyTotal grows", Duration::from_secs(30), || {
        monitor(&env, "healthyTotal") > healthy
    });
    assert_eq!(monitor(&env, "unmatchedTotal"), unmatched);
    browser.go();
    browser.expect("DONE");
    let status = browser.child.wait().unwrap();
    assert!(status.success(), "dashboard.mjs: {status}");
    // "Acknowledge all" on the application page took the other flow.
    assert_eq!(monitor(&env, "openAlerts"), 0);
    let flows = env.policy("web")["status"]["monitor"]["flows"].clone();
    assert!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["acknowledged"].is_null()),
        "{flows}"
    );
    for page in ["programme", "alerts", "application"] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
    assert!(
        !controller.log_text().contains(DASHBOARD_TOKEN),
        "the token is in the controller's log"
    );
}
