//! The record of a reconcile, pure: after the plan's writes went as they went, the status,
//! the events, the lateness of a phase entered and when to look again.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{
    Carried, Done, Ev, Evaluator, NSX_RETRY, Names, Observed, Plan, Record, Sent, Severity,
    WINDOW_RETRY, drops, ev, nsx_error,
};
use crate::api::Phase;
use crate::api::condition::{self, reason};
use crate::controller::canary;
use crate::controller::members;
use crate::controller::status::{self, NsxFacts, Observation, SyncOutcome};
use crate::nsx::model::SecurityPolicy;
use crate::plan;
use crate::schedule::Decision;

/// What the status says of a policy NSX holds: its revision and its rules' ids (not a copy of
/// the policy: a reconcile keeps this while its notices are sent and its status written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    /// `_revision`.
    pub revision: Option<i64>,
    /// Rule ids by rule name.
    pub rule_ids: std::collections::BTreeMap<String, i64>,
}

impl PolicyFacts {
    /// The facts of `p`.
    pub fn of(p: &SecurityPolicy) -> PolicyFacts {
        PolicyFacts {
            revision: p.meta.revision,
            rule_ids: p
                .rules
                .iter()
                .filter_map(|r| r.rule_id.map(|n| (r.id.clone(), n)))
                .collect(),
        }
    }
}

/// What the status says of NSX holding the application's group (`group`) and a policy.
pub(super) fn facts(n: &Names, group: bool, policy: Option<PolicyFacts>) -> NsxFacts {
    NsxFacts {
        group_path: group.then(|| crate::nsx::naming::group_path(&n.domain, &n.id)),
        policy_path: policy
            .as_ref()
            .map(|_| crate::nsx::naming::policy_path(&n.domain, &n.id)),
        revision: policy.as_ref().and_then(|p| p.revision),
        rule_ids: policy.map(|p| p.rule_ids).unwrap_or_default(),
    }
}

/// The status, events and requeue after the plan's writes went as `done` says.
pub fn conclude(o: &Observed<'_>, plan: &Plan, done: &Done) -> Record {
    let prev = o.prev();
    let window_event = o
        .window_problem
        .as_ref()
        .filter(|_| {
            condition::find(&prev.conditions, condition::READY).map(|c| c.reason.as_str())
                != Some(reason::WINDOW_NOT_FOUND)
        })
        .map(|m| ev(Severity::Warning, reason::WINDOW_NOT_FOUND, m.clone()));
    let (Some(decision), Some(c)) = (&plan.decision, &plan.carried) else {
        return missing_window(o, plan, window_event);
    };
    let p = o.policy;
    let generation = p.metadata.generation;
    let sent = o.notices.clone().unwrap_or_default();

    // How NSX went; a failed write never counts as enforcement: Held while NSX still passes.
    let (sync, nsx, decision) = match &done.failed {
        Some((index, err)) => {
            let message = format!("NSX write failed: {err}");
            let decision = if decision.phase.drops() && !prev.phase.unwrap_or_default().drops() {
                let e = Evaluator {
                    window: &c.window,
                    p,
                    prev,
                    previous_schedule: c.previous_schedule.as_ref(),
                    monitor: &c.monitor,
                    widening: c.widening.clone(),
                    now: o.now,
                };
                let blocker = c.blocker.clone().unwrap_or(nsx_error(message.clone()));
                e.evaluate(decision.schedule.notice_delivered_at, Some(blocker))
            } else {
                decision.clone()
            };
            // The writes before the failed one were made (a new application's group).
            let nsx = match &plan.planned {
                // The group written first did not land: NSX is as read (nothing of it).
                Some(f) if *index == 0 && plan.group_first => Some(NsxFacts {
                    group_path: None,
                    ..f.clone()
                }),
                f => f.clone(),
            };
            let sync = SyncOutcome::Failed {
                reason: reason::NSX_ERROR,
                message,
            };
            (sync, nsx, decision)
        }
        None => {
            let mut nsx = plan.planned.clone();
            // Read back for NSX's rule ids; the group is as written.
            if let (Some(Ok(policy)), Some(f)) = (&done.read_back, &nsx) {
                let group = f.group_path.is_some() || plan.writes_group;
                nsx = Some(facts(&o.names, group, policy.clone()));
            }
            (plan.outcome.clone(), nsx, decision.clone())
        }
    };

    // The status. The spec under DROP is recorded whenever this decision drops; a widening
    // change that is not approved went back to PASS and keeps the old record.
    let enforced_spec = match generation {
        Some(g) if drops(Some(decision.phase), p) => Some(plan::widening::snapshot(&p.spec, g)),
        _ => prev.enforced_spec.clone(),
    };
    let obs = Observation {
        policy: p,
        decision: Some(&decision),
        window_problem: o.window_problem.clone(),
        sync: sync.clone(),
        nsx,
        delivered: sent.records.clone(),
        notice_error: sent.error.clone(),
        log_silence: c.window.max_log_silence.unwrap_or(o.settings.log_silence),
        enforced_spec,
        window: c.snapshot.clone().or(prev.window.clone()),
    };
    let mut built = status::build(&obs, o.now);
    // The canary step as written; kept as it was when NSX could not be written.
    built.canary = match &sync {
        SyncOutcome::Failed { .. } => prev.canary.clone(),
        _ => canary::status(plan.choice.as_ref()),
    };

    let (events, lateness, drift) = events(o, c, &decision, &sync, &sent, window_event);
    let requeue = requeue(o, &decision, &sync, &sent);
    Record {
        status: built,
        events,
        lateness,
        drift,
        requeue,
        decision: Some(decision),
    }
}

/// The record of a policy whose window is missing and that never had a schedule.
fn missing_window(o: &Observed<'_>, plan: &Plan, window_event: Option<Ev>) -> Record {
    let prev = o.prev();
    let obs = Observation {
        policy: o.policy,
        decision: None,
        window_problem: o.window_problem.clone(),
        sync: plan.outcome.clone(),
        nsx: None,
        delivered: Vec::new(),
        notice_error: None,
        log_silence: o.settings.log_silence,
        enforced_spec: prev.enforced_spec.clone(),
        window: prev.window.clone(),
    };
    let mut built = status::build(&obs, o.now);
    built.canary = prev.canary.clone();
    // A window applied in the same breath may not be in the store yet, and a pruned one may
    // come back with the next sync: look again soon (no NSX call, and no status write while
    // nothing changes).
    Record {
        status: built,
        events: window_event.into_iter().collect(),
        lateness: None,
        drift: false,
        requeue: o.settings.resync.min(WINDOW_RETRY),
        decision: None,
    }
}

/// The events of a reconcile, the lateness of a phase entered, and whether NSX drifted.
fn events(
    o: &Observed<'_>,
    c: &Carried,
    decision: &Decision,
    sync: &SyncOutcome,
    sent: &Sent,
    window_event: Option<Ev>,
) -> (Vec<Ev>, Option<(Phase, f64)>, bool) {
    let mut out: Vec<Ev> = window_event.into_iter().collect();
    out.extend(gate_waived(o, c, decision));
    out.extend(change_accepted(o, c, decision));
    let mut lateness = None;
    if o.prev().phase != Some(decision.phase) {
        out.push(phase_entered(decision));
        lateness = late_by(o, decision);
    }
    let (sync_event, drift) = sync_event(o, c, decision, sync);
    out.extend(sync_event);
    out.extend(notice_events(sent));
    (out, lateness, drift)
}

/// Entering enforcement with evidence gates waived by the window.
fn gate_waived(o: &Observed<'_>, c: &Carried, decision: &Decision) -> Option<Ev> {
    if decision.phase != Phase::Enforcing
        || o.prev().phase == Some(Phase::Enforcing)
        || c.window.waived.is_empty()
    {
        return None;
    }
    let names: Vec<&str> = c.window.waived.iter().map(|g| g.as_str()).collect();
    Some(ev(
        Severity::Warning,
        reason::GATE_WAIVED,
        format!(
            "enforcing with gates waived by window {}: {} (DROP without that evidence)",
            o.policy.spec.window.name,
            names.join(", ")
        ),
    ))
}

/// A spec change under DROP that stays enforcing, and why.
fn change_accepted(o: &Observed<'_>, c: &Carried, decision: &Decision) -> Option<Ev> {
    let cmp = c.comparison.as_ref().filter(|_| decision.phase.drops())?;
    let note = match cmp.widening() {
        Some(why) => format!(
            "generation {} is approved: stays enforcing although it widens what DROP affects ({why})",
            o.policy.metadata.generation.unwrap_or_default()
        ),
        None if cmp.narrows.is_empty() => {
            "spec change does not touch what DROP affects: stays enforcing".to_string()
        }
        None => format!(
            "spec change only narrows what DROP affects or adds allow rules ({}): stays enforcing",
            cmp.narrows.join("; ")
        ),
    };
    Some(ev(Severity::Normal, reason::CHANGE_ACCEPTED, note))
}

/// The phase entered, announced once (a Warning for Held and RolledBack).
fn phase_entered(decision: &Decision) -> Ev {
    let severity = if matches!(decision.phase, Phase::Held | Phase::RolledBack) {
        Severity::Warning
    } else {
        Severity::Normal
    };
    Ev {
        once: true,
        ..ev(
            severity,
            decision.reason,
            format!("{}: {}", decision.phase, decision.message),
        )
    }
}

/// How late (seconds, never negative) the phase entered is after its scheduled instant.
fn late_by(o: &Observed<'_>, decision: &Decision) -> Option<(Phase, f64)> {
    let scheduled = match decision.phase {
        Phase::Monitoring => Some(decision.schedule.monitor_from),
        Phase::Enforcing => Some(decision.schedule.enforce_at),
        Phase::Completed => Some(decision.schedule.cleanup_at),
        _ => None,
    };
    scheduled.map(|at| {
        (
            decision.phase,
            o.now.duration_since(at).as_secs_f64().max(0.0),
        )
    })
}

/// The event of the NSX side, and whether a write corrected drift (NSX differed from what this
/// controller had confirmed for the same phase and generation).
fn sync_event(
    o: &Observed<'_>,
    c: &Carried,
    decision: &Decision,
    sync: &SyncOutcome,
) -> (Option<Ev>, bool) {
    let prev = o.prev();
    match sync {
        SyncOutcome::Applied(summary) => {
            let drift = prev.phase == Some(decision.phase)
                && c.previously_synced
                && prev.observed_generation == o.policy.metadata.generation;
            let event = if drift {
                ev(
                    Severity::Warning,
                    "DriftCorrected",
                    format!(
                        "NSX differed from the desired state and was corrected: {}",
                        summary.join("; ")
                    ),
                )
            } else {
                ev(
                    Severity::Normal,
                    reason::APPLIED,
                    format!("Applied NSX changes: {}", summary.join("; ")),
                )
            };
            (Some(event), drift)
        }
        SyncOutcome::DryRun(summary) if !summary.is_empty() => (
            Some(ev(
                Severity::Normal,
                reason::DRY_RUN,
                format!("Would apply: {}", summary.join("; ")),
            )),
            false,
        ),
        SyncOutcome::Failed { reason, message } => {
            (Some(ev(Severity::Warning, reason, message.clone())), false)
        }
        _ => (None, false),
    }
}

/// One event per notice delivered, and one for a notice that could not be.
fn notice_events(sent: &Sent) -> Vec<Ev> {
    let mut out: Vec<Ev> = sent
        .records
        .iter()
        .map(|r| {
            ev(
                Severity::Normal,
                "NoticeSent",
                format!(
                    "{} notice delivered to {} by {}",
                    r.kind, r.owner, r.channel
                ),
            )
        })
        .collect();
    if let Some(e) = &sent.error {
        out.push(ev(Severity::Warning, "NoticeFailed", e.clone()));
    }
    out
}

/// When to look again: the next instant the answer can change, the Reminder, the member check
/// before enforceAt, soon after a phase change or a failure, and at least every resync.
fn requeue(o: &Observed<'_>, decision: &Decision, sync: &SyncOutcome, sent: &Sent) -> Duration {
    let now = o.now;
    let s = o.settings;
    let after = |at: Timestamp| {
        now.duration_until(at)
            .unsigned_abs()
            .saturating_add(Duration::from_millis(5))
    };
    let mut wait = s.resync;
    // The Reminder notice is due at enforceAt - reminderBefore, which is not a phase change.
    let reminder_at = crate::api::time::minus(decision.schedule.enforce_at, s.reminder_before);
    if decision.phase == Phase::Monitoring
        && decision.schedule.notice_delivered_at.is_some()
        && reminder_at > now
    {
        wait = wait.min(after(reminder_at));
    }
    // The members are checked in the minute before enforceAt.
    let precheck_at = crate::api::time::minus(decision.schedule.enforce_at, members::AHEAD);
    if decision.phase == Phase::Monitoring && precheck_at > now {
        wait = wait.min(after(precheck_at));
    }
    if let Some(at) = decision.wake_at {
        // Wake just after the instant so the answer has changed when we look.
        wait = wait.min(after(at));
    }
    let failed = matches!(sync, SyncOutcome::Failed { .. });
    if o.prev().phase != Some(decision.phase) || sent.error.is_some() || failed {
        let retry = if failed {
            // NSX refused or failed (often a peer's group written a moment later by its own
            // reconcile): try again soon; the client's pacing keeps the manager's budget.
            s.notice_retry.min(NSX_RETRY)
        } else if sent.error.is_some() {
            s.notice_retry
        } else {
            Duration::from_millis(200)
        };
        wait = wait.min(retry);
    }
    wait
}
