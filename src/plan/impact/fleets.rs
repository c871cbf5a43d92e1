//! The fleets a comparison starts from: what NSX holds, that without microseg's own objects,
//! and that plus the desired objects of manifests; and the flows a policy's monitor recorded.

use std::collections::{BTreeMap, BTreeSet};

use super::{Fleet, Impact, Section, compare};
use crate::api::manifest;
use crate::net::Protocol;
use crate::nsx::model::{Expression, SecurityPolicy};
use crate::recommend::{Endpoint, Observation};

/// The application label of a microseg section: `namespace/name`.
fn label(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Fleet {
    /// Everything NSX holds: microseg's sections named by their owner tags, others by id.
    pub fn from_live(live: &crate::plan::live::Live) -> Fleet {
        let groups = live
            .groups
            .iter()
            .map(|((d, id), g)| (crate::plan::group_path(d, id), g.clone()))
            .collect();
        let sections = live
            .policies
            .values()
            .map(|p| Section {
                application: owner_label(p),
                policy: p.clone(),
            })
            .collect();
        Fleet::new(groups, sections)
    }

    /// This fleet without what `identity` owns (the sections and groups a plan replaces).
    pub fn without_owned(&self, identity: &crate::plan::Identity) -> Fleet {
        let ours = |tags: &[crate::nsx::model::Tag]| {
            tags.iter()
                .any(|t| t.scope == crate::plan::OWNER_CLUSTER && t.tag == identity.cluster())
        };
        Fleet {
            groups: self
                .groups
                .iter()
                .filter(|(_, g)| !ours(&g.tags))
                .map(|(k, g)| (k.clone(), g.clone()))
                .collect(),
            sections: self
                .sections
                .iter()
                .filter(|s| !ours(&s.policy.tags))
                .cloned()
                .collect(),
        }
    }

    /// This fleet plus the desired objects of `policies`, each in the phase `phase_of` gives
    /// (`None`: the policy is left out, as when its window is unknown).
    pub fn with_desired(
        &self,
        policies: &[crate::api::SegmentationPolicy],
        identity: &crate::plan::Identity,
        phase_of: impl Fn(&crate::api::SegmentationPolicy) -> Option<crate::api::Phase>,
    ) -> Result<Fleet, crate::plan::PlanError> {
        let peers = crate::plan::report::peer_groups(policies, identity);
        let sequence = BTreeMap::new();
        let cx = crate::plan::Context {
            identity,
            peers: &peers,
            previous_sequence: &sequence,
        };
        let mut groups = self.groups.clone();
        let mut sections = self.sections.clone();
        for p in policies {
            let (ns, name) = manifest::key(&p.metadata);
            // A group exists from Pending on, so rules of others that name it resolve.
            let phase = phase_of(p);
            let d = crate::plan::desired(p, phase.unwrap_or(crate::api::Phase::Pending), &cx)?;
            groups.insert(crate::plan::group_path(&d.domain, &d.group.id), d.group);
            if phase.is_some()
                && let Some(policy) = d.policy
            {
                sections.push(Section {
                    application: label(&ns, &name),
                    policy,
                });
            }
        }
        Ok(Fleet::new(groups, sections))
    }
}

fn owner_label(p: &SecurityPolicy) -> String {
    let tag = |scope: &str| {
        p.tags
            .iter()
            .find(|t| t.scope == scope)
            .map(|t| t.tag.clone())
    };
    match (
        tag(crate::plan::OWNER_NAMESPACE),
        tag(crate::plan::OWNER_NAME),
    ) {
        (Some(ns), Some(name)) => label(&ns, &name),
        _ => format!("NSX policy {}", p.id),
    }
}

/// The phase of every policy at `now` as `microseg plan` replays it (see
/// [`crate::plan::report::phase_at`]).
pub fn phase_at(
    windows: &[crate::api::EnforcementWindow],
    now: k8s_openapi::jiff::Timestamp,
) -> impl Fn(&crate::api::SegmentationPolicy) -> Option<crate::api::Phase> + '_ {
    move |p| crate::plan::report::phase_at(p, windows, now).map(|d| d.phase)
}

/// The recorded flows of `policy` that its current spec would drop when it enforces: every
/// policy of `all` in monitor mode, against the same with `policy` enforcing. `flows` are the
/// policy's monitor flows: the end on the application's side (by the flow's direction) is a
/// member of the application, whatever its VM facts, since the application's catch-all logged it.
/// This is what the dashboard's application page lists.
pub fn dropped_at_enforcement(
    policy: &crate::api::SegmentationPolicy,
    all: &[crate::api::SegmentationPolicy],
    identity: &crate::plan::Identity,
    flows: &[Observation],
) -> Result<Impact, crate::plan::PlanError> {
    use crate::api::{Direction, Phase};
    let target = manifest::key(&policy.metadata);
    let mut set: Vec<crate::api::SegmentationPolicy> = all
        .iter()
        .filter(|p| manifest::key(&p.metadata) != target)
        .cloned()
        .collect();
    set.push(policy.clone());
    let own: Vec<String> = flows
        .iter()
        .filter_map(|f| match f.direction {
            Some(Direction::Inbound) => Some(f.dst.ip.to_string()),
            Some(Direction::Outbound) => Some(f.src.ip.to_string()),
            None => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let path = crate::plan::group_path(
        &policy.spec.nsx.domain,
        &identity.object_id(&target.0, &target.1),
    );
    let with_own = |mut f: Fleet| {
        if !own.is_empty()
            && let Some(g) = f.groups.get_mut(&path)
        {
            if !g.expression.is_empty() {
                g.expression.push(Expression::ConjunctionOperator {
                    conjunction_operator: "OR".into(),
                });
            }
            g.expression.push(Expression::IpAddressExpression {
                ip_addresses: own.clone(),
            });
        }
        f
    };
    let empty = Fleet::default();
    let before = with_own(empty.with_desired(&set, identity, |_| Some(Phase::Monitoring))?);
    let after = with_own(empty.with_desired(&set, identity, |p| {
        Some(if manifest::key(&p.metadata) == target {
            Phase::Enforcing
        } else {
            Phase::Monitoring
        })
    })?);
    Ok(compare(&before, &after, flows))
}

/// Every monitor flow in a policy's status (acknowledged ones too: acknowledging a flow writes
/// no rule), with its direction; rows whose address or protocol does not parse are skipped.
pub fn monitor_flows(policy: &crate::api::SegmentationPolicy) -> Vec<Observation> {
    let Some(m) = policy.status.as_ref().and_then(|s| s.monitor.as_ref()) else {
        return Vec::new();
    };
    m.flows
        .iter()
        .filter_map(|f| {
            Some(Observation {
                src: Endpoint::ip(f.source.parse().ok()?),
                dst: Endpoint::ip(f.destination.parse().ok()?),
                protocol: Protocol::parse(&f.protocol)?,
                src_port: None,
                port: f.port.and_then(|p| u16::try_from(p).ok()).map(|p| (p, p)),
                count: u64::try_from(f.count).unwrap_or(0),
                direction: Some(f.direction),
                seen: Some((f.first_seen.0.to_string(), f.last_seen.0.to_string())),
                volume: None,
            })
        })
        .collect()
}
