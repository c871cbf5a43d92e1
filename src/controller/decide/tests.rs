//! White-box tests of the decide step: a policy driven through its schedule with a fixed
//! clock, NSX as a value (what the plan's writes leave there), notices delivered at once, and
//! faults injected per fact. Every phase, every gate and every error category; the safety
//! invariant (no DROP without evidence, or without explicitly waived gates) in each.

use super::*;
use crate::api::k8s::Time;
use crate::api::{MonitorBucket, MonitorStatus};
use crate::nsx::model::{DomainChild, InfraChild, PolicyChild};

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// notify 0, monitor 100, enforce 5000, cleanup 50000.
const ENFORCE: i64 = 5000;
const CLEANUP: i64 = 50_000;

fn policy(extra_rule: &str) -> SegmentationPolicy {
    let yaml = format!(
        r#"
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{name: web, namespace: shop, generation: 1, uid: u-1}}
spec:
  owners: [{{name: Web team, email: web@example.com}}]
  criticality: Low
  window: {{name: wave}}
  members: [{{vmTag: {{scope: app, tag: web}}}}]
  rules:
    - name: https
      direction: Inbound
      peers: [{{cidr: 10.0.0.0/24}}]
      ports: [{{protocol: TCP, port: 443}}]
{extra_rule}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn window(gates: &str) -> EnforcementWindowSpec {
    let yaml = format!(
        r#"
notifyAt: "{}"
monitorFrom: "{}"
enforceAt: "{}"
cleanupAt: "{}"
minimumNotice: 1000s
postEnforcementMonitoring: 1000s
gates: {gates}
"#,
        at(0),
        at(100),
        at(ENFORCE),
        at(CLEANUP)
    );
    serde_yaml::from_str(&yaml).unwrap()
}

/// Gates as an operator with monitor mode would set them (a short quiet period).
const EVIDENCE: &str = "{quietPeriod: 60s}";

fn snapshot() -> Box<WindowSnapshot> {
    Box::new(WindowSnapshot {
        name: "wave".into(),
        generation: Some(1),
        minimum_notice: crate::api::duration::Duration::seconds(1000),
        post_enforcement_monitoring: crate::api::duration::Duration::seconds(1000),
        gates: Default::default(),
        blackouts: Vec::new(),
        suspend: false,
        canary: None,
    })
}

fn unavailable() -> crate::nsx::Error {
    crate::nsx::Error::Busy {
        path: "/policy/api/v1/infra".into(),
        status: 503,
        retry_after: None,
    }
}

/// A controller around `decide` with everything else as values.
struct Harness {
    policy: SegmentationPolicy,
    window: Option<EnforcementWindowSpec>,
    settings: Settings,
    identity: Identity,
    /// What NSX holds.
    nsx: LiveState,
    next_rule_id: i64,
    /// Faults and facts.
    read_fails: bool,
    write_fails: bool,
    members: Result<u64, crate::nsx::Error>,
    /// The monitor's part of the status (written by the monitor, not the reconciler).
    monitor: MonitorStatus,
    /// The member count taken ahead (the controller's `MemberChecks`).
    fresh_members: Option<u64>,
    /// What happened.
    needs: Vec<String>,
    /// Notices told after the writes, with the catch-all NSX held when each was sent.
    told: Vec<(String, Vec<String>)>,
    writes: Vec<Write>,
    events: Vec<Ev>,
}

impl Harness {
    fn new(gates: &str) -> Harness {
        Harness {
            policy: policy(""),
            window: Some(window(gates)),
            settings: Settings {
                log_silence: SignedDurationExt::hours(24),
                reminder_before: SignedDurationExt::secs(600),
                ..Settings::default()
            },
            identity: Identity::new("test").unwrap(),
            nsx: LiveState::default(),
            next_rule_id: 1000,
            read_fails: false,
            write_fails: false,
            members: Ok(3),
            monitor: MonitorStatus::default(),
            fresh_members: None,
            needs: Vec::new(),
            told: Vec::new(),
            writes: Vec::new(),
            events: Vec::new(),
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.policy.status.as_ref().and_then(|s| s.phase)
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let s = self.policy.status.as_ref().unwrap();
        let c = condition::find(&s.conditions, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    /// Application traffic seen in monitor mode up to `t` (no unmatched flow).
    fn logs_until(&mut self, t: i64) {
        self.monitor.last_log_at = Some(Time(at(t)));
    }

    /// One reconcile at `now`: decide (answering its needs), write, conclude, record.
    fn reconcile(&mut self, now: i64) -> Record {
        let now = at(now);
        let window = match &self.window {
            Some(spec) => WindowSource::Found {
                spec: spec.clone(),
                snapshot: snapshot(),
            },
            None => match self.policy.status.as_ref().and_then(remembered_window) {
                Some(spec) => WindowSource::Remembered(spec),
                None => WindowSource::Missing,
            },
        };
        let missing = matches!(window, WindowSource::Missing);
        let live = match (missing, self.read_fails) {
            (true, _) => None,
            (false, true) => Some(Err(unavailable())),
            (false, false) => Some(Ok(self.nsx.clone())),
        };
        let policy = self.policy.clone();
        let identity = self.identity.clone();
        let settings = self.settings.clone();
        let mut o = Observed {
            policy: &policy,
            names: Names {
                ns: "shop".into(),
                name: "web".into(),
                id: self.identity.object_id("shop", "web"),
                domain: "default".into(),
            },
            now,
            identity: &identity,
            settings: &settings,
            window,
            window_problem: self
                .window
                .is_none()
                .then(|| "spec.window.name: EnforcementWindow \"wave\" not found".into()),
            peers: PeerGroups::new(),
            peer_blocker: None,
            live,
            peer_groups_in_nsx: true,
            members: self.fresh_members.map(Ok),
            canary: None,
            notices: None,
        };
        let plan = loop {
            match decide(&o) {
                Step::Act(plan) => break plan,
                Step::Need(Need::Members) => {
                    self.needs.push("members".into());
                    if let Ok(c) = &self.members
                        && *c > 0
                    {
                        self.fresh_members = Some(*c);
                    }
                    o.members = Some(self.members.clone());
                }
                Step::Need(Need::Notify { due, .. }) => {
                    self.needs.push(format!("notify {}", due.len()));
                    let records = due
                        .iter()
                        .map(|d| NotificationRecord {
                            kind: d.kind.as_str().into(),
                            owner: d.owner.name.clone(),
                            channel: "email".into(),
                            message_id: d.message_id.clone(),
                            sent_at: Time(now),
                            enforce_at: Some(Time(at(ENFORCE))),
                        })
                        .collect();
                    o.notices = Some(Sent {
                        records,
                        error: None,
                    });
                }
                Step::Need(Need::Canary(d)) => {
                    self.needs.push("canary".into());
                    o.canary = Some(CanaryFact {
                        key: canary_key(&d).unwrap(),
                        result: Err(unavailable()),
                    });
                }
            }
            assert!(
                self.needs.len() < 20,
                "decide keeps asking: {:?}",
                self.needs
            );
        };
        let mut done = Done::default();
        for (i, w) in plan.writes.iter().enumerate() {
            if self.write_fails {
                done.failed = Some((i, unavailable()));
                break;
            }
            self.apply(&w.patch);
            self.writes.push(w.clone());
        }
        if plan.read_back && done.failed.is_none() {
            done.read_back = Some(Ok(self.nsx.policy.clone()));
        }
        if done.failed.is_none() && !plan.notify_after.is_empty() {
            let dropping = self.catch_all();
            for d in &plan.notify_after {
                self.told
                    .push((d.kind.as_str().to_string(), dropping.clone()));
            }
            let sent = o.notices.get_or_insert_with(Sent::default);
            sent.records
                .extend(plan.notify_after.iter().map(|d| NotificationRecord {
                    kind: d.kind.as_str().into(),
                    owner: d.owner.name.clone(),
                    channel: "email".into(),
                    message_id: d.message_id.clone(),
                    sent_at: Time(now),
                    enforce_at: None,
                }));
        }
        let record = conclude(&o, &plan, &done);
        let mut status = record.status.clone();
        status.monitor = Some(self.monitor.clone());
        self.policy.status = Some(status);
        self.events.extend(record.events.iter().cloned());
        record
    }

    /// Reconciles until the phase stops changing at this instant (the controller looks again
    /// 200 ms after a phase change).
    fn settle(&mut self, now: i64) -> Record {
        let mut r = self.reconcile(now);
        for _ in 0..6 {
            let before = self.phase();
            r = self.reconcile(now);
            if self.phase() == before {
                break;
            }
        }
        r
    }

    /// NSX after a hierarchical write: groups and policies replaced, rules merged by id (new
    /// ones numbered), deletions applied, revisions counted.
    fn apply(&mut self, patch: &Infra) {
        for InfraChild::ChildResourceReference { children, .. } in &patch.children {
            for child in children {
                match child {
                    DomainChild::ChildGroup {
                        marked_for_delete,
                        group,
                        ..
                    } => {
                        self.nsx.group = (!marked_for_delete).then(|| group.clone());
                    }
                    DomainChild::ChildSecurityPolicy {
                        marked_for_delete,
                        security_policy,
                        ..
                    } => {
                        if *marked_for_delete {
                            self.nsx.policy = None;
                            continue;
                        }
                        let mut rules = self
                            .nsx
                            .policy
                            .as_ref()
                            .map(|p| p.rules.clone())
                            .unwrap_or_default();
                        for PolicyChild::ChildRule {
                            id,
                            marked_for_delete,
                            rule,
                        } in &security_policy.children
                        {
                            let old = rules.iter().position(|r| &r.id == id);
                            let rule_id = old.and_then(|i| rules[i].rule_id);
                            if let Some(i) = old {
                                rules.remove(i);
                            }
                            if !marked_for_delete {
                                let mut r = rule.clone();
                                r.rule_id = rule_id.or_else(|| {
                                    self.next_rule_id += 1;
                                    Some(self.next_rule_id)
                                });
                                rules.push(r);
                            }
                        }
                        let revision = self
                            .nsx
                            .policy
                            .as_ref()
                            .and_then(|p| p.meta.revision)
                            .map_or(0, |r| r + 1);
                        let mut p = security_policy.clone();
                        p.children = Vec::new();
                        p.rules = rules;
                        p.meta.revision = Some(revision);
                        self.nsx.policy = Some(p);
                    }
                }
            }
        }
    }

    /// The catch-all actions NSX holds (the example catches inbound only).
    fn catch_all(&self) -> Vec<String> {
        let Some(p) = &self.nsx.policy else {
            return Vec::new();
        };
        let json = serde_json::to_value(p).unwrap();
        let mut out: Vec<(String, String)> = json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("catchall_"))
            })
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, a)| a).collect()
    }

    /// Whether any write so far carried a DROP.
    fn ever_dropped(&self) -> bool {
        self.writes.iter().any(|w| {
            serde_json::to_string(&w.patch)
                .unwrap()
                .contains("\"DROP\"")
        })
    }

    /// Monitoring with the notice delivered and NSX in sync.
    fn monitoring(gates: &str) -> Harness {
        let mut h = Harness::new(gates);
        h.settle(0);
        h.settle(100);
        assert_eq!(h.phase(), Some(Phase::Monitoring));
        h
    }
}

/// jiff's SignedDuration by seconds and hours (readable in settings).
struct SignedDurationExt;
impl SignedDurationExt {
    fn secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }
    fn hours(h: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_hours(h)
    }
}

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

fn observed_for<'a>(h: &'a Harness, p: &'a SegmentationPolicy, now: Timestamp) -> Observed<'a> {
    Observed {
        policy: p,
        names: Names {
            ns: "shop".into(),
            name: "web".into(),
            id: h.identity.object_id("shop", "web"),
            domain: "default".into(),
        },
        now,
        identity: &h.identity,
        settings: &h.settings,
        window: WindowSource::Found {
            spec: h.window.clone().unwrap(),
            snapshot: snapshot(),
        },
        window_problem: None,
        peers: PeerGroups::new(),
        peer_blocker: None,
        live: Some(Ok(h.nsx.clone())),
        peer_groups_in_nsx: true,
        members: Some(Ok(3)),
        canary: None,
        notices: Some(Sent::default()),
    }
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

fn decide_reason(h: &Harness) -> String {
    h.policy
        .status
        .as_ref()
        .unwrap()
        .history
        .last()
        .unwrap()
        .reason
        .clone()
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
    h.members = Ok(0);
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
