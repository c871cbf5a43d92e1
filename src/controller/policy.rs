//! Reconciles one SegmentationPolicy: observe → decide → act.
//! 1. **observe**: the window (from its store; when it is missing, the window as last seen in
//!    status with the recorded effective schedule, so the brakes keep working), the peers'
//!    group paths, NSX as the cache holds it, and `now`;
//! 2. **decide** (`decide::decide`, pure): the schedule's phase, the owner notices due, the
//!    member check ahead of and on entering enforcement, the canary VMs, and the NSX writes
//!    (`plan::desired`, `plan::diff`); it asks for a fact it lacks (the group's members, the canary
//!    VMs) or for notices to be sent, and is asked again;
//! 3. **act**: the NSX writes (coalesced with other reconciles' by `nsx_batch`), the policy read
//!    back for NSX's rule ids;
//! 4. **record** (`decide::conclude`, pure, then act): one status patch when something changed,
//!    the events, the requeue at the next instant the answer can change.
//!
//! `cleanup` (finalizer) removes what the policy owns in NSX, and only that.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::canary::Choice;
use super::context::Context;
use super::decide::{
    self, CanaryFact, Done, Names, Need, Observed, PolicyFacts, Record, Sent, Severity, Step,
    WindowSource, Write,
};
use super::notices::Due;
use super::{Error, FIELD_MANAGER, NSX_CLEANUP_FINALIZER};
use crate::api::condition::reason;
use crate::api::k8s::Time;
use crate::api::{
    EnforcementWindow, NotificationRecord, SegmentationPolicy, SegmentationPolicyStatus,
    WindowSnapshot,
};
use crate::notify::Notice;
use crate::plan::{self, LiveState, PeerGroups};
use crate::schedule::{self, Blocker, Decision, Window};

/// How many facts one reconcile may ask for before it gives up (each need is answered once;
/// more means a defect, reported as an error rather than a loop).
const MAX_NEEDS: usize = 8;

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
                    let path = crate::nsx::naming::group_path(
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
    ctx.events.publish(event, p.object_ref(&())).await;
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

/// The steps that await NSX, the API server or a mail server are boxed: a reconcile's future
/// then holds only the step under way, and a wave's 1,000 reconciles waiting for their instant
/// hold only the decision.
async fn apply(p: &SegmentationPolicy, ctx: &Context) -> Result<Action, Error> {
    // A copy older than this controller's own last status write (the watch lags under a wave
    // of writes: seconds, at 1,000 policies more than ten) would decide the last transition
    // again and send its notice again: wait for the watch a moment, then read the object.
    let current;
    let p = match ctx.statuses.behind(
        p.uid().as_deref().unwrap_or_default(),
        &p.status.clone().unwrap_or_default(),
    ) {
        None => p,
        Some(age) if age < super::status_memo::WATCH_WAIT => {
            debug!(
                "the copy of the policy predates this controller's last status write; waiting for the watch"
            );
            return Ok(Action::requeue(std::time::Duration::from_millis(250)));
        }
        Some(_) => {
            debug!("the watch lags behind this controller's last status write; reading the policy");
            let api: Api<SegmentationPolicy> =
                Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
            // Within the bound of the status writes: after a wave's writes a whole wave of
            // reconciles is behind the watch, and 1,000 reads at once are 1,000 connections to
            // the API server, each with its buffers (a 20 MiB spike in the fleet benchmark).
            let permit = ctx.status_writes.permit().await;
            current = Box::pin(api.get(&p.name_any()))
                .await
                .map(super::shared::without_managed_fields)
                .map_err(Error::Kube)?;
            drop(permit);
            &current
        }
    };
    // With the window's resourceVersion as read: a change after this discards a decision made
    // ahead of its instant.
    let (mut o, window_version) = Box::pin(observe(p, ctx)).await;
    // Within the lead before a scheduled instant: decided as of the instant (just after it, as
    // a reconcile requeued for it would be), written at it (`ahead`).
    let ahead = ctx
        .ahead
        .take(
            p.uid().as_deref().unwrap_or_default(),
            o.now,
            ctx.settings.lead,
        )
        .map(|at| at + k8s_openapi::jiff::SignedDuration::from_millis(5));
    if let Some(at) = ahead {
        info!(at = %at, "deciding ahead of the schedule's next instant; written at it if nothing changes meanwhile");
        o.now = at;
        o.members = ctx
            .members
            .fresh(&o.names.group_key(), p.metadata.generation, at)
            .then_some(Ok(true));
    }
    let mut needs = 0;
    let mut waited = false;
    let mut plan = loop {
        match decide::decide(&o) {
            Step::Act(plan) => break plan,
            Step::Need(_) if needs >= MAX_NEEDS => {
                return Err(Error::Decide {
                    policy: format!("{}/{}", o.names.ns, o.names.name),
                    message: format!("still asking for facts after {MAX_NEEDS} answers"),
                });
            }
            Step::Need(need) => {
                // Notices are sent at the instant, never for a decision that may be discarded.
                if let (Some(at), Need::Notify { .. }) = (ahead, &need)
                    && !waited
                {
                    if !on_time(p, ctx, at, window_version.as_deref()).await {
                        return Ok(Action::requeue(std::time::Duration::ZERO));
                    }
                    waited = true;
                }
                needs += 1;
                Box::pin(answer(&mut o, need, p, ctx)).await;
            }
        }
    };
    // What NSX held is in the plan now: the reconciles that wait for their instant (a wave's
    // 1,000 flips) do not each keep another copy of it.
    o.live = None;
    if let Some(at) = ahead
        && !waited
        && !on_time(p, ctx, at, window_version.as_deref()).await
    {
        // Something the decision read changed, or the term ended: decided again from what
        // holds now (the instant has come, so not ahead).
        return Ok(Action::requeue(std::time::Duration::ZERO));
    }
    let done = Box::pin(act(
        ctx,
        &o.names,
        std::mem::take(&mut plan.writes),
        plan.read_back,
    ))
    .await;
    // What the writes did is told once they succeeded (a failed DROP is reported Held, and
    // nobody is told it drops).
    if done.failed.is_none()
        && !plan.notify_after.is_empty()
        && let (Some(d), Some(w)) = (&plan.decision, o.window())
    {
        let after = Box::pin(send_notices(
            p,
            ctx,
            &o.names,
            d,
            plan.notify_after.clone(),
            &w,
            plan.choice(),
            o.now,
        ))
        .await;
        let sent = o.notices.get_or_insert_with(Sent::default);
        sent.records.extend(after.records);
        sent.error = match (sent.error.take(), after.error) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
    }
    let record = decide::conclude(&o, &plan, &done);
    let now = o.now;
    // The status write waits its turn with the API server (a wave's 1,000 at once): only the
    // record waits, not everything it was made from.
    drop((o, plan, done));
    Box::pin(record_outcome(ctx, p, record, now)).await
}

/// The resourceVersion of the policy's window in the store (`None`: not there).
fn window_version(p: &SegmentationPolicy, ctx: &Context) -> Option<String> {
    let ns = p.namespace().unwrap_or_default();
    let r = ObjectRef::<EnforcementWindow>::new(&p.spec.window.name).within(&ns);
    ctx.windows
        .get(&r)
        .and_then(|w| w.metadata.resource_version.clone())
}

/// Waits for `at`, then whether the decision made ahead of it still stands: this replica still
/// leads, and the policy and its window are the versions the decision read (a monitor summary,
/// a suspend, a spec change or a deletion since then all change one of them).
async fn on_time(
    p: &SegmentationPolicy,
    ctx: &Context,
    at: k8s_openapi::jiff::Timestamp,
    window_before: Option<&str>,
) -> bool {
    let term = ctx.ahead.term();
    let now = ctx.clock.now();
    if now < at {
        let wait = now.duration_until(at).unsigned_abs();
        tokio::select! {
            () = tokio::time::sleep(wait) => {},
            () = term.cancelled() => return false,
        }
    }
    if term.is_cancelled() {
        return false;
    }
    let current = ctx.policies.get(&ObjectRef::from_obj(p));
    let policy_same =
        current.is_some_and(|c| c.metadata.resource_version == p.metadata.resource_version);
    let same = policy_same && window_version(p, ctx).as_deref() == window_before;
    if !same {
        info!(
            "the policy or its window changed while its transition waited for its instant; deciding again"
        );
    }
    same
}

/// Everything the decision reads, but the facts it asks for on the way; and the resourceVersion
/// of the window read (`None`: not in the store).
async fn observe<'a>(
    p: &'a SegmentationPolicy,
    ctx: &'a Context,
) -> (Observed<'a>, Option<String>) {
    let now = ctx.clock.now();
    let n = names(p, ctx);
    let prev = p.status.clone().unwrap_or_default();
    // The window, or the window as last seen: the state machine always runs, so suspend,
    // rollback and readiness keep working when a window is pruned or renamed.
    let window_ref = ObjectRef::<EnforcementWindow>::new(&p.spec.window.name).within(&n.ns);
    let found = ctx.windows.get(&window_ref);
    let window_version = found
        .as_ref()
        .and_then(|w| w.metadata.resource_version.clone());
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
    let window = match &found {
        Some(w) => WindowSource::Found {
            spec: w.spec.clone(),
            snapshot: Box::new(snapshot_window(w)),
        },
        None => match decide::remembered_window(&prev) {
            Some(spec) => WindowSource::Remembered(spec),
            None => WindowSource::Missing,
        },
    };
    let (peers, peer_blocker) = resolve_peers(p, &n.ns, ctx);
    // NSX is not read for a policy that has no window to run on: nothing is written then.
    let live = match window {
        WindowSource::Missing => None,
        _ => Some(read_live(ctx, &n).await),
    };
    let new_application = matches!(&live, Some(Ok(l)) if l.group.is_none() && l.policy.is_none());
    let peer_groups_in_nsx = !(new_application
        && ctx.settings.nsx_batch.is_some()
        && !ctx.settings.dry_run
        && peer_group_missing(ctx, &peers).await);
    let members = ctx
        .members
        .fresh(&n.group_key(), p.metadata.generation, now)
        .then_some(Ok(true));
    let o = Observed {
        policy: p,
        names: n,
        now,
        identity: &ctx.identity,
        settings: &ctx.settings,
        window,
        window_problem,
        peers,
        peer_blocker,
        live,
        peer_groups_in_nsx,
        members,
        canary: None,
        notices: None,
    };
    (o, window_version)
}

/// Observes the fact the decision asked for (or sends the notices it found due).
async fn answer(o: &mut Observed<'_>, need: Need, p: &SegmentationPolicy, ctx: &Context) {
    let n = &o.names;
    match need {
        Need::Members => {
            let present = ctx.nsx.group_has_members(&n.domain, &n.id).await;
            if let Ok(present) = &present {
                // Ahead of the flip, so that the flip is a pure write.
                ctx.members
                    .remember(&n.group_key(), p.metadata.generation, o.now, *present);
            }
            o.members = Some(present);
        }
        Need::Canary(d) => {
            let Some(w) = o.window() else { return };
            let result = super::canary::choose(ctx.nsx.as_ref(), p, &n.domain, &n.id, &d, &w).await;
            if let Some(key) = decide::canary_key(&d) {
                o.canary = Some(CanaryFact { key, result });
            }
        }
        Need::Notify { decision, due } => {
            let Some(w) = o.window() else { return };
            let choice = o
                .canary
                .as_ref()
                .filter(|c| Some(c.key) == decide::canary_key(&decision))
                .and_then(|c| c.result.clone().ok().flatten());
            let sent = send_notices(p, ctx, n, &decision, due, &w, choice.as_ref(), o.now).await;
            o.notices = Some(sent);
        }
    }
}

/// The plan's writes in order (the first failure stops them), then the policy read back.
/// The plan's writes, in order (taken from the plan: they are not kept while the notices are
/// sent and the status written), and the read back when asked.
async fn act(ctx: &Context, n: &Names, writes: Vec<Write>, read_back: bool) -> Done {
    let mut done = Done::default();
    for (i, w) in writes.iter().enumerate() {
        ctx.metrics.nsx_writes.inc();
        let written = if w.relaxed {
            ctx.nsx.patch_infra_relaxed(&w.patch).await
        } else {
            ctx.nsx.patch_infra(&w.patch).await
        };
        match written {
            Ok(()) => info!(changes = %w.summary.join("; "), "Applied NSX changes"),
            Err(e) => {
                warn!(error = %e, "NSX write failed");
                done.failed = Some((i, e));
                return done;
            }
        }
    }
    drop(writes);
    if read_back {
        let policy = ctx.nsx.get_policy(&n.domain, &n.id).await;
        done.read_back = Some(policy.map(|p| p.as_ref().map(PolicyFacts::of)));
    }
    done
}

/// The status patch (when something changed), the events and the metrics of a reconcile.
async fn record_outcome(
    ctx: &Context,
    p: &SegmentationPolicy,
    record: Record,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<Action, Error> {
    let prev = p.status.clone().unwrap_or_default();
    // A reconcile may run on a copy older than this controller's own last status write (the
    // watch lags under load): what it would write again, and announce again, it skips.
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let written_before = ctx.statuses.is_last(&uid, &record.status);
    if status_changed(&prev, &record.status) && !written_before {
        patch_status(ctx, p, &record.status).await?;
        ctx.statuses.wrote(&uid, &record.status);
    }
    if let Some(d) = &record.decision
        && prev.phase != Some(d.phase)
        && !written_before
    {
        info!(phase = %d.phase, reason = d.reason, "phase changed");
    }
    if let Some((phase, late)) = record.lateness
        && !written_before
    {
        ctx.metrics
            .transition_lateness
            .get_or_create(&super::metrics::PhaseLabel {
                phase: phase.to_string(),
            })
            .observe(late);
    }
    if record.drift {
        ctx.metrics.drift_corrected.inc();
    }
    for e in record.events {
        if e.once && written_before {
            continue;
        }
        let type_ = match e.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        };
        publish(ctx, p, type_, &e.reason, e.note).await;
    }
    // The next scheduled instant is met by a reconcile that comes `lead` ahead of it.
    let (requeue, ahead) = super::ahead::early(
        record.requeue,
        now,
        record.decision.as_ref().and_then(|d| d.wake_at),
        ctx.settings.lead,
    );
    if let Some(at) = ahead {
        ctx.ahead.expect(p.uid().as_deref().unwrap_or_default(), at);
    }
    Ok(Action::requeue(requeue))
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

/// Sends the notices due and records each delivery.
#[allow(clippy::too_many_arguments)]
async fn send_notices(
    p: &SegmentationPolicy,
    ctx: &Context,
    n: &Names,
    d: &Decision,
    due: Vec<Due>,
    w: &Window,
    choice: Option<&Choice>,
    now: k8s_openapi::jiff::Timestamp,
) -> Sent {
    let Some(notifier) = &ctx.notifier else {
        return Sent {
            records: Vec::new(),
            error: Some(
                "no notification channel is configured: owner notices cannot be sent".into(),
            ),
        };
    };
    let mut records = Vec::new();
    let mut errors = Vec::new();
    // The open flows a notice quotes, borrowed: the monitor status may hold 500 flows and six
    // hours of counts, and up to a wave of reconciles wait here for a send permit.
    let flows: &[crate::api::FlowSummary] = p
        .status
        .as_ref()
        .and_then(|s| s.monitor.as_ref())
        .map_or(&[], |m| m.flows.as_slice());
    // A notice waits for its send permit only until the lead before the schedule's next
    // instant: a backlog of mail (a wave's 1,000 Reminders) must not keep this reconcile from
    // the decision made ahead of the instant. What is not sent by then is decided again with
    // the instant (a Reminder is no longer due once enforceAt has come; the Enforced notice
    // follows the flip).
    let give_way = super::ahead::give_way(d.wake_at, now, ctx.settings.lead)
        .map(|wait| tokio::time::Instant::now() + wait);
    let mut due = due.into_iter();
    while let Some(item) = due.next() {
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
            flows: flows
                .iter()
                .filter(|f| f.acknowledged.is_none())
                .take(20)
                .cloned()
                .collect(),
            message_id: item.message_id.clone(),
            canary: super::canary::notice_plan(w, d, choice, enforce_at),
        };
        let permit = match give_way {
            None => ctx.notice_sends.permit().await,
            Some(until) => match ctx.notice_sends.permit_until(until).await {
                Some(permit) => Some(permit),
                None => {
                    let deferred: Vec<Due> = std::iter::once(item).chain(due).collect();
                    warn!(
                        notices = %deferred.iter().map(|i| format!("{} to {}", i.kind.as_str(), i.owner.name)).collect::<Vec<_>>().join(", "),
                        instant = %d.wake_at.map(|t| t.to_string()).unwrap_or_default(),
                        "notices deferred: no send permit came before the lead of the schedule's next instant (other notices are being sent); decided again with the instant"
                    );
                    for i in &deferred {
                        ctx.metrics
                            .notices_deferred
                            .get_or_create(&super::metrics::PhaseLabel {
                                phase: i.kind.as_str().to_string(),
                            })
                            .inc();
                    }
                    break;
                }
            },
        };
        let sent = notifier.send(&notice).await;
        drop(permit);
        match sent {
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
    Sent {
        records,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
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
    status: &SegmentationPolicyStatus,
) -> Result<(), Error> {
    /// The apply body: the status only (a typed body, encoded once, no JSON tree).
    #[derive(serde::Serialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        api_version: &'a str,
        kind: &'a str,
        status: &'a SegmentationPolicyStatus,
    }
    let _permit = ctx.status_writes.permit().await;
    let body = Body {
        api_version: "microseg.io/v1alpha1",
        kind: "SegmentationPolicy",
        status,
    };
    // The answer is the metadata only: at 1,000 applications flipping together, decoding each
    // whole policy back was megabytes nobody read.
    crate::monitor::recorder::patch_status(
        &ctx.client,
        &p.namespace().unwrap_or_default(),
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
            if e.is_in_use() {
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
