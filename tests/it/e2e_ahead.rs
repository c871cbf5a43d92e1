//! A transition decided ahead of its instant (`controller::ahead`) is written at the instant
//! only if nothing the decision read has changed: a window suspended while the flip waits for
//! `enforceAt` holds the application, and no DROP is ever written.

use std::time::Duration;

use crate::common::e2e::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_decided_ahead_is_discarded_when_its_window_is_suspended_before_the_instant() {
    let env = Env::new("ahead").await;
    // The Reminder comes 8 s before enforceAt (the e2e controller's setting); the reconcile
    // that sends it is followed at once by the one that decides the flip ahead of enforceAt.
    let ctl = env.controller("a", &["--transition-lead", "20s"]);
    env.apply(&env.window("wave-1", 1, 3, 30, 3600, "15s"));
    env.apply(
        &env.example("20-dns.yaml")
            .replace("name: wave-critical", "name: wave-1"),
    );
    env.wait_phase("dns", "Monitoring", Duration::from_secs(50));
    let enforce_at: k8s_openapi::jiff::Timestamp =
        env.policy("dns")["status"]["schedule"]["enforceAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    // Decided as of just after enforceAt (as a reconcile requeued for it would be).
    let instant = format!(
        "at={}",
        enforce_at + k8s_openapi::jiff::SignedDuration::from_millis(5)
    );
    env.eventually(
        "the flip is decided ahead of enforceAt",
        Duration::from_secs(60),
        || {
            ctl.log_text().lines().any(|l| {
                l.contains("deciding ahead of the schedule's next instant") && l.contains(&instant)
            })
        },
    );
    assert!(
        k8s_openapi::jiff::Timestamp::now() < enforce_at,
        "the test reached the suspend after enforceAt"
    );
    env.cp.kubectl_ok(&[
        "patch",
        "enforcementwindow",
        "-n",
        &env.ns,
        "wave-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    env.eventually(
        "the decision made ahead is discarded at the instant",
        Duration::from_secs(90),
        || {
            ctl.log_text()
                .contains("changed while its transition waited for its instant")
        },
    );
    env.wait_phase("dns", "Held", Duration::from_secs(20));
    assert_eq!(env.condition("dns", "EnforcementGate").1, "Suspended");
    let log = ctl.log_text();
    assert!(
        !log.contains("to DROP"),
        "no DROP may be written for a suspended window:\n{}",
        log.lines()
            .filter(|l| l.contains("Applied NSX changes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
