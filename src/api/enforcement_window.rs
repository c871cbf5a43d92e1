//! `EnforcementWindow`: one wave's schedule, shared by the policies that name it.

// printcolumn(..) repeats `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::k8s::{Condition, Time};
use super::schema;
use super::segmentation_policy::NextTransition;

/// Default owner notice: 14 days.
pub const DEFAULT_MINIMUM_NOTICE: Duration = Duration::hours(14 * 24);
/// Default monitoring after enforcement: 14 days.
pub const DEFAULT_POST_ENFORCEMENT_MONITORING: Duration = Duration::hours(14 * 24);

/// One wave's schedule: when owners are told, when monitor mode starts, when enforcement
/// happens and when clean-up follows, plus the gates that must hold before enforcing.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "microseg.io",
    version = "v1alpha1",
    kind = "EnforcementWindow",
    namespaced,
    status = "EnforcementWindowStatus",
    shortname = "ew",
    category = "microseg",
    derive = "PartialEq",
    doc = "One wave's enforcement schedule, shared by the SegmentationPolicies that name it.",
    printcolumn(
        name = "Notify-At",
        type_ = "string",
        json_path = ".spec.notifyAt",
        description = "Owner notice"
    ),
    printcolumn(
        name = "Monitor-From",
        type_ = "string",
        json_path = ".spec.monitorFrom",
        description = "Monitor mode starts"
    ),
    printcolumn(
        name = "Enforce-At",
        type_ = "string",
        json_path = ".spec.enforceAt",
        description = "Catch-all turns to DROP"
    ),
    printcolumn(
        name = "Policies",
        type_ = "integer",
        json_path = ".status.policies",
        description = "Policies in this wave"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The window is observed"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "Policies of the wave; stalled ones by name"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.notifyAt <= self.monitorFrom").message("notifyAt must not be after monitorFrom").field_path(".notifyAt"))]
#[x_kube(validation = Rule::new("self.monitorFrom <= self.enforceAt").message("monitorFrom must not be after enforceAt").field_path(".monitorFrom"))]
#[x_kube(validation = Rule::new("!has(self.cleanupAt) || self.enforceAt <= self.cleanupAt").message("cleanupAt must not be before enforceAt").field_path(".cleanupAt"))]
#[x_kube(validation = Rule::new(minimum_notice_rule()).message("enforceAt must be at least minimumNotice after notifyAt").field_path(".enforceAt"))]
pub struct EnforcementWindowSpec {
    /// When owners are told (the Scheduled notice). Enforcement waits at least minimumNotice
    /// after the notice is delivered.
    #[schemars(schema_with = "schema::spec_timestamp")]
    pub notify_at: Time,
    /// When monitor mode starts: rules and a logging PASS catch-all are written to NSX.
    #[schemars(schema_with = "schema::spec_timestamp")]
    pub monitor_from: Time,
    /// When the catch-all turns from PASS to DROP, if the gates allow.
    #[schemars(schema_with = "schema::spec_timestamp")]
    pub enforce_at: Time,
    /// When monitor logging is removed. Default: enforceAt + postEnforcementMonitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_spec_timestamp")]
    pub cleanup_at: Option<Time>,
    /// Least time between the delivered owner notice and enforcement (Kubernetes duration,
    /// default "336h" = 14 days).
    #[serde(default = "default_minimum_notice")]
    pub minimum_notice: Duration,
    /// Monitoring after enforcement, before clean-up (default "336h").
    #[serde(default = "default_post_enforcement")]
    pub post_enforcement_monitoring: Duration,
    /// Conditions that must hold before enforcing.
    #[serde(default)]
    pub gates: Gates,
    /// Change freezes: no scheduled transition happens inside one; it waits for the end.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub blackouts: Vec<Blackout>,
    /// Pins every policy of the wave to monitor mode (catch-all PASS).
    #[serde(default)]
    pub suspend: bool,
    /// Canary enforcement: at enforceAt the DROP catch-all applies to a small, stable subset of
    /// each application's VMs first, step by step, the rest staying PASS and logged; after the
    /// last step the whole application enforces. Absent: the whole application at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// Canary steps: each step widens DROP to more VMs (the previous step's VMs included) once it
/// has lasted `for` and the gates hold (no open alert above maxOpenAlerts, no rollback). A
/// rollback during a step returns every VM to PASS.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The steps, smallest first; after the last one every VM enforces.
    #[schemars(length(min = 1, max = 10))]
    pub steps: Vec<CanaryStep>,
}

/// One canary step: `members` VMs or `percent` of them (rounded up; never all, never none), for
/// at least `for`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.members) != has(self.percent)").message("set exactly one of members and percent").field_path(".members"))]
pub struct CanaryStep {
    /// How many VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub members: Option<i32>,
    /// Which share of the VMs, in percent (1-99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub percent: Option<i32>,
    /// How long the step lasts at least (Kubernetes duration, e.g. "24h"; at least 1s).
    #[serde(rename = "for")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("a canary step lasts at least 1s"))]
    pub duration: Duration,
}

/// CEL: `enforceAt` is at least `minimumNotice` after `notifyAt`. Written without subtracting
/// the timestamps: a CEL duration is int64 nanoseconds (about 292 years), so
/// `enforceAt - notifyAt` fails with "integer overflow" for a far-future window. The first clause
/// keeps `notifyAt + minimumNotice` inside CEL's timestamp range (a notice that ends after the
/// latest timestamp cannot be followed by an `enforceAt`, so refusing it is the right answer).
fn minimum_notice_rule() -> String {
    let notice = "duration(has(self.minimumNotice) ? self.minimumNotice : '336h')";
    format!(
        "self.notifyAt <= timestamp('{}') - {notice} && self.enforceAt >= self.notifyAt + {notice}",
        super::time::LATEST
    )
}

fn default_minimum_notice() -> Duration {
    DEFAULT_MINIMUM_NOTICE
}

fn default_post_enforcement() -> Duration {
    DEFAULT_POST_ENFORCEMENT_MONITORING
}

/// Default quiet period: no unmatched flow for three days before DROP. The method microseg
/// automates watched monitor mode for days; three days cover a weekend and the batch jobs that
/// only run once or twice a week.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::hours(72);
/// Default open-alerts threshold: every unmatched flow is handled (a rule added, or acknowledged)
/// before DROP.
pub const DEFAULT_MAX_OPEN_ALERTS: i64 = 0;

/// Conditions that must hold before the catch-all turns to DROP. The evidence gates are on by
/// default: an application enforces only when its own DFW log lines arrived during monitor mode
/// (and recently: `maxLogSilence`), no alert is open (`maxOpenAlerts`, default 0) and no
/// unmatched flow was seen for `quietPeriod` (default 72h). Turning one off is written in
/// `waive` and shows as a Warning event and in the EnforcementGate condition.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// No unmatched flow for this long before enforcing (default "72h"), counted from the last
    /// unmatched flow, the start of monitor mode or the last return to monitor mode (rollback,
    /// a widening change under DROP), whichever is latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_period: Option<Duration>,
    /// Enforce only with at most this many open (unacknowledged) alerts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_open_alerts: Option<i64>,
    /// Enforce only once the policy carries the annotation microseg.io/approved-generation with
    /// its current metadata.generation.
    #[serde(default)]
    pub require_approval: bool,
    /// Hold enforcement while the application's DFW logs have been silent this long, or never
    /// arrived during monitor mode (monitoring is blind). Default: the controller's
    /// --log-silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_silence: Option<Duration>,
    /// Roll back to monitor mode automatically after enforcement when too many unmatched flows
    /// are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackGate>,
    /// Evidence gates turned off, in writing: Blind (enforce without DFW logs of the
    /// application), OpenAlerts (enforce with open alerts), QuietPeriod (enforce right after an
    /// unmatched flow). Each waived gate shows in the EnforcementGate condition and as a
    /// Warning event while the application enforces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::waived_gates")]
    pub waive: Vec<WaivedGate>,
}

impl Gates {
    /// The quiet period in force (`None`: waived).
    pub fn effective_quiet_period(&self) -> Option<Duration> {
        (!self.waives(WaivedGate::QuietPeriod))
            .then(|| self.quiet_period.unwrap_or(DEFAULT_QUIET_PERIOD))
    }
    /// The open-alerts threshold in force (`None`: waived).
    pub fn effective_max_open_alerts(&self) -> Option<i64> {
        (!self.waives(WaivedGate::OpenAlerts))
            .then(|| self.max_open_alerts.unwrap_or(DEFAULT_MAX_OPEN_ALERTS))
    }
    /// The log-silence threshold in force, given the controller's default (`None`: waived).
    pub fn effective_max_log_silence(&self, controller_default: Duration) -> Option<Duration> {
        (!self.waives(WaivedGate::Blind))
            .then(|| self.max_log_silence.unwrap_or(controller_default))
    }
    /// Whether `gate` is turned off.
    pub fn waives(&self, gate: WaivedGate) -> bool {
        self.waive.contains(&gate)
    }
}

/// An evidence gate that a window may turn off explicitly.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum WaivedGate {
    /// Enforce although monitor mode saw no DFW log line of the application (or none lately).
    Blind,
    /// Enforce with open alerts.
    OpenAlerts,
    /// Enforce without a quiet period after the last unmatched flow.
    QuietPeriod,
}

impl WaivedGate {
    /// The name as written in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            WaivedGate::Blind => "Blind",
            WaivedGate::OpenAlerts => "OpenAlerts",
            WaivedGate::QuietPeriod => "QuietPeriod",
        }
    }
}

/// Automatic rollback after enforcement.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackGate {
    /// Dropped unmatched flows within `period` that trigger a rollback.
    #[schemars(range(min = 1))]
    pub dropped_flows: i64,
    /// The sliding period (e.g. "10m").
    pub period: Duration,
}

/// A change freeze.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.start < self.end").message("start must be before end").field_path(".end"))]
pub struct Blackout {
    /// What the freeze is for (shown in status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub name: Option<String>,
    /// First instant of the freeze.
    #[schemars(schema_with = "schema::spec_timestamp")]
    pub start: Time,
    /// First instant after the freeze.
    #[schemars(schema_with = "schema::spec_timestamp")]
    pub end: Time,
}

/// What the controller reports about a window.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
// Until the controller's first status write the API server shows `observedGeneration: 0`
// (a schema default applied on read): kstatus, Flux and Argo CD then see "not yet observed"
// (InProgress / Progressing) instead of taking an object without status for current.
#[schemars(extend("default" = {"observedGeneration": 0}))]
#[serde(rename_all = "camelCase")]
pub struct EnforcementWindowStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many policies name this window.
    #[serde(default)]
    pub policies: i64,
    /// How many of them are in each phase.
    #[serde(default)]
    pub phases: BTreeMap<String, i64>,
    /// The earliest next transition among its policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<NextTransition>,
    /// Ready.
    #[serde(default)]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
}
