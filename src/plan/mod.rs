//! The desired NSX objects of a SegmentationPolicy in a phase, and the difference from what NSX
//! holds. Pure: no IO. Uses the wire types of `nsx::model`, never the client.
//!
//! Mapping (DESIGN.md):
//! - One Group per application from `members` (OR-ed). It exists from Pending on: a group has
//!   no effect on traffic, and other applications' rules may name it before this one starts.
//! - One SecurityPolicy per application from Monitoring on, scoped to the group, with the
//!   explicit rules first and the catch-all rule(s) last.
//! - Catch-all per phase: Monitoring, Held, RolledBack = ALLOW, logged, monitor tag;
//!   Enforcing = DROP, logged, monitor tag; Completed = DROP unlogged (KeepDrop) or none
//!   (Remove); Pending = no policy.
//! - Ids are deterministic and injective: `ms_{cluster}_{namespace}_{name}`. `_` cannot occur in
//!   Kubernetes names nor in a cluster identity, so two policies never share an id. A rule's id is
//!   its name; catch-alls are `catchall_in` / `catchall_out` (never a valid rule name).
//! - Sequence numbers leave gaps and are kept from NSX: adding or removing a rule never changes
//!   the others (see [`allocate_sequence`]).

pub mod canary;
pub mod canonical;
pub mod impact;
pub mod live;
pub mod report;
mod sequence;
mod translate;
pub mod widening;

pub use sequence::{GAP, allocate_sequence};
use translate::{group_expression, resolve_peers, services};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{
    Action, AfterCleanup, ApplicationRef, Direction, Member, Peer, Phase, Port, SegmentationPolicy,
};
use crate::nsx::model::{
    ANY, DomainChild, Expression, Group, IcmpProtocol, Infra, InfraChild, L4Protocol, Meta,
    PolicyChild, Rule, RuleAction, RuleDirection, SecurityPolicy, ServiceEntry,
};
use crate::nsx::naming::{
    CATCHALL_IN, CATCHALL_OUT, Identity, InvalidIdentity, MANAGED_BY, MANAGED_BY_VALUE,
    OWNER_CLUSTER, OWNER_NAME, OWNER_NAMESPACE, group_path, monitor_tag, policy_path,
};

/// Sequence number of the inbound catch-all (after every explicit rule).
pub const CATCHALL_IN_SEQ: i64 = 2_000_000_000;
/// Sequence number of the outbound catch-all.
pub const CATCHALL_OUT_SEQ: i64 = 2_000_000_001;
/// Most Condition expressions NSX accepts in a group.
pub const MAX_CONDITIONS: usize = 5;
/// Most values in one L4 port-set entry (a range counts twice).
pub const MAX_PORT_VALUES: usize = 15;

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The spec breaks a rule the schema cannot check.
    #[error("{field}: {reason}")]
    Invalid {
        /// Field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// A rule names an application that does not exist (or has no group yet).
    #[error("spec.rules[{rule}].peers: application {peer} not found")]
    PeerNotFound {
        /// Rule name.
        rule: String,
        /// namespace/name.
        peer: String,
    },
    /// NSX holds an object with our id that microseg does not own.
    #[error("NSX {path} exists and is not owned by this policy; refusing to change it")]
    NotOwned {
        /// Path.
        path: String,
    },
}

impl From<InvalidIdentity> for PlanError {
    fn from(e: InvalidIdentity) -> Self {
        PlanError::Invalid {
            field: "cluster identity".into(),
            reason: e.reason(),
        }
    }
}

impl PlanError {
    /// PascalCase reason for conditions.
    pub fn reason(&self) -> &'static str {
        use crate::api::condition::reason;
        match self {
            PlanError::Invalid { .. } => reason::INVALID_SPEC,
            PlanError::PeerNotFound { .. } => reason::PEER_NOT_FOUND,
            PlanError::NotOwned { .. } => reason::NOT_OWNED,
        }
    }
}

/// Group paths of other applications, by namespace/name.
pub type PeerGroups = BTreeMap<(String, String), String>;

/// What a policy should look like in NSX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredState {
    /// NSX domain.
    pub domain: String,
    /// The application's group (always present).
    pub group: Group,
    /// The security policy with its rules in `rules`, from Monitoring on.
    pub policy: Option<SecurityPolicy>,
}

/// What NSX holds for a policy (as read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveState {
    /// The group, if present.
    pub group: Option<Group>,
    /// The security policy with embedded rules, if present.
    pub policy: Option<SecurityPolicy>,
}

impl LiveState {
    /// Sequence numbers of the live rules, by rule id.
    pub fn rule_sequence(&self) -> BTreeMap<String, i64> {
        self.policy
            .iter()
            .flat_map(|p| &p.rules)
            .filter_map(|r| r.sequence_number.map(|s| (r.id.clone(), s)))
            .collect()
    }

    /// NSX rule ids (as in DFW logs) by rule id.
    pub fn rule_ids(&self) -> BTreeMap<String, i64> {
        self.policy
            .iter()
            .flat_map(|p| &p.rules)
            .filter_map(|r| r.rule_id.map(|n| (r.id.clone(), n)))
            .collect()
    }
}

/// Everything `desired` needs besides the policy.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// This cluster.
    pub identity: &'a Identity,
    /// Resolved peer applications.
    pub peers: &'a PeerGroups,
    /// Sequence numbers NSX already holds (keeps rules stable).
    pub previous_sequence: &'a BTreeMap<String, i64>,
}

/// The desired NSX objects of `policy` in `phase`.
pub fn desired(
    policy: &SegmentationPolicy,
    phase: Phase,
    cx: &Context<'_>,
) -> Result<DesiredState, PlanError> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    let spec = &policy.spec;
    let domain = spec.nsx.domain.clone();
    let id = cx.identity.object_id(&namespace, &name);
    let tags = cx.identity.owner_tags(&namespace, &name);
    let application = policy.application();
    let gpath = group_path(&domain, &id);

    let group = Group {
        resource_type: "Group".into(),
        id: id.clone(),
        display_name: Some(application.clone()),
        description: Some(format!("microseg application {namespace}/{name}")),
        tags: tags.clone(),
        expression: group_expression(&spec.members)?,
        meta: Meta::default(),
    };
    if phase == Phase::Pending {
        return Ok(DesiredState {
            domain,
            group,
            policy: None,
        });
    }

    let mut rules = spec_rules(policy, &gpath, cx)?;
    if let Some((action, logged)) = catch_all(phase, spec.after_cleanup) {
        let catch_all = CatchAll {
            action,
            logged,
            application: &application,
            id: &id,
            gpath: &gpath,
        };
        if spec.catch_all.inbound {
            rules.push(catch_all.rule(CATCHALL_IN, Direction::Inbound, CATCHALL_IN_SEQ));
        }
        if spec.catch_all.outbound {
            rules.push(catch_all.rule(CATCHALL_OUT, Direction::Outbound, CATCHALL_OUT_SEQ));
        }
    }
    let policy = SecurityPolicy {
        resource_type: "SecurityPolicy".into(),
        id: id.clone(),
        display_name: Some(application),
        description: Some(format!("microseg application {namespace}/{name}")),
        tags,
        category: Some(spec.nsx.category.as_nsx().into()),
        sequence_number: spec.nsx.sequence_number.map(i64::from),
        scope: vec![gpath],
        stateful: Some(true),
        tcp_strict: Some(true),
        rules,
        children: Vec::new(),
        meta: Meta::default(),
    };
    Ok(DesiredState {
        domain,
        group,
        policy: Some(policy),
    })
}

/// The NSX rules of `spec.rules`, each scoped to the application's group at `gpath`.
fn spec_rules(
    policy: &SegmentationPolicy,
    gpath: &str,
    cx: &Context<'_>,
) -> Result<Vec<Rule>, PlanError> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let spec = &policy.spec;
    let names: Vec<&str> = spec.rules.iter().map(|r| r.name.as_str()).collect();
    let sequence = allocate_sequence(&names, cx.previous_sequence);
    let mut rules = Vec::new();
    for (i, (r, seq)) in spec.rules.iter().zip(sequence).enumerate() {
        let peers = resolve_peers(&r.name, &r.peers, &namespace, cx.peers)?;
        let (services, service_entries) = services(&r.ports, &format!("spec.rules[{i}].ports"))?;
        let (sources, destinations, direction) = match r.direction {
            Direction::Inbound => (peers, vec![gpath.to_string()], RuleDirection::In),
            Direction::Outbound => (vec![gpath.to_string()], peers, RuleDirection::Out),
        };
        rules.push(Rule {
            resource_type: "Rule".into(),
            id: r.name.clone(),
            display_name: Some(r.name.clone()),
            action: nsx_action(r.action),
            source_groups: sources,
            sources_excluded: false,
            destination_groups: destinations,
            destinations_excluded: false,
            services,
            service_entries,
            profiles: vec![ANY.into()],
            scope: vec![gpath.to_string()],
            direction,
            ip_protocol: Some("IPV4_IPV6".into()),
            logged: r.logged,
            disabled: false,
            sequence_number: Some(seq),
            tag: None,
            notes: r.description.clone(),
            tags: Vec::new(),
            rule_id: None,
            meta: Meta::default(),
        });
    }
    Ok(rules)
}

/// The catch-all's action in `phase` and whether it logs; `None`: no catch-all.
fn catch_all(phase: Phase, after_cleanup: AfterCleanup) -> Option<(RuleAction, bool)> {
    match phase {
        Phase::Monitoring | Phase::Held | Phase::RolledBack => Some((RuleAction::Allow, true)),
        Phase::Enforcing => Some((RuleAction::Drop, true)),
        Phase::Completed => match after_cleanup {
            AfterCleanup::KeepDrop => Some((RuleAction::Drop, false)),
            AfterCleanup::Remove => None,
        },
        Phase::Pending => None,
    }
}

/// The catch-all of one application in one phase.
struct CatchAll<'a> {
    action: RuleAction,
    logged: bool,
    application: &'a str,
    /// The application's object id (the monitor tag names it).
    id: &'a str,
    gpath: &'a str,
}

impl CatchAll<'_> {
    /// The catch-all rule of one direction.
    fn rule(&self, rule_id: &str, direction: Direction, seq: i64) -> Rule {
        let gpath = self.gpath.to_string();
        let (sources, destinations, dir) = match direction {
            Direction::Inbound => (
                vec![ANY.to_string()],
                vec![gpath.clone()],
                RuleDirection::In,
            ),
            Direction::Outbound => (
                vec![gpath.clone()],
                vec![ANY.to_string()],
                RuleDirection::Out,
            ),
        };
        Rule {
            resource_type: "Rule".into(),
            id: rule_id.into(),
            display_name: Some(format!("{} catch-all {dir}", self.application)),
            action: self.action.clone(),
            source_groups: sources,
            sources_excluded: false,
            destination_groups: destinations,
            destinations_excluded: false,
            services: vec![ANY.into()],
            service_entries: Vec::new(),
            profiles: vec![ANY.into()],
            scope: vec![gpath],
            direction: dir,
            ip_protocol: Some("IPV4_IPV6".into()),
            logged: self.logged,
            disabled: false,
            sequence_number: Some(seq),
            tag: self.logged.then(|| monitor_tag(self.id, direction)),
            notes: Some(
                match (&self.action, self.logged) {
                    (RuleAction::Allow, _) => "microseg catch-all: monitor mode (pass and log)",
                    (_, true) => "microseg catch-all: enforcing (drop and log)",
                    _ => "microseg catch-all: cleaned up (drop)",
                }
                .into(),
            ),
            tags: Vec::new(),
            rule_id: None,
            meta: Meta::default(),
        }
    }
}

fn nsx_action(a: Action) -> RuleAction {
    match a {
        Action::Allow => RuleAction::Allow,
        Action::Drop => RuleAction::Drop,
        Action::Reject => RuleAction::Reject,
    }
}

/// What has to change in NSX for one application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The one hierarchical call to make, or `None` when NSX already matches.
    pub patch: Option<Infra>,
    /// What changes, in words a reviewer reads.
    pub summary: Vec<String>,
}

impl Change {
    /// True when nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.patch.is_none()
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.summary.is_empty() {
            return f.write_str("no change");
        }
        f.write_str(&self.summary.join("; "))
    }
}

/// Compares what NSX holds with what the phase needs and builds the one H-API call that
/// converges it. Refuses to touch objects microseg does not own.
pub fn diff(
    desired: &DesiredState,
    live: &LiveState,
    identity: &Identity,
    namespace: &str,
    name: &str,
) -> Result<Change, PlanError> {
    let domain = &desired.domain;
    check_owned(desired, live, identity, namespace, name)?;
    let mut summary = Vec::new();
    let mut children = Vec::new();
    let group_changed = group_change(&desired.group, live.group.as_ref(), &mut summary);
    if group_changed {
        children.push(DomainChild::ChildGroup {
            id: desired.group.id.clone(),
            marked_for_delete: false,
            group: desired.group.clone(),
        });
    }
    match (&desired.policy, &live.policy) {
        (None, None) => {}
        (None, Some(p)) => {
            summary.push(format!("delete security policy {} and its rules", p.id));
            children.push(DomainChild::ChildSecurityPolicy {
                id: p.id.clone(),
                marked_for_delete: true,
                security_policy: minimal_policy(&p.id),
            });
        }
        (Some(want), live_policy) => {
            let rule_children = rule_changes(want, live_policy.as_ref(), &mut summary);
            let policy_changed = match live_policy {
                None => {
                    summary.insert(
                        usize::from(group_changed),
                        format!("create security policy {}", want.id),
                    );
                    true
                }
                Some(l) => {
                    let fields = canonical::policy_differences(l, want);
                    if !fields.is_empty() {
                        summary.push(format!(
                            "update security policy {} ({})",
                            want.id,
                            fields.join(", ")
                        ));
                    }
                    !fields.is_empty()
                }
            };
            if policy_changed || !rule_children.is_empty() {
                let mut p = want.clone();
                p.rules = Vec::new();
                p.children = rule_children;
                children.push(DomainChild::ChildSecurityPolicy {
                    id: want.id.clone(),
                    marked_for_delete: false,
                    security_policy: p,
                });
            }
        }
    }
    let patch = (!children.is_empty()).then(|| infra(domain, children));
    Ok(Change { patch, summary })
}

/// Refuses a live group or policy that microseg does not own for this application.
fn check_owned(
    desired: &DesiredState,
    live: &LiveState,
    identity: &Identity,
    namespace: &str,
    name: &str,
) -> Result<(), PlanError> {
    let domain = &desired.domain;
    for (tags, path) in [
        (
            live.group.as_ref().map(|g| &g.tags),
            group_path(domain, &desired.group.id),
        ),
        (
            live.policy.as_ref().map(|p| &p.tags),
            policy_path(domain, &desired.group.id),
        ),
    ] {
        if let Some(tags) = tags
            && !identity.owns(tags, namespace, name)
        {
            return Err(PlanError::NotOwned { path });
        }
    }
    Ok(())
}

/// Whether the group has to be written (created or updated), said in `summary`.
fn group_change(want: &Group, live: Option<&Group>, summary: &mut Vec<String>) -> bool {
    match live {
        None => {
            summary.push(format!("create group {}", want.id));
            true
        }
        Some(g) => {
            let fields = canonical::group_differences(g, want);
            if !fields.is_empty() {
                summary.push(format!("update group {} ({})", want.id, fields.join(", ")));
            }
            !fields.is_empty()
        }
    }
}

/// The rules to add, change and remove so that the live policy's rules become `want`'s, said
/// in `summary`.
fn rule_changes(
    want: &SecurityPolicy,
    live_policy: Option<&SecurityPolicy>,
    summary: &mut Vec<String>,
) -> Vec<PolicyChild> {
    let live_rules: BTreeMap<&str, &Rule> = live_policy
        .iter()
        .flat_map(|p| &p.rules)
        .map(|r| (r.id.as_str(), r))
        .collect();
    let want_ids: BTreeSet<&str> = want.rules.iter().map(|r| r.id.as_str()).collect();
    let mut rule_children = Vec::new();
    for r in &want.rules {
        match live_rules.get(r.id.as_str()) {
            None => summary.push(format!("add rule {} ({})", r.id, describe_rule(r))),
            Some(l) => {
                let fields = canonical::rule_differences(l, r);
                if fields.is_empty() {
                    continue;
                }
                summary.push(format!(
                    "change rule {} ({}) to {}",
                    r.id,
                    fields.join(", "),
                    describe_rule(r)
                ))
            }
        }
        rule_children.push(PolicyChild::ChildRule {
            id: r.id.clone(),
            marked_for_delete: false,
            rule: r.clone(),
        });
    }
    for (id, _) in live_rules.iter().filter(|(id, _)| !want_ids.contains(*id)) {
        summary.push(format!("remove rule {id}"));
        rule_children.push(PolicyChild::ChildRule {
            id: (*id).to_string(),
            marked_for_delete: true,
            rule: minimal_rule(id),
        });
    }
    rule_children
}

/// The H-API call that removes everything a policy owns (policy first, then group; NSX
/// resolves the order inside one call).
pub fn removal(live: &LiveState, domain: &str) -> Option<Infra> {
    let mut children = Vec::new();
    if let Some(p) = &live.policy {
        children.push(DomainChild::ChildSecurityPolicy {
            id: p.id.clone(),
            marked_for_delete: true,
            security_policy: minimal_policy(&p.id),
        });
    }
    if let Some(g) = &live.group {
        children.push(DomainChild::ChildGroup {
            id: g.id.clone(),
            marked_for_delete: true,
            group: Group {
                resource_type: "Group".into(),
                id: g.id.clone(),
                display_name: None,
                description: None,
                tags: Vec::new(),
                expression: Vec::new(),
                meta: Meta::default(),
            },
        });
    }
    (!children.is_empty()).then(|| infra(domain, children))
}

fn infra(domain: &str, children: Vec<DomainChild>) -> Infra {
    Infra {
        resource_type: "Infra".into(),
        children: vec![InfraChild::ChildResourceReference {
            id: domain.to_string(),
            target_type: "Domain".into(),
            children,
        }],
    }
}

fn minimal_policy(id: &str) -> SecurityPolicy {
    SecurityPolicy {
        resource_type: "SecurityPolicy".into(),
        id: id.into(),
        display_name: None,
        description: None,
        tags: Vec::new(),
        category: None,
        sequence_number: None,
        scope: Vec::new(),
        stateful: None,
        tcp_strict: None,
        rules: Vec::new(),
        children: Vec::new(),
        meta: Meta::default(),
    }
}

fn minimal_rule(id: &str) -> Rule {
    Rule {
        resource_type: "Rule".into(),
        id: id.into(),
        display_name: None,
        action: RuleAction::Allow,
        source_groups: vec![ANY.into()],
        sources_excluded: false,
        destination_groups: vec![ANY.into()],
        destinations_excluded: false,
        services: vec![ANY.into()],
        service_entries: Vec::new(),
        profiles: Vec::new(),
        scope: Vec::new(),
        direction: RuleDirection::InOut,
        ip_protocol: None,
        logged: false,
        disabled: false,
        sequence_number: None,
        tag: None,
        notes: None,
        tags: Vec::new(),
        rule_id: None,
        meta: Meta::default(),
    }
}

/// The services of a rule for people: service paths, then `TCP/443`, `UDP/any`, `ICMP type 8`.
pub fn service_names(r: &Rule) -> Vec<String> {
    // ANY beside inline entries means only the entries' traffic, never "any service".
    let mut services: Vec<String> = r
        .services
        .iter()
        .filter(|s| r.service_entries.is_empty() || !s.eq_ignore_ascii_case(ANY))
        .cloned()
        .collect();
    for e in &r.service_entries {
        services.push(match e {
            ServiceEntry::L4PortSetServiceEntry {
                l4_protocol,
                destination_ports,
                ..
            } if destination_ports.is_empty() => format!("{l4_protocol}/any"),
            ServiceEntry::L4PortSetServiceEntry {
                l4_protocol,
                destination_ports,
                ..
            } => format!("{l4_protocol}/{}", destination_ports.join(",")),
            ServiceEntry::IcmpTypeServiceEntry {
                protocol,
                icmp_type,
                ..
            } => match icmp_type {
                Some(t) => format!("{protocol} type {t}"),
                None => protocol.to_string(),
            },
            ServiceEntry::Other => "another kind of service entry".into(),
        });
    }
    services
}

/// One line describing a rule for people: `ALLOW IN from [...] to [...] on [...]`.
pub fn describe_rule(r: &Rule) -> String {
    let services = service_names(r);
    format!(
        "{} {} from {} to {} on {}{}",
        r.action,
        r.direction,
        r.source_groups.join(","),
        r.destination_groups.join(","),
        services.join(","),
        if r.logged { ", logged" } else { "" }
    )
}

#[cfg(test)]
pub(crate) mod tests;
