//! Builds a policy's status from what one reconcile observed and decided. Pure: no IO, `now` is
//! a parameter; the controller sends the result with one server-side-apply patch.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::condition::{self, FALSE, TRUE, UNKNOWN, reason, set_condition};
use crate::api::k8s::Time;
use crate::api::time;
use crate::api::{
    EnforcedSpec, HistoryEntry, MAX_HISTORY, MAX_NOTIFICATIONS, NotificationRecord, NsxStatus,
    Phase, SegmentationPolicy, SegmentationPolicyStatus, WindowSnapshot,
};
use crate::schedule::Decision;

/// How the NSX side of a reconcile went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// NSX already matched.
    InSync,
    /// One H-API call converged NSX; the summary says what changed.
    Applied(Vec<String>),
    /// Dry run: these changes would have been written.
    DryRun(Vec<String>),
    /// Nothing could be written (invalid spec, missing window or peer, name clash, NSX error).
    Failed {
        /// PascalCase reason.
        reason: &'static str,
        /// For people.
        message: String,
    },
}

/// Where the NSX objects are and what NSX numbered the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsxFacts {
    /// Group path.
    pub group_path: Option<String>,
    /// Policy path (absent before Monitoring).
    pub policy_path: Option<String>,
    /// Policy `_revision`.
    pub revision: Option<i64>,
    /// Rule ids by rule name.
    pub rule_ids: BTreeMap<String, i64>,
}

/// Everything one reconcile learned.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The policy as read.
    pub policy: &'a SegmentationPolicy,
    /// The schedule's answer (`None` when the window is missing).
    pub decision: Option<&'a Decision>,
    /// Why the window could not be used, if so.
    pub window_problem: Option<String>,
    /// The NSX side.
    pub sync: SyncOutcome,
    /// Object paths and rule ids (kept from the previous status when NSX was not read).
    pub nsx: Option<NsxFacts>,
    /// Notices delivered in this reconcile.
    pub delivered: Vec<NotificationRecord>,
    /// Why the Scheduled notice could not be delivered (last attempt).
    pub notice_error: Option<String>,
    /// Silence after which monitoring counts as blind (for MonitoringHealthy).
    pub log_silence: SignedDuration,
    /// The spec under DROP to record (`status.enforcedSpec`).
    pub enforced_spec: Option<EnforcedSpec>,
    /// The window's settings to record (`status.window`).
    pub window: Option<WindowSnapshot>,
}

/// The new status. Fields the controller does not own (`monitor`, written by the monitor) are
/// left out so server-side apply keeps them.
pub fn build(obs: &Observation<'_>, now: Timestamp) -> SegmentationPolicyStatus {
    let prev = obs.policy.status.clone().unwrap_or_default();
    let generation = obs.policy.metadata.generation;
    let mut s = carried_over(obs, &prev);
    record_notices(&mut s, &obs.delivered);
    record_decision(&mut s, prev.phase, obs.decision, now);
    if let Some(facts) = &obs.nsx {
        s.nsx = Some(nsx_status(facts, prev.nsx.as_ref(), &obs.sync, now));
    }

    let phase = s.phase.unwrap_or_default();
    let delivered_at = s
        .schedule
        .as_ref()
        .and_then(|x| x.notice_delivered_at.clone());
    let last_log = prev
        .monitor
        .as_ref()
        .and_then(|m| m.last_log_at.as_ref())
        .map(|t| t.0);
    let [ready, stalled, reconciling] = kstatus(health(obs, phase));
    let verdicts = [
        (condition::SYNCED, synced(&obs.sync)),
        (
            condition::OWNER_NOTIFIED,
            owner_notified(
                delivered_at.as_ref(),
                obs.decision,
                obs.notice_error.as_deref(),
            ),
        ),
        (condition::ENFORCEMENT_GATE, enforcement_gate(obs.decision)),
        (
            condition::MONITORING_HEALTHY,
            monitoring_healthy(phase, last_log, obs.log_silence, now),
        ),
        (condition::READY, ready),
        (condition::STALLED, stalled),
        (condition::RECONCILING, reconciling),
    ];
    let c = &mut s.conditions;
    for (type_, (st, rs, msg)) in verdicts {
        set_condition(c, type_, st, rs, msg, generation, now);
    }
    // Display order.
    c.sort_by_key(|x| {
        condition::POLICY_CONDITIONS
            .iter()
            .position(|t| *t == x.type_)
            .unwrap_or(99)
    });
    s
}

/// One condition's status, reason and message.
type Verdict = (&'static str, &'static str, String);

/// The previous status with this reconcile's generation, application, enforced spec and window;
/// `monitor` and `canary` left out (the controller does not own them).
fn carried_over(
    obs: &Observation<'_>,
    prev: &SegmentationPolicyStatus,
) -> SegmentationPolicyStatus {
    SegmentationPolicyStatus {
        observed_generation: obs.policy.metadata.generation,
        application: Some(obs.policy.application()),
        phase: prev.phase,
        schedule: prev.schedule.clone(),
        next_transition: prev.next_transition.clone(),
        conditions: prev.conditions.clone(),
        nsx: prev.nsx.clone(),
        monitor: None,
        canary: None,
        notifications: prev.notifications.clone(),
        history: prev.history.clone(),
        enforced_spec: obs.enforced_spec.clone(),
        window: obs.window.clone(),
    }
}

/// Appends the notices delivered now, keeping the newest `MAX_NOTIFICATIONS`.
fn record_notices(s: &mut SegmentationPolicyStatus, delivered: &[NotificationRecord]) {
    s.notifications.extend(delivered.iter().cloned());
    let excess = s.notifications.len().saturating_sub(MAX_NOTIFICATIONS);
    s.notifications.drain(..excess);
}

/// Phase, schedule and next transition from the decision; a phase change adds a history entry
/// (the newest `MAX_HISTORY` kept). Without a decision the phase stays, or starts as Pending.
fn record_decision(
    s: &mut SegmentationPolicyStatus,
    prev_phase: Option<Phase>,
    decision: Option<&Decision>,
    now: Timestamp,
) {
    let Some(d) = decision else {
        if s.phase.is_none() {
            s.phase = Some(Phase::Pending);
        }
        return;
    };
    if prev_phase != Some(d.phase) {
        s.history.push(HistoryEntry {
            phase: d.phase,
            at: Time(now),
            reason: d.reason.to_string(),
            message: d.message.clone(),
        });
        let excess = s.history.len().saturating_sub(MAX_HISTORY);
        s.history.drain(..excess);
    }
    s.phase = Some(d.phase);
    s.schedule = Some(d.schedule.to_status());
    s.next_transition = d.next_transition();
}

/// `status.nsx` from what NSX holds now.
fn nsx_status(
    facts: &NsxFacts,
    prev: Option<&NsxStatus>,
    sync: &SyncOutcome,
    now: Timestamp,
) -> NsxStatus {
    let mut nsx = NsxStatus {
        group_path: facts.group_path.clone(),
        policy_path: facts.policy_path.clone(),
        revision: facts.revision,
        rule_ids: facts.rule_ids.clone(),
        last_sync_time: prev.and_then(|n| n.last_sync_time.clone()),
    };
    // Only a write or a difference moves the time: a resync that finds NSX as recorded
    // leaves the status as it was (no etcd write, no watch event).
    let same = prev.is_some_and(|p| {
        p.group_path == nsx.group_path
            && p.policy_path == nsx.policy_path
            && p.revision == nsx.revision
            && p.rule_ids == nsx.rule_ids
    });
    if !same || matches!(sync, SyncOutcome::Applied(_)) || nsx.last_sync_time.is_none() {
        nsx.last_sync_time = Some(Time(now));
    }
    nsx
}

/// `Synced`: whether NSX matches the desired state.
fn synced(sync: &SyncOutcome) -> Verdict {
    match sync {
        SyncOutcome::InSync => (
            TRUE,
            reason::IN_SYNC,
            "NSX matches the desired state".to_string(),
        ),
        SyncOutcome::Applied(summary) => (
            TRUE,
            reason::APPLIED,
            format!("applied: {}", summary.join("; ")),
        ),
        SyncOutcome::DryRun(summary) if summary.is_empty() => (
            TRUE,
            reason::IN_SYNC,
            "dry run: NSX matches the desired state".to_string(),
        ),
        SyncOutcome::DryRun(summary) => (
            FALSE,
            reason::DRY_RUN,
            format!("dry run, would apply: {}", summary.join("; ")),
        ),
        SyncOutcome::Failed { reason, message } => (FALSE, *reason, message.clone()),
    }
}

/// `OwnerNotified`: whether the Scheduled notice went out.
fn owner_notified(
    delivered_at: Option<&Time>,
    decision: Option<&Decision>,
    notice_error: Option<&str>,
) -> Verdict {
    match (delivered_at, decision, notice_error) {
        (Some(t), _, _) => (
            TRUE,
            reason::DELIVERED,
            format!("the Scheduled notice was delivered at {}", t.0),
        ),
        (None, Some(d), Some(err)) if d.notice_due => (
            FALSE,
            reason::NOTICE_DUE,
            format!("the Scheduled notice is due and failed: {err}"),
        ),
        (None, Some(d), None) if d.notice_due => (
            FALSE,
            reason::NOTICE_DUE,
            "the Scheduled notice is due".to_string(),
        ),
        (None, Some(d), _) => (
            UNKNOWN,
            reason::NOT_DUE,
            format!("the Scheduled notice is due at {}", d.schedule.notify_at),
        ),
        (None, None, _) => (UNKNOWN, reason::PENDING, "no schedule".to_string()),
    }
}

/// `EnforcementGate`: the schedule's gate, or Unknown without a window.
fn enforcement_gate(decision: Option<&Decision>) -> Verdict {
    match decision {
        Some(d) => (
            if d.gate.open { TRUE } else { FALSE },
            d.gate.reason,
            d.gate.message.clone(),
        ),
        None => (UNKNOWN, reason::WINDOW_NOT_FOUND, "no window".to_string()),
    }
}

/// `MonitoringHealthy`: whether DFW log lines still arrive while the catch-all logs.
fn monitoring_healthy(
    phase: Phase,
    last_log: Option<Timestamp>,
    log_silence: SignedDuration,
    now: Timestamp,
) -> Verdict {
    let monitoring = matches!(
        phase,
        Phase::Monitoring | Phase::Enforcing | Phase::Held | Phase::RolledBack
    );
    match (monitoring, last_log) {
        (false, _) => (
            UNKNOWN,
            reason::NOT_MONITORING,
            format!("no monitoring in phase {phase}"),
        ),
        (true, None) => (
            UNKNOWN,
            reason::NO_LOGS_YET,
            "no DFW log line of this application has arrived yet".to_string(),
        ),
        (true, Some(t)) if now < time::plus(t, log_silence) => {
            (TRUE, reason::LOGS_ARRIVING, format!("last DFW log at {t}"))
        }
        (true, Some(t)) => (
            FALSE,
            reason::MONITORING_BLIND,
            format!("no DFW log since {t}: monitoring is blind"),
        ),
    }
}

/// `Ready`, `Stalled` and `Reconciling` (kstatus) for one `Health` answer.
fn kstatus(health: Health) -> [Verdict; 3] {
    let off = || (FALSE, reason::NONE, String::new());
    match health {
        Health::Stalled(rs, msg) => [(FALSE, rs, msg.clone()), (TRUE, rs, msg), off()],
        Health::Retrying(rs, msg) => [(FALSE, rs, msg.clone()), off(), (TRUE, rs, msg)],
        Health::Waiting(rs, msg) => [(TRUE, rs, msg), off(), off()],
        Health::Done(msg) => [(TRUE, reason::AS_EXPECTED, msg), off(), off()],
    }
}

/// What a policy's status says to GitOps tools (Flux's kstatus, Argo CD's health.lua,
/// `kubectl wait`). One answer per reconcile, in this order:
enum Health {
    /// A person must change Git: `Stalled=True`, `Ready=False` (kstatus Failed, Argo Degraded).
    Stalled(&'static str, String),
    /// The controller retries (NSX error, notice not delivered, NSX not yet confirmed for this
    /// generation): `Reconciling=True`, `Ready=False` (kstatus InProgress, Argo Progressing).
    Retrying(&'static str, String),
    /// Held by design (suspend, blackout, approval, an evidence gate, a widening change under
    /// DROP): `Ready=True` with the gate as reason (kstatus Current, Argo Suspended). The safety
    /// is unchanged: the catch-all stays PASS; only the report says "waiting, as designed".
    Waiting(&'static str, String),
    /// Done what the spec asks for now (Pending before monitorFrom included).
    Done(String),
}

/// Reasons that only a change in Git (or of the object in the way) clears.
const NEEDS_GIT: [&str; 6] = [
    reason::WINDOW_NOT_FOUND,
    reason::INVALID_SPEC,
    reason::PEER_NOT_FOUND,
    reason::NO_MEMBERS,
    reason::NAME_CLASH,
    reason::NOT_OWNED,
];

/// Held reasons that are waits by design: the gates doing their job.
const DESIGNED_WAITS: [&str; 7] = [
    reason::SUSPENDED,
    reason::BLACKOUT,
    reason::APPROVAL_MISSING,
    reason::QUIET_PERIOD,
    reason::TOO_MANY_OPEN_ALERTS,
    reason::MONITORING_BLIND,
    reason::CHANGE_UNDER_DROP,
];

fn health(obs: &Observation<'_>, phase: Phase) -> Health {
    if let Some(w) = &obs.window_problem {
        return Health::Stalled(reason::WINDOW_NOT_FOUND, w.clone());
    }
    if let SyncOutcome::Failed { reason, message } = &obs.sync
        && NEEDS_GIT.contains(reason)
    {
        return Health::Stalled(reason, message.clone());
    }
    let blocker = obs.decision.and_then(|d| d.blocker.as_ref());
    if let Some(b) = blocker.filter(|b| NEEDS_GIT.contains(&b.reason)) {
        return Health::Stalled(b.reason, b.message.clone());
    }
    if phase == Phase::RolledBack {
        let msg = obs.decision.map(|d| d.message.clone()).unwrap_or_else(|| {
            "rolled back to monitor mode after dropped flows; change the spec to try again".into()
        });
        return Health::Stalled(reason::ROLLED_BACK, msg);
    }
    if let SyncOutcome::Failed { reason, message } = &obs.sync {
        return Health::Retrying(reason, format!("{message} (retrying)"));
    }
    let Some(d) = obs.decision else {
        return Health::Retrying(reason::PENDING, "no schedule yet".into());
    };
    if d.phase == Phase::Held {
        if DESIGNED_WAITS.contains(&d.reason) {
            return Health::Waiting(d.reason, d.message.clone());
        }
        // NotReady from a blocker the controller retries, or the notice not delivered.
        let (rs, msg) = match blocker {
            Some(b) if d.reason == reason::NOT_READY => (b.reason, b.message.clone()),
            _ => (d.reason, d.message.clone()),
        };
        return Health::Retrying(rs, format!("{msg} (retrying)"));
    }
    Health::Done(d.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MonitorStatus;
    use crate::schedule::tests::{Sim, at, window};

    fn policy() -> SegmentationPolicy {
        let text = include_str!("../../deploy/examples/10-web.yaml");
        let mut p: SegmentationPolicy = serde_yaml::from_str(text).unwrap();
        p.metadata.generation = Some(3);
        p
    }

    fn obs<'a>(
        p: &'a SegmentationPolicy,
        d: Option<&'a Decision>,
        sync: SyncOutcome,
    ) -> Observation<'a> {
        Observation {
            policy: p,
            decision: d,
            window_problem: None,
            sync,
            nsx: None,
            delivered: vec![],
            notice_error: None,
            log_silence: SignedDuration::from_secs(300),
            enforced_spec: None,
            window: None,
        }
    }

    #[test]
    fn the_first_visit_sets_every_condition_with_the_generation() {
        let p = policy();
        let d = Sim::new(window()).settle(at(-10));
        let s = build(
            &obs(
                &p,
                Some(&d),
                SyncOutcome::Applied(vec!["create group x".into()]),
            ),
            at(-10),
        );
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, condition::POLICY_CONDITIONS.to_vec());
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.application.as_deref(), Some("Shop web frontend"));
        assert!(
            s.monitor.is_none(),
            "monitor belongs to the monitor's field manager"
        );
    }

    #[test]
    fn a_failed_write_makes_synced_and_ready_false_with_the_reason() {
        let p = policy();
        let d = Sim::new(window()).settle(at(-10));
        let failed = SyncOutcome::Failed {
            reason: reason::NSX_ERROR,
            message: "NSX PATCH /infra: HTTP 400".into(),
        };
        let s = build(&obs(&p, Some(&d), failed), at(-10));
        let synced = condition::find(&s.conditions, condition::SYNCED).unwrap();
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            (FALSE, reason::NSX_ERROR)
        );
        let ready = condition::find(&s.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, reason::NSX_ERROR)
        );
    }

    #[test]
    fn history_grows_only_on_phase_changes_and_stays_bounded() {
        let mut p = policy();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(-10));
        p.status = Some(build(&obs(&p, Some(&d), SyncOutcome::InSync), at(-10)));
        let again = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(-5));
        assert_eq!(again.history.len(), 1);
        let d = sim.settle(at(100));
        let moved = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(100));
        assert_eq!(moved.history.len(), 2);
        assert_eq!(moved.history[1].phase, Phase::Monitoring);
        let mut many = p.clone();
        let mut st = many.status.clone().unwrap();
        st.history = (0..MAX_HISTORY).map(|_| moved.history[0].clone()).collect();
        many.status = Some(st);
        let bounded = build(&obs(&many, Some(&d), SyncOutcome::InSync), at(100));
        assert_eq!(bounded.history.len(), MAX_HISTORY);
        assert_eq!(bounded.history.last().unwrap().phase, Phase::Monitoring);
    }

    #[test]
    fn a_resync_that_finds_nsx_as_recorded_changes_nothing_in_status() {
        let mut p = policy();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(100));
        let facts = NsxFacts {
            group_path: Some("/infra/domains/default/groups/g".into()),
            policy_path: Some("/infra/domains/default/security-policies/g".into()),
            revision: Some(3),
            rule_ids: [("catchall_in".to_string(), 1002)].into_iter().collect(),
        };
        let mut o = obs(&p, Some(&d), SyncOutcome::Applied(vec!["x".into()]));
        o.nsx = Some(facts.clone());
        p.status = Some(build(&o, at(100)));
        // The reconcile after the write says InSync (one status write), then nothing moves.
        let mut o = obs(&p, Some(&d), SyncOutcome::InSync);
        o.nsx = Some(facts.clone());
        let first = build(&o, at(110));
        p.status = Some(first.clone());
        let mut o = obs(&p, Some(&d), SyncOutcome::InSync);
        o.nsx = Some(facts.clone());
        let again = build(&o, at(400));
        assert_eq!(again, first, "an unchanged resync must not churn status");
        // NSX changed underneath (a new revision): the time moves.
        let mut moved = facts;
        moved.revision = Some(4);
        let mut o = obs(&p, Some(&d), SyncOutcome::InSync);
        o.nsx = Some(moved);
        let changed = build(&o, at(500));
        assert_eq!(
            changed.nsx.unwrap().last_sync_time.map(|t| t.0),
            Some(at(500))
        );
    }

    #[test]
    fn monitoring_health_follows_the_last_log_line() {
        let mut p = policy();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(100));
        let st = SegmentationPolicyStatus {
            monitor: Some(MonitorStatus {
                last_log_at: Some(Time(at(100))),
                ..Default::default()
            }),
            ..Default::default()
        };
        p.status = Some(st);
        let fresh = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(200));
        let c = condition::find(&fresh.conditions, condition::MONITORING_HEALTHY).unwrap();
        assert_eq!(c.status, TRUE);
        let stale = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(500));
        let c = condition::find(&stale.conditions, condition::MONITORING_HEALTHY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            (FALSE, reason::MONITORING_BLIND)
        );
    }

    /// (Ready, Stalled, Reconciling) as (status, reason) pairs.
    fn gitops(s: &SegmentationPolicyStatus) -> [(String, String); 3] {
        [condition::READY, condition::STALLED, condition::RECONCILING].map(|t| {
            let c = condition::find(&s.conditions, t).unwrap();
            (c.status.clone(), c.reason.clone())
        })
    }

    fn pair(st: &str, rs: &str) -> (String, String) {
        (st.to_string(), rs.to_string())
    }

    #[test]
    fn a_designed_wait_is_ready_with_the_gate_as_reason() {
        let p = policy();
        let mut w = window();
        w.require_approval = true;
        let mut sim = Sim::new(w);
        sim.deliver(at(0));
        sim.settle(at(100));
        let d = sim.settle(at(1_100));
        assert_eq!((d.phase, d.reason), (Phase::Held, reason::APPROVAL_MISSING));
        let s = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(1_100));
        assert_eq!(
            gitops(&s),
            [
                pair(TRUE, reason::APPROVAL_MISSING),
                pair(FALSE, reason::NONE),
                pair(FALSE, reason::NONE)
            ]
        );
        let gate = condition::find(&s.conditions, condition::ENFORCEMENT_GATE).unwrap();
        assert_eq!(gate.status, FALSE, "the gate itself stays closed");
        // Suspend too.
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        sim.suspend = true;
        let d = sim.settle(at(1_100));
        let s = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(1_100));
        assert_eq!(gitops(&s)[0], pair(TRUE, reason::SUSPENDED));
    }

    #[test]
    fn what_needs_a_git_change_is_stalled_and_not_ready() {
        let p = policy();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(200));
        for rs in [
            reason::PEER_NOT_FOUND,
            reason::INVALID_SPEC,
            reason::NOT_OWNED,
        ] {
            let failed = SyncOutcome::Failed {
                reason: rs,
                message: "x".into(),
            };
            let s = build(&obs(&p, Some(&d), failed), at(200));
            assert_eq!(
                gitops(&s),
                [pair(FALSE, rs), pair(TRUE, rs), pair(FALSE, reason::NONE)]
            );
        }
        // The window missing, while the schedule continues from status.
        let mut o = obs(&p, Some(&d), SyncOutcome::InSync);
        o.window_problem = Some("spec.window.name: not found".into());
        let s = build(&o, at(200));
        assert_eq!(gitops(&s)[1], pair(TRUE, reason::WINDOW_NOT_FOUND));
        // No members at enforcement: Held, NotReady in the gate, NoMembers in Stalled.
        sim.blocker = Some(crate::schedule::Blocker {
            reason: reason::NO_MEMBERS,
            message: "spec.members: no effective members".into(),
        });
        let d = sim.settle(at(1_100));
        assert_eq!((d.phase, d.gate.reason), (Phase::Held, reason::NOT_READY));
        let s = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(1_100));
        assert_eq!(gitops(&s)[1], pair(TRUE, reason::NO_MEMBERS));
        assert_eq!(gitops(&s)[0], pair(FALSE, reason::NO_MEMBERS));
    }

    #[test]
    fn a_rollback_is_stalled_and_an_nsx_error_is_retried() {
        let p = policy();
        let mut w = window();
        w.rollback = true;
        let mut sim = Sim::new(w);
        sim.deliver(at(0));
        sim.settle(at(100));
        let d = sim.settle(at(1_100));
        assert_eq!(d.phase, Phase::Enforcing);
        let s = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(1_100));
        assert_eq!(gitops(&s)[0], pair(TRUE, reason::AS_EXPECTED));
        sim.monitor.rollback_triggered = true;
        let d = sim.settle(at(1_200));
        assert_eq!(d.phase, Phase::RolledBack);
        let s = build(&obs(&p, Some(&d), SyncOutcome::InSync), at(1_200));
        assert_eq!(
            gitops(&s),
            [
                pair(FALSE, reason::ROLLED_BACK),
                pair(TRUE, reason::ROLLED_BACK),
                pair(FALSE, reason::NONE)
            ]
        );
        let failed = SyncOutcome::Failed {
            reason: reason::NSX_ERROR,
            message: "NSX PATCH /infra: HTTP 503".into(),
        };
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(200));
        let s = build(&obs(&p, Some(&d), failed), at(200));
        assert_eq!(
            gitops(&s),
            [
                pair(FALSE, reason::NSX_ERROR),
                pair(FALSE, reason::NONE),
                pair(TRUE, reason::NSX_ERROR)
            ]
        );
    }
}
