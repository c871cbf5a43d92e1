//! Canary enforcement (issue #20): DROP for a small, stable subset of an application's VMs first,
//! PASS (logged) for the rest. Pure: which VMs, and the NSX shape of a canary step.
//!
//! Shape (one atomic hierarchical write per change, reference §3 "hierarchical API"):
//! - canary groups `ms_{cluster}_{namespace}_{name}_canary{n}` with explicit members: one
//!   `Condition` (VirtualMachine, Name, EQUALS) per canary VM, OR-ed, at most
//!   [`MAX_CONDITIONS`](super::MAX_CONDITIONS) per group (reference §2.4), so a larger canary
//!   spans several groups; `_` cannot occur in Kubernetes names, so the ids never collide with
//!   another application's;
//! - beside each catch-all that enforcing turns to DROP, a DROP catch-all
//!   `catchall_in_canary` / `catchall_out_canary` with the same sources, destinations, services,
//!   logging and monitor tag, **applied to** the canary groups, sequenced just before it;
//! - the catch-all itself stays ALLOW (PASS, logged) for every other member.
//!   The explicit rules do not change. A same-named VM outside the application is in the
//!   applied-to but not in the rule's application side (destination for inbound, source for
//!   outbound), so the canary DROP never reaches it.
//!
//! Choice: the explicit list first (in its order, members only), then the other members in the
//! order of SHA-256(object id, "/", VM name): deterministic, the same on every reconcile and
//! after a restart, independent of the order NSX lists members in, and each step's subset
//! contains the previous step's. A step never takes every VM (at least one stays PASS until the
//! canary ends and the whole application enforces) and never none.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{
    CATCHALL_IN, CATCHALL_IN_SEQ, CATCHALL_OUT, CATCHALL_OUT_SEQ, Change, DesiredState,
    MAX_CONDITIONS, PlanError, group_path,
};
use crate::nsx::model::{DomainChild, Expression, Group, InfraChild, Meta, Rule};
use crate::nsx::naming::{CATCHALL_IN_CANARY, CATCHALL_OUT_CANARY};

/// How far before its catch-all a canary catch-all sorts (sequence numbers leave gaps).
pub const CANARY_SEQ_OFFSET: i64 = 100;

pub use crate::schedule::StepSize;

/// How many of `total` VMs a step takes: at least one, at most `total - 1`. `None` when the
/// application has fewer than two VMs: a canary cannot leave any VM at PASS.
pub fn step_count(size: StepSize, total: usize) -> Option<usize> {
    if total < 2 {
        return None;
    }
    let want = match size {
        StepSize::Members(n) => n as usize,
        StepSize::Percent(p) => (total * usize::from(p)).div_ceil(100),
    };
    Some(want.clamp(1, total - 1))
}

fn rank(object_id: &str, vm: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(object_id.as_bytes());
    h.update(b"/");
    h.update(vm.as_bytes());
    h.finalize().into()
}

/// Every member in canary order: the explicit list first (members only, in its order), then the
/// rest by hash of (object id, name). Duplicates are dropped.
pub fn order(object_id: &str, members: &[String], explicit: &[String]) -> Vec<String> {
    let all: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    let mut taken = BTreeSet::new();
    for vm in explicit {
        if all.contains(vm.as_str()) && taken.insert(vm.as_str()) {
            out.push(vm.clone());
        }
    }
    let mut rest: Vec<&str> = all.iter().copied().filter(|v| !taken.contains(v)).collect();
    rest.sort_by_key(|v| (rank(object_id, v), *v));
    out.extend(rest.into_iter().map(str::to_string));
    out
}

/// The canary VMs of a step; `None` when the application has fewer than two VMs.
pub fn subset(
    object_id: &str,
    members: &[String],
    explicit: &[String],
    size: StepSize,
) -> Option<Vec<String>> {
    let ordered = order(object_id, members, explicit);
    let n = step_count(size, ordered.len())?;
    Some(ordered.into_iter().take(n).collect())
}

/// The id of the `n`th canary group of an application (`n` from 1).
pub fn group_id(object_id: &str, n: usize) -> String {
    format!("{object_id}_canary{n}")
}

/// An enforcing plan turned into a canary step: `d` must be the Enforcing desired state; `vms`
/// the canary VMs (see [`subset`]). Returns the changed state and the canary groups.
pub fn shape(d: &DesiredState, vms: &[String]) -> Result<(DesiredState, Vec<Group>), PlanError> {
    let Some(policy) = &d.policy else {
        return Err(PlanError::Invalid {
            field: "canary".into(),
            reason: "no security policy in this phase: a canary needs the Enforcing plan".into(),
        });
    };
    if vms.is_empty() {
        return Err(PlanError::Invalid {
            field: "canary".into(),
            reason: "no canary VM: a canary step takes at least one".into(),
        });
    }
    let groups: Vec<Group> = vms
        .chunks(MAX_CONDITIONS)
        .enumerate()
        .map(|(i, chunk)| {
            let mut expression = Vec::new();
            for (j, vm) in chunk.iter().enumerate() {
                if j > 0 {
                    expression.push(Expression::ConjunctionOperator {
                        conjunction_operator: "OR".into(),
                    });
                }
                expression.push(Expression::Condition {
                    member_type: "VirtualMachine".into(),
                    key: "Name".into(),
                    operator: "EQUALS".into(),
                    value: vm.clone(),
                    scope_operator: None,
                    exclude: None,
                });
            }
            Group {
                resource_type: "Group".into(),
                id: group_id(&d.group.id, i + 1),
                display_name: Some(format!(
                    "{} canary {}",
                    d.group.display_name.as_deref().unwrap_or(&d.group.id),
                    i + 1
                )),
                description: Some(format!(
                    "microseg canary VMs of {}",
                    d.group.description.as_deref().unwrap_or(&d.group.id)
                )),
                tags: d.group.tags.clone(),
                expression,
                meta: Meta::default(),
            }
        })
        .collect();
    let scope: Vec<String> = groups
        .iter()
        .map(|g| group_path(&d.domain, &g.id))
        .collect();
    let mut rules: Vec<Rule> = Vec::new();
    for r in &policy.rules {
        let canary = match (r.id.as_str(), r.action.as_str()) {
            (CATCHALL_IN, "DROP") => Some((CATCHALL_IN_CANARY, CATCHALL_IN_SEQ)),
            (CATCHALL_OUT, "DROP") => Some((CATCHALL_OUT_CANARY, CATCHALL_OUT_SEQ)),
            _ => None,
        };
        match canary {
            Some((id, seq)) if r.logged => {
                rules.push(Rule {
                    id: id.into(),
                    display_name: Some(format!(
                        "{} (canary)",
                        r.display_name.as_deref().unwrap_or(&r.id)
                    )),
                    scope: scope.clone(),
                    sequence_number: Some(seq - CANARY_SEQ_OFFSET),
                    notes: Some("microseg catch-all: canary (drop and log)".into()),
                    ..r.clone()
                });
                rules.push(Rule {
                    action: "ALLOW".into(),
                    notes: Some(
                        "microseg catch-all: canary step, other members (pass and log)".into(),
                    ),
                    ..r.clone()
                });
            }
            _ => rules.push(r.clone()),
        }
    }
    rules.sort_by_key(|r| (r.sequence_number.unwrap_or(0), r.id.clone()));
    let mut out = d.clone();
    if let Some(p) = &mut out.policy {
        p.rules = rules;
    }
    Ok((out, groups))
}

/// A canary step without canary VMs (an application of fewer than two VMs): every catch-all
/// the Enforcing plan turns to DROP stays ALLOW (PASS, logged) until the steps are over, since a
/// canary never takes every VM.
pub fn pass_all(d: &DesiredState) -> DesiredState {
    let mut out = d.clone();
    if let Some(p) = &mut out.policy {
        for r in &mut p.rules {
            if (r.id == CATCHALL_IN || r.id == CATCHALL_OUT) && r.action == "DROP" && r.logged {
                r.action = "ALLOW".into();
                r.notes =
                    Some("microseg catch-all: canary step without canary VM (pass and log)".into());
            }
        }
    }
    out
}

/// A change with the canary groups written in the same hierarchical call (before the policy
/// that names them; NSX resolves the order inside one call anyway). Groups that already match
/// are written again: a PATCH of the same group is a no-op on the manager.
pub fn with_groups(mut change: Change, domain: &str, groups: &[Group]) -> Change {
    if groups.is_empty() {
        return change;
    }
    let children: Vec<DomainChild> = groups
        .iter()
        .map(|g| DomainChild::ChildGroup {
            id: g.id.clone(),
            marked_for_delete: false,
            group: g.clone(),
        })
        .collect();
    let patch = change
        .patch
        .get_or_insert_with(|| super::infra(domain, Vec::new()));
    for c in &mut patch.children {
        let InfraChild::ChildResourceReference { children: dc, .. } = c;
        let mut all = children.clone();
        all.append(dc);
        *dc = all;
    }
    change.summary.insert(
        0,
        format!(
            "write canary group{} {}",
            if groups.len() == 1 { "" } else { "s" },
            groups
                .iter()
                .map(|g| g.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    change
}

/// A change that also deletes the canary groups `ids` (a finished or narrower canary), in the
/// same hierarchical call that removes or rescopes the rule naming them.
pub fn without_groups(mut change: Change, domain: &str, ids: &[String]) -> Change {
    if ids.is_empty() {
        return change;
    }
    let patch = change
        .patch
        .get_or_insert_with(|| super::infra(domain, Vec::new()));
    for c in &mut patch.children {
        let InfraChild::ChildResourceReference { children: dc, .. } = c;
        dc.extend(ids.iter().map(|id| DomainChild::ChildGroup {
            id: id.clone(),
            marked_for_delete: true,
            group: Group {
                resource_type: "Group".into(),
                id: id.clone(),
                display_name: None,
                description: None,
                tags: Vec::new(),
                expression: Vec::new(),
                meta: Meta::default(),
            },
        }));
    }
    change
        .summary
        .push(format!("delete canary groups {}", ids.join(", ")));
    change
}

#[cfg(test)]
pub(crate) mod tests;
