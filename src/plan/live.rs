//! `microseg plan` against NSX: the difference between what microseg would write now and what NSX
//! holds now (read from a manager or from a simulator snapshot), in words a reviewer reads in a
//! pull request. Pure: takes the parsed manifests, what NSX holds and `now`; the caller reads
//! NSX.
//!
//! - A policy in Git that NSX does not have yet is "added".
//! - A policy whose desired objects differ from NSX is "changed", with one line per group member,
//!   rule or policy field that differs.
//! - NSX objects owned by this cluster's microseg (ownership tags) whose policy is no longer in
//!   Git are "removed". Objects microseg does not own are never reported as removed; one that sits
//!   where a policy in Git would write is a conflict (the controller refuses to touch it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::report::{peer_groups, phase_at};
use super::{
    Context, DesiredState, Identity, LiveState, MANAGED_BY, MANAGED_BY_VALUE, OWNER_CLUSTER,
    OWNER_NAME, OWNER_NAMESPACE, PlanError, describe_rule, desired, diff,
};
use crate::api::{EnforcementWindow, Phase, SegmentationPolicy};
use crate::nsx::model::{Expression, Group, Rule, SecurityPolicy, Tag};

/// Everything NSX holds that matters to the review, keyed by (domain, id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// Groups.
    pub groups: BTreeMap<(String, String), Group>,
    /// Security policies with their rules embedded.
    pub policies: BTreeMap<(String, String), SecurityPolicy>,
}

impl Live {
    /// Reads a simulator state dump (`GET /admin/state`: `domains.<d>.groups.<id>` and
    /// `domains.<d>.policies.<id>.{policy, rules}`).
    pub fn from_snapshot(snapshot: &Value) -> Result<Live, PlanError> {
        let invalid = |field: String, reason: String| PlanError::Invalid { field, reason };
        let domains = snapshot
            .get("domains")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("domains".into(), "missing or not an object".into()))?;
        let mut live = Live::default();
        for (domain, d) in domains {
            if let Some(groups) = d.get("groups").and_then(Value::as_object) {
                for (id, g) in groups {
                    let group: Group = serde_json::from_value(g.clone()).map_err(|e| {
                        invalid(format!("domains.{domain}.groups.{id}"), e.to_string())
                    })?;
                    live.groups.insert((domain.clone(), id.clone()), group);
                }
            }
            if let Some(policies) = d.get("policies").and_then(Value::as_object) {
                for (id, ps) in policies {
                    let field = format!("domains.{domain}.policies.{id}");
                    let mut policy: SecurityPolicy =
                        serde_json::from_value(ps.get("policy").cloned().unwrap_or(Value::Null))
                            .map_err(|e| invalid(format!("{field}.policy"), e.to_string()))?;
                    let mut rules = Vec::new();
                    if let Some(map) = ps.get("rules").and_then(Value::as_object) {
                        for (rid, r) in map {
                            let rule: Rule = serde_json::from_value(r.clone()).map_err(|e| {
                                invalid(format!("{field}.rules.{rid}"), e.to_string())
                            })?;
                            rules.push(rule);
                        }
                    }
                    rules.sort_by(|a, b| {
                        (a.sequence_number.unwrap_or(0), &a.id)
                            .cmp(&(b.sequence_number.unwrap_or(0), &b.id))
                    });
                    policy.rules = rules;
                    live.policies.insert((domain.clone(), id.clone()), policy);
                }
            }
        }
        Ok(live)
    }

    fn state(&self, domain: &str, id: &str) -> LiveState {
        let key = (domain.to_string(), id.to_string());
        LiveState {
            group: self.groups.get(&key).cloned(),
            policy: self.policies.get(&key).cloned(),
        }
    }
}

/// What the review found for one application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// NSX already holds what microseg would write.
    Unchanged,
    /// NSX has nothing of it yet.
    Added,
    /// NSX holds it, differently.
    Changed,
    /// NSX holds objects this cluster's microseg owns for a policy no longer in Git.
    Removed,
    /// Microseg could not write it (an object it does not own is in the way, a window or peer
    /// is missing).
    Error,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Unchanged => "no change",
            Status::Added => "added",
            Status::Changed => "changed",
            Status::Removed => "removed",
            Status::Error => "error",
        }
    }
}

/// One application in the review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `namespace/name`.
    pub policy: String,
    /// Found.
    pub status: Status,
    /// The phase microseg would write now (absent for removed policies and errors).
    pub phase: Option<Phase>,
    /// What differs, one line each.
    pub lines: Vec<String>,
}

/// The review of a directory of manifests against NSX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// The instant planned for.
    pub at: Timestamp,
    /// One entry per policy in Git, then one per removed policy.
    pub entries: Vec<Entry>,
}

/// Exit code when NSX already matches.
pub const EXIT_NO_CHANGE: u8 = 0;
/// Exit code when something would be written.
pub const EXIT_ERROR: u8 = 1;
/// Exit code when there are changes.
pub const EXIT_CHANGES: u8 = 2;

impl Review {
    /// 0 when nothing would change, 2 when something would, 1 when a policy cannot be written.
    pub fn exit_code(&self) -> u8 {
        if self.entries.iter().any(|e| e.status == Status::Error) {
            EXIT_ERROR
        } else if self.entries.iter().any(|e| e.status != Status::Unchanged) {
            EXIT_CHANGES
        } else {
            EXIT_NO_CHANGE
        }
    }

    /// The review as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Difference from NSX at {}:", self.at);
        for e in &self.entries {
            let phase = e.phase.map(|p| format!(" ({p})")).unwrap_or_default();
            let _ = writeln!(out, "{}{phase}: {}", e.policy, e.status.word());
            for l in &e.lines {
                let _ = writeln!(out, "  {l}");
            }
        }
        let count = |s: Status| self.entries.iter().filter(|e| e.status == s).count();
        let _ = writeln!(
            out,
            "\n{} added, {} changed, {} removed, {} unchanged, {} errors",
            count(Status::Added),
            count(Status::Changed),
            count(Status::Removed),
            count(Status::Unchanged),
            count(Status::Error)
        );
        out
    }
}

/// Names group paths for people: other applications by `namespace/name`.
struct Namer {
    groups: BTreeMap<String, String>,
}

impl Namer {
    fn peer(&self, p: &str) -> String {
        match self.groups.get(p) {
            Some(app) => format!("application {app}"),
            None => p.to_string(),
        }
    }
}

/// Compares what microseg would write now for every policy in Git with what NSX holds.
pub fn review(
    windows: &[EnforcementWindow],
    policies: &[SegmentationPolicy],
    identity: &Identity,
    now: Timestamp,
    live: &Live,
) -> Review {
    let peers = peer_groups(policies, identity);
    let namer = Namer {
        groups: peers
            .iter()
            .map(|((ns, name), path)| (path.clone(), format!("{ns}/{name}")))
            .collect(),
    };
    let mut entries = Vec::new();
    let mut in_git = BTreeSet::new();
    for p in policies {
        let (ns, name) = crate::api::manifest::key(&p.metadata);
        in_git.insert((ns.clone(), name.clone()));
        let key = format!("{ns}/{name}");
        let error = |lines: Vec<String>| Entry {
            policy: key.clone(),
            status: Status::Error,
            phase: None,
            lines,
        };
        let Some(phase) = phase_at(p, windows, now) else {
            entries.push(error(vec![format!(
                "spec.window.name: EnforcementWindow {:?} not found in {ns}: nothing would be written",
                p.spec.window.name
            )]));
            continue;
        };
        let id = identity.object_id(&ns, &name);
        let state = live.state(&p.spec.nsx.domain, &id);
        let cx = Context {
            identity,
            peers: &peers,
            previous_sequence: &state.rule_sequence(),
        };
        let entry = desired(p, phase.phase, &cx)
            .and_then(|d| {
                let change = diff(&d, &state, identity, &ns, &name)?;
                Ok((d, change))
            })
            .map(|(d, change)| {
                let (status, lines) = if change.is_empty() {
                    (Status::Unchanged, Vec::new())
                } else if state.group.is_none() && state.policy.is_none() {
                    (Status::Added, added_lines(&d, &namer))
                } else {
                    let mut lines = changed_lines(&d, &state, &namer);
                    if lines.is_empty() {
                        lines = change.summary.clone();
                    }
                    (Status::Changed, lines)
                };
                Entry {
                    policy: key.clone(),
                    status,
                    phase: Some(phase.phase),
                    lines,
                }
            });
        entries.push(match entry {
            Ok(e) => e,
            Err(e @ PlanError::NotOwned { .. }) => error(vec![format!(
                "{e} (it has no ownership tags of cluster {:?} for {key})",
                identity.cluster()
            )]),
            Err(e) => error(vec![e.to_string()]),
        });
    }
    entries.extend(removed(live, identity, &in_git, &namer));
    Review { at: now, entries }
}

fn tag_value<'a>(tags: &'a [Tag], scope: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.scope == scope)
        .map(|t| t.tag.as_str())
}

/// The (namespace, name) of the policy owning an object, when this cluster's microseg owns it.
fn owner(tags: &[Tag], identity: &Identity) -> Option<(String, String)> {
    if tag_value(tags, OWNER_CLUSTER) != Some(identity.cluster())
        || tag_value(tags, MANAGED_BY) != Some(MANAGED_BY_VALUE)
    {
        return None;
    }
    Some((
        tag_value(tags, OWNER_NAMESPACE)?.to_string(),
        tag_value(tags, OWNER_NAME)?.to_string(),
    ))
}

fn removed(
    live: &Live,
    identity: &Identity,
    in_git: &BTreeSet<(String, String)>,
    namer: &Namer,
) -> Vec<Entry> {
    let mut gone: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    // Name the removed applications' own groups too.
    let mut namer = Namer {
        groups: namer.groups.clone(),
    };
    for ((domain, id), g) in &live.groups {
        if let Some((ns, name)) = owner(&g.tags, identity).filter(|k| !in_git.contains(k)) {
            namer
                .groups
                .insert(super::group_path(domain, id), format!("{ns}/{name}"));
        }
    }
    let namer = &namer;
    for ((_, id), p) in &live.policies {
        if let Some(key) = owner(&p.tags, identity).filter(|k| !in_git.contains(k)) {
            let line = format!("- security policy {id} and its {} rules", p.rules.len());
            let mut lines = vec![line];
            lines.extend(
                p.rules
                    .iter()
                    .map(|r| format!("    - rule {}: {}", r.id, describe(r, namer))),
            );
            gone.entry(key).or_default().splice(0..0, lines);
        }
    }
    for ((_, id), g) in &live.groups {
        if let Some(key) = owner(&g.tags, identity).filter(|k| !in_git.contains(k)) {
            gone.entry(key).or_default().push(format!(
                "- group {id} (members: {})",
                members(&g.expression)
            ));
        }
    }
    gone.into_iter()
        .map(|((ns, name), mut lines)| {
            lines.insert(
                0,
                format!(
                    "SegmentationPolicy {ns}/{name} is not in Git: deleting it from the cluster removes from NSX:"
                ),
            );
            Entry {
                policy: format!("{ns}/{name}"),
                status: Status::Removed,
                phase: None,
                lines,
            }
        })
        .collect()
}

/// A group's membership criteria for people.
pub fn members(expression: &[Expression]) -> String {
    let mut parts = Vec::new();
    let mut conj = String::new();
    for e in expression {
        let text = match e {
            Expression::ConjunctionOperator {
                conjunction_operator,
            } => {
                conj = conjunction_operator.clone();
                continue;
            }
            Expression::Condition {
                key,
                operator,
                value,
                scope_operator,
                exclude,
                ..
            } => {
                let what = match key.as_str() {
                    "Tag" => "VM tag",
                    "Name" => "VM name",
                    other => other,
                };
                let op = match operator.as_str() {
                    "EQUALS" => "",
                    "STARTSWITH" => "starts with ",
                    other => other,
                };
                let mut text = format!("{what} {op}{value}");
                if let Some(so) = scope_operator.as_deref().filter(|s| *s != "EQUALS") {
                    text.push_str(&format!(" (scope_operator {so})"));
                }
                if exclude.as_ref().is_some_and(|v| !v.is_null()) {
                    text.push_str(" (with exclusions)");
                }
                text
            }
            Expression::IpAddressExpression { ip_addresses } => {
                format!("IP {}", ip_addresses.join(", "))
            }
            Expression::PathExpression { paths } => format!("group {}", paths.join(", ")),
            Expression::Other => "an expression of a kind microseg does not write".into(),
        };
        if !parts.is_empty() {
            parts.push(conj.clone());
        }
        parts.push(text);
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn member_set(expression: &[Expression]) -> BTreeSet<String> {
    expression
        .iter()
        .filter(|e| !matches!(e, Expression::ConjunctionOperator { .. }))
        .map(|e| members(std::slice::from_ref(e)))
        .collect()
}

fn describe(r: &Rule, namer: &Namer) -> String {
    let mut text = describe_rule(r);
    for (path, app) in &namer.groups {
        text = text.replace(path.as_str(), &format!("application {app}"));
    }
    text
}

fn added_lines(d: &DesiredState, namer: &Namer) -> Vec<String> {
    let mut lines = vec![format!(
        "+ group {} (members: {})",
        d.group.id,
        members(&d.group.expression)
    )];
    if let Some(p) = &d.policy {
        lines.push(policy_created(p));
        lines.extend(
            p.rules
                .iter()
                .map(|r| format!("    + rule {}: {}", r.id, describe(r, namer))),
        );
    }
    lines
}

fn policy_created(p: &SecurityPolicy) -> String {
    format!(
        "+ security policy {} (category {}) with {} rules",
        p.id,
        p.category.as_deref().unwrap_or("Application"),
        p.rules.len()
    )
}

fn list_change(label: &str, old: &[String], new: &[String], namer: &Namer) -> Option<String> {
    let old: BTreeSet<String> = old.iter().map(|s| super::canonical::address(s)).collect();
    let new: BTreeSet<String> = new.iter().map(|s| super::canonical::address(s)).collect();
    if old == new {
        return None;
    }
    let mut parts: Vec<String> = new
        .difference(&old)
        .map(|p| format!("+ {}", namer.peer(p)))
        .collect();
    parts.extend(old.difference(&new).map(|p| format!("- {}", namer.peer(p))));
    Some(format!("{label} {}", parts.join(", ")))
}

fn rule_changes(old: &Rule, new: &Rule, namer: &Namer) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |label: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{label} {a} -> {b}"));
        }
    };
    field("action", old.action.to_string(), new.action.to_string());
    field(
        "direction",
        old.direction.to_string(),
        new.direction.to_string(),
    );
    field("logged", old.logged.to_string(), new.logged.to_string());
    field(
        "sources_excluded",
        old.sources_excluded.to_string(),
        new.sources_excluded.to_string(),
    );
    field(
        "destinations_excluded",
        old.destinations_excluded.to_string(),
        new.destinations_excluded.to_string(),
    );
    field(
        "ip_protocol",
        old.ip_protocol
            .clone()
            .unwrap_or_else(|| "IPV4_IPV6".into()),
        new.ip_protocol
            .clone()
            .unwrap_or_else(|| "IPV4_IPV6".into()),
    );
    field(
        "disabled",
        old.disabled.to_string(),
        new.disabled.to_string(),
    );
    field(
        "sequence",
        old.sequence_number.unwrap_or(0).to_string(),
        new.sequence_number.unwrap_or(0).to_string(),
    );
    out.extend(list_change(
        "sources",
        &old.source_groups,
        &new.source_groups,
        namer,
    ));
    out.extend(list_change(
        "destinations",
        &old.destination_groups,
        &new.destination_groups,
        namer,
    ));
    out.extend(list_change(
        "services",
        &super::service_names(old),
        &super::service_names(new),
        namer,
    ));
    let any_or = |l: &[String]| -> Vec<String> {
        l.iter()
            .filter(|s| !s.eq_ignore_ascii_case(crate::nsx::model::ANY))
            .cloned()
            .collect()
    };
    out.extend(list_change(
        "applied to",
        &any_or(&old.scope),
        &any_or(&new.scope),
        namer,
    ));
    out.extend(list_change(
        "profiles",
        &any_or(&old.profiles),
        &any_or(&new.profiles),
        namer,
    ));
    if out.is_empty() {
        let fields = super::canonical::rule_differences(old, new);
        let (a, b) = (
            old.notes.clone().filter(|n| !n.is_empty()),
            new.notes.clone().filter(|n| !n.is_empty()),
        );
        if a != b {
            out.push(format!(
                "notes {:?} -> {:?}",
                a.unwrap_or_default(),
                b.unwrap_or_default()
            ));
        } else if !fields.is_empty() {
            out.push(fields.join(", "));
        }
    }
    out
}

fn changed_lines(d: &DesiredState, live: &LiveState, namer: &Namer) -> Vec<String> {
    let mut lines = Vec::new();
    match &live.group {
        None => lines.push(format!(
            "+ group {} (members: {})",
            d.group.id,
            members(&d.group.expression)
        )),
        Some(g) => {
            let (old, new) = (member_set(&g.expression), member_set(&d.group.expression));
            for m in new.difference(&old) {
                lines.push(format!("~ group {} member + {m}", d.group.id));
            }
            for m in old.difference(&new) {
                lines.push(format!("~ group {} member - {m}", d.group.id));
            }
        }
    }
    match (&d.policy, &live.policy) {
        (None, None) => {}
        (None, Some(p)) => {
            lines.push(format!(
                "- security policy {} and its {} rules (nothing but the group is written in phase Pending)",
                p.id,
                p.rules.len()
            ));
        }
        (Some(want), None) => {
            lines.push(policy_created(want));
            lines.extend(
                want.rules
                    .iter()
                    .map(|r| format!("    + rule {}: {}", r.id, describe(r, namer))),
            );
        }
        (Some(want), Some(have)) => {
            if want.category != have.category {
                lines.push(format!(
                    "~ security policy {} category {} -> {}",
                    want.id,
                    have.category.as_deref().unwrap_or("none"),
                    want.category.as_deref().unwrap_or("none")
                ));
            }
            if want.sequence_number.unwrap_or(0) != have.sequence_number.unwrap_or(0) {
                lines.push(format!(
                    "~ security policy {} sequence {} -> {}",
                    want.id,
                    have.sequence_number.unwrap_or(0),
                    want.sequence_number.unwrap_or(0)
                ));
            }
            let old: BTreeMap<&str, &Rule> =
                have.rules.iter().map(|r| (r.id.as_str(), r)).collect();
            let new: BTreeSet<&str> = want.rules.iter().map(|r| r.id.as_str()).collect();
            for r in &want.rules {
                match old.get(r.id.as_str()) {
                    None => lines.push(format!("+ rule {}: {}", r.id, describe(r, namer))),
                    Some(o) => {
                        let changes = rule_changes(o, r, namer);
                        if !changes.is_empty() {
                            lines.push(format!("~ rule {}: {}", r.id, changes.join("; ")));
                        }
                    }
                }
            }
            for r in have.rules.iter().filter(|r| !new.contains(r.id.as_str())) {
                lines.push(format!("- rule {}: {}", r.id, describe(r, namer)));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::manifest::{Resource, resources};

    const WINDOW: &str = r#"
apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: { name: w, namespace: ns }
spec:
  notifyAt: "2027-01-01T00:00:00Z"
  monitorFrom: "2027-01-01T00:00:00Z"
  enforceAt: "2027-01-20T00:00:00Z"
---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: { name: web, namespace: ns }
spec:
  owners: [{ name: Team, email: team@example.com }]
  criticality: Low
  window: { name: w }
  members: [{ vmName: { startsWith: web- } }]
  rules:
    - name: https
      direction: Inbound
      peers: [{ cidr: 10.1.0.0/16 }]
      ports: [{ protocol: TCP, port: 443 }]
"#;

    fn parsed(text: &str) -> (Vec<EnforcementWindow>, Vec<SegmentationPolicy>) {
        let mut w = Vec::new();
        let mut p = Vec::new();
        for (_, r) in resources(text).unwrap() {
            match r {
                Resource::Window(x) => w.push(*x),
                Resource::Policy(x) => p.push(*x),
            }
        }
        (w, p)
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn live_of(
        w: &[EnforcementWindow],
        p: &[SegmentationPolicy],
        id: &Identity,
        now: Timestamp,
    ) -> Live {
        let peers = peer_groups(p, id);
        let mut live = Live::default();
        for pol in p {
            let phase = phase_at(pol, w, now).unwrap().phase;
            let seq = BTreeMap::new();
            let cx = Context {
                identity: id,
                peers: &peers,
                previous_sequence: &seq,
            };
            let d = desired(pol, phase, &cx).unwrap();
            live.groups
                .insert((d.domain.clone(), d.group.id.clone()), d.group.clone());
            if let Some(sp) = d.policy {
                live.policies.insert((d.domain.clone(), sp.id.clone()), sp);
            }
        }
        live
    }

    #[test]
    fn nsx_holding_the_plan_is_no_change_and_exit_zero() {
        let (w, p) = parsed(WINDOW);
        let id = Identity::new("c1").unwrap();
        let now = at("2027-01-05T00:00:00Z");
        let live = live_of(&w, &p, &id, now);
        let r = review(&w, &p, &id, now, &live);
        assert_eq!(r.entries[0].status, Status::Unchanged, "{}", r.render());
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn a_policy_nsx_lacks_is_added_and_unowned_objects_are_never_removed() {
        let (w, p) = parsed(WINDOW);
        let id = Identity::new("c1").unwrap();
        let mut live = Live::default();
        let mut foreign = live_of(
            &w,
            &p,
            &Identity::new("other").unwrap(),
            at("2027-01-05T00:00:00Z"),
        );
        live.groups.append(&mut foreign.groups);
        live.policies.append(&mut foreign.policies);
        let r = review(&w, &p, &id, at("2027-01-05T00:00:00Z"), &live);
        assert_eq!(r.entries.len(), 1, "{}", r.render());
        assert_eq!(r.entries[0].status, Status::Added);
        assert!(
            r.entries[0]
                .lines
                .iter()
                .any(|l| l.contains("+ rule https"))
        );
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn owned_objects_of_a_policy_gone_from_git_are_removed() {
        let (w, p) = parsed(WINDOW);
        let id = Identity::new("c1").unwrap();
        let now = at("2027-01-05T00:00:00Z");
        let live = live_of(&w, &p, &id, now);
        let r = review(&w, &[], &id, now, &live);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].status, Status::Removed);
        assert_eq!(r.entries[0].policy, "ns/web");
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn an_unowned_object_in_the_way_is_an_error() {
        let (w, p) = parsed(WINDOW);
        let id = Identity::new("c1").unwrap();
        let now = at("2027-01-05T00:00:00Z");
        let mut live = live_of(&w, &p, &id, now);
        for g in live.groups.values_mut() {
            g.tags.clear();
        }
        let r = review(&w, &p, &id, now, &live);
        assert_eq!(r.entries[0].status, Status::Error, "{}", r.render());
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn snapshot_json_reads_groups_policies_and_rules() {
        let snap = serde_json::json!({"domains": {"default": {
            "domain": {},
            "groups": {"g": {"resource_type": "Group", "id": "g", "expression": []}},
            "policies": {"p": {"policy": {"resource_type": "SecurityPolicy", "id": "p"},
                "rules": {"b": {"resource_type": "Rule", "id": "b", "action": "ALLOW",
                    "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"],
                    "direction": "IN", "sequence_number": 2},
                          "a": {"resource_type": "Rule", "id": "a", "action": "ALLOW",
                    "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"],
                    "direction": "IN", "sequence_number": 9}}}}}}});
        let live = Live::from_snapshot(&snap).unwrap();
        assert!(live.groups.contains_key(&("default".into(), "g".into())));
        let p = &live.policies[&("default".to_string(), "p".to_string())];
        let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert!(Live::from_snapshot(&serde_json::json!({})).is_err());
    }
}
