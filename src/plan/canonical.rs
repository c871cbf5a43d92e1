//! Canonical forms of NSX objects for comparison. Pure.
//!
//! A real manager does not return what was written (reference §11a): it fills defaults, adds
//! read-only fields, may drop inline entry ids, and reads `services: []` beside inline entries
//! back as `["ANY"]`. Comparing raw objects makes a client re-PATCH forever. The canonical form
//! is tolerant of what does not change what a rule or group does, and strict about what does:
//! - lists of peers, services, profiles and applied-to paths are sets; `a.b.c.d/32` is
//!   `a.b.c.d`; `ANY` is case-insensitive;
//! - `services`: `[]`, absent and `["ANY"]` are equal only when inline entries are non-empty
//!   (then only the entries' traffic matches); without entries, `["ANY"]` is every service;
//! - inline entries are compared without ids, as the union of their ports per protocol, ports
//!   and ranges by meaning (`80,81` is `80-81`);
//! - defaults equal unset: rule `scope`/`profiles` `["ANY"]`, `direction` `IN_OUT`, `ip_protocol`
//!   `IPV4_IPV6`, `sequence_number` 0, `display_name` the id; policy `scope` `["ANY"]`,
//!   `stateful` true, `tcp_strict` true when stateful; condition `scope_operator` `EQUALS`;
//!   empty `notes`, `tag`, `description` are none; `tag` is compared on the 32 characters NSX
//!   keeps;
//! - never dropped: `sources_excluded`, `destinations_excluded`, `profiles`, `scope` (rule and
//!   policy, distinct), `tcp_strict`, a condition's `scope_operator` and `exclude`, expression
//!   or entry kinds microseg does not write.

use std::collections::{BTreeMap, BTreeSet};

use crate::nsx::model::{
    ANY, Expression, Group, Rule, RuleAction, RuleDirection, SecurityPolicy, ServiceEntry, Tag,
};

/// A rule as far as it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonRule {
    /// Action.
    pub action: RuleAction,
    /// Sources.
    pub sources: BTreeSet<String>,
    /// Source match inverted.
    pub sources_excluded: bool,
    /// Destinations.
    pub destinations: BTreeSet<String>,
    /// Destination match inverted.
    pub destinations_excluded: bool,
    /// Service paths (without `ANY` when entries exist).
    pub services: BTreeSet<String>,
    /// Inline entries by meaning.
    pub entries: BTreeSet<CanonEntry>,
    /// L7 profiles (empty: none).
    pub profiles: BTreeSet<String>,
    /// Applied-to (empty: the policy's scope).
    pub scope: BTreeSet<String>,
    /// Direction.
    pub direction: RuleDirection,
    /// IP family.
    pub ip_protocol: String,
    /// Logging.
    pub logged: bool,
    /// Disabled.
    pub disabled: bool,
    /// Order.
    pub sequence: i64,
    /// Log label (first 32 characters).
    pub tag: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Display name.
    pub display_name: String,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An inline service by meaning.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CanonEntry {
    /// TCP/UDP: destination port ranges (empty: all ports) for given source ports.
    L4 {
        /// `TCP` or `UDP`.
        protocol: String,
        /// Source port ranges (empty: any).
        source: Vec<(u32, u32)>,
        /// Destination port ranges (empty: any).
        destination: Vec<(u32, u32)>,
        /// Port values that are not numbers or ranges, kept as written.
        unparsed: Vec<String>,
    },
    /// ICMP.
    Icmp {
        /// `ICMPv4` or `ICMPv6`.
        protocol: String,
        /// Type (none: all).
        icmp_type: Option<i64>,
        /// Code (none: all).
        icmp_code: Option<i64>,
    },
    /// A kind microseg does not write.
    Other,
}

/// A group as far as it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonGroup {
    /// Expressions in order.
    pub expression: Vec<CanonExpression>,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// One group expression by meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanonExpression {
    /// A membership condition.
    Condition {
        /// Member type.
        member_type: String,
        /// Key.
        key: String,
        /// Operator.
        operator: String,
        /// Value.
        value: String,
        /// `EQUALS` unless written otherwise.
        scope_operator: String,
        /// Exclusion, if any.
        exclude: Option<String>,
    },
    /// AND / OR.
    Conjunction(String),
    /// Addresses.
    Addresses(BTreeSet<String>),
    /// Paths.
    Paths(BTreeSet<String>),
    /// A kind microseg does not write.
    Other,
}

/// A security policy's own fields as far as they matter (rules compared separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonPolicy {
    /// Category.
    pub category: Option<String>,
    /// Order among policies.
    pub sequence: i64,
    /// Applied-to (empty: ANY).
    pub scope: BTreeSet<String>,
    /// Stateful.
    pub stateful: bool,
    /// Strict TCP.
    pub tcp_strict: bool,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

fn is_any(s: &str) -> bool {
    s.eq_ignore_ascii_case(ANY)
}

/// An address or CIDR in one spelling (`a.b.c.d/32` is `a.b.c.d`); anything else as written.
pub fn address(s: &str) -> String {
    if is_any(s) {
        return ANY.into();
    }
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.to_string()
        };
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return ip.to_string();
    }
    s.to_string()
}

fn addresses(list: &[String]) -> BTreeSet<String> {
    list.iter().map(|s| address(s)).collect()
}

/// A set of paths where `["ANY"]` and empty both mean "none given".
fn any_or_paths(list: &[String]) -> BTreeSet<String> {
    list.iter().filter(|s| !is_any(s)).cloned().collect()
}

fn text(s: &Option<String>) -> Option<String> {
    s.clone().filter(|t| !t.is_empty())
}

fn sorted_tags(tags: &[Tag]) -> Vec<Tag> {
    let mut t = tags.to_vec();
    t.sort();
    t
}

fn parse_range(v: &str) -> Option<(u32, u32)> {
    let v = v.trim();
    match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => v.parse().ok().map(|p| (p, p)),
    }
}

/// Merges ranges that overlap or touch.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn ports(values: &[String]) -> (Vec<(u32, u32)>, Vec<String>) {
    let mut ranges = Vec::new();
    let mut unparsed = Vec::new();
    for v in values {
        match parse_range(v) {
            Some(r) => ranges.push(r),
            None => unparsed.push(v.clone()),
        }
    }
    unparsed.sort();
    (merge(ranges), unparsed)
}

/// (protocol, source port ranges).
type L4Key = (String, Vec<(u32, u32)>);
/// (destination ranges, all ports, unparsed values).
type L4Union = (Vec<(u32, u32)>, bool, Vec<String>);

/// Inline entries by meaning: the union of ports per (protocol, source ports).
pub fn entries(list: &[ServiceEntry]) -> BTreeSet<CanonEntry> {
    let mut l4: BTreeMap<L4Key, L4Union> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for e in list {
        match e {
            ServiceEntry::L4PortSetServiceEntry {
                l4_protocol,
                source_ports,
                destination_ports,
                ..
            } => {
                let (source, mut unparsed) = ports(source_ports);
                let (destination, more) = ports(destination_ports);
                unparsed.extend(more);
                let slot = l4
                    .entry((l4_protocol.as_str().to_ascii_uppercase(), source))
                    .or_default();
                slot.1 |= destination_ports.is_empty();
                slot.0.extend(destination);
                slot.2.extend(unparsed);
            }
            ServiceEntry::IcmpTypeServiceEntry {
                protocol,
                icmp_type,
                icmp_code,
                ..
            } => {
                out.insert(CanonEntry::Icmp {
                    protocol: protocol.to_string(),
                    icmp_type: *icmp_type,
                    icmp_code: *icmp_code,
                });
            }
            ServiceEntry::Other => {
                out.insert(CanonEntry::Other);
            }
        }
    }
    for ((protocol, source), (destination, all, mut unparsed)) in l4 {
        unparsed.sort();
        unparsed.dedup();
        out.insert(CanonEntry::L4 {
            protocol,
            source,
            destination: if all { Vec::new() } else { merge(destination) },
            unparsed,
        });
    }
    out
}

/// The canonical form of a rule.
pub fn rule(r: &Rule) -> CanonRule {
    let entries = entries(&r.service_entries);
    let services: BTreeSet<String> = if entries.is_empty() {
        r.services
            .iter()
            .map(|s| if is_any(s) { ANY.into() } else { s.clone() })
            .collect()
    } else {
        any_or_paths(&r.services)
    };
    CanonRule {
        action: r.action.clone(),
        sources: addresses(&r.source_groups),
        sources_excluded: r.sources_excluded,
        destinations: addresses(&r.destination_groups),
        destinations_excluded: r.destinations_excluded,
        services,
        entries,
        profiles: any_or_paths(&r.profiles),
        scope: any_or_paths(&r.scope),
        direction: r.direction.clone(),
        ip_protocol: r.ip_protocol.clone().unwrap_or_else(|| "IPV4_IPV6".into()),
        logged: r.logged,
        disabled: r.disabled,
        sequence: r.sequence_number.unwrap_or(0),
        tag: text(&r.tag).map(|t| t.chars().take(32).collect()),
        notes: text(&r.notes),
        display_name: text(&r.display_name).unwrap_or_else(|| r.id.clone()),
        tags: sorted_tags(&r.tags),
    }
}

/// The fields in which two rules differ, by their NSX names (empty: same meaning).
pub fn rule_differences(a: &Rule, b: &Rule) -> Vec<&'static str> {
    let (a, b) = (rule(a), rule(b));
    let mut out = Vec::new();
    let mut check = |differ: bool, name: &'static str| {
        if differ {
            out.push(name);
        }
    };
    check(a.action != b.action, "action");
    check(a.sources != b.sources, "source_groups");
    check(a.sources_excluded != b.sources_excluded, "sources_excluded");
    check(a.destinations != b.destinations, "destination_groups");
    check(
        a.destinations_excluded != b.destinations_excluded,
        "destinations_excluded",
    );
    check(a.services != b.services, "services");
    check(a.entries != b.entries, "service_entries");
    check(a.profiles != b.profiles, "profiles");
    check(a.scope != b.scope, "scope");
    check(a.direction != b.direction, "direction");
    check(a.ip_protocol != b.ip_protocol, "ip_protocol");
    check(a.logged != b.logged, "logged");
    check(a.disabled != b.disabled, "disabled");
    check(a.sequence != b.sequence, "sequence_number");
    check(a.tag != b.tag, "tag");
    check(a.notes != b.notes, "notes");
    check(a.display_name != b.display_name, "display_name");
    check(a.tags != b.tags, "tags");
    out
}

fn expression(e: &Expression) -> CanonExpression {
    match e {
        Expression::Condition {
            member_type,
            key,
            operator,
            value,
            scope_operator,
            exclude,
        } => CanonExpression::Condition {
            member_type: member_type.clone(),
            key: key.clone(),
            operator: operator.clone(),
            value: value.clone(),
            scope_operator: scope_operator
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "EQUALS".into()),
            exclude: exclude
                .as_ref()
                .filter(|v| !v.is_null())
                .map(|v| v.to_string()),
        },
        Expression::ConjunctionOperator {
            conjunction_operator,
        } => CanonExpression::Conjunction(conjunction_operator.clone()),
        Expression::IpAddressExpression { ip_addresses } => {
            CanonExpression::Addresses(addresses(ip_addresses))
        }
        Expression::PathExpression { paths } => {
            CanonExpression::Paths(paths.iter().cloned().collect())
        }
        Expression::Other => CanonExpression::Other,
    }
}

/// The canonical form of a group.
pub fn group(g: &Group) -> CanonGroup {
    CanonGroup {
        expression: g.expression.iter().map(expression).collect(),
        display_name: text(&g.display_name).unwrap_or_else(|| g.id.clone()),
        description: text(&g.description),
        tags: sorted_tags(&g.tags),
    }
}

/// The fields in which two groups differ.
pub fn group_differences(a: &Group, b: &Group) -> Vec<&'static str> {
    let (a, b) = (group(a), group(b));
    let mut out = Vec::new();
    if a.expression != b.expression {
        out.push("expression");
    }
    if a.display_name != b.display_name {
        out.push("display_name");
    }
    if a.description != b.description {
        out.push("description");
    }
    if a.tags != b.tags {
        out.push("tags");
    }
    out
}

/// The canonical form of a policy's own fields.
pub fn policy(p: &SecurityPolicy) -> CanonPolicy {
    let stateful = p.stateful.unwrap_or(true);
    CanonPolicy {
        category: text(&p.category),
        sequence: p.sequence_number.unwrap_or(0),
        scope: any_or_paths(&p.scope),
        stateful,
        tcp_strict: p.tcp_strict.unwrap_or(stateful),
        display_name: text(&p.display_name).unwrap_or_else(|| p.id.clone()),
        description: text(&p.description),
        tags: sorted_tags(&p.tags),
    }
}

/// The fields in which two policies differ (rules not included).
pub fn policy_differences(a: &SecurityPolicy, b: &SecurityPolicy) -> Vec<&'static str> {
    let (a, b) = (policy(a), policy(b));
    let mut out = Vec::new();
    let mut check = |differ: bool, name: &'static str| {
        if differ {
            out.push(name);
        }
    };
    check(a.category != b.category, "category");
    check(a.sequence != b.sequence, "sequence_number");
    check(a.scope != b.scope, "scope");
    check(a.stateful != b.stateful, "stateful");
    check(a.tcp_strict != b.tcp_strict, "tcp_strict");
    check(a.display_name != b.display_name, "display_name");
    check(a.description != b.description, "description");
    check(a.tags != b.tags, "tags");
    out
}

#[cfg(test)]
mod tests;
