//! The decide step of a policy reconcile, pure. The shell (`policy`) observes (the window or
//! the window as last seen, the peers' groups, NSX as the cache holds it, the monitor summary in
//! status, `now`), asks [`decide`] until it has every fact the decision needs (the group's members,
//! the canary VMs, the notices it had to send), makes the NSX writes of the [`Plan`], and asks
//! [`conclude`] for the status, the events and the requeue. No clock, no IO here: every phase,
//! gate and error category is testable with a fixed `now` and NSX as a value.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::canary::{self, Choice};
use super::context::Settings;
use super::members;
use super::notices::{self, Due, Facts, scheduled_delivered_at};
use super::status::{NsxFacts, SyncOutcome};
use crate::api::condition::{self, reason};
use crate::api::{
    AfterCleanup, EffectiveSchedule, EnforcementWindowSpec, NotificationRecord, Phase,
    RollbackGate, SegmentationPolicy, SegmentationPolicyStatus, WindowSnapshot,
    approved_generation,
};
use crate::notify::NoticeKind;
use crate::nsx::model::Infra;
use crate::nsx::naming::Identity;
use crate::plan::widening::Comparison;
use crate::plan::{self, LiveState, PeerGroups};
use crate::schedule::{self, Blocker, Decision, MonitorSummary, Schedule, Window};

/// How soon a reconcile whose NSX write failed tries again (at most).
pub const NSX_RETRY: Duration = Duration::from_secs(10);

/// How soon a policy whose window is missing (and that never had a schedule) looks again.
pub const WINDOW_RETRY: Duration = Duration::from_secs(5);

/// Where the policy's objects live in NSX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// NSX object id (group and policy).
    pub id: String,
    /// NSX domain.
    pub domain: String,
}

impl Names {
    /// The member-check key of the group.
    pub fn group_key(&self) -> String {
        format!("{}/{}", self.domain, self.id)
    }
}

/// The window the policy runs on.
#[derive(Clone, Debug)]
pub enum WindowSource {
    /// The EnforcementWindow as in the store.
    Found {
        /// Its spec.
        spec: EnforcementWindowSpec,
        /// Its settings worth keeping in status.
        snapshot: Box<WindowSnapshot>,
    },
    /// Gone: the recorded schedule and the window's settings as last seen.
    Remembered(EnforcementWindowSpec),
    /// Gone, and the policy never had a schedule: it stays Pending, nothing in NSX.
    Missing,
}

/// Owner notices sent in this reconcile.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// One record per delivery.
    pub records: Vec<NotificationRecord>,
    /// What could not be delivered.
    pub error: Option<String>,
}

/// The canary VMs read for one step (`canary_key` of the decision that asked).
#[derive(Clone, Debug)]
pub struct CanaryFact {
    /// The step and its start.
    pub key: (i64, Timestamp),
    /// The choice, or why the VMs could not be read.
    pub result: Result<Option<Choice>, crate::nsx::Error>,
}

/// Everything a reconcile observed.
pub struct Observed<'a> {
    /// The policy as read (its status is the previous status).
    pub policy: &'a SegmentationPolicy,
    /// Its NSX names.
    pub names: Names,
    /// Now.
    pub now: Timestamp,
    /// This cluster's identity in NSX.
    pub identity: &'a Identity,
    /// The controller's settings.
    pub settings: &'a Settings,
    /// The window.
    pub window: WindowSource,
    /// Why the window could not be used as it is, for status and the event.
    pub window_problem: Option<String>,
    /// The peers' group paths.
    pub peers: PeerGroups,
    /// The peers that are missing.
    pub peer_blocker: Option<Blocker>,
    /// NSX as read (`None`: not read, as when the window is missing).
    pub live: Option<Result<LiveState, crate::nsx::Error>>,
    /// Every peer group the rules name is in NSX (a new application then writes its group and
    /// policy in one call).
    pub peer_groups_in_nsx: bool,
    /// Whether the group has effective members (`None`: not checked).
    pub members: Option<Result<bool, crate::nsx::Error>>,
    /// The canary VMs (`None`: not read).
    pub canary: Option<CanaryFact>,
    /// The notices sent in this reconcile (`None`: none was due yet).
    pub notices: Option<Sent>,
}

impl Observed<'_> {
    /// The previous status.
    pub fn prev(&self) -> &SegmentationPolicyStatus {
        static EMPTY: std::sync::OnceLock<SegmentationPolicyStatus> = std::sync::OnceLock::new();
        self.policy
            .status
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(SegmentationPolicyStatus::default))
    }

    /// The window as the schedule reads it (`None` when it is missing).
    pub fn window(&self) -> Option<Window> {
        match &self.window {
            WindowSource::Found { spec, .. } | WindowSource::Remembered(spec) => {
                Some(Window::from_spec(spec, self.settings.log_silence))
            }
            WindowSource::Missing => None,
        }
    }
}

/// What `decide` answers.
#[derive(Debug)]
pub enum Step {
    /// A fact to observe (or notices to send) before deciding.
    Need(Need),
    /// The decision and what to write.
    Act(Box<Plan>),
}

/// A fact the decision depends on.
#[derive(Debug)]
pub enum Need {
    /// Whether the group has effective members (`Observed::members`).
    Members,
    /// The canary VMs of the step this decision puts in force (`Observed::canary`).
    Canary(Box<Decision>),
    /// These owner notices are due: send them and record them in `Observed::notices`.
    Notify {
        /// The decision the notices tell.
        decision: Box<Decision>,
        /// The notices.
        due: Vec<Due>,
    },
}

/// One hierarchical write.
#[derive(Clone, Debug)]
pub struct Write {
    /// The `PATCH /infra` body.
    pub patch: Infra,
    /// What it changes, for people.
    pub summary: Vec<String>,
    /// A new application's objects in PASS: nobody waits for them at an instant, and the
    /// write may wait a little to share its call with others (`NsxApi::patch_infra_relaxed`).
    pub relaxed: bool,
}

/// The decision and the NSX writes that carry it out, in order.
#[derive(Debug)]
pub struct Plan {
    /// The schedule's answer (`None` when the window is missing and there never was one).
    pub decision: Option<Decision>,
    /// The writes, in order (a new application's group first when a peer group is missing).
    pub writes: Vec<Write>,
    /// How the NSX side went when every write succeeds.
    pub outcome: SyncOutcome,
    /// Read the policy back after the writes (for NSX's rule ids).
    pub read_back: bool,
    /// Notices that tell what NSX now does (the catch-all drops, the clean-up is done, the
    /// rollback to PASS): sent once the writes succeeded, never before; recorded with the others
    /// in `Observed::notices`.
    pub notify_after: Vec<Due>,
    /// A new application's group is the first write (then NSX held neither group nor policy).
    group_first: bool,
    /// What the status says of NSX once the writes are made (as read, plus a group written
    /// first): the facts only, not a copy of the objects (the 1,000 reconciles of a wave that
    /// wait for their instant each hold a plan).
    planned: Option<NsxFacts>,
    /// The writes make the group (it exists once they succeed).
    writes_group: bool,
    choice: Option<Choice>,
    carried: Option<Carried>,
}

impl Plan {
    /// The canary VMs of the step in force, if any.
    pub fn choice(&self) -> Option<&Choice> {
        self.choice.as_ref()
    }
}

/// What `conclude` needs from `decide` besides the plan.
#[derive(Debug)]
struct Carried {
    window: Window,
    snapshot: Option<WindowSnapshot>,
    blocker: Option<Blocker>,
    widening: Option<String>,
    comparison: Option<Comparison>,
    previously_synced: bool,
    monitor: MonitorSummary,
    previous_schedule: Option<Schedule>,
}

/// How the writes went.
#[derive(Debug, Default)]
pub struct Done {
    /// The index of the write NSX refused or failed and why (the writes after it were not made).
    pub failed: Option<(usize, crate::nsx::Error)>,
    /// The policy as read back after the writes (when the plan asked for it).
    pub read_back: Option<Result<Option<PolicyFacts>, crate::nsx::Error>>,
}

/// Kubernetes event severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// An event to publish on the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    /// Normal or Warning.
    pub severity: Severity,
    /// PascalCase reason.
    pub reason: String,
    /// For people.
    pub note: String,
    /// Announces this status (a phase change): not published again by a reconcile on a stale
    /// copy whose status this controller already wrote.
    pub once: bool,
}

fn ev(severity: Severity, reason: &str, note: String) -> Ev {
    Ev {
        severity,
        reason: reason.to_string(),
        note,
        once: false,
    }
}

/// What to record after acting.
#[derive(Clone, Debug)]
pub struct Record {
    /// The status to apply (when it differs from the one the object holds).
    pub status: SegmentationPolicyStatus,
    /// The events, in order.
    pub events: Vec<Ev>,
    /// The phase entered and how late (seconds) after its scheduled instant.
    pub lateness: Option<(Phase, f64)>,
    /// NSX differed from what this controller wrote and was corrected.
    pub drift: bool,
    /// When to look again.
    pub requeue: Duration,
    /// The decision recorded (`None` when the window is missing).
    pub decision: Option<Decision>,
}

/// The monitor summary the schedule reads. The rollback trigger counts dropped unmatched flows
/// since enforcement started, within the window's rollback period.
pub fn monitor_summary(
    status: &SegmentationPolicyStatus,
    rollback: Option<&RollbackGate>,
    now: Timestamp,
) -> MonitorSummary {
    let m = status.monitor.clone().unwrap_or_default();
    // `enforcedSince` is rounded up to the second (status precision), and log times are whole
    // seconds: a drop logged in the second the DROP was written may read up to a second
    // earlier. The count starts that second earlier, so that it never misses one (when the
    // rounding crosses a minute, the drops would sit in the bucket before it).
    let enforced_since = status
        .schedule
        .as_ref()
        .and_then(|s| s.enforced_since.as_ref())
        .map(|t| crate::api::time::minus(t.0, k8s_openapi::jiff::SignedDuration::from_secs(1)));
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

/// The window a policy continues with when its EnforcementWindow is gone: the recorded
/// effective schedule and the window's settings as last seen (or the defaults, every evidence
/// gate on). `None` when the policy never had a schedule: it stays Pending, nothing in NSX.
pub fn remembered_window(prev: &SegmentationPolicyStatus) -> Option<EnforcementWindowSpec> {
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
pub fn drops(phase: Option<Phase>, p: &SegmentationPolicy) -> bool {
    match phase {
        Some(Phase::Enforcing) => true,
        Some(Phase::Completed) => p.spec.after_cleanup == AfterCleanup::KeepDrop,
        _ => false,
    }
}

/// The canary step a decision puts in force, if any (the VMs are read for it).
pub fn canary_key(d: &Decision) -> Option<(i64, Timestamp)> {
    match (d.phase, d.schedule.canary_step, d.schedule.canary_since) {
        (Phase::Enforcing, Some(step), Some(since)) => Some((step, since)),
        _ => None,
    }
}

/// The schedule's inputs that do not change within one decide.
struct Evaluator<'a> {
    window: &'a Window,
    p: &'a SegmentationPolicy,
    prev: &'a SegmentationPolicyStatus,
    previous_schedule: Option<&'a Schedule>,
    monitor: &'a MonitorSummary,
    widening: Option<String>,
    now: Timestamp,
}

impl Evaluator<'_> {
    fn evaluate(&self, delivered: Option<Timestamp>, blocker: Option<Blocker>) -> Decision {
        schedule::evaluate(
            &schedule::Inputs {
                window: self.window,
                suspend: self.p.spec.suspend,
                approved: approved_generation(&self.p.metadata),
                widening: self.widening.clone(),
                generation: self.p.metadata.generation.unwrap_or(0),
                previous_phase: self.prev.phase,
                previous: self.previous_schedule,
                notice_delivered_at: delivered,
                monitor: self.monitor,
                blocker,
            },
            self.now,
        )
    }
}

/// A decision in the making: the schedule's inputs, the first blocker found so far and when
/// the Scheduled notice was delivered.
struct Deciding<'a> {
    e: Evaluator<'a>,
    blocker: Option<Blocker>,
    delivered: Option<Timestamp>,
}

impl Deciding<'_> {
    fn evaluate(&self) -> Decision {
        self.e.evaluate(self.delivered, self.blocker.clone())
    }

    /// Adds a blocker (the first one stays) and evaluates again.
    fn block(&mut self, b: Blocker) -> Decision {
        self.blocker.get_or_insert(b);
        self.evaluate()
    }
}

fn nsx_error(message: String) -> Blocker {
    Blocker {
        reason: reason::NSX_ERROR,
        message,
    }
}

/// The decision for what was observed, or the fact it still needs.
pub fn decide(o: &Observed<'_>) -> Step {
    match plan_for(o) {
        Ok(plan) => Step::Act(Box::new(plan)),
        Err(need) => Step::Need(need),
    }
}

/// The plan for what was observed, or the fact it still needs.
fn plan_for(o: &Observed<'_>) -> Result<Plan, Need> {
    let p = o.policy;
    let prev = o.prev();
    let (spec, snapshot) = match &o.window {
        WindowSource::Found { spec, snapshot } => (spec, Some(snapshot.as_ref().clone())),
        WindowSource::Remembered(spec) => (spec, prev.window.clone()),
        WindowSource::Missing => return Ok(window_missing(o)),
    };
    let window = Window::from_spec(spec, o.settings.log_silence);
    let previously_synced = previously_synced(prev, p.metadata.generation);
    let blocker = readiness_blocker(o, previously_synced);
    let monitor = monitor_summary(prev, spec.gates.rollback.as_ref(), o.now);
    let comparison = widening_comparison(o);
    let widening = comparison.as_ref().and_then(|c| c.widening());
    let previous_schedule = prev.schedule.as_ref().map(Schedule::from_status);
    let e = Evaluator {
        window: &window,
        p,
        prev,
        previous_schedule: previous_schedule.as_ref(),
        monitor: &monitor,
        widening: widening.clone(),
        now: o.now,
    };
    let facts = Facts {
        namespace: &o.names.ns,
        name: &o.names.name,
        owners: &p.spec.owners,
        records: &prev.notifications,
        open_alerts: monitor.open_alerts,
        reminder_before: o.settings.reminder_before,
    };
    let mut d = Deciding {
        e,
        blocker,
        delivered: scheduled_delivered_at(&facts),
    };
    let decision = d.evaluate();
    let decision = with_notices(o, &facts, &mut d, decision)?;
    let decision = with_members(o, &mut d, decision)?;
    let (decision, choice) = with_canary(o, &mut d, decision)?;
    let notify_after = notify_after(o, &facts, &decision);

    let carried = Carried {
        window: window.clone(),
        snapshot,
        blocker: d.blocker,
        widening,
        comparison,
        previously_synced,
        monitor: monitor.clone(),
        previous_schedule: previous_schedule.clone(),
    };
    let mut plan = nsx_plan(o, decision, choice, carried);
    // A dry run writes nothing, so nothing that tells what NSX now does is true.
    if !o.settings.dry_run {
        plan.notify_after = notify_after;
    }
    Ok(plan)
}

/// The window is gone and the policy never had a schedule: no decision, nothing in NSX.
fn window_missing(o: &Observed<'_>) -> Plan {
    Plan {
        decision: None,
        writes: Vec::new(),
        outcome: SyncOutcome::Failed {
            reason: reason::WINDOW_NOT_FOUND,
            message: o.window_problem.clone().unwrap_or_default(),
        },
        read_back: false,
        notify_after: Vec::new(),
        group_first: false,
        planned: None,
        writes_group: false,
        choice: None,
        carried: None,
    }
}

/// The previous status recorded `Synced=True` for this generation.
fn previously_synced(prev: &SegmentationPolicyStatus, generation: Option<i64>) -> bool {
    condition::find(&prev.conditions, condition::SYNCED)
        .map(|c| c.status == condition::TRUE && c.observed_generation == generation)
        .unwrap_or(false)
}

/// Readiness: the peers, NSX read, NSX confirmed in sync with this spec (the first blocker).
fn readiness_blocker(o: &Observed<'_>, previously_synced: bool) -> Option<Blocker> {
    let mut blocker = o.peer_blocker.clone();
    match &o.live {
        Some(Err(e)) => {
            blocker.get_or_insert(nsx_error(format!("NSX could not be read: {e}")));
        }
        None => {
            blocker.get_or_insert(nsx_error("NSX was not read".into()));
        }
        Some(Ok(_)) => {}
    }
    if !previously_synced && !o.prev().phase.unwrap_or_default().drops() {
        blocker.get_or_insert(Blocker {
            reason: reason::NOT_READY,
            message: "NSX has not yet been confirmed in sync with this spec".into(),
        });
    }
    blocker
}

/// A spec change under DROP: how it compares with the spec enforced (does it widen what DROP
/// affects?).
fn widening_comparison(o: &Observed<'_>) -> Option<Comparison> {
    let (p, prev) = (o.policy, o.prev());
    match (&prev.enforced_spec, p.metadata.generation) {
        (Some(enforced), Some(g)) if drops(prev.phase, p) && enforced.generation != g => {
            Some(plan::widening::compare(enforced, &p.spec, &o.names.ns))
        }
        _ => None,
    }
}

/// Notices: the ones due are sent first (with the canary VMs when a step is in force); a
/// Scheduled notice delivered now starts the notice period.
fn with_notices(
    o: &Observed<'_>,
    facts: &Facts<'_>,
    d: &mut Deciding<'_>,
    decision: Decision,
) -> Result<Decision, Need> {
    let Some(sent) = &o.notices else {
        let due: Vec<Due> = notices::due(&decision, facts, o.now)
            .into_iter()
            .filter(|d| !after_write(d.kind))
            .collect();
        if due.is_empty() {
            return Ok(decision);
        }
        if let Some(key) = canary_key(&decision)
            && o.canary.as_ref().is_none_or(|c| c.key != key)
        {
            return Err(Need::Canary(Box::new(decision)));
        }
        return Err(Need::Notify {
            decision: Box::new(decision),
            due,
        });
    };
    if sent.records.is_empty() || decision.schedule.notice_delivered_at.is_some() {
        return Ok(decision);
    }
    let mut all = o.prev().notifications.clone();
    all.extend(sent.records.iter().cloned());
    match scheduled_delivered_at(&Facts {
        records: &all,
        ..*facts
    }) {
        Some(t) => {
            d.delivered = Some(t);
            Ok(d.evaluate())
        }
        None => Ok(decision),
    }
}

/// Members: counted in the minute before enforceAt (so that the flip is a pure write), and
/// required on entering enforcement: a DROP on an empty group protects nothing and says the
/// membership criteria are wrong.
fn with_members(
    o: &Observed<'_>,
    d: &mut Deciding<'_>,
    decision: Decision,
) -> Result<Decision, Need> {
    if decision.phase == Phase::Monitoring
        && members::due(decision.schedule.enforce_at, o.now)
        && o.members.is_none()
    {
        return Err(Need::Members);
    }
    if decision.phase != Phase::Enforcing || drops(o.prev().phase, o.policy) {
        return Ok(decision);
    }
    let problem = match &o.members {
        None => return Err(Need::Members),
        Some(Ok(false)) => Some(Blocker {
            reason: reason::NO_MEMBERS,
            message:
                "spec.members: the NSX group has no effective members (no VM or address matches)"
                    .into(),
        }),
        Some(Ok(true)) => None,
        Some(Err(err)) => Some(nsx_error(format!(
            "NSX group members could not be read: {err}"
        ))),
    };
    Ok(match problem {
        Some(b) => d.block(b),
        None => decision,
    })
}

/// Canary: the VMs of the step in force. If they cannot be read, every VM stays PASS (the
/// NotReady gate), never the whole application at DROP.
fn with_canary(
    o: &Observed<'_>,
    d: &mut Deciding<'_>,
    decision: Decision,
) -> Result<(Decision, Option<Choice>), Need> {
    let Some(key) = canary_key(&decision) else {
        return Ok((decision, None));
    };
    match o.canary.as_ref().filter(|c| c.key == key) {
        None => Err(Need::Canary(Box::new(decision))),
        Some(CanaryFact { result: Ok(c), .. }) => Ok((decision, c.clone())),
        Some(CanaryFact {
            result: Err(err), ..
        }) => {
            let b = nsx_error(format!("canary VMs could not be read: {err}"));
            Ok((d.block(b), None))
        }
    }
}

/// The notices that tell what the writes do, for the final decision.
fn notify_after(o: &Observed<'_>, facts: &Facts<'_>, decision: &Decision) -> Vec<Due> {
    let mut records = o.prev().notifications.clone();
    records.extend(o.notices.iter().flat_map(|s| s.records.iter().cloned()));
    notices::due(
        decision,
        &Facts {
            records: &records,
            ..*facts
        },
        o.now,
    )
    .into_iter()
    .filter(|d| after_write(d.kind))
    .collect()
}

/// Notices that tell what NSX now does: sent after the write that does it.
pub fn after_write(kind: NoticeKind) -> bool {
    matches!(
        kind,
        NoticeKind::Enforced | NoticeKind::Completed | NoticeKind::RolledBack
    )
}

/// The NSX writes for the decision.
fn nsx_plan(o: &Observed<'_>, decision: Decision, choice: Option<Choice>, c: Carried) -> Plan {
    let mut plan = Plan {
        decision: Some(decision),
        writes: Vec::new(),
        outcome: SyncOutcome::InSync,
        read_back: false,
        notify_after: Vec::new(),
        group_first: false,
        planned: None,
        writes_group: false,
        choice,
        carried: Some(c),
    };
    let live = match &o.live {
        Some(Ok(l)) => l.clone(),
        Some(Err(e)) => {
            plan.outcome = SyncOutcome::Failed {
                reason: reason::NSX_ERROR,
                message: format!("NSX could not be read: {e}"),
            };
            return plan;
        }
        None => {
            plan.outcome = SyncOutcome::Failed {
                reason: reason::NSX_ERROR,
                message: "NSX was not read".into(),
            };
            return plan;
        }
    };
    let (p, names, identity) = (o.policy, &o.names, o.identity);
    let dry_run = o.settings.dry_run;
    // A new application's group goes first, alone, when its rules name a peer group NSX does
    // not hold yet: two applications that name each other would otherwise each wait for the
    // other's group. (With writes coalesced, a new application otherwise writes its group and
    // policy in one call; without, the group always goes first.)
    let mut live = live;
    let group_first = live.group.is_none()
        && live.policy.is_none()
        && !dry_run
        && (o.settings.nsx_batch.is_none() || !o.peer_groups_in_nsx);
    if group_first {
        let cx = plan::Context {
            identity,
            peers: &o.peers,
            previous_sequence: &Default::default(),
        };
        let pending = plan::desired(p, Phase::Pending, &cx).and_then(|d| {
            plan::diff(&d, &live, identity, &names.ns, &names.name).map(|c| (d.group, c))
        });
        if let Ok((
            group,
            plan::Change {
                patch: Some(patch),
                summary,
            },
        )) = pending
        {
            plan.outcome = SyncOutcome::Applied(summary.clone());
            plan.writes.push(Write {
                patch,
                summary,
                relaxed: true,
            });
            plan.group_first = true;
            live.group = Some(group);
        }
    }
    let sequence = live.rule_sequence();
    let cx = plan::Context {
        identity,
        peers: &o.peers,
        previous_sequence: &sequence,
    };
    let phase = plan.decision.as_ref().map(|d| d.phase).unwrap_or_default();
    let planned = plan::desired(p, phase, &cx).and_then(|d| {
        canary::change(d, plan.choice.as_ref(), o.prev().canary.as_ref(), |d| {
            plan::diff(d, &live, identity, &names.ns, &names.name)
        })
    });
    // A new application that does not drop: nothing it writes changes what traffic does.
    let relaxed = live.policy.is_none() && !phase.drops();
    plan.planned = Some(record::facts(
        names,
        live.group.is_some(),
        live.policy.as_ref().map(PolicyFacts::of),
    ));
    match planned {
        Err(e) => {
            plan.outcome = SyncOutcome::Failed {
                reason: e.reason(),
                message: e.to_string(),
            };
        }
        Ok((_, change)) if change.patch.is_none() => {}
        Ok((_, change)) if dry_run => plan.outcome = SyncOutcome::DryRun(change.summary),
        Ok((_, change)) => {
            let summary = change.summary;
            if let Some(patch) = change.patch {
                plan.writes.push(Write {
                    patch,
                    summary: summary.clone(),
                    relaxed,
                });
            }
            plan.outcome = SyncOutcome::Applied(summary);
            plan.read_back = true;
            plan.writes_group = true;
        }
    }
    plan
}

mod record;
pub use record::{PolicyFacts, conclude};

#[cfg(test)]
mod tests;
