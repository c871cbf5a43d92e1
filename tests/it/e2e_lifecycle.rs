//! End-to-end: the controller, as a separate process with exactly the chart's permissions, takes
//! the example wave through its whole lifecycle on a real kube-apiserver, the NSX simulator and a
//! real SMTP server; deletion, foreign objects, a restart in mid-rollout and leader hand-over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::{Env, reconcile_count};
use microseg::api::{Phase, SegmentationPolicy};
use microseg::nsx::NsxApi;
use microseg::nsx::naming::Identity;
use microseg::plan::{self, LiveState};

const POLICIES: [&str; 4] = ["10-web.yaml", "11-app.yaml", "12-db.yaml", "20-dns.yaml"];

/// The notice kind a mail subject announces (subjects as rendered by `notify::render`).
fn notice_kind(subject: &str) -> &'static str {
    if subject.contains("scheduled") {
        "Scheduled"
    } else if subject.contains("reminder") {
        "Reminder"
    } else if subject.contains("active since") {
        "Enforced"
    } else if subject.contains("complete") {
        "Completed"
    } else {
        "Other"
    }
}

/// The example dns policy (it names no other application), on the window wave-1.
fn apply_dns(env: &Env) {
    env.apply(
        &env.example("20-dns.yaml")
            .replace("name: wave-critical", "name: wave-1"),
    );
}

/// When the policy entered `phase`, as its history records it (it must have).
fn entered_at(env: &Env, name: &str, phase: &str) -> String {
    env.policy(name)["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["phase"] == phase)
        .unwrap()["at"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Who holds the controller's lease ("" while nobody does).
fn lease_holder(env: &Env) -> String {
    let out = env.cp.kubectl(&[
        "get",
        "lease",
        "-n",
        &env.ns,
        "microseg-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// NSX holds exactly what `plan` says for the policy's current phase.
async fn nsx_matches_plan(env: &Env, name: &str) -> Result<(), String> {
    let json = env.policy(name);
    let policy: SegmentationPolicy = serde_json::from_value(json).map_err(|e| e.to_string())?;
    let phase = policy
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    let identity = Identity::new("e2e").unwrap();
    let id = identity.object_id(&env.ns, name);
    let client = env.nsx_client();
    let live = LiveState {
        group: client
            .get_group("default", &id)
            .await
            .map_err(|e| e.to_string())?,
        policy: client
            .get_policy("default", &id)
            .await
            .map_err(|e| e.to_string())?,
    };
    let peers: plan::PeerGroups = ["web", "app", "db", "dns"]
        .iter()
        .map(|n| {
            (
                (env.ns.clone(), n.to_string()),
                microseg::nsx::naming::group_path("default", &identity.object_id(&env.ns, n)),
            )
        })
        .collect();
    let seq = live.rule_sequence();
    let desired = plan::desired(
        &policy,
        phase,
        &plan::Context {
            identity: &identity,
            peers: &peers,
            previous_sequence: &seq,
        },
    )
    .map_err(|e| e.to_string())?;
    let change =
        plan::diff(&desired, &live, &identity, &env.ns, name).map_err(|e| e.to_string())?;
    if change.is_empty() {
        Ok(())
    } else {
        Err(format!("{name} in {phase}: {change}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_wave_goes_from_pending_to_completed_with_nsx_matching_the_plan() {
    let env = Env::new("wave").await;
    // An NSX group that existed before microseg (app's rules name it).
    env.nsx_client()
        .patch_infra(&serde_json::from_value(serde_json::json!({
            "resource_type": "Infra",
            "children": [{"resource_type": "ChildResourceReference", "id": "default", "target_type": "Domain",
                "children": [{"resource_type": "ChildGroup", "id": "monitoring-servers",
                    "Group": {"resource_type": "Group", "id": "monitoring-servers",
                        "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": ["10.50.0.0/24"]}]}}]}]
        })).unwrap())
        .await
        .unwrap();
    let controller = env.controller("a", &[]);
    env.apply(&format!(
        "{}---\n{}",
        env.window("wave-1", 2, 6, 26, 34, "20s"),
        env.window("wave-critical", 2, 6, 26, 34, "20s").replace(
            common::e2e::WAIVED,
            "gates: {requireApproval: true, waive: [Blind, QuietPeriod]}"
        )
    ));
    for f in POLICIES {
        env.apply(&env.example(f));
    }
    env.approve("dns");

    // Follow web through every phase; at each, NSX holds exactly what the plan says.
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let phase = env.phase("web");
        if phase == "Held" {
            let id = Identity::new("e2e").unwrap().object_id(&env.ns, "web");
            let vms = reqwest::get(format!("{}/admin/vms", env.sim.url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            eprintln!(
                "web Held: members {:?}; vms loaded {}; group {:?}",
                env.nsx_client().group_has_members("default", &id).await,
                vms.len(),
                env.nsx_client()
                    .get_group("default", &id)
                    .await
                    .unwrap()
                    .map(|g| g.expression)
            );
        }
        let synced = env.condition("web", "Synced").0 == "True";
        if !phase.is_empty()
            && seen.last() != Some(&phase)
            && synced
            && nsx_matches_plan(&env, "web").await.is_ok()
        {
            seen.push(phase.clone());
        }
        if seen.last().map(String::as_str) == Some("Completed")
            && ["web", "app", "db", "dns"]
                .iter()
                .all(|n| env.phase(n) == "Completed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen,
        vec!["Pending", "Monitoring", "Enforcing", "Completed"],
        "phases of web with NSX in sync"
    );
    for name in ["web", "app", "db", "dns"] {
        assert_eq!(env.phase(name), "Completed", "{name}");
        nsx_matches_plan(&env, name).await.unwrap();
    }
    // The foreign group is untouched.
    let foreign = env
        .nsx_client()
        .get_group("default", "monitoring-servers")
        .await
        .unwrap()
        .unwrap();
    assert!(foreign.tags.is_empty());

    // kubectl shows the printer columns with the right values.
    let table = env.cp.kubectl_ok(&["get", "segpol", "-n", &env.ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "APPLICATION",
            "PHASE",
            "READY",
            "ENFORCE-AT",
            "CANARY",
            "UNMATCHED",
            "SYNCED",
            "AGE",
            "STATUS"
        ]
    );
    let web = table.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(
        web.contains("Shop web frontend") && web.contains("Completed") && web.contains("True"),
        "{web}"
    );
    let enforce_at = env.policy("web")["status"]["schedule"]["enforceAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(web.contains(&enforce_at), "{web} lacks {enforce_at}");

    // The owner heard: scheduled, reminder, enforced, completed — once each, in order.
    let subjects = env.subjects_to("web-team@example.com");
    let kinds: Vec<&str> = subjects.iter().map(|s| notice_kind(s)).collect();
    assert_eq!(
        kinds,
        vec!["Scheduled", "Reminder", "Enforced", "Completed"],
        "{subjects:?}"
    );
    let events = env.event_reasons();
    assert!(
        events.contains("NoticeSent") && events.contains("Applied"),
        "{events}"
    );

    // A resync of the finished wave writes nothing: the simulator returns objects the way a
    // real manager does (defaults filled, services ["ANY"] beside entries, expression ids).
    let writes = env.nsx_calls("PATCH /infra");
    let reconciles = reconcile_count(controller.http).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while reconcile_count(controller.http).await < reconciles + 4.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no resync within 45 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        env.nsx_calls("PATCH /infra"),
        writes,
        "a resync wrote to NSX: {:?}",
        env.sim.counters()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_removes_its_nsx_objects_and_foreign_objects_are_left_alone() {
    let env = Env::new("delete").await;
    let identity = Identity::new("e2e").unwrap();
    // A group with the id microseg would use for "clash", created by someone else.
    let clash_id = identity.object_id(&env.ns, "clash");
    env.nsx_client()
        .patch_infra(&serde_json::from_value(serde_json::json!({
            "resource_type": "Infra",
            "children": [{"resource_type": "ChildResourceReference", "id": "default", "target_type": "Domain",
                "children": [{"resource_type": "ChildGroup", "id": clash_id,
                    "Group": {"resource_type": "Group", "id": clash_id, "tags": [{"scope": "owner", "tag": "dc-team"}],
                        "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": ["10.9.9.9"]}]}}]}]
        })).unwrap())
        .await
        .unwrap();
    let _controller = env.controller("a", &[]);
    env.apply(&env.window(
        "later",
        3600,
        7200,
        7200 + 30 * 86400,
        7200 + 60 * 86400,
        "336h",
    ));
    let db = env
        .example("12-db.yaml")
        .replace("name: wave-1", "name: later");
    env.apply(&db);
    env.apply(&db.replace("name: db\n", "name: clash\n"));
    env.eventually("db synced", Duration::from_secs(60), || {
        env.condition("db", "Synced") == ("True".into(), "Applied".into())
            || env.condition("db", "Synced").0 == "True"
    });
    env.eventually(
        "clash reports the name clash",
        Duration::from_secs(60),
        || env.condition("clash", "Synced") == ("False".into(), "NotOwned".into()),
    );
    let db_id = identity.object_id(&env.ns, "db");
    assert!(
        env.nsx_client()
            .get_group("default", &db_id)
            .await
            .unwrap()
            .is_some()
    );

    env.cp.kubectl_ok(&[
        "delete",
        "segpol",
        "-n",
        &env.ns,
        "db",
        "clash",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        env.nsx_client()
            .get_group("default", &db_id)
            .await
            .unwrap()
            .is_none(),
        "db's group removed"
    );
    let foreign = env
        .nsx_client()
        .get_group("default", &clash_id)
        .await
        .unwrap()
        .expect("foreign group kept");
    assert_eq!(foreign.tags.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_in_mid_rollout_continues_on_time_without_repeating_anything() {
    let env = Env::new("restart").await;
    let mut first = env.controller("first", &[]);
    // DNS names no other application, so it stands alone.
    env.apply(&env.window("wave-1", 1, 3, 30, 36, "15s"));
    apply_dns(&env);
    env.wait_phase("dns", "Monitoring", Duration::from_secs(60));
    first.kill();
    let recorded_before_restart: Vec<String> = env.policy("dns")["status"]["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["messageId"].as_str().map(str::to_string))
        .collect();
    let enforce_at: String = env.policy("dns")["status"]["schedule"]["enforceAt"]
        .as_str()
        .unwrap()
        .into();
    // Down for a while; back six seconds before enforceAt (however late the test got here).
    let back_at = enforce_at.parse::<k8s_openapi::jiff::Timestamp>().unwrap()
        - k8s_openapi::jiff::SignedDuration::from_secs(6);
    let wait = k8s_openapi::jiff::Timestamp::now().duration_until(back_at);
    assert!(
        wait.as_secs() >= 0,
        "the test reached the restart after enforceAt - 6 s"
    );
    tokio::time::sleep(wait.unsigned_abs()).await;
    let _second = env.controller("second", &[]);
    env.wait_phase("dns", "Completed", Duration::from_secs(60));
    let enforced = entered_at(&env, "dns", "Enforcing");
    let late = enforced
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .duration_since(enforce_at.parse().unwrap());
    assert!(
        late.as_secs() <= 5,
        "enforced at {enforced}, scheduled {enforce_at}"
    );
    // At most one write per phase (group at Pending, Monitoring, Enforcing, Completed): the
    // restarted controller found NSX in sync and repeated nothing.
    let writes = env.nsx_calls("PATCH /infra");
    assert!(
        (3..=4).contains(&writes),
        "{writes} writes: {:?}",
        env.sim.counters()
    );
    assert_eq!(env.condition("dns", "Synced").0, "True");
    // Each notice once. Delivery is at least once: a notice the first controller sent but had
    // not recorded in status when it was killed (a busy machine can put the kill there) is sent
    // again, with the same Message-ID, which mail systems take as the same message. So: one
    // Message-ID per kind, and anything recorded is not sent again.
    let mut kinds: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for m in env.smtp.messages() {
        let to_infra = m["rcpt_tos"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "infra@example.com"));
        if to_infra {
            let subject = m["headers"]["subject"].as_str().unwrap_or("");
            let id = m["headers"]["message-id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(!id.is_empty(), "a notice without a Message-ID: {m}");
            kinds
                .entry(notice_kind(subject).into())
                .or_default()
                .insert(id);
        }
    }
    assert!(
        kinds.values().all(|ids| ids.len() == 1),
        "a notice was sent twice under different Message-IDs: {kinds:?}"
    );
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    // What the first controller had recorded, the second did not send again.
    assert!(!recorded_before_restart.is_empty());
    for id in &recorded_before_restart {
        let sent = env
            .smtp
            .messages()
            .iter()
            .filter(|m| m["headers"]["message-id"].as_str() == Some(format!("<{id}>").as_str()))
            .count();
        assert_eq!(
            sent, 1,
            "{id}, recorded before the restart, sent {sent} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_controllers_only_the_leader_writes_and_killing_it_hands_over() {
    let env = Env::new("leader").await;
    let lease = [
        "--leader-elect",
        "--lease-namespace",
        &env.ns,
        "--lease-duration",
        "4s",
    ];
    let mut a = env.controller("a", &[&lease[..], &["--lease-holder", "a"]].concat());
    // b starts once a holds the lease.
    env.eventually("a holds the lease", Duration::from_secs(30), || {
        lease_holder(&env) == "a"
    });
    let b = env.controller("b", &[&lease[..], &["--lease-holder", "b"]].concat());
    env.apply(&env.window("wave-1", 1, 3, 20, 28, "15s"));
    apply_dns(&env);
    env.wait_phase("dns", "Monitoring", Duration::from_secs(60));
    let holder = lease_holder(&env);
    assert_eq!(holder, "a");
    assert!(a.log_text().contains("Applied NSX changes"));
    assert!(
        !b.log_text().contains("Applied NSX changes"),
        "the follower wrote to NSX"
    );
    a.kill();
    env.wait_phase("dns", "Completed", Duration::from_secs(60));
    assert!(
        b.log_text().contains("acquired the lease"),
        "{}",
        b.log_text()
    );
    assert!(b.log_text().contains("Applied NSX changes"));
    let _ = Phase::Completed;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_whose_members_match_nothing_is_held_not_enforced() {
    let env = Env::new("nomembers").await;
    let _controller = env.controller("a", &[]);
    env.apply(&env.window("wave-1", 1, 2, 14, 20, "12s"));
    let ghost = env
        .example("20-dns.yaml")
        .replace("name: dns\n", "name: ghost\n")
        .replace("name: wave-critical", "name: wave-1")
        .replace("equals: dns-01", "equals: no-such-vm-1")
        .replace("equals: dns-02", "equals: no-such-vm-2")
        .replace("    - ipAddress: 10.0.0.53\n", "");
    env.apply(&ghost);
    env.wait_phase("ghost", "Held", Duration::from_secs(60));
    let gate = env.condition_message("ghost", "EnforcementGate");
    assert!(gate.contains("no effective members"), "{gate}");
    let live = env.nsx_policy("ghost").await;
    let catch_all = live.rules.iter().find(|r| r.id == "catchall_in").unwrap();
    assert_eq!(catch_all.action, "ALLOW", "never DROP on an empty group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_owner_notice_postpones_enforcement_to_delivery_plus_minimum_notice() {
    let env = Env::new("refused").await;
    // The owner's mail server refuses every recipient at first.
    let refusing = common::servers::SmtpSink::start("refusing", &["--refuse-rcpt"]);
    std::fs::write(env.dir.join("notify/smtp-port"), refusing.port.to_string()).unwrap();
    let _controller = env.controller("a", &[]);
    env.apply(&env.window("wave-1", 1, 2, 14, 30, "12s"));
    apply_dns(&env);
    let window_enforce: String = env.cp.kubectl_ok(&[
        "get",
        "ew",
        "-n",
        &env.ns,
        "wave-1",
        "-o",
        "jsonpath={.spec.enforceAt}",
    ]);
    env.eventually("the notice is refused", Duration::from_secs(30), || {
        env.condition("dns", "OwnerNotified") == ("False".into(), "NoticeDue".into())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The mail server accepts again (same port).
    let port = refusing.port.to_string();
    drop(refusing);
    let accepting = common::servers::SmtpSink::start("accepting", &["--port", &port]);
    env.eventually("the notice is delivered", Duration::from_secs(30), || {
        env.condition("dns", "OwnerNotified").0 == "True"
    });
    let schedule = env.policy("dns")["status"]["schedule"].clone();
    let delivered: k8s_openapi::jiff::Timestamp = schedule["noticeDeliveredAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let enforce: k8s_openapi::jiff::Timestamp =
        schedule["enforceAt"].as_str().unwrap().parse().unwrap();
    let window: k8s_openapi::jiff::Timestamp = window_enforce.parse().unwrap();
    assert!(
        enforce > window,
        "enforcement not postponed: {enforce} vs window {window}"
    );
    let gap = enforce.duration_since(delivered).as_secs();
    assert!(
        (12..=13).contains(&gap),
        "enforceAt {enforce} is not delivery {delivered} + 12s"
    );
    env.wait_phase("dns", "Enforcing", Duration::from_secs(40));
    let enforced: k8s_openapi::jiff::Timestamp =
        entered_at(&env, "dns", "Enforcing").parse().unwrap();
    assert!(
        enforced >= enforce,
        "enforced at {enforced} before the postponed {enforce}"
    );
    let subjects: Vec<String> = accepting
        .messages()
        .iter()
        .map(|m| m["headers"]["subject"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains("scheduled")),
        "{subjects:?}"
    );
    let events = env.event_reasons();
    assert!(events.contains("NoticeFailed"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_what_would_change_and_writes_nothing() {
    let env = Env::new("dryrun").await;
    let _controller = env.controller("a", &["--dry-run"]);
    env.apply(&env.window("wave-1", 1, 2, 3600, 7200, "10s"));
    apply_dns(&env);
    env.eventually("a dry-run condition", Duration::from_secs(60), || {
        env.condition("dns", "Synced") == ("False".into(), "DryRun".into())
    });
    let message = env.condition_message("dns", "Synced");
    assert!(
        message.contains("would apply") && message.contains("create group"),
        "{message}"
    );
    assert_eq!(env.nsx_calls("PATCH /infra"), 0, "dry run wrote to NSX");
    let events = env.event_reasons();
    assert!(events.contains("DryRun"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_while_nsx_is_unreachable_and_says_so() {
    let env = Env::new("outage").await;
    let _controller = env.controller("a", &[]);
    env.apply(&env.window("wave-1", 1, 2, 3600, 7200, "10s"));
    apply_dns(&env);
    env.eventually("dns synced", Duration::from_secs(60), || {
        env.condition("dns", "Synced").0 == "True"
    });
    env.sim.set_faults(microseg::nsxsim::Faults {
        outage_seconds: 3600.0,
        ..Default::default()
    });
    env.cp
        .kubectl_ok(&["delete", "segpol", "-n", &env.ns, "dns", "--wait=false"]);
    env.eventually("a DeletionBlocked event", Duration::from_secs(90), || {
        env.event_reasons().contains("DeletionBlocked")
    });
    assert!(
        !env.policy("dns").is_null(),
        "the policy went while NSX still holds its objects"
    );
    env.sim.set_faults(microseg::nsxsim::Faults::default());
    env.eventually("deleted once NSX is back", Duration::from_secs(90), || {
        env.policy("dns").is_null()
    });
    assert!(!env.nsx_group_exists(&env.object_id("dns")).await);
}
