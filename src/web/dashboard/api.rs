//! The dashboard's JSON API (`/api/v1/...`): the views behind every page, built from the
//! reflector stores, and the one write, acknowledging alerts through the monitor
//! [`Recorder`](crate::monitor::recorder::Recorder).
//!
//! The view builders ([`programme`], [`application`], [`alerts`]) are pure functions of the
//! objects and `now`; the handlers read the stores and the clock. Nothing secret is ever part of a
//! view: owners' webhook URLs (which often carry a token) are reduced to "has a webhook".
//! The API is documented in `docs/dashboard.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Shared, User};
use crate::api::condition::{self, READY, SYNCED};
use crate::api::{
    Acknowledgement, EnforcementWindow, FlowSummary, HistoryEntry, Member, MonitorBucket,
    NotificationRecord, NsxStatus, PolicyRule, SegmentationPolicy,
};
use crate::monitor::aggregate::{AckTarget, PolicyKey};
use crate::monitor::recorder::AckError;
use crate::notify::render::rule_entry;

mod ack;
mod alerts;

pub use ack::{ACKNOWLEDGE_VERB, AckRequest, acknowledge, recorded_by, validate};
use alerts::*;
pub use alerts::{Alert, AlertQuery, AlertQueue, AlertState, Overflow, alerts};

/// Longest acknowledgement comment accepted.
pub const COMMENT_MAX: usize = 1024;
/// Longest `by` accepted from a token user.
pub const BY_MAX: usize = 128;
/// The event stream announces changes at most this often.
pub const EVENTS_MIN_GAP: Duration = Duration::from_millis(500);
/// After the first change of a burst, the event stream waits this long for the rest of it.
pub const EVENTS_SETTLE: Duration = Duration::from_millis(100);
/// An event stream ends after this long (the browser reconnects at once), so that a graceful
/// shutdown of the server never waits longer than this for it.
const EVENTS_LIFETIME: Duration = Duration::from_secs(25);

/// A JSON error answer: `{"error": "<field>: <reason>"}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Filters of the programme and the alert queue (all optional, combined with AND).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Phase (case-insensitive), e.g. `Monitoring`.
    pub phase: Option<String>,
    /// Criticality (case-insensitive), e.g. `Critical`.
    pub criticality: Option<String>,
    /// Case-insensitive text in the name, application, namespace, window or owners.
    pub q: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filter {
    fn is_empty(&self) -> bool {
        set(&self.namespace).is_none()
            && set(&self.phase).is_none()
            && set(&self.criticality).is_none()
            && set(&self.q).is_none()
    }

    fn matches(&self, a: &AppSummary) -> bool {
        if set(&self.namespace).is_some_and(|ns| ns != a.namespace) {
            return false;
        }
        if set(&self.phase).is_some_and(|p| !p.eq_ignore_ascii_case(&a.phase)) {
            return false;
        }
        if set(&self.criticality).is_some_and(|c| !c.eq_ignore_ascii_case(&a.criticality)) {
            return false;
        }
        if let Some(q) = set(&self.q) {
            let q = q.to_lowercase();
            let hay = [&a.name, &a.application, &a.namespace, &a.window]
                .into_iter()
                .chain(a.owners.iter())
                .any(|s| s.to_lowercase().contains(&q));
            if !hay {
                return false;
            }
        }
        true
    }
}

/// One application in a list.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// Namespace.
    pub namespace: String,
    /// SegmentationPolicy name.
    pub name: String,
    /// Display name.
    pub application: String,
    /// Low | Medium | High | Critical.
    pub criticality: String,
    /// EnforcementWindow name (the wave).
    pub window: String,
    /// Phase (`Pending` until the controller has written one).
    pub phase: String,
    /// `spec.suspend`.
    pub suspend: bool,
    /// Effective schedule.
    pub schedule: Option<ScheduleView>,
    /// Next phase and when.
    pub next_transition: Option<Transition>,
    /// Open (unacknowledged) alerts.
    pub open_alerts: i64,
    /// Unmatched flows counted.
    pub unmatched_total: i64,
    /// Log lines on explicit rules counted.
    pub healthy_total: i64,
    /// Latest unmatched flow.
    pub last_unmatched_at: Option<Time>,
    /// Status of the `Synced` condition (`True`, `False`, `Unknown`).
    pub synced: String,
    /// Status of the `Ready` condition.
    pub ready: String,
    /// Owner names.
    pub owners: Vec<String>,
}

/// The four effective instants.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// Owner notice.
    pub notify_at: Time,
    /// Monitor mode from.
    pub monitor_from: Time,
    /// Enforcement.
    pub enforce_at: Time,
    /// Clean-up.
    pub cleanup_at: Time,
    /// Canary steps of the window, from enforceAt at the earliest (empty: none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<CanaryStepView>,
}

/// One canary step on the timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStepView {
    /// `1 VM`, `50% of the VMs`.
    pub covers: String,
    /// Earliest start.
    pub from: Time,
    /// Earliest end (when it may widen).
    pub until: Time,
}

/// The next phase change.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// To this phase.
    pub phase: String,
    /// At this instant, if known.
    pub at: Option<Time>,
}

/// One wave: an EnforcementWindow and the applications that name it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// Namespace.
    pub namespace: String,
    /// EnforcementWindow name.
    pub name: String,
    /// False when policies name a window that does not exist.
    pub found: bool,
    /// The window's schedule (cleanup defaulted as the controller does); `None` when not found.
    pub schedule: Option<ScheduleView>,
    /// `spec.suspend` of the window.
    pub suspend: bool,
    /// Applications per phase (of the applications listed).
    pub phases: BTreeMap<String, i64>,
    /// Open alerts of the applications listed.
    pub open_alerts: i64,
    /// The applications, by criticality then name.
    pub applications: Vec<AppSummary>,
}

/// `GET /api/v1/programme`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Programme {
    /// Server time of the answer (the timeline's "today").
    pub now: Time,
    /// Waves by enforcement time.
    pub waves: Vec<Wave>,
    /// Applications listed.
    pub applications: i64,
    /// Open alerts of the applications listed.
    pub open_alerts: i64,
    /// Applications listed per phase.
    pub phases: BTreeMap<String, i64>,
    /// Values for the filter controls (over all applications, not only those listed).
    pub choices: Choices,
}

/// Values the filters can take.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Choices {
    /// Namespaces with policies or windows.
    pub namespaces: Vec<String>,
    /// Every phase.
    pub phases: Vec<String>,
    /// Every criticality.
    pub criticalities: Vec<String>,
}

fn condition_status(p: &SegmentationPolicy, type_: &str) -> String {
    p.status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, type_))
        .map_or_else(|| condition::UNKNOWN.to_string(), |c| c.status.clone())
}

/// The summary of one policy.
pub fn summary(p: &SegmentationPolicy) -> AppSummary {
    let status = p.status.as_ref();
    let monitor = status.and_then(|s| s.monitor.as_ref());
    AppSummary {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        application: p.spec.application.clone().unwrap_or_else(|| p.name_any()),
        criticality: format!("{:?}", p.spec.criticality),
        window: p.spec.window.name.clone(),
        phase: status.and_then(|s| s.phase).unwrap_or_default().to_string(),
        suspend: p.spec.suspend,
        schedule: status
            .and_then(|s| s.schedule.as_ref())
            .map(|s| ScheduleView {
                notify_at: s.notify_at.clone(),
                monitor_from: s.monitor_from.clone(),
                enforce_at: s.enforce_at.clone(),
                cleanup_at: s.cleanup_at.clone(),
                canary: Vec::new(),
            }),
        next_transition: status
            .and_then(|s| s.next_transition.as_ref())
            .map(|t| Transition {
                phase: t.phase.to_string(),
                at: t.at.clone(),
            }),
        open_alerts: monitor.map_or(0, |m| m.open_alerts),
        unmatched_total: monitor.map_or(0, |m| m.unmatched_total),
        healthy_total: monitor.map_or(0, |m| m.healthy_total),
        last_unmatched_at: monitor.and_then(|m| m.last_unmatched_at.clone()),
        synced: condition_status(p, SYNCED),
        ready: condition_status(p, READY),
        owners: p.spec.owners.iter().map(|o| o.name.clone()).collect(),
    }
}

fn window_schedule(w: &EnforcementWindow) -> ScheduleView {
    let s = &w.spec;
    let cleanup = s.cleanup_at.clone().unwrap_or_else(|| {
        Time(crate::api::time::plus(
            s.enforce_at.0,
            s.post_enforcement_monitoring.get(),
        ))
    });
    let mut from = s.enforce_at.0;
    let canary = s
        .canary
        .iter()
        .flat_map(|c| &c.steps)
        .map(|st| {
            let until = crate::api::time::plus(from, st.duration.get());
            let view = CanaryStepView {
                covers: match (st.members, st.percent) {
                    (Some(1), _) => "1 VM".to_string(),
                    (Some(m), _) => format!("{m} VMs"),
                    (None, Some(p)) => format!("{p}% of the VMs"),
                    (None, None) => String::new(),
                },
                from: Time(from),
                until: Time(until),
            };
            from = until;
            view
        })
        .collect();
    ScheduleView {
        notify_at: s.notify_at.clone(),
        monitor_from: s.monitor_from.clone(),
        enforce_at: s.enforce_at.clone(),
        cleanup_at: cleanup,
        canary,
    }
}

const PHASES: [&str; 6] = [
    "Pending",
    "Monitoring",
    "Held",
    "Enforcing",
    "RolledBack",
    "Completed",
];
const CRITICALITIES: [&str; 4] = ["Low", "Medium", "High", "Critical"];

fn criticality_rank(c: &str) -> usize {
    CRITICALITIES.iter().position(|x| *x == c).unwrap_or(0)
}

/// The programme: applications grouped by wave, filtered.
pub fn programme(
    policies: &[Arc<SegmentationPolicy>],
    windows: &[Arc<EnforcementWindow>],
    filter: &Filter,
    now: Timestamp,
) -> Programme {
    let mut waves: BTreeMap<(String, String), Wave> = BTreeMap::new();
    let mut namespaces = BTreeSet::new();
    for w in windows {
        let ns = w.namespace().unwrap_or_default();
        namespaces.insert(ns.clone());
        waves.insert(
            (ns.clone(), w.name_any()),
            Wave {
                namespace: ns,
                name: w.name_any(),
                found: true,
                schedule: Some(window_schedule(w)),
                suspend: w.spec.suspend,
                phases: BTreeMap::new(),
                open_alerts: 0,
                applications: Vec::new(),
            },
        );
    }
    for p in policies {
        let a = summary(p);
        namespaces.insert(a.namespace.clone());
        if !filter.matches(&a) {
            continue;
        }
        let wave = waves
            .entry((a.namespace.clone(), a.window.clone()))
            .or_insert_with(|| Wave {
                namespace: a.namespace.clone(),
                name: a.window.clone(),
                found: false,
                schedule: None,
                suspend: false,
                phases: BTreeMap::new(),
                open_alerts: 0,
                applications: Vec::new(),
            });
        *wave.phases.entry(a.phase.clone()).or_default() += 1;
        wave.open_alerts += a.open_alerts;
        wave.applications.push(a);
    }
    let mut waves: Vec<Wave> = waves
        .into_values()
        .filter(|w| filter.is_empty() || !w.applications.is_empty())
        .collect();
    for w in &mut waves {
        w.applications.sort_by(|a, b| {
            criticality_rank(&a.criticality)
                .cmp(&criticality_rank(&b.criticality))
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    waves.sort_by(|a, b| {
        let key = |w: &Wave| w.schedule.as_ref().map(|s| s.enforce_at.0);
        // Waves without a window last.
        (key(a).is_none(), key(a), &a.namespace, &a.name).cmp(&(
            key(b).is_none(),
            key(b),
            &b.namespace,
            &b.name,
        ))
    });
    let mut phases = BTreeMap::new();
    let mut applications = 0;
    let mut open_alerts = 0;
    for w in &waves {
        for a in &w.applications {
            applications += 1;
            open_alerts += a.open_alerts;
            *phases.entry(a.phase.clone()).or_default() += 1;
        }
    }
    Programme {
        now: Time(now),
        waves,
        applications,
        open_alerts,
        phases,
        choices: Choices {
            namespaces: namespaces.into_iter().collect(),
            phases: PHASES.iter().map(|s| s.to_string()).collect(),
            criticalities: CRITICALITIES.iter().map(|s| s.to_string()).collect(),
        },
    }
}

/// An owner without secrets.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView {
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Whether notices also go to a webhook (its URL is never shown).
    pub webhook: bool,
}

/// A condition as shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// True | False | Unknown.
    pub status: String,
    /// PascalCase reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// Last change.
    pub last_transition_time: Time,
}

/// Monitor counters and the per-minute series.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitorView {
    /// Unmatched flows counted.
    pub unmatched_total: i64,
    /// Lines on explicit rules.
    pub healthy_total: i64,
    /// Open alerts.
    pub open_alerts: i64,
    /// Open flows beyond the listed bound.
    pub overflow: i64,
    /// Latest unmatched flow.
    pub last_unmatched_at: Option<Time>,
    /// Latest log line.
    pub last_log_at: Option<Time>,
    /// Per-minute unmatched and dropped counts, oldest first.
    pub series: Vec<MonitorBucket>,
}

/// `GET /api/v1/applications/{namespace}/{name}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    /// Server time.
    pub now: Time,
    /// The summary (phase, schedule, counts).
    pub summary: AppSummary,
    /// Owners.
    pub owners: Vec<OwnerView>,
    /// `spec.members`.
    pub members: Vec<Member>,
    /// `spec.rules`.
    pub rules: Vec<PolicyRule>,
    /// Inbound and outbound catch-alls enabled.
    pub catch_all: BTreeMap<String, bool>,
    /// `spec.afterCleanup`.
    pub after_cleanup: String,
    /// The window's own schedule (the policy's effective one is in the summary).
    pub wave: Option<ScheduleView>,
    /// NSX paths, revision, rule ids, last sync.
    pub nsx: Option<NsxStatus>,
    /// Conditions with reasons.
    pub conditions: Vec<ConditionView>,
    /// Phase changes, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Notices sent.
    pub notifications: Vec<NotificationRecord>,
    /// Monitor counters and series.
    pub monitor: MonitorView,
    /// Every listed flow of this application, open first, then newest and loudest.
    pub alerts: Vec<Alert>,
    /// The recorded flows the current spec would drop at enforcement (`plan::impact`).
    pub would_drop: Vec<WouldDrop>,
    /// The canary step in force (`status.canary`).
    pub canary: Option<crate::api::CanaryStatus>,
}

/// A recorded flow that enforcement of the current spec would drop.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WouldDrop {
    /// `TCP 10.0.0.1 -> 10.0.0.2:443`.
    pub flow: String,
    /// Times seen.
    pub count: u64,
    /// Last seen.
    pub last_seen: String,
    /// The rule that would drop it: `namespace/name rule`.
    pub by: String,
}

/// The recorded flows of `p` that enforcement of its current spec would drop, evaluated with
/// every policy of `all` (peers resolve to their groups) in monitor mode.
pub fn would_drop(p: &SegmentationPolicy, all: &[SegmentationPolicy]) -> Vec<WouldDrop> {
    use crate::plan::impact::{dropped_at_enforcement, monitor_flows};
    // Ids only name groups inside the evaluation: any valid cluster identity does.
    let Ok(identity) = crate::nsx::naming::Identity::new("dashboard") else {
        return Vec::new();
    };
    let Ok(impact) = dropped_at_enforcement(p, all, &identity, &monitor_flows(p)) else {
        return Vec::new();
    };
    impact
        .applications
        .values()
        .flat_map(|a| &a.newly_dropped)
        .map(|f| WouldDrop {
            flow: f.describe(),
            count: f.flow.count,
            last_seen: f.last_seen().to_string(),
            by: f
                .after
                .decider
                .as_ref()
                .map(|d| format!("{} {}", d.application, d.rule))
                .unwrap_or_default(),
        })
        .collect()
}

/// The application page's view.
pub fn application(
    p: &SegmentationPolicy,
    window: Option<&EnforcementWindow>,
    now: Timestamp,
) -> ApplicationView {
    let a = summary(p);
    let status = p.status.clone().unwrap_or_default();
    let monitor = status.monitor.clone().unwrap_or_default();
    let mut list: Vec<Alert> = monitor.flows.iter().map(|f| alert(&a, f)).collect();
    list.sort_by(|x, y| {
        x.acknowledged
            .is_some()
            .cmp(&y.acknowledged.is_some())
            .then_with(|| queue_order(x, y))
    });
    ApplicationView {
        now: Time(now),
        owners: p
            .spec
            .owners
            .iter()
            .map(|o| OwnerView {
                name: o.name.clone(),
                email: o.email.clone(),
                webhook: o.webhook.is_some(),
            })
            .collect(),
        members: p.spec.members.clone(),
        rules: p.spec.rules.clone(),
        catch_all: [
            ("inbound".to_string(), p.spec.catch_all.inbound),
            ("outbound".to_string(), p.spec.catch_all.outbound),
        ]
        .into(),
        after_cleanup: format!("{:?}", p.spec.after_cleanup),
        wave: window.map(window_schedule),
        nsx: status.nsx.clone(),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionView {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
            .collect(),
        history: status.history.clone(),
        notifications: status.notifications.clone(),
        monitor: MonitorView {
            unmatched_total: monitor.unmatched_total,
            healthy_total: monitor.healthy_total,
            open_alerts: monitor.open_alerts,
            overflow: monitor.overflow,
            last_unmatched_at: monitor.last_unmatched_at.clone(),
            last_log_at: monitor.last_log_at.clone(),
            series: monitor.series.clone(),
        },
        alerts: list,
        would_drop: Vec::new(),
        canary: status.canary.clone(),
        summary: a,
    }
}

// ---- handlers ----

/// `GET /api/v1`: what the API offers.
pub async fn index() -> Response {
    Json(serde_json::json!({
        "documentation": "docs/dashboard.md",
        "endpoints": [
            {"method": "GET", "path": "/api/v1/programme", "query": "namespace, phase, criticality, q", "what": "applications grouped by wave"},
            {"method": "GET", "path": "/api/v1/applications/{namespace}/{name}", "what": "one application: members, rules, NSX, schedule, conditions, history, notices, alerts"},
            {"method": "GET", "path": "/api/v1/alerts", "query": "state=open|acknowledged|all, namespace, phase, criticality, q", "what": "the alert queue, newest and loudest first"},
            {"method": "POST", "path": "/api/v1/alerts/acknowledge", "body": "{namespace, name, flowIds | all: true, comment, by?}", "what": "acknowledge alerts (recorded on the policy)"},
            {"method": "GET", "path": "/api/v1/events", "what": "server-sent events: `change` whenever policies or windows change"},
        ]
    }))
    .into_response()
}

/// `GET /api/v1/programme`.
pub async fn get_programme(State(s): State<Arc<Shared>>, Query(f): Query<Filter>) -> Response {
    Json(programme(
        &s.state.policies.state(),
        &s.state.windows.state(),
        &f,
        Timestamp::now(),
    ))
    .into_response()
}

/// `GET /api/v1/alerts`.
pub async fn get_alerts(State(s): State<Arc<Shared>>, Query(q): Query<AlertQuery>) -> Response {
    Json(alerts(&s.state.policies.state(), &q, Timestamp::now())).into_response()
}

fn find_policy(s: &Shared, namespace: &str, name: &str) -> Option<Arc<SegmentationPolicy>> {
    s.state
        .policies
        .state()
        .into_iter()
        .find(|p| p.namespace().as_deref() == Some(namespace) && p.name_any() == name)
}

/// `GET /api/v1/applications/{namespace}/{name}`.
pub async fn get_application(
    State(s): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let Some(p) = find_policy(&s, &namespace, &name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("segmentationpolicy {namespace}/{name}: not found"),
        );
    };
    let window = s.state.windows.state().into_iter().find(|w| {
        w.namespace().as_deref() == Some(namespace.as_str()) && w.name_any() == p.spec.window.name
    });
    let mut view = application(&p, window.as_deref(), Timestamp::now());
    let all: Vec<SegmentationPolicy> = s
        .state
        .policies
        .state()
        .iter()
        .map(|x| (**x).clone())
        .collect();
    view.would_drop = would_drop(&p, &all);
    Json(view).into_response()
}

/// The versions a live update stream announces: the current one at once, then the latest one
/// whenever `changes` moves. A change is announced [`EVENTS_SETTLE`] after it (the rest of its
/// burst comes along) and never sooner than [`EVENTS_MIN_GAP`] after the previous announcement,
/// so that a wave of a thousand store events sends a few updates; while nothing changes nothing
/// is sent. The stream ends after `lifetime`.
pub fn versions(
    changes: watch::Receiver<u64>,
    lifetime: Duration,
) -> impl Stream<Item = u64> + Send + 'static {
    let deadline = Instant::now() + lifetime;
    futures::stream::unfold(
        (changes, None::<Instant>),
        move |(mut changes, sent)| async move {
            if let Some(sent) = sent {
                match tokio::time::timeout_at(deadline, changes.changed()).await {
                    Ok(Ok(())) => {}
                    // Nothing can change any more: stay open, quiet, for the stream's lifetime.
                    Ok(Err(_)) => {
                        tokio::time::sleep_until(deadline).await;
                        return None;
                    }
                    Err(_) => return None,
                }
                let at = (Instant::now() + EVENTS_SETTLE).max(sent + EVENTS_MIN_GAP);
                if at >= deadline {
                    // The browser reconnects at once and is told the latest version then.
                    return None;
                }
                tokio::time::sleep_until(at).await;
            }
            let version = *changes.borrow_and_update();
            Some((version, (changes, Some(Instant::now()))))
        },
    )
}

/// `GET /api/v1/events`: a `change` event at once and whenever the stores change.
pub async fn events(
    State(s): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = versions(s.state.changes.clone(), EVENTS_LIFETIME).map(|version| {
        Ok(Event::default()
            .event("change")
            .retry(Duration::from_secs(1))
            .data(format!("{{\"version\":\"{version:016x}\"}}")))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
