//! What the controller reports about a `SegmentationPolicy`: its phase, conditions, schedule,
//! NSX state, monitor summary, notices and history (`status`).

use compact_str::CompactString;

use super::*;

/// Rollout phase of an application. Ordered as the rollout goes; Held and RolledBack are detours.
#[derive(
    schemars::JsonSchema,
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
)]
pub enum Phase {
    /// Before monitorFrom: nothing in NSX yet.
    #[default]
    Pending,
    /// Rules in place, catch-all PASS and logged: unmatched flows are reported, not blocked.
    Monitoring,
    /// Catch-all DROP and logged: unmatched flows are blocked and reported.
    Enforcing,
    /// Clean-up done: catch-all DROP without logging, or removed (afterCleanup).
    Completed,
    /// Enforcement is due but a gate blocks it (or the policy is suspended): catch-all PASS.
    Held,
    /// Enforcement was rolled back to monitor mode after too many dropped flows: catch-all PASS.
    RolledBack,
}

impl Phase {
    /// Every phase, for metrics and counts.
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Monitoring,
        Phase::Enforcing,
        Phase::Completed,
        Phase::Held,
        Phase::RolledBack,
    ];

    /// The name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Monitoring => "Monitoring",
            Phase::Enforcing => "Enforcing",
            Phase::Completed => "Completed",
            Phase::Held => "Held",
            Phase::RolledBack => "RolledBack",
        }
    }

    /// True when the catch-all drops unmatched traffic in this phase.
    pub fn drops(self) -> bool {
        matches!(self, Phase::Enforcing | Phase::Completed)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the controller reports about a SegmentationPolicy.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
// Until the controller's first status write the API server shows `observedGeneration: 0`
// (a schema default applied on read): kstatus, Flux and Argo CD then see "not yet observed"
// (InProgress / Progressing) instead of taking an object without status for current.
#[schemars(extend("default" = {"observedGeneration": 0}))]
#[serde(rename_all = "camelCase")]
pub struct SegmentationPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Display name of the application (spec.application or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Current rollout phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Effective schedule: starts from the window and only ever moves later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<EffectiveSchedule>,
    /// The next phase change and when it is due, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<NextTransition>,
    /// Ready, Synced, OwnerNotified, EnforcementGate, MonitoringHealthy.
    #[serde(default)]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// What microseg wrote to NSX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsx: Option<NsxStatus>,
    /// What monitor mode has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorStatus>,
    /// The canary step in force, while one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Notices sent to owners (makes sending idempotent). Newest last, bounded.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub notifications: Vec<NotificationRecord>,
    /// Phase changes, newest last, bounded.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub history: Vec<HistoryEntry>,
    /// The part of the spec that was under DROP last (members, rules, catch-alls): a later
    /// spec that widens what DROP affects goes back to PASS and through the gates again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::recorded_object")]
    pub enforced_spec: Option<EnforcedSpec>,
    /// The window's settings as last seen (gates, blackouts, notice and monitoring periods): if
    /// the window disappears, the application continues from its effective schedule with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::recorded_object")]
    pub window: Option<WindowSnapshot>,
}

/// What DROP applied to: the spec's members, rules and catch-alls at the generation enforced.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EnforcedSpec {
    /// metadata.generation of that spec.
    pub generation: i64,
    /// spec.members.
    pub members: Vec<Member>,
    /// spec.rules.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// spec.catchAll.
    pub catch_all: CatchAll,
}

/// An EnforcementWindow's settings besides its instants (those are in `status.schedule`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WindowSnapshot {
    /// The window's name.
    pub name: String,
    /// Its metadata.generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// spec.minimumNotice.
    pub minimum_notice: crate::api::duration::Duration,
    /// spec.postEnforcementMonitoring.
    pub post_enforcement_monitoring: crate::api::duration::Duration,
    /// spec.gates.
    #[serde(default)]
    pub gates: crate::api::enforcement_window::Gates,
    /// spec.blackouts.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub blackouts: Vec<crate::api::enforcement_window::Blackout>,
    /// spec.suspend.
    #[serde(default)]
    pub suspend: bool,
    /// spec.canary (a canary in progress continues if the window is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::api::enforcement_window::Canary>,
}

/// The effective timestamps of the rollout, plus the facts that move them.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSchedule {
    /// When the owner notice is due.
    #[schemars(schema_with = "schema::timestamp")]
    pub notify_at: Time,
    /// When monitor mode starts (rules and PASS catch-all written).
    #[schemars(schema_with = "schema::timestamp")]
    pub monitor_from: Time,
    /// When the catch-all turns to DROP.
    #[schemars(schema_with = "schema::timestamp")]
    pub enforce_at: Time,
    /// When monitor logging is removed.
    #[schemars(schema_with = "schema::timestamp")]
    pub cleanup_at: Time,
    /// When the owner notice was delivered; enforcement waits minimumNotice after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub notice_delivered_at: Option<Time>,
    /// When the current enforcement started (cleared when the catch-all goes back to PASS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub enforced_since: Option<Time>,
    /// The spec generation at the last automatic rollback; a newer spec lifts the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_generation: Option<i64>,
    /// Monitor-mode evidence counts from here: set when the catch-all went back to PASS after
    /// an automatic rollback or a widening change under DROP. The quiet period and the log
    /// evidence are counted again from this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub evidence_from: Option<Time>,
    /// The canary step in force (1 = the window's first step); absent when the window has no
    /// canary or every VM enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_step: Option<i64>,
    /// When the canary step in force began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub canary_since: Option<Time>,
}

/// The canary step NSX holds (`kubectl get` shows `summary`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Step in force (from 1).
    pub step: i64,
    /// Steps the window declares.
    pub steps: i64,
    /// The VMs the DROP catch-all applies to.
    #[schemars(length(max = 10000))]
    pub vms: Vec<String>,
    /// The application's VMs.
    pub members: i64,
    /// e.g. `1/12 VMs (step 1 of 2)`.
    pub summary: String,
    /// When the step may widen (if the gates hold then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub widens_at: Option<Time>,
}

/// The next phase change.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct NextTransition {
    /// The phase that comes next.
    pub phase: Phase,
    /// When it is due; absent when it waits for an event (approval, alerts handled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub at: Option<Time>,
}

/// NSX objects owned by this application.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NsxStatus {
    /// Policy path of the application's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_path: Option<String>,
    /// Policy path of the application's security policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_path: Option<String>,
    /// `_revision` of the security policy after the last write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The NSX rule id (as in DFW logs) of every rule, catch-alls included, by rule name.
    #[serde(default)]
    pub rule_ids: BTreeMap<String, i64>,
    /// Last time microseg wrote NSX or found what NSX holds different from what it last
    /// recorded (paths, revision, rule ids). A resync that finds NSX unchanged does not move it,
    /// so an unchanged application costs no status write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_sync_time: Option<Time>,
}

/// What monitor mode has seen for the application. Written by the ingestion path (field manager
/// `microseg-monitor`) with read-modify-write on the resourceVersion, never by the reconciler.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitorStatus {
    /// Flows that reached a catch-all rule since monitoring began (DFW `match` lines).
    #[serde(default)]
    pub unmatched_total: i64,
    /// Log lines that hit one of the application's explicit rules (healthy traffic).
    #[serde(default)]
    pub healthy_total: i64,
    /// Distinct unmatched flows not yet acknowledged, plus the overflow.
    #[serde(default)]
    pub open_alerts: i64,
    /// Distinct unmatched flows not kept because `flows` was full (they count as open alerts
    /// until acknowledged all at once).
    #[serde(default)]
    pub overflow: i64,
    /// Last time an unmatched flow was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_unmatched_at: Option<Time>,
    /// Last time any DFW log line of this application arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_log_at: Option<Time>,
    /// Aggregated unmatched flows, loudest first (bounded; acknowledged ones stay as history).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub flows: Vec<FlowSummary>,
    /// Unmatched and dropped counts per minute, oldest first (bounded: the last 6 hours).
    #[serde(default)]
    #[schemars(length(max = 360))]
    pub series: Vec<MonitorBucket>,
    /// Idempotency keys of the most recent ingested batches (a retried batch is not counted
    /// twice).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub batches: Vec<CompactString>,
}

/// One aggregated unmatched flow.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FlowSummary {
    /// Stable id of the flow (hash of application, addresses, protocol, port, direction, action).
    #[serde(default)]
    pub id: CompactString,
    /// Source address.
    pub source: CompactString,
    /// Destination address.
    pub destination: CompactString,
    /// TCP, UDP, ICMP or PROTO n.
    pub protocol: CompactString,
    /// Destination port, when the protocol has ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Inbound or Outbound, from the application's point of view.
    pub direction: Direction,
    /// What the catch-all did: PASS or DROP.
    pub action: CompactString,
    /// How many times it was seen.
    pub count: i64,
    /// First seen.
    #[schemars(schema_with = "schema::timestamp")]
    pub first_seen: Time,
    /// Last seen.
    #[schemars(schema_with = "schema::timestamp")]
    pub last_seen: Time,
    /// Who acknowledged the alert, when and why; absent while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Box<Acknowledgement>>,
}

/// An acknowledged alert.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    /// Who (as authenticated by the dashboard or given on the command line).
    #[schemars(length(max = 253))]
    pub by: String,
    /// When.
    #[schemars(schema_with = "schema::timestamp")]
    pub at: Time,
    /// Why.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub comment: String,
}

/// Counts of one minute.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct MonitorBucket {
    /// Start of the minute.
    #[schemars(schema_with = "schema::timestamp")]
    pub start: Time,
    /// Unmatched flows seen (PASS and DROP).
    #[serde(default)]
    pub unmatched: i64,
    /// Unmatched flows the catch-all dropped.
    #[serde(default)]
    pub dropped: i64,
}

/// A notice that was sent.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// Scheduled, Reminder, Enforced, Completed, Postponed, RolledBack or AlertDigest.
    pub kind: String,
    /// Owner name.
    pub owner: String,
    /// email or webhook.
    pub channel: String,
    /// Deterministic message id (the same notice always has the same id).
    pub message_id: String,
    /// When it was delivered.
    #[schemars(schema_with = "schema::timestamp")]
    pub sent_at: Time,
    /// The enforcement date the notice announced, if it announced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub enforce_at: Option<Time>,
}

/// A phase change.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The phase entered.
    pub phase: Phase,
    /// When.
    #[schemars(schema_with = "schema::timestamp")]
    pub at: Time,
    /// PascalCase reason.
    pub reason: String,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
}
