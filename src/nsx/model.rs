//! Serde types for the NSX Policy API objects microseg reads and writes, named and shaped as in
//! `reference/nsx-policy-api.md` (§2, §7). Pure: no IO.
//!
//! Read-only fields that a GET returns (`path`, `_revision`, `rule_id`, ...) are optional here so
//! the same types serve requests and responses; fields we never use are ignored on read.

use serde::{Deserialize, Serialize};

mod values;

pub use values::{IcmpProtocol, L4Protocol, RuleAction, RuleDirection};

/// The special peer/service value meaning "any".
pub const ANY: &str = "ANY";

/// An NSX tag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// Scope, at most 128 characters; may be empty.
    #[serde(default)]
    pub scope: String,
    /// Value, at most 256 characters.
    #[serde(default)]
    pub tag: String,
}

impl Tag {
    /// A tag with a scope.
    pub fn new(scope: impl Into<String>, tag: impl Into<String>) -> Self {
        Tag {
            scope: scope.into(),
            tag: tag.into(),
        }
    }
}

/// Fields every policy object carries on read (ManagedResource / PolicyConfigResource).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    /// Absolute policy path (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Optimistic-lock counter.
    #[serde(rename = "_revision", default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// `PROTECTED`, `NOT_PROTECTED`, ... (read-only).
    #[serde(
        rename = "_protection",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub protection: Option<String>,
    /// Creation time in epoch ms (read-only).
    #[serde(
        rename = "_create_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub create_time: Option<i64>,
    /// Last modification in epoch ms (read-only).
    #[serde(
        rename = "_last_modified_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified_time: Option<i64>,
    /// Unique id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    /// Intent awaiting deletion (read-only on objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_for_delete: Option<bool>,
}

impl Meta {
    /// True when no read-only field is set (a request body).
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }
}

/// A group (`/infra/domains/{domain}/groups/{id}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Always "Group".
    pub resource_type: String,
    /// Id, equal to the last path segment.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description (at most 1024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags (ownership).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Membership criteria; odd length, conjunctions at odd indices.
    #[serde(default)]
    pub expression: Vec<Expression>,
    /// Read-only fields.
    #[serde(flatten)]
    pub meta: Meta,
}

/// One element of a group's membership expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "resource_type")]
pub enum Expression {
    /// Dynamic membership by a property.
    Condition {
        /// e.g. `VirtualMachine`.
        member_type: String,
        /// e.g. `Tag`, `Name`.
        key: String,
        /// e.g. `EQUALS`, `STARTSWITH`.
        operator: String,
        /// For tags `scope|tag`.
        value: String,
        /// `EQUALS` (the default) or `NOTEQUALS` (inverts the tag scope match).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope_operator: Option<String>,
        /// Members excluded from the condition (4.x); microseg never writes one, so any value
        /// read back narrows the group and is drift.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exclude: Option<serde_json::Value>,
    },
    /// Joins two expressions.
    ConjunctionOperator {
        /// `OR` or `AND`.
        conjunction_operator: String,
    },
    /// Static IP addresses, ranges or CIDRs (one address family per expression).
    #[serde(rename = "IPAddressExpression")]
    IpAddressExpression {
        /// Addresses.
        ip_addresses: Vec<String>,
    },
    /// Paths of other groups, segments or segment ports.
    PathExpression {
        /// Paths.
        paths: Vec<String>,
    },
    /// An expression kind microseg does not write (NestedExpression, ExternalIDExpression,
    /// MACAddressExpression, ...): read so the group still decodes, and always a difference.
    #[serde(other)]
    Other,
}

/// A distributed-firewall security policy (a DFW section).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// Always "SecurityPolicy".
    pub resource_type: String,
    /// Id.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags (ownership).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// DFW category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Order within the category (0–999999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// Applied-to group paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// Stateful (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<bool>,
    /// Strict TCP (a session must start with SYN); unset and stateful means true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_strict: Option<bool>,
    /// Embedded rules (as returned by GET; written through `children` in the H-API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// H-API children (rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<PolicyChild>,
    /// Read-only fields.
    #[serde(flatten)]
    pub meta: Meta,
}

/// A firewall rule inside a security policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Always "Rule".
    pub resource_type: String,
    /// Id.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `ALLOW`, `DROP`, `REJECT` or `JUMP_TO_APPLICATION`; anything else is kept as read (and
    /// is a difference), never defaulted (a default would hide what the rule does).
    pub action: RuleAction,
    /// Source group paths, addresses, or `["ANY"]`.
    #[serde(default)]
    pub source_groups: Vec<String>,
    /// True inverts the source match. Always written, so a PATCH corrects it.
    #[serde(default)]
    pub sources_excluded: bool,
    /// Destination group paths, addresses, or `["ANY"]`.
    #[serde(default)]
    pub destination_groups: Vec<String>,
    /// True inverts the destination match. Always written.
    #[serde(default)]
    pub destinations_excluded: bool,
    /// Service paths, or `["ANY"]` (beside inline entries: only the entries' traffic).
    #[serde(default)]
    pub services: Vec<String>,
    /// Inline services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_entries: Vec<ServiceEntry>,
    /// L7 context profile paths (`["ANY"]`: none). A profile narrows the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Applied-to paths, `["ANY"]` for the policy's scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// `IN`, `OUT`, `IN_OUT` (the default); anything else is kept as read.
    #[serde(default)]
    pub direction: RuleDirection,
    /// `IPV4`, `IPV6`, `IPV4_IPV6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<String>,
    /// Packet logging.
    #[serde(default)]
    pub logged: bool,
    /// Disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Order within the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// Printed in DFW logs (truncated by NSX after 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// System-assigned number seen in DFW logs (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<i64>,
    /// Read-only fields.
    #[serde(flatten)]
    pub meta: Meta,
}

/// An inline service entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "resource_type")]
pub enum ServiceEntry {
    /// TCP or UDP ports.
    L4PortSetServiceEntry {
        /// Id; a real manager may return an inline entry without one.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        id: String,
        /// `TCP` or `UDP`.
        l4_protocol: L4Protocol,
        /// Source ports (we never restrict them).
        #[serde(default)]
        source_ports: Vec<String>,
        /// `"443"` or `"8000-8080"`; at most 15 values, a range counts as 2.
        #[serde(default)]
        destination_ports: Vec<String>,
    },
    /// ICMP.
    #[serde(rename = "ICMPTypeServiceEntry")]
    IcmpTypeServiceEntry {
        /// Id; may be absent on read.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        id: String,
        /// `ICMPv4` or `ICMPv6`.
        protocol: IcmpProtocol,
        /// Type; absent for all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icmp_type: Option<i64>,
        /// Code; absent for all (microseg never writes one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icmp_code: Option<i64>,
    },
    /// An entry kind microseg does not write (IP protocol, IGMP, ALG, ...): read so the rule
    /// still decodes, and always a difference.
    #[serde(other)]
    Other,
}

/// H-API root.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Infra {
    /// Always "Infra".
    pub resource_type: String,
    /// Children.
    #[serde(default)]
    pub children: Vec<InfraChild>,
}

/// A child of Infra.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "resource_type")]
pub enum InfraChild {
    /// Refers to an existing domain without modifying it.
    ChildResourceReference {
        /// Domain id.
        id: String,
        /// Always "Domain" here.
        target_type: String,
        /// Groups and policies.
        #[serde(default)]
        children: Vec<DomainChild>,
    },
}

/// A child of a domain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "resource_type")]
pub enum DomainChild {
    /// Creates, updates or (marked_for_delete) deletes a group.
    ChildGroup {
        /// Group id.
        id: String,
        /// Cascade delete.
        #[serde(default, skip_serializing_if = "is_false")]
        marked_for_delete: bool,
        /// The group.
        #[serde(rename = "Group")]
        group: Group,
    },
    /// Creates, updates or (marked_for_delete) deletes a policy with its rules.
    ChildSecurityPolicy {
        /// Policy id.
        id: String,
        /// Cascade delete.
        #[serde(default, skip_serializing_if = "is_false")]
        marked_for_delete: bool,
        /// The policy; rules go in its `children`.
        #[serde(rename = "SecurityPolicy")]
        security_policy: SecurityPolicy,
    },
}

/// A child of a security policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "resource_type")]
pub enum PolicyChild {
    /// Creates, updates or (marked_for_delete) deletes a rule.
    ChildRule {
        /// Rule id.
        id: String,
        /// Delete.
        #[serde(default, skip_serializing_if = "is_false")]
        marked_for_delete: bool,
        /// The rule.
        #[serde(rename = "Rule")]
        rule: Rule,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A page of a list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ListResult<T> {
    /// Items of this page.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    /// Total across all pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_count: Option<i64>,
    /// Opaque cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// NSX's error body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ApiError {
    /// Java HttpStatus name, e.g. `BAD_REQUEST`.
    #[serde(
        rename = "httpStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_status: Option<String>,
    /// NSX error code.
    #[serde(default)]
    pub error_code: i64,
    /// Module, e.g. `Policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    /// Message.
    #[serde(default)]
    pub error_message: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Per-object errors of an H-API call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_errors: Vec<ApiError>,
}
