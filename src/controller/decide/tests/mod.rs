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

/// The record of a notice delivered by email at `now`.
fn delivered(d: &Due, now: Timestamp, enforce_at: Option<Time>) -> NotificationRecord {
    NotificationRecord {
        kind: d.kind.as_str().into(),
        owner: d.owner.name.clone(),
        channel: "email".into(),
        message_id: d.message_id.clone(),
        sent_at: Time(now),
        enforce_at,
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
    members: Result<bool, crate::nsx::Error>,
    /// The monitor's part of the status (written by the monitor, not the reconciler).
    monitor: MonitorStatus,
    /// Members found ahead (the controller's `MemberChecks`).
    fresh_members: bool,
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
            members: Ok(true),
            monitor: MonitorStatus::default(),
            fresh_members: false,
            needs: Vec::new(),
            told: Vec::new(),
            writes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// What the status says NSX holds.
    fn nsx_status(&self) -> crate::api::NsxStatus {
        self.policy
            .status
            .as_ref()
            .and_then(|s| s.nsx.clone())
            .unwrap_or_default()
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
        let window = self.window_source();
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
            members: self.fresh_members.then_some(Ok(true)),
            canary: None,
            notices: None,
        };
        let plan = loop {
            match decide(&o) {
                Step::Act(plan) => break plan,
                Step::Need(need) => self.answer(need, &mut o),
            }
            assert!(
                self.needs.len() < 20,
                "decide keeps asking: {:?}",
                self.needs
            );
        };
        let done = self.write(&plan);
        if done.failed.is_none() && !plan.notify_after.is_empty() {
            self.tell_after_write(&plan.notify_after, &mut o);
        }
        let record = conclude(&o, &plan, &done);
        let mut status = record.status.clone();
        status.monitor = Some(self.monitor.clone());
        self.policy.status = Some(status);
        self.events.extend(record.events.iter().cloned());
        record
    }

    /// The window as the controller finds it: in the store, remembered in status, or missing.
    fn window_source(&self) -> WindowSource {
        match &self.window {
            Some(spec) => WindowSource::Found {
                spec: spec.clone(),
                snapshot: snapshot(),
            },
            None => match self.policy.status.as_ref().and_then(remembered_window) {
                Some(spec) => WindowSource::Remembered(spec),
                None => WindowSource::Missing,
            },
        }
    }

    /// Observes the fact `decide` asked for (notices are delivered at once; canary VMs cannot
    /// be read).
    fn answer(&mut self, need: Need, o: &mut Observed<'_>) {
        match need {
            Need::Members => {
                self.needs.push("members".into());
                if let Ok(true) = &self.members {
                    self.fresh_members = true;
                }
                o.members = Some(self.members.clone());
            }
            Need::Notify { due, .. } => {
                self.needs.push(format!("notify {}", due.len()));
                let records = due
                    .iter()
                    .map(|d| delivered(d, o.now, Some(Time(at(ENFORCE)))))
                    .collect();
                o.notices = Some(Sent {
                    records,
                    error: None,
                });
            }
            Need::Canary(d) => {
                self.needs.push("canary".into());
                o.canary = Some(CanaryFact {
                    key: canary_key(&d).unwrap(),
                    result: Err(unavailable()),
                });
            }
        }
    }

    /// Makes the plan's writes in NSX, in order, until one fails; reads the policy back.
    fn write(&mut self, plan: &Plan) -> Done {
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
            done.read_back = Some(Ok(self.nsx.policy.as_ref().map(PolicyFacts::of)));
        }
        done
    }

    /// Sends the notices that tell what the writes did, noting the catch-all NSX holds then.
    fn tell_after_write(&mut self, due: &[Due], o: &mut Observed<'_>) {
        let dropping = self.catch_all();
        for d in due {
            self.told
                .push((d.kind.as_str().to_string(), dropping.clone()));
        }
        let sent = o.notices.get_or_insert_with(Sent::default);
        sent.records
            .extend(due.iter().map(|d| delivered(d, o.now, None)));
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
        members: Some(Ok(true)),
        canary: None,
        notices: Some(Sent::default()),
    }
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

mod faults;
mod phases;
