//! Reconciles one SegmentationPolicy. `apply` runs, in order:
//! 1. gather the window (from its store; when it is missing, the window as last seen in status
//!    with the recorded effective schedule, so the brakes keep working), the peers' group
//!    paths, the monitor summary, how the spec compares with the spec under DROP, and `now`;
//! 2. ask `schedule::evaluate` for the phase and the next instant the answer can change;
//! 3. send the owner notices that are due and not yet recorded (and re-evaluate if the
//!    Scheduled notice was just delivered); a decision that enters enforcement is checked for
//!    effective members last, on the final decision;
//! 4. ask `plan::desired` for the NSX objects of the phase, read NSX, `plan::diff`, and make at
//!    most one hierarchical write (none in dry-run mode); read back the rule ids;
//! 5. build the status with the pure `status::build` and send it with one server-side apply;
//! 6. emit events for transitions, drift, errors and notices;
//! 7. requeue for the next instant (or the resync period, whichever is first).
//!
//! `cleanup` (finalizer) removes what the policy owns in NSX, and only that.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::context::Context;
use super::members;
use super::notices::{self, Facts, scheduled_delivered_at};
use super::status::{self, NsxFacts, Observation, SyncOutcome};
use super::{Error, FIELD_MANAGER, NSX_CLEANUP_FINALIZER};
use crate::api::condition::{self, reason};
use crate::api::k8s::Time;
use crate::api::{
    AfterCleanup, EffectiveSchedule, EnforcementWindow, EnforcementWindowSpec, NotificationRecord,
    Phase, SegmentationPolicy, SegmentationPolicyStatus, WindowSnapshot, approved_generation,
};
use crate::notify::Notice;
use crate::plan::{self, LiveState, PeerGroups};
use crate::schedule::{self, Blocker, Decision, MonitorSummary, Schedule, Window};

/// How soon a reconcile whose NSX write failed tries again (at most).
const NSX_RETRY: Duration = Duration::from_secs(10);

/// How soon a policy whose window is missing (and that never had a schedule) looks again.
const WINDOW_RETRY: Duration = Duration::from_secs(5);

/// Entry point for the Controller.
#[instrument(skip(policy, ctx), fields(policy = %format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any())))]
pub async fn reconcile(
    policy: Arc<SegmentationPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = policy.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<SegmentationPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, NSX_CLEANUP_FINALIZER, policy, |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &ctx).await,
            Finalizer::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// What to do after an error.
pub fn error_policy(policy: Arc<SegmentationPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(policy = %policy.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&super::metrics::CategoryLabel {
            category: error.category().to_string(),
        })
        .inc();
    match error.retry_after() {
        Some(d) => Action::requeue(d),
        None => Action::requeue(ctx.settings.resync),
    }
}

struct Names {
    ns: String,
    name: String,
    id: String,
    domain: String,
}

fn names(p: &SegmentationPolicy, ctx: &Context) -> Names {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    Names {
        id: ctx.identity.object_id(&ns, &name),
        domain: p.spec.nsx.domain.clone(),
        ns,
        name,
    }
}

/// Group paths of the applications this policy's rules name; the missing ones as a blocker.
fn resolve_peers(p: &SegmentationPolicy, ns: &str, ctx: &Context) -> (PeerGroups, Option<Blocker>) {
    let mut groups = PeerGroups::new();
    let mut missing = Vec::new();
    for r in &p.spec.rules {
        for peer in &r.peers {
            let Some(app) = &peer.application else {
                continue;
            };
            let peer_ns = app.namespace.clone().unwrap_or_else(|| ns.to_string());
            let key = ObjectRef::new(&app.name).within(&peer_ns);
            match ctx.policies.get(&key) {
                Some(other) if other.metadata.deletion_timestamp.is_none() => {
                    let path = plan::group_path(
                        &other.spec.nsx.domain,
                        &ctx.identity.object_id(&peer_ns, &app.name),
                    );
                    groups.insert((peer_ns, app.name.clone()), path);
                }
                _ => missing.push(format!("{peer_ns}/{} (rule {})", app.name, r.name)),
            }
        }
    }
    missing.sort();
    missing.dedup();
    let blocker = (!missing.is_empty()).then(|| Blocker {
        reason: reason::PEER_NOT_FOUND,
        message: format!("peer application not found: {}", missing.join(", ")),
    });
    (groups, blocker)
}

/// The monitor summary the schedule reads. The rollback trigger counts dropped unmatched flows
/// since enforcement started, within the window's rollback period.
fn monitor_summary(
    status: &SegmentationPolicyStatus,
    rollback: Option<&crate::api::RollbackGate>,
    now: Timestamp,
) -> MonitorSummary {
    let m = status.monitor.clone().unwrap_or_default();
    let enforced_since = status
        .schedule
        .as_ref()
        .and_then(|s| s.enforced_since.as_ref())
        .map(|t| t.0);
    // Drops of an earlier enforcement never count again: the series has minute buckets, and
    // the bucket of the last return to PASS (a rollback) may hold the drops that caused it.
    let returned = status
        .schedule
        .as_ref()
        .and_then(|s| s.evidence_from.as_ref())
        .map(|t| t.0);
    let rollback_triggered = match (rollback, enforced_since) {
        (Some(gate), Some(since)) => {
            let mut recent = m.clone();
            if let Some(r) = returned {
                recent.series.retain(|b| b.start.0 > r);
            }
            crate::monitor::aggregate::dropped_within(&recent, since, gate.period.get(), now)
                >= gate.dropped_flows
        }
        _ => false,
    };
    MonitorSummary {
        open_alerts: m.open_alerts,
        last_unmatched_at: m.last_unmatched_at.map(|t| t.0),
        last_log_at: m.last_log_at.map(|t| t.0),
        rollback_triggered,
    }
}

async fn read_live(ctx: &Context, n: &Names) -> Result<LiveState, crate::nsx::Error> {
    let group = ctx.nsx.get_group(&n.domain, &n.id).await?;
    let policy = ctx.nsx.get_policy(&n.domain, &n.id).await?;
    Ok(LiveState { group, policy })
}

async fn publish(
    ctx: &Context,
    p: &SegmentationPolicy,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// The window's settings worth keeping in status (everything but its instants).
fn snapshot_window(w: &EnforcementWindow) -> WindowSnapshot {
    WindowSnapshot {
        name: w.name_any(),
        generation: w.metadata.generation,
        minimum_notice: w.spec.minimum_notice,
        post_enforcement_monitoring: w.spec.post_enforcement_monitoring,
        gates: w.spec.gates.clone(),
        blackouts: w.spec.blackouts.clone(),
        suspend: w.spec.suspend,
        canary: w.spec.canary.clone(),
    }
}

/// The window a policy continues with when its EnforcementWindow is gone: the recorded
/// effective schedule and the window's settings as last seen (or the defaults, every evidence
/// gate on). `None` when the policy never had a schedule: it stays Pending, nothing in NSX.
fn remembered_window(prev: &SegmentationPolicyStatus) -> Option<EnforcementWindowSpec> {
    let s: &EffectiveSchedule = prev.schedule.as_ref()?;
    let mut spec = EnforcementWindowSpec {
        notify_at: s.notify_at.clone(),
        monitor_from: s.monitor_from.clone(),
        enforce_at: s.enforce_at.clone(),
        cleanup_at: Some(s.cleanup_at.clone()),
        minimum_notice: crate::api::enforcement_window::DEFAULT_MINIMUM_NOTICE,
        post_enforcement_monitoring:
            crate::api::enforcement_window::DEFAULT_POST_ENFORCEMENT_MONITORING,
        gates: Default::default(),
        blackouts: Vec::new(),
        suspend: false,
        canary: None,
    };
    if let Some(w) = &prev.window {
        spec.canary = w.canary.clone();
        spec.minimum_notice = w.minimum_notice;
        spec.post_enforcement_monitoring = w.post_enforcement_monitoring;
        spec.gates = w.gates.clone();
        spec.blackouts = w.blackouts.clone();
        spec.suspend = w.suspend;
    }
    Some(spec)
}

/// Whether the catch-all drops in this phase for this spec.
fn drops(phase: Option<Phase>, p: &SegmentationPolicy) -> bool {
    match phase {
        Some(Phase::Enforcing) => true,
        Some(Phase::Completed) => p.spec.after_cleanup == AfterCleanup::KeepDrop,
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate_with(
    window: &Window,
    p: &SegmentationPolicy,
    prev: &SegmentationPolicyStatus,
    previous_schedule: Option<&Schedule>,
    delivered: Option<Timestamp>,
    monitor: &MonitorSummary,
    blocker: Option<Blocker>,
    widening: Option<String>,
    now: Timestamp,
) -> Decision {
    schedule::evaluate(
        &schedule::Inputs {
            window,
            suspend: p.spec.suspend,
            approved: approved_generation(&p.metadata),
            widening,
            generation: p.metadata.generation.unwrap_or(0),
            previous_phase: prev.phase,
            previous: previous_schedule,
            notice_delivered_at: delivered,
            monitor,
            blocker,
        },
        now,
    )
}

async fn apply(p: &SegmentationPolicy, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let n = names(p, ctx);
    let prev = p.status.clone().unwrap_or_default();
    let prev_phase = prev.phase;
    let generation = p.metadata.generation;

    // 1. The window, or the window as last seen: the state machine always runs, so suspend,
    //    rollback and readiness keep working when a window is pruned or renamed.
    let window_ref = ObjectRef::<EnforcementWindow>::new(&p.spec.window.name).within(&n.ns);
    let found = ctx.windows.get(&window_ref);
    let window_problem = found.is_none().then(|| {
        format!(
            "spec.window.name: EnforcementWindow {:?} not found in {}{}",
            p.spec.window.name,
            n.ns,
            if prev.schedule.is_some() {
                "; continuing from the recorded schedule (status.schedule) and the window as last seen"
            } else {
                ""
            }
        )
    });
    if let Some(message) = &window_problem
        && condition::find(&prev.conditions, condition::READY).map(|c| c.reason.as_str())
            != Some(reason::WINDOW_NOT_FOUND)
    {
        publish(
            ctx,
            p,
            EventType::Warning,
            reason::WINDOW_NOT_FOUND,
            message.clone(),
        )
        .await;
    }
    let (window_spec, snapshot) = match &found {
        Some(w) => (w.spec.clone(), Some(snapshot_window(w))),
        None => match remembered_window(&prev) {
            Some(spec) => (spec, prev.window.clone()),
            None => {
                let message = window_problem.clone().unwrap_or_default();
                let obs = Observation {
                    policy: p,
                    decision: None,
                    window_problem: Some(message.clone()),
                    sync: SyncOutcome::Failed {
                        reason: reason::WINDOW_NOT_FOUND,
                        message,
                    },
                    nsx: None,
                    delivered: Vec::new(),
                    notice_error: None,
                    log_silence: ctx.settings.log_silence,
                    enforced_spec: prev.enforced_spec.clone(),
                    window: prev.window.clone(),
                };
                let mut built = status::build(&obs, now);
                built.canary = prev.canary.clone();
                if status_changed(&prev, &built) {
                    patch_status(ctx, p, built).await?;
                }
                // A window applied in the same breath may not be in the store yet, and a pruned
                // one may come back with the next sync: look again soon (no NSX call, and no
                // status write while nothing changes).
                return Ok(Action::requeue(ctx.settings.resync.min(WINDOW_RETRY)));
            }
        },
    };
    let w = Window::from_spec(&window_spec, ctx.settings.log_silence);

    // 2. Peers, NSX, monitor summary, readiness.
    let (peers, mut blocker) = resolve_peers(p, &n.ns, ctx);
    let live = read_live(ctx, &n).await;
    if let Err(e) = &live {
        blocker.get_or_insert(Blocker {
            reason: reason::NSX_ERROR,
            message: format!("NSX could not be read: {e}"),
        });
    }
    let previously_synced = condition::find(&prev.conditions, condition::SYNCED)
        .map(|c| c.status == condition::TRUE && c.observed_generation == generation)
        .unwrap_or(false);
    if !previously_synced && !prev_phase.unwrap_or_default().drops() {
        blocker.get_or_insert(Blocker {
            reason: reason::NOT_READY,
            message: "NSX has not yet been confirmed in sync with this spec".into(),
        });
    }
    let monitor = monitor_summary(&prev, window_spec.gates.rollback.as_ref(), now);
    // A spec change under DROP: does it widen what DROP affects?
    let comparison = match (&prev.enforced_spec, generation) {
        (Some(enforced), Some(g)) if drops(prev_phase, p) && enforced.generation != g => {
            Some(plan::widening::compare(enforced, &p.spec, &n.ns))
        }
        _ => None,
    };
    let widening = comparison.as_ref().and_then(|c| c.widening());
    let previous_schedule = prev.schedule.as_ref().map(Schedule::from_status);
    let facts = Facts {
        namespace: &n.ns,
        name: &n.name,
        owners: &p.spec.owners,
        records: &prev.notifications,
        open_alerts: monitor.open_alerts,
        reminder_before: ctx.settings.reminder_before,
    };
    let delivered = scheduled_delivered_at(&facts);
    let mut decision = evaluate_with(
        &w,
        p,
        &prev,
        previous_schedule.as_ref(),
        delivered,
        &monitor,
        blocker.clone(),
        widening.clone(),
        now,
    );

    // 3. Notices.
    let (records, notice_error) = send_notices(p, ctx, &n, &decision, &facts, &w, now).await;
    let mut delivered = delivered;
    if !records.is_empty() && decision.schedule.notice_delivered_at.is_none() {
        let mut all = prev.notifications.clone();
        all.extend(records.iter().cloned());
        let facts = Facts {
            records: &all,
            ..facts
        };
        if let Some(t) = scheduled_delivered_at(&facts) {
            delivered = Some(t);
            decision = evaluate_with(
                &w,
                p,
                &prev,
                previous_schedule.as_ref(),
                delivered,
                &monitor,
                blocker.clone(),
                widening.clone(),
                now,
            );
        }
    }

    // Entering enforcement needs members: a DROP on an empty group protects nothing and says
    // the membership criteria are wrong. Checked on the final decision of this reconcile.
    let group_key = format!("{}/{}", n.domain, n.id);
    if decision.phase == Phase::Monitoring
        && members::due(decision.schedule.enforce_at, now)
        && !ctx.members.has_fresh(&group_key, generation, now)
        && let Ok(count) = ctx.nsx.group_member_count(&n.domain, &n.id).await
    {
        // Ahead of the flip, so that the flip is a pure write (a failure here is retried by
        // the flip itself).
        ctx.members.remember(&group_key, generation, now, count);
    }
    if decision.phase == Phase::Enforcing && !drops(prev_phase, p) {
        let members = match ctx.members.fresh(&group_key, generation, now) {
            Some(count) => Ok(count),
            None => ctx.nsx.group_member_count(&n.domain, &n.id).await,
        };
        let problem = match members {
            Ok(0) => Some(Blocker {
                reason: reason::NO_MEMBERS,
                message: "spec.members: the NSX group has no effective members (no VM or address matches)".into(),
            }),
            Ok(_) => None,
            Err(e) => Some(Blocker {
                reason: reason::NSX_ERROR,
                message: format!("NSX group members could not be read: {e}"),
            }),
        };
        if let Some(b) = problem {
            blocker = Some(blocker.unwrap_or(b));
            decision = evaluate_with(
                &w,
                p,
                &prev,
                previous_schedule.as_ref(),
                delivered,
                &monitor,
                blocker.clone(),
                widening.clone(),
                now,
            );
        }
    }

    // 3b. Canary: the VMs of the step in force. If they cannot be read, every VM stays PASS
    //     (the NotReady gate), never the whole application at DROP.
    let mut choice = None;
    match super::canary::choose(ctx.nsx.as_ref(), p, &n.domain, &n.id, &decision, &w).await {
        Ok(c) => choice = c,
        Err(e) => {
            blocker = Some(blocker.unwrap_or(Blocker {
                reason: reason::NSX_ERROR,
                message: format!("canary VMs could not be read: {e}"),
            }));
            decision = evaluate_with(
                &w,
                p,
                &prev,
                previous_schedule.as_ref(),
                delivered,
                &monitor,
                blocker.clone(),
                widening.clone(),
                now,
            );
        }
    }

    // 4. NSX.
    let (sync, nsx_facts, decision) = sync_nsx(
        p,
        ctx,
        &n,
        &peers,
        live,
        choice.as_ref(),
        decision,
        &w,
        &prev,
        &monitor,
        blocker,
        widening.clone(),
        now,
    )
    .await;

    // 5. Status. The spec under DROP is recorded whenever this decision drops; a widening
    //    change that is not approved went back to PASS above and keeps the old record.
    let enforced_spec = match generation {
        Some(g) if drops(Some(decision.phase), p) => Some(plan::widening::snapshot(&p.spec, g)),
        _ => prev.enforced_spec.clone(),
    };
    let obs = Observation {
        policy: p,
        decision: Some(&decision),
        window_problem: window_problem.clone(),
        sync: sync.clone(),
        nsx: nsx_facts,
        delivered: records.clone(),
        notice_error: notice_error.clone(),
        log_silence: w.max_log_silence.unwrap_or(ctx.settings.log_silence),
        enforced_spec,
        window: snapshot.or(prev.window.clone()),
    };
    let mut built = status::build(&obs, now);
    // The canary step as written; kept as it was when NSX could not be written.
    built.canary = match &sync {
        SyncOutcome::Failed { .. } => prev.canary.clone(),
        _ => super::canary::status(choice.as_ref()),
    };
    // A reconcile may run on a copy older than this controller's own last status write (the
    // watch lags under load): what it would write again, and announce again, it skips.
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let written_before = ctx.statuses.is_last(&uid, &built);
    let new_status = status_changed(&prev, &built) && !written_before;
    if new_status {
        let memo = built.clone();
        patch_status(ctx, p, built).await?;
        ctx.statuses.wrote(&uid, &memo);
    }

    // 6. Events and metrics.
    if decision.phase == Phase::Enforcing
        && prev_phase != Some(Phase::Enforcing)
        && !w.waived.is_empty()
    {
        let names: Vec<&str> = w.waived.iter().map(|g| g.as_str()).collect();
        publish(
            ctx,
            p,
            EventType::Warning,
            reason::GATE_WAIVED,
            format!(
                "enforcing with gates waived by window {}: {} (DROP without that evidence)",
                p.spec.window.name,
                names.join(", ")
            ),
        )
        .await;
    }
    if let Some(c) = &comparison
        && decision.phase.drops()
    {
        let note = match c.widening() {
            Some(why) => format!(
                "generation {} is approved: stays enforcing although it widens what DROP affects ({why})",
                generation.unwrap_or_default()
            ),
            None if c.narrows.is_empty() => {
                "spec change does not touch what DROP affects: stays enforcing".to_string()
            }
            None => format!(
                "spec change only narrows what DROP affects or adds allow rules ({}): stays enforcing",
                c.narrows.join("; ")
            ),
        };
        publish(ctx, p, EventType::Normal, reason::CHANGE_ACCEPTED, note).await;
    }
    if prev_phase != Some(decision.phase) && !written_before {
        let type_ = if matches!(decision.phase, Phase::Held | Phase::RolledBack) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(phase = %decision.phase, reason = decision.reason, "phase changed");
        publish(
            ctx,
            p,
            type_,
            decision.reason,
            format!("{}: {}", decision.phase, decision.message),
        )
        .await;
        let scheduled = match decision.phase {
            Phase::Monitoring => Some(decision.schedule.monitor_from),
            Phase::Enforcing => Some(decision.schedule.enforce_at),
            Phase::Completed => Some(decision.schedule.cleanup_at),
            _ => None,
        };
        if let Some(at) = scheduled {
            let late = now.duration_since(at).as_secs_f64().max(0.0);
            ctx.metrics
                .transition_lateness
                .get_or_create(&super::metrics::PhaseLabel {
                    phase: decision.phase.to_string(),
                })
                .observe(late);
        }
    }
    match &sync {
        SyncOutcome::Applied(summary) => {
            let drift = prev_phase == Some(decision.phase)
                && previously_synced
                && prev.observed_generation == generation;
            if drift {
                ctx.metrics.drift_corrected.inc();
                publish(
                    ctx,
                    p,
                    EventType::Warning,
                    "DriftCorrected",
                    format!(
                        "NSX differed from the desired state and was corrected: {}",
                        summary.join("; ")
                    ),
                )
                .await;
            } else {
                publish(
                    ctx,
                    p,
                    EventType::Normal,
                    reason::APPLIED,
                    format!("Applied NSX changes: {}", summary.join("; ")),
                )
                .await;
            }
        }
        SyncOutcome::DryRun(summary) if !summary.is_empty() => {
            info!(changes = %summary.join("; "), "dry run: NSX changes not written");
            publish(
                ctx,
                p,
                EventType::Normal,
                reason::DRY_RUN,
                format!("Would apply: {}", summary.join("; ")),
            )
            .await;
        }
        SyncOutcome::Failed { reason, message } => {
            warn!(reason = *reason, message = %message, "NSX not in sync");
            publish(ctx, p, EventType::Warning, reason, message.clone()).await;
        }
        _ => {}
    }
    for r in &records {
        publish(
            ctx,
            p,
            EventType::Normal,
            "NoticeSent",
            format!(
                "{} notice delivered to {} by {}",
                r.kind, r.owner, r.channel
            ),
        )
        .await;
    }
    if let Some(e) = &notice_error {
        publish(ctx, p, EventType::Warning, "NoticeFailed", e.clone()).await;
    }

    // 7. Requeue.
    let mut wait = ctx.settings.resync;
    // The Reminder notice is due at enforceAt - reminderBefore, which is not a phase change.
    let reminder_at =
        crate::api::time::minus(decision.schedule.enforce_at, ctx.settings.reminder_before);
    if decision.phase == Phase::Monitoring
        && decision.schedule.notice_delivered_at.is_some()
        && reminder_at > now
    {
        wait = wait.min(
            now.duration_until(reminder_at)
                .unsigned_abs()
                .saturating_add(Duration::from_millis(5)),
        );
    }
    // The members are counted in the minute before enforceAt.
    let precheck_at = crate::api::time::minus(decision.schedule.enforce_at, members::AHEAD);
    if decision.phase == Phase::Monitoring && precheck_at > now {
        wait = wait.min(
            now.duration_until(precheck_at)
                .unsigned_abs()
                .saturating_add(Duration::from_millis(5)),
        );
    }
    if let Some(at) = decision.wake_at {
        let until = now.duration_until(at).unsigned_abs();
        // Wake just after the instant so the answer has changed when we look.
        wait = wait.min(until.saturating_add(Duration::from_millis(5)));
    }
    if prev_phase != Some(decision.phase)
        || notice_error.is_some()
        || matches!(sync, SyncOutcome::Failed { .. })
    {
        let retry = if matches!(sync, SyncOutcome::Failed { .. }) {
            // NSX refused or failed (often a peer's group written a moment later by its own
            // reconcile): try again soon; the client's pacing keeps the manager's budget.
            ctx.settings.notice_retry.min(NSX_RETRY)
        } else if notice_error.is_some() {
            ctx.settings.notice_retry
        } else {
            Duration::from_millis(200)
        };
        wait = wait.min(retry);
    }
    Ok(Action::requeue(wait))
}

#[allow(clippy::too_many_arguments)]
async fn sync_nsx(
    p: &SegmentationPolicy,
    ctx: &Context,
    n: &Names,
    peers: &PeerGroups,
    live: Result<LiveState, crate::nsx::Error>,
    choice: Option<&super::canary::Choice>,
    decision: Decision,
    w: &Window,
    prev: &SegmentationPolicyStatus,
    monitor: &MonitorSummary,
    blocker: Option<Blocker>,
    widening: Option<String>,
    now: Timestamp,
) -> (SyncOutcome, Option<NsxFacts>, Decision) {
    let prev_drops = prev.phase.unwrap_or_default().drops();
    let live = match live {
        Ok(l) => l,
        Err(e) => {
            return (
                SyncOutcome::Failed {
                    reason: reason::NSX_ERROR,
                    message: format!("NSX could not be read: {e}"),
                },
                None,
                decision,
            );
        }
    };
    // A new application's group goes first, alone, when its rules name a peer group NSX does
    // not hold yet: two applications that name each other would otherwise each wait for the
    // other's group. (With writes coalesced, a new application otherwise writes its group and
    // policy in one call; without, the group always goes first, as before.)
    let mut live = live;
    let group_first = live.group.is_none()
        && live.policy.is_none()
        && !ctx.settings.dry_run
        && (ctx.settings.nsx_batch.is_none() || peer_group_missing(ctx, peers).await);
    if group_first {
        let pending = plan::desired(
            p,
            Phase::Pending,
            &plan::Context {
                identity: &ctx.identity,
                peers,
                previous_sequence: &Default::default(),
            },
        )
        .and_then(|d| plan::diff(&d, &live, &ctx.identity, &n.ns, &n.name).map(|c| (d.group, c)));
        if let Ok((
            group,
            plan::Change {
                patch: Some(patch),
                summary,
            },
        )) = pending
        {
            if let Err(e) = write(ctx, &patch, &summary).await {
                return (
                    SyncOutcome::Failed {
                        reason: reason::NSX_ERROR,
                        message: format!("NSX write failed: {e}"),
                    },
                    Some(facts(n, &live)),
                    decision,
                );
            }
            live.group = Some(group);
        }
    }
    let sequence = live.rule_sequence();
    let cx = plan::Context {
        identity: &ctx.identity,
        peers,
        previous_sequence: &sequence,
    };
    let planned = plan::desired(p, decision.phase, &cx).and_then(|d| {
        super::canary::change(d, choice, prev.canary.as_ref(), |d| {
            plan::diff(d, &live, &ctx.identity, &n.ns, &n.name)
        })
    });
    let (desired, change) = match planned {
        Ok(x) => x,
        Err(e) => {
            return (
                SyncOutcome::Failed {
                    reason: e.reason(),
                    message: e.to_string(),
                },
                Some(facts(n, &live)),
                decision,
            );
        }
    };
    let Some(patch) = change.patch else {
        return (SyncOutcome::InSync, Some(facts(n, &live)), decision);
    };
    if ctx.settings.dry_run {
        return (
            SyncOutcome::DryRun(change.summary),
            Some(facts(n, &live)),
            decision,
        );
    }
    match write(ctx, &patch, &change.summary).await {
        Ok(()) => {
            // Read back the policy for NSX's rule ids; the group is as written.
            let after = match ctx.nsx.get_policy(&n.domain, &n.id).await {
                Ok(policy) => LiveState {
                    group: live.group.clone().or(Some(desired.group.clone())),
                    policy,
                },
                Err(_) => live,
            };
            (
                SyncOutcome::Applied(change.summary),
                Some(facts(n, &after)),
                decision,
            )
        }
        Err(e) => {
            let message = format!("NSX write failed: {e}");
            warn!(error = %e, "NSX write failed");
            // A failed write never counts as enforcement: report Held while NSX still passes.
            let decision = if decision.phase.drops() && !prev_drops {
                let held = Blocker {
                    reason: reason::NSX_ERROR,
                    message: message.clone(),
                };
                evaluate_with(
                    w,
                    p,
                    prev,
                    prev.schedule.as_ref().map(Schedule::from_status).as_ref(),
                    decision.schedule.notice_delivered_at,
                    monitor,
                    Some(blocker.unwrap_or(held)),
                    widening,
                    now,
                )
            } else {
                decision
            };
            (
                SyncOutcome::Failed {
                    reason: reason::NSX_ERROR,
                    message,
                },
                Some(facts(n, &live)),
                decision,
            )
        }
    }
}

/// Whether a peer group the rules name is not (known to be) in NSX.
async fn peer_group_missing(ctx: &Context, peers: &PeerGroups) -> bool {
    for path in peers.values() {
        let Some((domain, id)) = path
            .strip_prefix("/infra/domains/")
            .and_then(|rest| rest.split_once("/groups/"))
        else {
            return true;
        };
        if !matches!(ctx.nsx.get_group(domain, id).await, Ok(Some(_))) {
            return true;
        }
    }
    false
}

/// One hierarchical write, counted and logged.
async fn write(
    ctx: &Context,
    patch: &crate::nsx::model::Infra,
    summary: &[String],
) -> Result<(), crate::nsx::Error> {
    ctx.metrics.nsx_writes.inc();
    ctx.nsx.patch_infra(patch).await?;
    info!(changes = %summary.join("; "), "Applied NSX changes");
    Ok(())
}

fn facts(n: &Names, live: &LiveState) -> NsxFacts {
    NsxFacts {
        group_path: live
            .group
            .as_ref()
            .map(|_| plan::group_path(&n.domain, &n.id)),
        policy_path: live
            .policy
            .as_ref()
            .map(|_| plan::policy_path(&n.domain, &n.id)),
        revision: live.policy.as_ref().and_then(|p| p.meta.revision),
        rule_ids: live.rule_ids(),
    }
}

async fn send_notices(
    p: &SegmentationPolicy,
    ctx: &Context,
    n: &Names,
    d: &Decision,
    facts: &Facts<'_>,
    w: &Window,
    now: Timestamp,
) -> (Vec<NotificationRecord>, Option<String>) {
    let due = notices::due(d, facts, now);
    if due.is_empty() {
        return (Vec::new(), None);
    }
    let Some(notifier) = &ctx.notifier else {
        return (
            Vec::new(),
            Some("no notification channel is configured: owner notices cannot be sent".into()),
        );
    };
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let monitor = p
        .status
        .as_ref()
        .and_then(|s| s.monitor.clone())
        .unwrap_or_default();
    // The canary VMs, for a notice sent while a canary step is in force (chosen as the NSX
    // write will choose them: the choice is deterministic).
    let choice = if d.schedule.canary_step.is_some() {
        super::canary::choose(ctx.nsx.as_ref(), p, &n.domain, &n.id, d, w)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let choice = choice.as_ref();
    for item in due {
        // A Scheduled notice announces the date that holds if it is delivered now: never less
        // than the minimum notice from now.
        let enforce_at = if item.kind == crate::notify::NoticeKind::Scheduled {
            d.schedule.enforce_at.max(crate::api::time::plus(
                schedule::ceil_second(now),
                w.minimum_notice,
            ))
        } else {
            d.schedule.enforce_at
        };
        let notice = Notice {
            kind: item.kind,
            namespace: n.ns.clone(),
            name: n.name.clone(),
            application: p.application(),
            owner: item.owner.clone(),
            phase: d.phase,
            monitor_from: d.schedule.monitor_from,
            enforce_at,
            cleanup_at: d.schedule.cleanup_at,
            reason: matches!(
                item.kind,
                crate::notify::NoticeKind::Postponed | crate::notify::NoticeKind::RolledBack
            )
            .then(|| d.message.clone()),
            flows: monitor
                .flows
                .iter()
                .filter(|f| f.acknowledged.is_none())
                .take(20)
                .cloned()
                .collect(),
            message_id: item.message_id.clone(),
            canary: super::canary::notice_plan(w, d, choice, enforce_at),
        };
        match notifier.send(&notice).await {
            Ok(deliveries) => {
                ctx.metrics
                    .notices
                    .get_or_create(&super::metrics::PhaseLabel {
                        phase: item.kind.as_str().to_string(),
                    })
                    .inc();
                for del in deliveries {
                    records.push(NotificationRecord {
                        kind: item.kind.as_str().into(),
                        owner: item.owner.name.clone(),
                        channel: del.channel.into(),
                        message_id: item.message_id.clone(),
                        sent_at: Time(del.at),
                        enforce_at: matches!(
                            item.kind,
                            crate::notify::NoticeKind::Scheduled
                                | crate::notify::NoticeKind::Postponed
                                | crate::notify::NoticeKind::Reminder
                        )
                        .then_some(Time(enforce_at)),
                    });
                }
            }
            Err(e) => errors.push(format!(
                "{} notice to {}: {e}",
                item.kind.as_str(),
                item.owner.name
            )),
        }
    }
    (records, (!errors.is_empty()).then(|| errors.join("; ")))
}

/// Whether the status to apply differs from what the object holds (the monitor's part is not
/// the reconciler's and is left out). An unchanged status is not sent: no etcd write, no watch
/// event, no line in `kubectl get -w`.
fn status_changed(prev: &SegmentationPolicyStatus, new: &SegmentationPolicyStatus) -> bool {
    let mut before = prev.clone();
    before.monitor = None;
    let mut after = new.clone();
    after.monitor = None;
    before != after
}

async fn patch_status(
    ctx: &Context,
    p: &SegmentationPolicy,
    status: SegmentationPolicyStatus,
) -> Result<(), Error> {
    let api: Api<SegmentationPolicy> =
        Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": "microseg.io/v1alpha1",
        "kind": "SegmentationPolicy",
        "status": status,
    });
    api.patch_status(
        &p.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

/// Finalizer: removes what the policy owns in NSX. NSX unreachable: the deletion waits and says
/// so. A group still referenced by another application's rules is reported, not forced.
async fn cleanup(p: &SegmentationPolicy, ctx: &Context) -> Result<Action, Error> {
    let n = names(p, ctx);
    let live = match read_live(ctx, &n).await {
        Ok(l) => l,
        Err(e) => {
            publish(
                ctx,
                p,
                EventType::Warning,
                "DeletionBlocked",
                format!("NSX unreachable, the deletion waits: {e}"),
            )
            .await;
            return Err(Error::Nsx {
                policy: format!("{}/{}", n.ns, n.name),
                source: e,
            });
        }
    };
    let owned = LiveState {
        group: live
            .group
            .filter(|g| ctx.identity.owns(&g.tags, &n.ns, &n.name)),
        policy: live
            .policy
            .filter(|x| ctx.identity.owns(&x.tags, &n.ns, &n.name)),
    };
    // Canary groups a step left (their rule goes with the policy, in the same call).
    let canary_groups =
        super::canary::previous_groups(&p.status.clone().unwrap_or_default(), &n.id);
    let removal = plan::removal(&owned, &n.domain);
    let Some(patch) = (if owned.policy.is_some() || owned.group.is_some() {
        plan::canary::without_groups(
            plan::Change {
                patch: removal,
                summary: Vec::new(),
            },
            &n.domain,
            &canary_groups,
        )
        .patch
    } else {
        None
    }) else {
        return Ok(Action::await_change());
    };
    if ctx.settings.dry_run {
        publish(
            ctx,
            p,
            EventType::Normal,
            reason::DRY_RUN,
            "Would remove the NSX group and security policy".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    match ctx.nsx.patch_infra(&patch).await {
        Ok(()) => {
            info!("Removed NSX group and security policy");
            publish(
                ctx,
                p,
                EventType::Normal,
                "Removed",
                "Removed the NSX group and security policy".into(),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let referenced = matches!(&e, crate::nsx::Error::Api { error, .. } if error.error_message.contains("referenced"));
            if referenced {
                // Remove the policy; keep the group until nothing refers to it.
                let only_policy = LiveState {
                    group: None,
                    policy: owned.policy.clone(),
                };
                if let Some(patch) = plan::removal(&only_policy, &n.domain) {
                    ctx.nsx
                        .patch_infra(&patch)
                        .await
                        .map_err(|source| Error::Nsx {
                            policy: format!("{}/{}", n.ns, n.name),
                            source,
                        })?;
                }
                publish(ctx, p, EventType::Warning, "GroupInUse", format!("The NSX group is still referenced by other rules; it stays until they are gone: {e}")).await;
            } else {
                publish(
                    ctx,
                    p,
                    EventType::Warning,
                    "DeletionBlocked",
                    format!("NSX refused the removal, the deletion waits: {e}"),
                )
                .await;
            }
            Err(Error::Nsx {
                policy: format!("{}/{}", n.ns, n.name),
                source: e,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EffectiveSchedule, MonitorBucket, MonitorStatus, RollbackGate};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
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
}
