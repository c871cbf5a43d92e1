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

mod status;
pub use status::*;

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
