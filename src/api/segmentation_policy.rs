//! `SegmentationPolicy`: the desired distributed-firewall state of one application, and what the
//! controller reports back about it.

// printcolumn(..) repeats `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::k8s::{Condition, Time};
use super::schema;
pub use crate::net::Protocol;

/// Default NSX policy domain.
pub const DEFAULT_DOMAIN: &str = "default";
/// Most history entries kept in status.
pub const MAX_HISTORY: usize = 50;
/// Most top flows kept in status.
pub const MAX_TOP_FLOWS: usize = 20;
/// Most notification records kept in status.
pub const MAX_NOTIFICATIONS: usize = 100;

/// The desired DFW state of one application: who it is (members), what it may talk to (rules),
/// who is told (owners) and on which schedule (window).
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "microseg.io",
    version = "v1alpha1",
    kind = "SegmentationPolicy",
    namespaced,
    status = "SegmentationPolicyStatus",
    shortname = "segpol",
    category = "microseg",
    derive = "PartialEq",
    doc = "The desired NSX distributed-firewall state of one application and its rollout progress.",
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name: must be at most 63 characters (it becomes part of NSX ids)"),
    printcolumn(name = "Application", type_ = "string", json_path = ".status.application", description = "Display name of the application"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Rollout phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "microseg has done what the spec asks for now (a designed wait included)"),
    printcolumn(name = "Enforce-At", type_ = "string", json_path = ".status.schedule.enforceAt", description = "Effective instant the catch-all turns to DROP"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canary.summary", description = "VMs the DROP catch-all applies to during a canary step"),
    printcolumn(name = "Unmatched", type_ = "integer", json_path = ".status.monitor.unmatchedTotal", description = "Flows seen on the catch-all rule"),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.conditions[?(@.type==\"Synced\")].status", description = "NSX matches the desired state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", description = "Why (the Ready condition's message)")
)]
#[serde(rename_all = "camelCase")]
pub struct SegmentationPolicySpec {
    /// Display name of the application in NSX and in notices. Defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub application: Option<String>,

    /// Who is told about this application's rollout: at least one owner, each with an e-mail
    /// address or a webhook (or both).
    #[schemars(length(min = 1, max = 20))]
    pub owners: Vec<Owner>,

    /// How critical the application is. Critical applications (AD, DNS, DHCP, healthcare) go in
    /// the last wave.
    pub criticality: Criticality,

    /// The EnforcementWindow (same namespace) whose schedule this application follows.
    pub window: WindowRef,

    /// What the application is: every member is OR-ed into one NSX group. At most 5 VM tag or VM
    /// name members (NSX's limit on conditions in a group).
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.filter(m, has(m.vmTag) || has(m.vmName)).size() <= 5").message("at most 5 vmTag or vmName members: NSX allows 5 conditions per group"))]
    pub members: Vec<Member>,

    /// Explicit rules, matched before the catch-all. Names are unique and stable: a rule's NSX id
    /// comes from its name, so renaming a rule replaces it in NSX.
    #[serde(default)]
    #[schemars(length(max = 500))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<PolicyRule>,

    /// Which catch-all rules exist: inbound (any → application, on by default) and outbound
    /// (application → any, off by default).
    #[serde(default)]
    pub catch_all: CatchAll,

    /// What happens to the catch-all at clean-up: KeepDrop (stays DROP without logging, the
    /// default) or Remove (removed, for sites with a global default deny).
    #[serde(default)]
    pub after_cleanup: AfterCleanup,

    /// Where the application lives in NSX.
    #[serde(default)]
    pub nsx: NsxPlacement,

    /// The emergency brake: true pins the application to monitor mode (catch-all PASS, logged)
    /// whatever the schedule says.
    #[serde(default)]
    pub suspend: bool,
    /// VM names to take first as canaries when the window declares canary steps (members of
    /// the application only; the rest are chosen by a stable hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(v, size(v) > 0 && size(v) <= 255)").message("VM names are 1-255 characters"))]
    pub canary_vms: Vec<String>,
}

/// Someone who is told about the application's rollout.
#[derive(KubeSchema, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.email) || has(self.webhook)").message("an owner needs an email or a webhook, or nobody can be told"))]
pub struct Owner {
    /// Name of the person or team.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// E-mail address that receives notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 254),
        regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    )]
    pub email: Option<String>,
    /// HTTPS URL of a webhook (generic JSON, Slack or Teams) that receives notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')").message("must be an http(s) URL"))]
    pub webhook: Option<String>,
}

/// How critical an application is.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Criticality {
    /// Can be down for a while without harm.
    Low,
    /// Business hours matter.
    Medium,
    /// Outage is noticed at once.
    High,
    /// Shared infrastructure or patient care (AD, DNS, DHCP, healthcare): last wave.
    Critical,
}

/// Owners print without their webhook URL, which often carries a secret token.
impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("webhook", &self.webhook.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A reference to an EnforcementWindow in the same namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct WindowRef {
    /// Name of the EnforcementWindow.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One way to recognise the application's workloads. Exactly one field is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.vmTag), has(self.vmName), has(self.ipAddress), has(self.nsxGroup)].exists_one(x, x)").message("set exactly one of vmTag, vmName, ipAddress, nsxGroup"))]
pub struct Member {
    /// VMs carrying this NSX tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_tag: Option<VmTag>,
    /// VMs whose name equals or starts with a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<VmName>,
    /// An IP address or CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_ip_or_cidr")]
    pub ip_address: Option<String>,
    /// The policy path of an existing NSX group, e.g. /infra/domains/default/groups/web.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_nsx_path")]
    pub nsx_group: Option<String>,
}

/// An NSX VM tag. The scope is optional (empty matches tags with any scope).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct VmTag {
    /// Tag scope (at most 128 characters, no "|").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = r"^[^|]*$"))]
    pub scope: Option<String>,
    /// Tag value (1 to 256 characters, no "|").
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^|]+$"))]
    pub tag: String,
}

/// A VM name match. Exactly one field is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.equals) != has(self.startsWith)").message("set exactly one of equals, startsWith"))]
pub struct VmName {
    /// The VM's name equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub equals: Option<String>,
    /// The VM's name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub starts_with: Option<String>,
}

/// A named explicit rule of the application.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.peers.exists(p, has(p.any) && p.any) || self.peers.size() == 1").message("peers: 'any' must be the only peer of a rule"))]
pub struct PolicyRule {
    /// Unique, stable name (a DNS label, at most 63 characters): the rule's NSX id.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Inbound: peers → application. Outbound: application → peers.
    pub direction: Direction,
    /// Whom the application talks to (OR-ed). At most 128 (NSX's limit).
    #[schemars(length(min = 1, max = 128))]
    pub peers: Vec<Peer>,
    /// Which traffic (OR-ed). Empty means any service.
    #[serde(default)]
    #[schemars(length(max = 15))]
    pub ports: Vec<Port>,
    /// What NSX does with matching traffic. Default Allow.
    #[serde(default)]
    pub action: Action,
    /// Log matching packets in the DFW log.
    #[serde(default)]
    pub logged: bool,
    /// Free text for reviewers; copied to the NSX rule's notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// Direction of a rule from the application's point of view.
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
)]
pub enum Direction {
    /// Traffic from the peers to the application.
    Inbound,
    /// Traffic from the application to the peers.
    Outbound,
}

/// What NSX does with traffic that matches a rule.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Action {
    /// Let it through.
    #[default]
    Allow,
    /// Discard it silently.
    Drop,
    /// Discard it and answer with a TCP RST or ICMP unreachable.
    Reject,
}

/// The other end of a rule. Exactly one field is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.application), has(self.cidr), has(self.nsxGroup), has(self.any)].exists_one(x, x)").message("set exactly one of application, cidr, nsxGroup, any"))]
#[x_kube(validation = Rule::new("!has(self.any) || self.any").message("any: write 'any: true' or leave it out"))]
pub struct Peer {
    /// Another SegmentationPolicy (its NSX group), by name and optional namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationRef>,
    /// An IP address or CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_ip_or_cidr")]
    pub cidr: Option<String>,
    /// The policy path of an existing NSX group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_nsx_path")]
    pub nsx_group: Option<String>,
    /// Any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
}

/// A reference to another application's SegmentationPolicy.
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct ApplicationRef {
    /// Name of the SegmentationPolicy.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Its namespace; defaults to this policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Traffic a rule matches: a protocol with optional ports or ICMP type, or an existing NSX
/// service. Exactly one of protocol and nsxService is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.protocol) != has(self.nsxService)").message("set exactly one of protocol, nsxService"))]
#[x_kube(validation = Rule::new("!has(self.port) || (has(self.protocol) && (self.protocol == 'TCP' || self.protocol == 'UDP'))").message("port: only TCP and UDP have ports"))]
#[x_kube(validation = Rule::new("!has(self.endPort) || (has(self.port) && self.endPort >= self.port)").message("endPort: needs port and must be at least port"))]
#[x_kube(validation = Rule::new("!has(self.icmpType) || (has(self.protocol) && (self.protocol == 'ICMP' || self.protocol == 'ICMPv6'))").message("icmpType: only ICMP and ICMPv6 have types"))]
pub struct Port {
    /// TCP, UDP, ICMP or ICMPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Destination port (1–65535); with endPort, the first port of a range. Absent: all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Last port of a range (1–65535, at least port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
    /// ICMP type (0–255). Absent: all types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 255))]
    pub icmp_type: Option<i32>,
    /// The policy path of an existing NSX service, e.g. /infra/services/HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_nsx_path")]
    pub nsx_service: Option<String>,
}

/// Which catch-all rules the application gets.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchAll {
    /// any → application (default true).
    #[serde(default = "yes")]
    pub inbound: bool,
    /// application → any (default false).
    #[serde(default)]
    pub outbound: bool,
}

fn yes() -> bool {
    true
}

impl Default for CatchAll {
    fn default() -> Self {
        CatchAll {
            inbound: true,
            outbound: false,
        }
    }
}

/// What happens to the catch-all rules at clean-up.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum AfterCleanup {
    /// The catch-all stays DROP, without logging.
    #[default]
    KeepDrop,
    /// The catch-all is removed (the site has a global default deny).
    Remove,
}

/// Where the application's objects live in NSX.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NsxPlacement {
    /// NSX domain (default "default").
    #[serde(default = "default_domain")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^/&]+$"))]
    pub domain: String,
    /// DFW category of the security policy (default Application).
    #[serde(default)]
    pub category: Category,
    /// Sequence number of the security policy within its category (0–999999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 999_999))]
    pub sequence_number: Option<i32>,
}

fn default_domain() -> String {
    DEFAULT_DOMAIN.to_string()
}

impl Default for NsxPlacement {
    fn default() -> Self {
        NsxPlacement {
            domain: default_domain(),
            category: Category::default(),
            sequence_number: None,
        }
    }
}

/// DFW category (L3), highest priority first.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Category {
    /// Emergency rules.
    Emergency,
    /// Shared infrastructure (AD, DNS, NTP).
    Infrastructure,
    /// Zones and environments.
    Environment,
    /// Applications (the default).
    #[default]
    Application,
}

impl Category {
    /// The NSX spelling.
    pub fn as_nsx(self) -> &'static str {
        match self {
            Category::Emergency => "Emergency",
            Category::Infrastructure => "Infrastructure",
            Category::Environment => "Environment",
            Category::Application => "Application",
        }
    }
}

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
    pub minimum_notice: super::duration::Duration,
    /// spec.postEnforcementMonitoring.
    pub post_enforcement_monitoring: super::duration::Duration,
    /// spec.gates.
    #[serde(default)]
    pub gates: super::enforcement_window::Gates,
    /// spec.blackouts.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub blackouts: Vec<super::enforcement_window::Blackout>,
    /// spec.suspend.
    #[serde(default)]
    pub suspend: bool,
    /// spec.canary (a canary in progress continues if the window is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::enforcement_window::Canary>,
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
    pub batches: Vec<String>,
}

/// One aggregated unmatched flow.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FlowSummary {
    /// Stable id of the flow (hash of application, addresses, protocol, port, direction, action).
    #[serde(default)]
    pub id: String,
    /// Source address.
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// TCP, UDP, ICMP or PROTO n.
    pub protocol: String,
    /// Destination port, when the protocol has ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Inbound or Outbound, from the application's point of view.
    pub direction: Direction,
    /// What the catch-all did: PASS or DROP.
    pub action: String,
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
    pub acknowledged: Option<Acknowledgement>,
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

impl SegmentationPolicy {
    /// Display name: spec.application or metadata.name.
    pub fn application(&self) -> String {
        self.spec
            .application
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_debug_hides_the_webhook_token() {
        let o = Owner {
            name: "Ops".into(),
            email: None,
            webhook: Some("https://hooks.slack.com/services/T000/B000/SECRET".into()),
        };
        let text = format!("{o:?}");
        assert!(
            !text.contains("SECRET") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
