//! Every error category: NSX, members, canary VMs, peers and windows that cannot be read, a
//! failed DROP write, a dry run; none ever writes a DROP.

use super::*;

#[test]
fn members_that_cannot_be_read_hold_as_an_nsx_error() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.members = Err(unavailable());
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    let conditions = format!("{:?}", h.policy.status.as_ref().unwrap().conditions);
    assert!(
        conditions.contains("members could not be read"),
        "{conditions}"
    );
    assert!(!h.ever_dropped());
}

#[test]
fn nsx_that_cannot_be_read_holds_and_nothing_is_written() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.read_fails = true;
    h.writes.clear();
    let r = h.settle(ENFORCE);
    assert_ne!(h.phase(), Some(Phase::Enforcing));
    assert!(h.writes.is_empty());
    assert_eq!(
        h.condition(condition::SYNCED),
        (condition::FALSE.into(), reason::NSX_ERROR.into())
    );
    assert!(r.requeue <= NSX_RETRY, "{:?}", r.requeue);
    assert_eq!(h.catch_all(), ["ALLOW"]);
}

#[test]
fn a_failed_drop_write_is_reported_held_not_enforcing() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.write_fails = true;
    let r = h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Held));
    assert_eq!(
        h.condition(condition::SYNCED),
        (condition::FALSE.into(), reason::NSX_ERROR.into())
    );
    assert!(r.requeue <= NSX_RETRY);
    assert_eq!(h.catch_all(), ["ALLOW"], "NSX still passes");
    assert!(
        h.told.iter().all(|(kind, _)| kind != "Enforced"),
        "nobody is told it drops: {:?}",
        h.told
    );
    // NSX answers again: the next reconcile enforces.
    h.write_fails = false;
    h.settle(ENFORCE + 10);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    assert_eq!(h.catch_all(), ["DROP"]);
    assert_eq!(
        h.told,
        [("Enforced".to_string(), vec!["DROP".to_string()])],
        "told once, after the DROP was written"
    );
}

#[test]
fn the_first_reconcile_never_drops_before_nsx_is_confirmed_in_sync() {
    // A policy applied after its enforceAt, with every gate waived: one reconcile writes the
    // monitor-mode objects, only a later one (NSX confirmed) may enforce.
    let mut h = Harness::new("{waive: [Blind, QuietPeriod]}");
    h.policy.status = None;
    let r = h.reconcile(ENFORCE + 100);
    assert_ne!(r.decision.as_ref().map(|d| d.phase), Some(Phase::Enforcing));
    assert!(!h.ever_dropped());
}

#[test]
fn a_peer_that_does_not_exist_blocks_and_is_named() {
    let mut h = Harness::new(EVIDENCE);
    h.policy = policy(
        "    - name: to-db\n      direction: Outbound\n      peers: [{application: {name: db}}]\n      ports: [{protocol: TCP, port: 5432}]",
    );
    let p = h.policy.clone();
    let mut o = observed_for(&h, &p, at(ENFORCE));
    o.peer_blocker = Some(Blocker {
        reason: reason::PEER_NOT_FOUND,
        message: "peer application not found: shop/db (rule to-db)".into(),
    });
    let Step::Act(plan) = decide(&o) else {
        panic!("no fact is missing")
    };
    assert!(plan.writes.is_empty());
    let SyncOutcome::Failed {
        reason: why,
        message,
    } = &plan.outcome
    else {
        panic!("{:?}", plan.outcome)
    };
    assert_eq!(*why, reason::PEER_NOT_FOUND);
    assert!(message.contains("db"), "{message}");
    assert_ne!(plan.decision.unwrap().phase, Phase::Enforcing);
}

#[test]
fn a_missing_window_without_a_schedule_writes_nothing_and_looks_again_soon() {
    let mut h = Harness::new(EVIDENCE);
    h.window = None;
    let r = h.reconcile(100);
    assert!(h.writes.is_empty());
    assert_eq!(r.decision, None);
    assert!(r.requeue <= WINDOW_RETRY);
    assert_eq!(h.condition(condition::READY).1, reason::WINDOW_NOT_FOUND);
    assert!(
        h.events
            .iter()
            .any(|e| e.reason == reason::WINDOW_NOT_FOUND)
    );
    // Announced once: the next reconcile does not repeat the event.
    h.events.clear();
    h.reconcile(101);
    assert!(
        h.events
            .iter()
            .all(|e| e.reason != reason::WINDOW_NOT_FOUND)
    );
}

#[test]
fn a_pruned_window_keeps_the_brakes_from_the_recorded_schedule() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    assert_eq!(h.phase(), Some(Phase::Enforcing));
    h.window = None;
    h.settle(ENFORCE + 10);
    assert_eq!(
        h.phase(),
        Some(Phase::Enforcing),
        "the recorded schedule holds"
    );
    h.policy.spec.suspend = true;
    h.policy.metadata.generation = Some(2);
    h.settle(ENFORCE + 20);
    assert_eq!(
        h.phase(),
        Some(Phase::Held),
        "suspend works without the window"
    );
    assert_eq!(h.catch_all(), ["ALLOW"]);
}

#[test]
fn a_dry_run_decides_but_writes_nothing() {
    let mut h = Harness::new(EVIDENCE);
    h.settings.dry_run = true;
    h.settle(0);
    h.settle(100);
    assert!(h.writes.is_empty());
    assert!(h.events.iter().any(|e| e.reason == reason::DRY_RUN));
    assert_eq!(h.condition(condition::SYNCED).1, reason::DRY_RUN);
}

/// A dry run writes no DROP, so no owner is told that the application drops.
#[test]
fn a_dry_run_tells_nobody_that_nsx_drops() {
    let mut h = Harness::monitoring(EVIDENCE);
    h.settings.dry_run = true;
    h.logs_until(ENFORCE - 5);
    h.settle(ENFORCE);
    h.settle(CLEANUP);
    assert!(h.told.is_empty(), "told after a dry run: {:?}", h.told);
    assert_eq!(h.catch_all(), ["ALLOW"]);
}

#[test]
fn canary_vms_that_cannot_be_read_keep_every_vm_passing() {
    let mut h = Harness::new("{waive: [Blind, QuietPeriod]}");
    let mut w = h.window.clone().unwrap();
    w.canary = Some(serde_yaml::from_str("steps: [{percent: 10, for: 10m}]").unwrap());
    h.window = Some(w);
    h.settle(0);
    h.settle(100);
    h.settle(ENFORCE);
    assert!(h.needs.iter().any(|n| n == "canary"), "{:?}", h.needs);
    assert_ne!(h.phase(), Some(Phase::Enforcing));
    assert!(!h.ever_dropped());
    let conditions = format!("{:?}", h.policy.status.as_ref().unwrap().conditions);
    assert!(
        conditions.contains("canary VMs could not be read"),
        "{conditions}"
    );
}

#[test]
fn a_new_applications_group_that_is_refused_is_not_recorded_as_in_nsx() {
    // Without coalescing a new application's group is written first, alone; NSX refuses it.
    let mut h = Harness::new(EVIDENCE);
    h.settings.nsx_batch = None;
    h.write_fails = true;
    h.reconcile(150);
    assert!(h.writes.is_empty());
    let nsx = h.nsx_status();
    assert_eq!(nsx.group_path, None, "{nsx:?}");
    assert_eq!(nsx.policy_path, None, "{nsx:?}");
    assert_eq!(
        h.condition(condition::SYNCED),
        (condition::FALSE.into(), reason::NSX_ERROR.into())
    );
    // NSX answers again: both land and the status names them.
    h.write_fails = false;
    h.settle(160);
    let nsx = h.nsx_status();
    assert!(
        nsx.group_path.is_some() && nsx.policy_path.is_some(),
        "{nsx:?}"
    );
}
