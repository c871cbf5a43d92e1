//! What a set of DFW sections does to recorded traffic, and what a change does to it. Pure: takes
//! NSX objects (desired or live) and recorded flows, never reads anything.
//!
//! Semantics (NSX distributed firewall, reference §2.3 and §9):
//! - A flow is checked at the source's vNIC (rules with direction `OUT` or `IN_OUT`) and then at
//!   the destination's vNIC (`IN` or `IN_OUT`); a DROP or REJECT at the source ends it there.
//! - At each end the sections are taken in NSX order (category, then the policy's sequence
//!   number, the category's default section last), the rules of a section by sequence number,
//!   and the **first** rule that applies decides: its applied-to (the rule's `scope`, else the
//!   policy's) contains that end, source and destination match (`*_excluded` inverts), and one of
//!   its services admits the protocol and port. Catch-alls sort last in microseg's sections
//!   because their sequence numbers are the highest.
//! - An end that no rule applies to passes (NSX's default layer-3 rule allows unless a site
//!   changed it; a snapshot that holds the default section decides with its own rule).
//! - Group membership is evaluated on the endpoint's address, VM name and VM tags (flows from
//!   DFW logs or monitor status carry only addresses: give an inventory to fill in the rest).
//!   A group path that is not among the known groups has no member; it is listed in
//!   [`Impact::unresolved`] so the reader knows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use crate::nsx::model::{
    Expression, Group, Rule, RuleAction, RuleDirection, SecurityPolicy, ServiceEntry,
};
use crate::nsx::predefined;
use crate::recommend::{Endpoint, Observation};

mod fleets;
#[cfg(test)]
mod tests;

pub use fleets::{dropped_at_enforcement, monitor_flows, phase_at};

/// Id of NSX's default layer-3 section: evaluated after every other section.
const DEFAULT_SECTION: &str = "default-layer3-section";

/// Most nested group references followed.
const MAX_DEPTH: usize = 5;

/// One DFW section and the application it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Who the section is: `namespace/name` for microseg's, `NSX policy <id>` for others.
    pub application: String,
    /// The policy with its rules embedded.
    pub policy: SecurityPolicy,
}

/// Every DFW section and group that decides the traffic: one side of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    /// Groups by policy path.
    pub groups: BTreeMap<String, Group>,
    /// Sections, in any order ([`Fleet::new`] sorts them).
    sections: Vec<Section>,
}

/// Which end of a flow a rule decided at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// At the source's vNIC (outbound).
    Source,
    /// At the destination's vNIC (inbound).
    Destination,
}

/// The rule that decided a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decider {
    /// The section's application.
    pub application: String,
    /// The rule id.
    pub rule: String,
    /// `ALLOW`, `DROP` or `REJECT`.
    pub action: RuleAction,
    /// Where it decided.
    pub end: End,
}

/// What the fleet does with one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// True when the flow gets through both ends.
    pub allowed: bool,
    /// The rule that dropped it, else the last rule that allowed it (destination first); `None`
    /// when no rule applies at either end.
    pub decider: Option<Decider>,
}

fn category_rank(c: Option<&str>) -> u8 {
    match c.unwrap_or("Application") {
        "Ethernet" => 0,
        "Emergency" => 1,
        "Infrastructure" => 2,
        "Environment" => 3,
        "Application" => 4,
        _ => 5,
    }
}

impl Fleet {
    /// A fleet of `sections` and `groups` (by path), in NSX evaluation order.
    pub fn new(groups: BTreeMap<String, Group>, mut sections: Vec<Section>) -> Fleet {
        sections.sort_by(|a, b| {
            let key = |s: &Section| {
                (
                    category_rank(s.policy.category.as_deref()),
                    s.policy.id == DEFAULT_SECTION,
                    s.policy.sequence_number.unwrap_or(0),
                    s.policy.id.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        for s in &mut sections {
            s.policy
                .rules
                .sort_by_key(|r| (r.sequence_number.unwrap_or(0), r.id.clone()));
        }
        Fleet { groups, sections }
    }

    /// The sections in evaluation order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// What the fleet does with `flow` (taken as initiated: a logged reply is turned round).
    pub fn evaluate(&self, flow: &Observation, unresolved: &mut BTreeSet<String>) -> Verdict {
        let flow = flow.normalised();
        let mut allowed_by = None;
        for end in [End::Source, End::Destination] {
            if let Some(d) = self.first_match(&flow, end, unresolved) {
                if d.action != RuleAction::Allow {
                    return Verdict {
                        allowed: false,
                        decider: Some(d),
                    };
                }
                allowed_by = Some(d);
            }
        }
        Verdict {
            allowed: true,
            decider: allowed_by,
        }
    }

    fn first_match(
        &self,
        flow: &Observation,
        end: End,
        unresolved: &mut BTreeSet<String>,
    ) -> Option<Decider> {
        let (at, dir) = match end {
            End::Source => (&flow.src, RuleDirection::Out),
            End::Destination => (&flow.dst, RuleDirection::In),
        };
        for s in &self.sections {
            if s.policy.category.as_deref() == Some("Ethernet") {
                continue;
            }
            for r in &s.policy.rules {
                if r.disabled || (r.direction != RuleDirection::InOut && r.direction != dir) {
                    continue;
                }
                let scope = if is_any(&r.scope) {
                    &s.policy.scope
                } else {
                    &r.scope
                };
                if !is_any(scope) && !scope.iter().any(|p| self.in_group(p, at, 0, unresolved)) {
                    continue;
                }
                let src = self.peer(&r.source_groups, &flow.src, unresolved) != r.sources_excluded;
                let dst = self.peer(&r.destination_groups, &flow.dst, unresolved)
                    != r.destinations_excluded;
                if !(src && dst && service_admits(r, flow, unresolved)) {
                    continue;
                }
                if r.action == RuleAction::JumpToApplication {
                    break;
                }
                return Some(Decider {
                    application: s.application.clone(),
                    rule: r.id.clone(),
                    action: r.action.clone(),
                    end,
                });
            }
        }
        None
    }

    fn peer(&self, list: &[String], e: &Endpoint, unresolved: &mut BTreeSet<String>) -> bool {
        list.is_empty()
            || list.iter().any(|p| {
                if p.eq_ignore_ascii_case("ANY") {
                    true
                } else if p.starts_with('/') {
                    self.in_group(p, e, 0, unresolved)
                } else {
                    address_contains(p, e.ip)
                }
            })
    }

    /// Whether `e` is a member of the group at `path`.
    pub fn in_group(
        &self,
        path: &str,
        e: &Endpoint,
        depth: usize,
        unresolved: &mut BTreeSet<String>,
    ) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Some(g) = self.groups.get(path) else {
            unresolved.insert(path.to_string());
            return false;
        };
        let mut result: Option<bool> = None;
        let mut and = false;
        for x in &g.expression {
            match x {
                Expression::ConjunctionOperator {
                    conjunction_operator,
                } => and = conjunction_operator.eq_ignore_ascii_case("AND"),
                term => {
                    let v = self.term(term, e, depth, unresolved);
                    result = Some(match result {
                        None => v,
                        Some(r) if and => r && v,
                        Some(r) => r || v,
                    });
                }
            }
        }
        result.unwrap_or(false)
    }

    fn term(
        &self,
        x: &Expression,
        e: &Endpoint,
        depth: usize,
        unresolved: &mut BTreeSet<String>,
    ) -> bool {
        match x {
            Expression::Condition {
                member_type,
                key,
                operator,
                value,
                scope_operator,
                ..
            } if member_type == "VirtualMachine" => match key.as_str() {
                "Tag" => {
                    let (scope, tag) = value.split_once('|').unwrap_or(("", value));
                    let negate_scope = scope_operator.as_deref() == Some("NOTEQUALS");
                    e.tags.iter().any(|t| {
                        let (s, v) = t.split_once('|').unwrap_or(("", t));
                        let scope_ok = scope.is_empty() || ((s == scope) != negate_scope);
                        scope_ok && text_matches(operator, v, tag)
                    })
                }
                "Name" => {
                    e.vm.as_deref()
                        .is_some_and(|n| text_matches(operator, n, value))
                }
                _ => false,
            },
            Expression::IpAddressExpression { ip_addresses } => {
                ip_addresses.iter().any(|a| address_contains(a, e.ip))
            }
            Expression::PathExpression { paths } => paths
                .iter()
                .any(|p| self.in_group(p, e, depth + 1, unresolved)),
            _ => false,
        }
    }
}

fn is_any(list: &[String]) -> bool {
    list.is_empty() || list.iter().all(|s| s.eq_ignore_ascii_case("ANY"))
}

fn text_matches(operator: &str, actual: &str, want: &str) -> bool {
    match operator {
        "EQUALS" => actual == want,
        "NOTEQUALS" => actual != want,
        "STARTSWITH" => actual.starts_with(want),
        "ENDSWITH" => actual.ends_with(want),
        "CONTAINS" => actual.contains(want),
        _ => false,
    }
}

/// Whether an address, CIDR block or range `a-b` contains `ip`.
pub fn address_contains(spec: &str, ip: IpAddr) -> bool {
    if let Some((a, b)) = spec.split_once('-')
        && let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>())
    {
        return a <= ip && ip <= b;
    }
    if let Ok(net) = spec.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    spec.parse::<IpAddr>().is_ok_and(|a| a == ip)
}

fn ports_admit(ports: &[String], port: Option<(u16, u16)>) -> bool {
    if ports.is_empty() {
        return true;
    }
    let Some((lo, hi)) = port else {
        return false;
    };
    ports.iter().any(|p| match p.split_once('-') {
        Some((a, b)) => {
            let a = a.trim().parse::<u16>().unwrap_or(u16::MAX);
            let b = b.trim().parse::<u16>().unwrap_or(0);
            a <= lo && hi <= b
        }
        None => p.trim().parse::<u16>().is_ok_and(|n| n == lo && n == hi),
    })
}

fn entry_admits(e: &ServiceEntry, flow: &Observation) -> bool {
    match e {
        ServiceEntry::L4PortSetServiceEntry {
            l4_protocol,
            destination_ports,
            ..
        } => {
            l4_protocol.protocol() == Some(flow.protocol)
                && ports_admit(destination_ports, flow.port)
        }
        ServiceEntry::IcmpTypeServiceEntry {
            protocol,
            icmp_type,
            ..
        } => {
            protocol.protocol() == Some(flow.protocol)
                && icmp_type.is_none_or(|t| flow.port.is_none_or(|(p, _)| i64::from(p) == t))
        }
        ServiceEntry::Other => false,
    }
}

/// Whether a rule's services admit the flow: `["ANY"]` without inline entries is every service;
/// beside inline entries only the entries' traffic; paths of predefined services are read from
/// [`predefined::SERVICES`], other paths are unresolved (they admit nothing here).
fn service_admits(r: &Rule, flow: &Observation, unresolved: &mut BTreeSet<String>) -> bool {
    let any = r.services.iter().any(|s| s.eq_ignore_ascii_case("ANY"));
    if r.service_entries.is_empty() && (any || r.services.is_empty()) {
        return true;
    }
    if r.service_entries.iter().any(|e| entry_admits(e, flow)) {
        return true;
    }
    r.services
        .iter()
        .filter(|s| !s.eq_ignore_ascii_case("ANY"))
        .any(|path| {
            let known = path
                .strip_prefix("/infra/services/")
                .and_then(predefined::service_by_id);
            match known {
                Some(service) => {
                    service.protocol.protocol() == Some(flow.protocol)
                        && ports_admit(
                            &service
                                .ports
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>(),
                            flow.port,
                        )
                }
                None => {
                    unresolved.insert(path.clone());
                    false
                }
            }
        })
}

/// One recorded flow (identical records merged) and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowImpact {
    /// The flow as initiated.
    pub flow: Observation,
    /// Before the change.
    pub before: Verdict,
    /// After the change.
    pub after: Verdict,
}

impl FlowImpact {
    /// `TCP 10.0.0.1 (web-01) -> 10.0.0.2 (db-01):5432`.
    pub fn describe(&self) -> String {
        let end = |e: &Endpoint| match &e.vm {
            Some(vm) => format!("{} ({vm})", e.ip),
            None => e.ip.to_string(),
        };
        let port = match self.flow.port {
            Some((a, b)) if a == b => format!(":{a}"),
            Some((a, b)) => format!(":{a}-{b}"),
            None => String::new(),
        };
        let proto = self.flow.protocol;
        format!(
            "{proto} {} -> {}{port}",
            end(&self.flow.src),
            end(&self.flow.dst)
        )
    }

    /// When it was last seen, as the source wrote it.
    pub fn last_seen(&self) -> &str {
        self.flow
            .seen
            .as_ref()
            .map(|s| s.1.as_str())
            .unwrap_or("unknown")
    }
}

/// What a change does to the flows of one application.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppImpact {
    /// Allowed before, dropped after.
    pub newly_dropped: Vec<FlowImpact>,
    /// Dropped before, allowed after.
    pub newly_allowed: Vec<FlowImpact>,
    /// Same verdict: allowed.
    pub unchanged_allowed: usize,
    /// Same verdict: dropped.
    pub unchanged_dropped: usize,
}

/// What a change does to recorded traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    /// By application (the section that decides after the change, else before).
    pub applications: BTreeMap<String, AppImpact>,
    /// Flows evaluated (after merging identical records).
    pub flows: usize,
    /// Group and service paths the evaluation could not resolve.
    pub unresolved: BTreeSet<String>,
}

/// Label of flows no section decides.
pub const NO_APPLICATION: &str = "(no application's rule)";

/// What makes two records the same flow: ends, protocol, port.
type FlowKey = (IpAddr, IpAddr, String, Option<(u16, u16)>);

/// Identical records (same ends, protocol and port) merged: counts summed, first and last seen
/// widened (RFC 3339 text compares in time order).
pub fn merge(flows: &[Observation]) -> Vec<Observation> {
    let mut out: BTreeMap<FlowKey, Observation> = BTreeMap::new();
    for f in flows {
        let f = f.normalised();
        let key = (f.src.ip, f.dst.ip, format!("{:?}", f.protocol), f.port);
        match out.get_mut(&key) {
            None => {
                out.insert(key, f);
            }
            Some(m) => {
                m.count += f.count;
                m.seen = match (m.seen.take(), f.seen) {
                    (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                    (x, y) => x.or(y),
                };
                if m.src.vm.is_none() {
                    m.src.vm = f.src.vm;
                }
                if m.dst.vm.is_none() {
                    m.dst.vm = f.dst.vm;
                }
            }
        }
    }
    out.into_values().collect()
}

/// Evaluates every flow before and after a change.
pub fn compare(before: &Fleet, after: &Fleet, flows: &[Observation]) -> Impact {
    let mut impact = Impact::default();
    let merged = merge(flows);
    impact.flows = merged.len();
    for flow in merged {
        let b = before.evaluate(&flow, &mut impact.unresolved);
        let a = after.evaluate(&flow, &mut impact.unresolved);
        let app = a
            .decider
            .as_ref()
            .or(b.decider.as_ref())
            .map(|d| d.application.clone())
            .unwrap_or_else(|| NO_APPLICATION.to_string());
        let entry = impact.applications.entry(app).or_default();
        let fi = FlowImpact {
            flow,
            before: b,
            after: a,
        };
        match (fi.before.allowed, fi.after.allowed) {
            (true, false) => entry.newly_dropped.push(fi),
            (false, true) => entry.newly_allowed.push(fi),
            (true, true) => entry.unchanged_allowed += 1,
            (false, false) => entry.unchanged_dropped += 1,
        }
    }
    impact
}

impl Impact {
    /// Flows the change newly drops.
    pub fn newly_dropped(&self) -> usize {
        self.applications
            .values()
            .map(|a| a.newly_dropped.len())
            .sum()
    }

    /// Flows the change newly allows.
    pub fn newly_allowed(&self) -> usize {
        self.applications
            .values()
            .map(|a| a.newly_allowed.len())
            .sum()
    }

    /// 2 when the change newly drops a flow (CI asks for an approval), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.newly_dropped() > 0 { 2 } else { 0 }
    }

    /// The report a reviewer reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let decided = |v: &Verdict| match &v.decider {
            Some(d) => format!(
                "{} {} {} at the {}",
                d.application,
                d.rule,
                d.action,
                match d.end {
                    End::Source => "source",
                    End::Destination => "destination",
                }
            ),
            None => "no rule (default allow)".into(),
        };
        for (app, a) in &self.applications {
            let unchanged = a.unchanged_allowed + a.unchanged_dropped;
            let _ = writeln!(
                out,
                "{app}: {} newly dropped, {} newly allowed, {unchanged} unchanged ({} allowed, {} dropped)",
                a.newly_dropped.len(),
                a.newly_allowed.len(),
                a.unchanged_allowed,
                a.unchanged_dropped
            );
            for (label, list) in [
                ("newly dropped", &a.newly_dropped),
                ("newly allowed", &a.newly_allowed),
            ] {
                for f in list {
                    let _ = writeln!(
                        out,
                        "  {label}: {}, {} seen, last {}\n    now: {}; was: {}",
                        f.describe(),
                        f.flow.count,
                        f.last_seen(),
                        decided(&f.after),
                        decided(&f.before)
                    );
                }
            }
        }
        if !self.unresolved.is_empty() {
            let _ = writeln!(
                out,
                "not resolved (no member, no service here): {}",
                self.unresolved
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n{} flows: {} newly dropped, {} newly allowed, {} unchanged{}",
            self.flows,
            self.newly_dropped(),
            self.newly_allowed(),
            self.flows - self.newly_dropped() - self.newly_allowed(),
            if self.newly_dropped() > 0 {
                " (exit 2: the change drops traffic that was seen)"
            } else {
                ""
            }
        );
        out
    }
}
