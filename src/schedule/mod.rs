//! The phase state machine and its gates. Pure: `evaluate(inputs, now)` decides the phase, the
//! effective schedule, the enforcement gate and the next instant at which the answer can change.
//! No clock, no IO: `now` is a parameter and the previous status is an input.
//!
//! # Rules
//!
//! Effective schedule (`status.schedule`):
//! - Each timestamp starts from the window and only ever moves later: the effective value is the
//!   latest of the window's value, the previous effective value, and what postpones it.
//! - A timestamp that has taken effect is frozen: once monitoring began, `monitorFrom` no longer
//!   follows the window; once enforcing, `enforceAt`; once completed, `cleanupAt`. Editing a
//!   window afterwards never takes an application back to an earlier phase.
//! - Editing a window to an *earlier* time does not pull an application forward once it has an
//!   effective schedule (that could break the promise made in the owner notice). To start over,
//!   recreate the SegmentationPolicy.
//! - `enforceAt` is at least `noticeDeliveredAt + minimumNotice`: a late notice postpones it.
//! - `cleanupAt` is at least `enforceAt + postEnforcementMonitoring`, and at least
//!   `enforcedSince + postEnforcementMonitoring` when enforcement started late.
//! - An instant inside a blackout moves to the blackout's end (repeatedly, for chained
//!   blackouts).
//!
//! Phases:
//! - Pending until `monitorFrom`; then Monitoring. An application always passes through
//!   Monitoring (and so through a successful NSX write) before it can enforce.
//! - At `enforceAt` the gates are checked, in this order: suspended, blackout, owner notice
//!   delivered, ready (peers resolved, members non-empty, NSX in sync), approval, monitoring
//!   not blind, open alerts, quiet period. All open: Enforcing. Any closed: Held (catch-all
//!   PASS), until the gate opens.
//! - The evidence gates (blind, open alerts, quiet period) are on unless the window waives them
//!   in writing. Blind: no DFW log line of the application arrived since the evidence began
//!   (`monitorFrom`, or the last return to PASS after a rollback or a widening change), or the
//!   last one is older than `maxLogSilence`. Quiet period: counted from the latest of the last
//!   unmatched flow and the start of the evidence.
//! - Enforcing until `cleanupAt`; then Completed, which is terminal.
//! - Safety moves happen at once, blackout or not: `suspend` (policy or window) turns an
//!   enforcing or completed application to Held; losing readiness while enforcing turns it to
//!   Held; an automatic rollback turns it to RolledBack, which lasts until the spec changes
//!   (a new generation); a spec change that widens what DROP affects (members added or
//!   widened, an allow rule removed or narrowed) turns it to Held unless that generation is
//!   approved. Every return from PASS to DROP goes through the gates again; after a rollback or
//!   a widening change the evidence starts over (`evidenceFrom`).
//! - Time arithmetic saturates (`api::time`): no window the API server accepts can make the
//!   machine panic, and clamping only ever moves an instant later.
//! - Scheduled transitions (to Monitoring, Enforcing, Completed) never happen inside a blackout.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::condition::reason;
use crate::api::k8s::Time;
use crate::api::time::{minus, plus};
use crate::api::{EffectiveSchedule, EnforcementWindowSpec, NextTransition, Phase, WaivedGate};

/// How large a canary step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepSize {
    /// This many VMs.
    Members(u32),
    /// This percentage of the VMs, rounded up.
    Percent(u8),
}

mod canary;
mod gates;

use canary::canary_step;
use gates::{blockers, closed_gate, preview_gate, waived_note};

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;

/// A blackout with parsed instants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blackout {
    /// First instant of the freeze.
    pub start: Timestamp,
    /// First instant after it.
    pub end: Timestamp,
    /// Name shown in messages.
    pub name: String,
}

/// An EnforcementWindow in the form the state machine uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Owner notice due.
    pub notify_at: Timestamp,
    /// Monitor mode starts.
    pub monitor_from: Timestamp,
    /// Catch-all turns to DROP.
    pub enforce_at: Timestamp,
    /// Clean-up; `None` means `enforce_at + post_enforcement`.
    pub cleanup_at: Option<Timestamp>,
    /// Least time between delivered notice and enforcement.
    pub minimum_notice: SignedDuration,
    /// Monitoring after enforcement.
    pub post_enforcement: SignedDuration,
    /// Quiet period gate in force (`None`: waived).
    pub quiet_period: Option<SignedDuration>,
    /// Open-alerts gate in force (`None`: waived).
    pub max_open_alerts: Option<i64>,
    /// Approval gate.
    pub require_approval: bool,
    /// Blind-monitoring gate in force (`None`: waived).
    pub max_log_silence: Option<SignedDuration>,
    /// Evidence gates the window turned off, in writing (reported while enforcing).
    pub waived: Vec<WaivedGate>,
    /// Automatic rollback configured.
    pub rollback: bool,
    /// Change freezes.
    pub blackouts: Vec<Blackout>,
    /// Whole wave suspended.
    pub suspend: bool,
    /// Canary steps (size, least duration); empty: the whole application enforces at once.
    pub canary: Vec<(StepSize, SignedDuration)>,
}

impl Window {
    /// Converts a window spec; `log_silence` is the controller's default for `maxLogSilence`.
    pub fn from_spec(spec: &EnforcementWindowSpec, log_silence: SignedDuration) -> Window {
        let gates = &spec.gates;
        let mut waived = gates.waive.clone();
        waived.sort();
        waived.dedup();
        Window {
            notify_at: ceil_second(spec.notify_at.0),
            monitor_from: ceil_second(spec.monitor_from.0),
            enforce_at: ceil_second(spec.enforce_at.0),
            cleanup_at: spec.cleanup_at.as_ref().map(|t| ceil_second(t.0)),
            minimum_notice: spec.minimum_notice.get(),
            post_enforcement: spec.post_enforcement_monitoring.get(),
            quiet_period: gates.effective_quiet_period().map(|d| d.get()),
            max_open_alerts: gates.effective_max_open_alerts(),
            require_approval: gates.require_approval,
            max_log_silence: gates
                .effective_max_log_silence(log_silence.into())
                .map(|d| d.get()),
            waived,
            rollback: gates.rollback.is_some(),
            blackouts: spec
                .blackouts
                .iter()
                .enumerate()
                .map(|(i, b)| Blackout {
                    start: b.start.0,
                    end: ceil_second(b.end.0),
                    name: b.name.clone().unwrap_or_else(|| format!("blackouts[{i}]")),
                })
                .collect(),
            suspend: spec.suspend,
            canary: spec
                .canary
                .iter()
                .flat_map(|c| &c.steps)
                .map(|s| {
                    let size = match (s.members, s.percent) {
                        (Some(m), _) => StepSize::Members(u32::try_from(m).unwrap_or(1)),
                        (None, Some(p)) => {
                            StepSize::Percent(u8::try_from(p.clamp(1, 99)).unwrap_or(1))
                        }
                        (None, None) => StepSize::Members(1),
                    };
                    (size, s.duration.get())
                })
                .collect(),
        }
    }

    /// The blackout containing `t`, if any.
    pub fn blackout_at(&self, t: Timestamp) -> Option<&Blackout> {
        self.blackouts.iter().find(|b| b.start <= t && t < b.end)
    }

    /// Instants after `now` at which `blackout_at` gives a different answer than just before.
    pub fn blackout_changes_after(&self, now: Timestamp) -> Vec<Timestamp> {
        self.blackouts
            .iter()
            .flat_map(|b| [b.start, b.end])
            .filter(|t| *t > now)
            .filter(|t| {
                self.blackout_at(*t) != self.blackout_at(minus(*t, SignedDuration::from_nanos(1)))
            })
            .collect()
    }

    /// Moves `t` out of every blackout that contains it.
    pub fn after_blackouts(&self, mut t: Timestamp) -> Timestamp {
        // Each step moves t strictly later to a blackout end; at most one step per blackout.
        for _ in 0..=self.blackouts.len() {
            match self.blackout_at(t) {
                Some(b) => t = b.end,
                None => break,
            }
        }
        t
    }
}

/// The effective schedule with parsed instants (mirrors `status.schedule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Owner notice due.
    pub notify_at: Timestamp,
    /// Monitor mode starts.
    pub monitor_from: Timestamp,
    /// Catch-all turns to DROP.
    pub enforce_at: Timestamp,
    /// Clean-up.
    pub cleanup_at: Timestamp,
    /// Owner notice delivered.
    pub notice_delivered_at: Option<Timestamp>,
    /// Start of the current enforcement.
    pub enforced_since: Option<Timestamp>,
    /// Generation at the last automatic rollback.
    pub rolled_back_generation: Option<i64>,
    /// Evidence counts from here (last return to PASS after a rollback or a widening change).
    pub evidence_from: Option<Timestamp>,
    /// Canary step in force (from 1); `None`: no canary, or every VM enforces.
    pub canary_step: Option<i64>,
    /// When that step began.
    pub canary_since: Option<Timestamp>,
}

impl Schedule {
    /// Reads `status.schedule`.
    pub fn from_status(s: &EffectiveSchedule) -> Schedule {
        Schedule {
            notify_at: s.notify_at.0,
            monitor_from: s.monitor_from.0,
            enforce_at: s.enforce_at.0,
            cleanup_at: s.cleanup_at.0,
            notice_delivered_at: s.notice_delivered_at.as_ref().map(|t| t.0),
            enforced_since: s.enforced_since.as_ref().map(|t| t.0),
            rolled_back_generation: s.rolled_back_generation,
            evidence_from: s.evidence_from.as_ref().map(|t| t.0),
            canary_step: s.canary_step,
            canary_since: s.canary_since.as_ref().map(|t| t.0),
        }
    }

    /// Writes `status.schedule`.
    pub fn to_status(&self) -> EffectiveSchedule {
        EffectiveSchedule {
            notify_at: Time(self.notify_at),
            monitor_from: Time(self.monitor_from),
            enforce_at: Time(self.enforce_at),
            cleanup_at: Time(self.cleanup_at),
            notice_delivered_at: self.notice_delivered_at.map(Time),
            enforced_since: self.enforced_since.map(Time),
            rolled_back_generation: self.rolled_back_generation,
            evidence_from: self.evidence_from.map(Time),
            canary_step: self.canary_step,
            canary_since: self.canary_since.map(Time),
        }
    }
}

/// What monitor mode knows about the application.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorSummary {
    /// Open (unacknowledged) alerts.
    pub open_alerts: i64,
    /// Last unmatched flow.
    pub last_unmatched_at: Option<Timestamp>,
    /// Last DFW log line of the application.
    pub last_log_at: Option<Timestamp>,
    /// The monitor found dropped unmatched flows above the window's rollback threshold.
    pub rollback_triggered: bool,
}

/// Why the controller cannot let the application enforce (peer missing, no members, NSX not in
/// sync). Reported as the NotReady gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// PascalCase reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Everything the state machine looks at besides `now`.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The window.
    pub window: &'a Window,
    /// spec.suspend.
    pub suspend: bool,
    /// The current generation is approved (`microseg.io/approved-generation`).
    pub approved: bool,
    /// Why the current spec widens what DROP affects compared with the spec that was enforced
    /// (members added or widened, allow rules removed or narrowed); `None` when it does not.
    pub widening: Option<String>,
    /// metadata.generation.
    pub generation: i64,
    /// status.phase.
    pub previous_phase: Option<Phase>,
    /// status.schedule.
    pub previous: Option<&'a Schedule>,
    /// When the owner notice was delivered (from status.notifications).
    pub notice_delivered_at: Option<Timestamp>,
    /// Monitor summary.
    pub monitor: &'a MonitorSummary,
    /// Controller-side readiness.
    pub blocker: Option<Blocker>,
}

/// The enforcement gate as reported in the EnforcementGate condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// True when nothing blocks enforcement.
    pub open: bool,
    /// PascalCase reason (the first blocker, or why the gate is not relevant).
    pub reason: &'static str,
    /// Every blocker, for people.
    pub message: String,
}

/// The answer of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The phase now.
    pub phase: Phase,
    /// Why (PascalCase) — used for history and events when the phase changes.
    pub reason: &'static str,
    /// Why, for people.
    pub message: String,
    /// The effective schedule to record.
    pub schedule: Schedule,
    /// The next phase change.
    pub next: Option<(Phase, Option<Timestamp>)>,
    /// The next instant at which the answer can change by time alone (always after `now`).
    pub wake_at: Option<Timestamp>,
    /// The enforcement gate.
    pub gate: Gate,
    /// The Scheduled owner notice is due and not yet delivered.
    pub notice_due: bool,
    /// The controller-side blocker this decision saw (`Inputs::blocker`), with its own reason
    /// (PeerNotFound, NoMembers, NsxError…): the gate reports it as NotReady, status tells a
    /// problem that needs a Git change from one the controller retries.
    pub blocker: Option<Blocker>,
}

impl Decision {
    /// `status.nextTransition`.
    pub fn next_transition(&self) -> Option<NextTransition> {
        self.next.map(|(phase, at)| NextTransition {
            phase,
            at: at.map(Time),
        })
    }
}

struct Blocking {
    reason: &'static str,
    message: String,
    clears_at: Option<Timestamp>,
}

/// Enforcement that starts this much after `enforceAt` (a gate held it, or the controller was
/// down) counts as late: `enforceAt` and `cleanupAt` move to keep the full post-enforcement
/// monitoring. Smaller delays (a reconcile's latency) move nothing.
pub const LATE_TOLERANCE: SignedDuration = SignedDuration::from_secs(60);

fn later(a: Timestamp, b: Timestamp) -> Timestamp {
    a.max(b)
}

/// Rounds up to a whole second: status timestamps have second precision, and rounding down
/// would move an effective instant earlier after a round trip through status.
pub fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        return t;
    }
    Timestamp::from_second(t.as_second() + 1).unwrap_or(t)
}

/// Decides the phase at `now`.
pub fn evaluate(inp: &Inputs<'_>, now: Timestamp) -> Decision {
    let prev_phase = inp.previous_phase.unwrap_or(Phase::Pending);
    let suspended = inp.suspend || inp.window.suspend;
    let (mut d, mut wake) = start(inp, prev_phase, now);
    // A change widens what DROP affects and its generation is not approved.
    let widening = inp.widening.as_deref().filter(|_| !inp.approved);
    if prev_phase == Phase::Completed && !suspended {
        completed_again(&mut d, widening, now);
    } else if prev_phase == Phase::Pending {
        pending(&mut d, inp, now, &mut wake);
    } else if d.schedule.enforced_since.is_none() {
        not_enforcing(&mut d, inp, prev_phase, now, &mut wake);
    } else {
        enforced(&mut d, inp, prev_phase, widening, now, &mut wake);
    }
    finish(d, wake, now)
}

/// The decision before any rule applies: the previous phase, the effective schedule, whether
/// the owner notice is due, and the first instant to wake at (the notice).
fn start(inp: &Inputs<'_>, prev_phase: Phase, now: Timestamp) -> (Decision, Vec<Timestamp>) {
    let schedule = effective_schedule(inp, prev_phase);
    let notice_due = schedule.notice_delivered_at.is_none()
        && now >= schedule.notify_at
        && prev_phase != Phase::Completed;
    let mut wake: Vec<Timestamp> = Vec::new();
    if schedule.notice_delivered_at.is_none() && schedule.notify_at > now {
        wake.push(schedule.notify_at);
    }
    let d = Decision {
        phase: prev_phase,
        reason: reason::SCHEDULED,
        message: String::new(),
        schedule,
        next: None,
        wake_at: None,
        gate: Gate {
            open: false,
            reason: reason::NOT_STARTED,
            message: String::new(),
        },
        notice_due,
        blocker: inp.blocker.clone(),
    };
    (d, wake)
}

/// Completed is terminal unless the brake is pulled (handled by the caller) or a change widens
/// what DROP affects.
fn completed_again(d: &mut Decision, widening: Option<&str>, now: Timestamp) {
    match widening {
        Some(why) if d.schedule.enforced_since.is_some() => regate(d, why, now),
        _ => {
            completed(d, "clean-up done");
            d.notice_due = false;
        }
    }
}

/// Pending: nothing in NSX until monitorFrom (and never inside a blackout); then Monitoring.
fn pending(d: &mut Decision, inp: &Inputs<'_>, now: Timestamp, wake: &mut Vec<Timestamp>) {
    let w = inp.window;
    let due = now >= d.schedule.monitor_from;
    let frozen = w.blackout_at(now);
    if !due || frozen.is_some() {
        d.phase = Phase::Pending;
        d.reason = reason::NOT_STARTED;
        let at = match frozen {
            Some(_) if due => w.after_blackouts(now),
            _ => d.schedule.monitor_from,
        };
        d.message = format!("monitor mode starts at {at}");
        d.next = Some((Phase::Monitoring, Some(at)));
        d.gate.message = "monitoring has not started".into();
        wake.push(at);
        return;
    }
    d.phase = Phase::Monitoring;
    d.reason = reason::SCHEDULED;
    d.message = "monitor mode started: rules and a logging PASS catch-all".into();
    d.next = Some((Phase::Enforcing, Some(d.schedule.enforce_at)));
    d.gate = preview_gate(inp, &d.schedule, now, wake);
    wake.push(d.schedule.enforce_at);
}

/// Monitoring, RolledBack or Held with the catch-all at PASS: stays there (rolled back, or
/// before enforceAt), or enforces once every gate is open.
fn not_enforcing(
    d: &mut Decision,
    inp: &Inputs<'_>,
    prev_phase: Phase,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) {
    let rolled_back_active = prev_phase == Phase::RolledBack
        && d.schedule.rolled_back_generation == Some(inp.generation);
    if rolled_back_active {
        let message =
            "rolled back to monitor mode after dropped flows; change the spec to try again";
        stop(
            d,
            Phase::RolledBack,
            reason::ROLLED_BACK,
            message.into(),
            message.into(),
        );
    } else if now < d.schedule.enforce_at {
        monitoring(d, inp, now, wake);
    } else {
        at_enforcement(d, inp, now, wake);
    }
}

/// Monitoring before enforceAt, with the gate as it would stand if enforcement were due.
fn monitoring(d: &mut Decision, inp: &Inputs<'_>, now: Timestamp, wake: &mut Vec<Timestamp>) {
    let w = inp.window;
    d.phase = Phase::Monitoring;
    let late_notice = d
        .schedule
        .notice_delivered_at
        .filter(|t| plus(*t, w.minimum_notice) > w.enforce_at);
    (d.reason, d.message) = match late_notice {
        Some(t) => (
            reason::NOTICE_LATE,
            format!(
                "monitor mode until {}: the owner notice was delivered late, at {t}",
                d.schedule.enforce_at
            ),
        ),
        None => (
            reason::SCHEDULED,
            format!("monitor mode until {}", d.schedule.enforce_at),
        ),
    };
    d.next = Some((Phase::Enforcing, Some(d.schedule.enforce_at)));
    d.gate = preview_gate(inp, &d.schedule, now, wake);
    wake.push(d.schedule.enforce_at);
}

/// Enforcement is due: Enforcing when every gate is open, Held otherwise.
fn at_enforcement(d: &mut Decision, inp: &Inputs<'_>, now: Timestamp, wake: &mut Vec<Timestamp>) {
    let blockers = blockers(inp, &d.schedule, now, true, wake);
    if blockers.is_empty() {
        enter_enforcing(d, inp, ceil_second(now), now, wake);
        // Entering enforcement is always a phase of its own, however late: clean-up follows
        // only once the catch-all has dropped.
        if d.phase == Phase::Completed {
            d.phase = Phase::Enforcing;
            d.reason = reason::SCHEDULED;
            d.message = format!(
                "catch-all DROP and logged; clean-up is due at {}",
                d.schedule.cleanup_at
            );
            d.next = Some((Phase::Completed, Some(d.schedule.cleanup_at.max(now))));
        }
        return;
    }
    d.phase = Phase::Held;
    d.reason = blockers[0].reason;
    d.gate = closed_gate(&blockers);
    d.message = format!("enforcement held: {}", d.gate.message);
    let known: Option<Vec<Timestamp>> = blockers.iter().map(|b| b.clears_at).collect();
    d.next = Some((Phase::Enforcing, known.and_then(|v| v.into_iter().max())));
    wake.extend(blockers.iter().filter_map(|b| b.clears_at));
}

/// Enforcing (or completed and suspended): safety moves first, then enforcement goes on.
fn enforced(
    d: &mut Decision,
    inp: &Inputs<'_>,
    prev_phase: Phase,
    widening: Option<&str>,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) {
    let w = inp.window;
    if inp.suspend || w.suspend {
        back_to_pass(&mut d.schedule);
        stop(
            d,
            Phase::Held,
            reason::SUSPENDED,
            "suspended: catch-all back to PASS".into(),
            "suspended by spec.suspend or the window's suspend".into(),
        );
    } else if let Some(b) = &inp.blocker {
        back_to_pass(&mut d.schedule);
        stop(
            d,
            Phase::Held,
            reason::NOT_READY,
            format!("catch-all back to PASS: {}", b.message),
            b.message.clone(),
        );
    } else if w.rollback && inp.monitor.rollback_triggered && prev_phase == Phase::Enforcing {
        back_to_pass(&mut d.schedule);
        d.schedule.rolled_back_generation = Some(inp.generation);
        d.schedule.evidence_from = Some(ceil_second(now));
        let message = "too many dropped unmatched flows: rolled back to monitor mode";
        stop(
            d,
            Phase::RolledBack,
            reason::ROLLED_BACK,
            message.into(),
            message.into(),
        );
    } else if let Some(why) = widening {
        regate(d, why, now);
    } else {
        let since = d.schedule.enforced_since.unwrap_or(now);
        enter_enforcing(d, inp, since, now, wake);
    }
}

/// Back to PASS because the spec widens what DROP affects: Held, and the evidence (log lines,
/// quiet period) starts over now.
fn regate(d: &mut Decision, why: &str, now: Timestamp) {
    back_to_pass(&mut d.schedule);
    d.schedule.evidence_from = Some(ceil_second(now));
    let message = format!(
        "catch-all back to PASS: the spec change widens what DROP affects ({why}); enforcement \
         needs the gates again, or approve this generation"
    );
    stop(
        d,
        Phase::Held,
        reason::CHANGE_UNDER_DROP,
        message.clone(),
        message,
    );
}

/// `phase` with the catch-all at PASS and a closed gate of the same reason, until something
/// other than time changes (no instant for the next enforcement).
fn stop(d: &mut Decision, phase: Phase, why: &'static str, message: String, gate: String) {
    d.phase = phase;
    d.reason = why;
    d.message = message;
    d.gate = Gate {
        open: false,
        reason: why,
        message: gate,
    };
    d.next = Some((Phase::Enforcing, None));
}

/// Completed: clean-up done, the gate reports enforcement as over.
fn completed(d: &mut Decision, message: &str) {
    d.phase = Phase::Completed;
    d.reason = reason::COMPLETED;
    d.message = message.into();
    d.gate = Gate {
        open: true,
        reason: reason::COMPLETED,
        message: "enforcement completed".into(),
    };
    d.next = None;
}

/// Enforcing (or, past cleanupAt and outside a blackout, Completed).
fn enter_enforcing(
    d: &mut Decision,
    inp: &Inputs<'_>,
    since: Timestamp,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) {
    let w = inp.window;
    if d.schedule.enforced_since.is_none() && !w.canary.is_empty() {
        d.schedule.canary_step = Some(1);
        d.schedule.canary_since = Some(since);
    }
    d.schedule.enforced_since = Some(since);
    if since > plus(d.schedule.enforce_at, LATE_TOLERANCE) {
        d.schedule.enforce_at = since;
        d.schedule.cleanup_at = w.after_blackouts(later(
            d.schedule.cleanup_at,
            plus(since, w.post_enforcement),
        ));
    }
    d.gate = Gate {
        open: true,
        reason: reason::GATES_OPEN,
        message: format!("enforcing since {since}{}", waived_note(w)),
    };
    if canary_step(d, inp, now, wake) {
        return;
    }
    let cleanup = d.schedule.cleanup_at;
    let frozen = w.blackout_at(now);
    if now >= cleanup && frozen.is_none() {
        completed(d, "post-enforcement monitoring over: clean-up done");
        return;
    }
    d.phase = Phase::Enforcing;
    d.reason = reason::SCHEDULED;
    d.message = format!("catch-all DROP and logged until {cleanup}");
    let at = match frozen {
        Some(_) if now >= cleanup => w.after_blackouts(now),
        _ => cleanup,
    };
    d.next = Some((Phase::Completed, Some(at)));
    wake.push(at);
}

/// Every VM back to PASS: enforcement and any canary step end.
fn back_to_pass(s: &mut Schedule) {
    s.enforced_since = None;
    s.canary_step = None;
    s.canary_since = None;
}

fn finish(mut d: Decision, wake: Vec<Timestamp>, now: Timestamp) -> Decision {
    d.wake_at = wake.into_iter().filter(|t| *t > now).min();
    d
}

fn effective_schedule(inp: &Inputs<'_>, prev_phase: Phase) -> Schedule {
    let w = inp.window;
    let prev = inp.previous;
    let pick = |f: fn(&Schedule) -> Timestamp, window: Timestamp| match prev {
        Some(p) => later(f(p), window),
        None => window,
    };
    let notice_delivered_at = prev
        .and_then(|p| p.notice_delivered_at)
        .or(inp.notice_delivered_at.map(ceil_second));
    let enforced_since = prev.and_then(|p| p.enforced_since);
    let rolled_back_generation = prev.and_then(|p| p.rolled_back_generation);
    let evidence_from = prev.and_then(|p| p.evidence_from);
    let canary_step = prev.and_then(|p| p.canary_step);
    let canary_since = prev.and_then(|p| p.canary_since);

    let notify_at = match (prev, notice_delivered_at) {
        (Some(p), Some(_)) => p.notify_at,
        _ => ceil_second(pick(|p| p.notify_at, w.notify_at)),
    };
    let monitor_from = match prev {
        Some(p) if prev_phase != Phase::Pending => p.monitor_from,
        _ => w.after_blackouts(ceil_second(pick(|p| p.monitor_from, w.monitor_from))),
    };
    let enforce_at = match (prev, enforced_since) {
        (Some(p), Some(_)) => p.enforce_at,
        _ => {
            let mut e = later(pick(|p| p.enforce_at, w.enforce_at), monitor_from);
            if let Some(d) = notice_delivered_at {
                e = later(e, plus(d, w.minimum_notice));
            }
            w.after_blackouts(ceil_second(e))
        }
    };
    let cleanup_at = match prev {
        Some(p) if prev_phase == Phase::Completed => p.cleanup_at,
        _ => {
            let window_cleanup = w
                .cleanup_at
                .unwrap_or_else(|| plus(w.enforce_at, w.post_enforcement));
            let c = later(
                pick(|p| p.cleanup_at, window_cleanup),
                plus(enforce_at, w.post_enforcement),
            );
            w.after_blackouts(ceil_second(c))
        }
    };
    Schedule {
        notify_at,
        monitor_from,
        enforce_at,
        cleanup_at,
        notice_delivered_at,
        enforced_since,
        rolled_back_generation,
        evidence_from,
        canary_step,
        canary_since,
    }
}
