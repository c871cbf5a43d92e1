//! The schedule's phases and the gates: each with the safety invariant.

use super::*;

#[test]
fn a_new_application_notifies_then_monitors_with_group_and_policy_in_one_write() {
    let mut h = Harness::new(EVIDENCE);
    h.settle(0);
    assert_eq!(h.needs, ["notify 1"], "the Scheduled notice is sent first");
    assert_ne!(h.phase(), Some(Phase::Monitoring));
    h.writes.clear();
    let r = h.settle(100);
    assert_eq!(h.phase(), Some(Phase::Monitoring));
    let monitoring: Vec<_> = h
        .writes
        .iter()
        .filter(|w| w.summary.iter().any(|s| s.contains("policy")))
        .collect();
    assert_eq!(
        monitoring.len(),
        1,
        "group and policy in one call: {:?}",
        h.writes
    );
    assert_eq!(h.catch_all(), ["ALLOW"], "monitor mode passes");
    assert_eq!(h.condition(condition::SYNCED).0, condition::TRUE);
    assert!(r.requeue <= Duration::from_secs(300));
    assert!(
        h.events
            .iter()
            .any(|e| e.reason == reason::APPLIED && e.severity == Severity::Normal),
        "{:?}",
        h.events
    );
}

#[test]
fn without_coalescing_a_new_applications_group_goes_first() {
    let mut h = Harness::new(EVIDENCE);
    h.settings.nsx_batch = None;
    h.settle(0);
    h.settle(100);
    assert!(h.writes.len() >= 2, "{:?}", h.writes);
    let first = serde_json::to_string(&h.writes[0].patch).unwrap();
    assert!(first.contains("ChildGroup") && !first.contains("ChildSecurityPolicy"));
    // A peer group NSX does not hold has the same effect with coalescing on.
    let mut h = Harness::new(EVIDENCE);
    h.settle(0);
    h.nsx = LiveState::default();
    let policy = h.policy.clone();
    let mut o = observed_for(&h, &policy, at(100));
    o.peer_groups_in_nsx = false;
    let Step::Act(plan) = decide(&o) else {
        panic!("no fact is missing")
    };
    assert_eq!(plan.writes.len(), 2, "{:?}", plan.writes);
    let first = serde_json::to_string(&plan.writes[0].patch).unwrap();
    assert!(first.contains("ChildGroup") && !first.contains("ChildSecurityPolicy"));
}

#[test]
fn with_the_applications_traffic_seen_and_the_gates_holding_it_drops_at_enforce_at() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 10);
    h.settle(ENFORCE - 1);
    assert_eq!(h.phase(), Some(Phase::Monitoring));
    let r = h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["DROP"]);
    assert_eq!(
        r.lateness, None,
        "the settle's last reconcile changed nothing"
    );
    assert!(
        !h.events.iter().any(|e| e.reason == reason::GATE_WAIVED),
        "no gate was waived"
    );
    assert!(
        h.events
            .iter()
            .any(|e| e.once && e.reason == decide_reason(&h))
    );
}

#[test]
fn without_the_applications_traffic_it_holds_as_blind_and_keeps_passing() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(
        h.condition(condition::ENFORCEMENT_GATE),
        (condition::FALSE.into(), reason::MONITORING_BLIND.into())
    );
    assert_eq!(h.catch_all(), ["ALLOW"]);
    assert!(!h.ever_dropped());
    assert!(
        h.events
            .iter()
            .any(|e| e.severity == Severity::Warning && e.once),
        "Held is announced as a Warning: {:?}",
        h.events
    );
}

#[test]
fn an_unmatched_flow_inside_the_quiet_period_holds() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.monitor.last_unmatched_at = Some(Time(at(ENFORCE - 30)));
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(
        h.condition(condition::ENFORCEMENT_GATE).1,
        reason::QUIET_PERIOD
    );
    assert!(!h.ever_dropped());
    // Quiet for the whole period: it enforces.
    h.logs_until(ENFORCE + 40);
    h.settle(ENFORCE + 40);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["DROP"]);
}

#[test]
fn an_open_alert_holds() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.monitor.open_alerts = 1;
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(
        h.condition(condition::ENFORCEMENT_GATE).1,
        reason::TOO_MANY_OPEN_ALERTS
    );
    assert!(!h.ever_dropped());
}

#[test]
fn waived_gates_enforce_without_evidence_and_say_so() {
    let mut h = Harness::monitoring("{waive: [Blind, QuietPeriod]}");
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["DROP"]);
    let waived: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.reason == reason::GATE_WAIVED)
        .collect();
    assert_eq!(waived.len(), 1, "{:?}", h.events);
    assert_eq!(waived[0].severity, Severity::Warning);
    assert!(
        waived[0].note.contains("Blind, QuietPeriod"),
        "{}",
        waived[0].note
    );
}

#[test]
fn members_are_counted_in_the_minute_before_so_the_flip_is_a_pure_write() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.needs.clear();
    let counts = |h: &Harness| h.needs.iter().filter(|n| *n == "members").count();
    h.settle(ENFORCE - 120);
    assert_eq!(counts(&h), 0, "not yet due: {:?}", h.needs);
    h.settle(ENFORCE - 30);
    assert_eq!(counts(&h), 1);
    h.settle(ENFORCE - 20);
    assert_eq!(counts(&h), 1, "a fresh count is not taken again");
    h.settle(ENFORCE);
    assert_eq!(counts(&h), 1, "the flip asks NSX nothing");
    assert_eq!(h.phase(), Some(Phase::Enforcing));
}

#[test]
fn an_empty_group_holds_as_no_members() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.members = Ok(false);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(
        h.condition(condition::ENFORCEMENT_GATE).1,
        reason::NOT_READY
    );
    let gate_message = &h.policy.status.as_ref().unwrap().conditions;
    assert!(
        format!("{gate_message:?}").contains("no effective members"),
        "{gate_message:?}"
    );
    assert!(!h.ever_dropped());
}

#[test]
fn suspend_returns_an_enforcing_application_to_pass() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    assert_eq!(h.catch_all(), ["DROP"]);
    h.policy.spec.suspend = true;
    h.policy.metadata.generation = Some(2);
    h.settle(ENFORCE + 60);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(h.catch_all(), ["ALLOW"]);
    assert_eq!(
        h.condition(condition::ENFORCEMENT_GATE).1,
        reason::SUSPENDED
    );
}

#[test]
fn dropped_flows_over_the_threshold_roll_back_to_pass() {
    let mut h = Harness::monitoring("{quietPeriod: 60s, rollback: {droppedFlows: 3, period: 10m}}");
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    h.monitor.series = vec![MonitorBucket {
        start: Time(at(ENFORCE + 60)),
        unmatched: 5,
        dropped: 5,
    }];
    h.monitor.last_unmatched_at = Some(Time(at(ENFORCE + 70)));
    h.settle(ENFORCE + 90);
    assert_eq!(h.phase(), Some(Phase::RolledBack));
    assert_eq!(h.catch_all(), ["ALLOW"]);
    assert!(
        h.told
            .contains(&("RolledBack".to_string(), vec!["ALLOW".to_string()])),
        "the owners are told once NSX passes again: {:?}",
        h.told
    );
    assert!(
        h.events
            .iter()
            .any(|e| e.severity == Severity::Warning && e.reason == reason::ROLLED_BACK),
        "{:?}",
        h.events
    );
}

#[test]
fn after_cleanup_at_the_application_completes() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    h.logs_until(CLEANUP - 5);
    h.settle(CLEANUP);
    assert_eq!(h.phase(), Some(Phase::Completed));
}

#[test]
fn a_widening_change_under_drop_returns_to_pass_until_approved() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    // More VMs under DROP.
    h.policy
        .spec
        .members
        .push(serde_yaml::from_str("vmTag: {scope: app, tag: web2}").unwrap());
    h.policy.metadata.generation = Some(2);
    h.settle(ENFORCE + 10);
    assert_ne!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["ALLOW"]);
    assert_eq!(decide_reason(&h), reason::CHANGE_UNDER_DROP);
    // Approved, the same generation enforces again (with new evidence).
    h.policy.metadata.annotations = Some(
        [(
            "microseg.io/approved-generation".to_string(),
            "2".to_string(),
        )]
        .into(),
    );
    h.logs_until(ENFORCE + 200);
    h.settle(ENFORCE + 200);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["DROP"]);
}

#[test]
fn drops_of_an_earlier_enforcement_do_not_roll_back_the_next_one() {
    // Three drops at +10 s caused a rollback at +20 s; the same minute's bucket still holds
    // them when the application enforces again at +40 s.
    let bucket = MonitorBucket {
        start: Time(at(0)),
        unmatched: 3,
        dropped: 3,
    };
    let gate = RollbackGate {
        dropped_flows: 3,
        period: crate::api::duration::Duration::seconds(120),
    };
    let schedule = |evidence: Option<i64>| EffectiveSchedule {
        notify_at: Time(at(-100)),
        monitor_from: Time(at(-90)),
        enforce_at: Time(at(-50)),
        cleanup_at: Time(at(500)),
        notice_delivered_at: Some(Time(at(-100))),
        enforced_since: Some(Time(at(40))),
        rolled_back_generation: evidence.map(|_| 1),
        evidence_from: evidence.map(|s| Time(at(s))),
        canary_step: None,
        canary_since: None,
    };
    let status = |evidence| SegmentationPolicyStatus {
        schedule: Some(schedule(evidence)),
        monitor: Some(MonitorStatus {
            series: vec![bucket.clone()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        !monitor_summary(&status(Some(20)), Some(&gate), at(45)).rollback_triggered,
        "the drops before the rollback at +20 s belong to the earlier enforcement"
    );
    // Without a recorded return to PASS the same bucket counts (first enforcement).
    assert!(monitor_summary(&status(None), Some(&gate), at(45)).rollback_triggered);
}

#[test]
fn drops_in_the_second_enforcement_began_count_even_across_a_minute() {
    // The DROP was written at +59.005 s; `enforcedSince` records +60 s (rounded up to the
    // second), the three drops logged at +59 s sit in the minute bucket that ends at +60 s.
    let gate = RollbackGate {
        dropped_flows: 3,
        period: crate::api::duration::Duration::seconds(120),
    };
    let status = SegmentationPolicyStatus {
        schedule: Some(EffectiveSchedule {
            notify_at: Time(at(-100)),
            monitor_from: Time(at(-90)),
            enforce_at: Time(at(59)),
            cleanup_at: Time(at(500)),
            notice_delivered_at: Some(Time(at(-100))),
            enforced_since: Some(Time(at(60))),
            rolled_back_generation: None,
            evidence_from: None,
            canary_step: None,
            canary_since: None,
        }),
        monitor: Some(MonitorStatus {
            series: vec![MonitorBucket {
                start: Time(at(0)),
                unmatched: 3,
                dropped: 3,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(monitor_summary(&status, Some(&gate), at(62)).rollback_triggered);
}

#[test]
fn a_new_applications_writes_may_wait_to_share_a_call_but_a_flip_never() {
    let mut h = Harness::monitoring(EVIDENCE);
    assert!(!h.writes.is_empty());
    assert!(
        h.writes.iter().all(|w| w.relaxed),
        "a new application in PASS: {:?}",
        h.writes.iter().map(|w| &w.summary).collect::<Vec<_>>()
    );
    h.writes.clear();
    h.logs_until(ENFORCE - 10);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert!(!h.writes.is_empty());
    assert!(h.writes.iter().all(|w| !w.relaxed), "the DROP is prompt");
}
