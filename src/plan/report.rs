//! `microseg plan`: what microseg would write to NSX for a directory of manifests, now and at
//! each future transition, in words a reviewer reads in a pull request. Pure: takes parsed
//! resources and `now`.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;

use super::{
    Context, DesiredState, Identity, PeerGroups, PlanError, describe_rule, desired, group_path,
};
use crate::api::{EnforcementWindow, Phase, SegmentationPolicy, manifest};
use crate::schedule::{Decision, Inputs, MonitorSummary, Window, evaluate};

/// Phases shown for the future, in order.
const ROLLOUT: [Phase; 4] = [
    Phase::Pending,
    Phase::Monitoring,
    Phase::Enforcing,
    Phase::Completed,
];

/// Group paths of every policy in the set, as this cluster would name them.
pub fn peer_groups(policies: &[SegmentationPolicy], identity: &Identity) -> PeerGroups {
    policies
        .iter()
        .map(|p| {
            let (ns, name) = manifest::key(&p.metadata);
            let path = group_path(&p.spec.nsx.domain, &identity.object_id(&ns, &name));
            ((ns, name), path)
        })
        .collect()
}

fn by_key(windows: &[EnforcementWindow]) -> BTreeMap<(String, String), &EnforcementWindow> {
    windows
        .iter()
        .map(|w| (manifest::key(&w.metadata), w))
        .collect()
}

/// The schedule's decision for a policy at `now`, assuming owner notices are delivered when due,
/// DFW logs arrive and no unmatched flow was seen (what a plan can know without the cluster); enforcement
/// approval comes from the approval annotation in the manifest (a manifest has no generation, so
/// any `microseg.io/approved-generation` counts). `None` when the policy's window is not among
/// `windows`.
pub fn phase_at(
    policy: &SegmentationPolicy,
    windows: &[EnforcementWindow],
    now: Timestamp,
) -> Option<Decision> {
    decide(policy, &by_key(windows), now)
}

fn decide(
    policy: &SegmentationPolicy,
    windows: &BTreeMap<(String, String), &EnforcementWindow>,
    now: Timestamp,
) -> Option<Decision> {
    let (ns, _) = manifest::key(&policy.metadata);
    let w = windows.get(&(ns, policy.spec.window.name.clone()))?;
    // Logs are assumed to arrive at every instant replayed, so the default silence never bites.
    let window = Window::from_spec(&w.spec, k8s_openapi::jiff::SignedDuration::from_hours(1));
    let approved = policy
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::api::APPROVAL_ANNOTATION));
    // Replay the reconciles the controller would have made: at every instant the schedule
    // names up to `now`, feeding each answer back (the state machine moves one phase per
    // evaluation), then at `now`.
    let mut previous: Option<(Phase, crate::schedule::Schedule)> = None;
    let mut t = window.notify_at.min(now);
    let mut last = None;
    for _ in 0..MAX_STEPS {
        let monitor = MonitorSummary {
            last_log_at: Some(t),
            ..MonitorSummary::default()
        };
        let d = evaluate(
            &Inputs {
                window: &window,
                suspend: policy.spec.suspend,
                approved,
                generation: 1,
                previous_phase: previous.as_ref().map(|p| p.0),
                previous: previous.as_ref().map(|p| &p.1),
                notice_delivered_at: Some(window.notify_at),
                monitor: &monitor,
                blocker: None,
                widening: None,
            },
            t,
        );
        let moved = previous.as_ref().is_none_or(|p| p.0 != d.phase);
        previous = Some((d.phase, d.schedule.clone()));
        let wake = d.wake_at;
        last = Some(d);
        if moved {
            continue;
        }
        if t == now {
            break;
        }
        t = wake.filter(|w| *w <= now).unwrap_or(now);
    }
    last
}

/// Bound on the evaluations replayed to find the phase at an instant.
const MAX_STEPS: usize = 64;

/// Renders the plan of every policy.
pub fn render(
    windows: &[EnforcementWindow],
    policies: &[SegmentationPolicy],
    identity: &Identity,
    now: Timestamp,
) -> Result<String, PlanError> {
    let peers = peer_groups(policies, identity);
    let windows = by_key(windows);
    let mut out = String::new();
    for p in policies {
        let (ns, name) = manifest::key(&p.metadata);
        let _ = writeln!(
            out,
            "{ns}/{name} \"{}\" ({:?}, window {})",
            p.application(),
            p.spec.criticality,
            p.spec.window.name
        );
        let Some(decision) = decide(p, &windows, now) else {
            let _ = writeln!(
                out,
                "  spec.window.name: EnforcementWindow {:?} not found in {ns}: nothing would be written\n",
                p.spec.window.name
            );
            continue;
        };
        let s = &decision.schedule;
        let _ = writeln!(
            out,
            "  schedule: notify {} | monitor {} | enforce {} | clean-up {}",
            s.notify_at, s.monitor_from, s.enforce_at, s.cleanup_at
        );
        match decision.schedule.canary_step {
            Some(k) => {
                let _ = writeln!(out, "  at {now}: {} (canary step {k})", decision.phase);
            }
            None => {
                let _ = writeln!(out, "  at {now}: {}", decision.phase);
            }
        }
        if let Some(c) = windows
            .get(&(ns.clone(), p.spec.window.name.clone()))
            .and_then(|w| w.spec.canary.as_ref())
        {
            canary(&mut out, p, c, &identity.object_id(&ns, &name));
        }
        let sequence = BTreeMap::new();
        let cx = Context {
            identity,
            peers: &peers,
            previous_sequence: &sequence,
        };
        rollout(&mut out, p, &cx)?;
        out.push('\n');
    }
    Ok(out)
}

/// The canary steps of the policy's window, and the objects each step writes.
fn canary(
    out: &mut String,
    p: &SegmentationPolicy,
    c: &crate::api::enforcement_window::Canary,
    object_id: &str,
) {
    let steps: Vec<String> = c
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let size = match (st.members, st.percent) {
                (Some(1), _) => "1 VM".to_string(),
                (Some(m), _) => format!("{m} VMs"),
                (None, Some(pc)) => format!("{pc}% of the VMs"),
                (None, None) => "?".into(),
            };
            format!("step {}: {size}, at least {}", i + 1, st.duration)
        })
        .collect();
    let _ = writeln!(
        out,
        "  canary: {}; then every VM. Each step: DROP catch-alls {}/{} applied to groups {}_canary1.. (the step's VMs{}), PASS catch-alls for the rest",
        steps.join("; "),
        crate::nsx::naming::CATCHALL_IN_CANARY,
        crate::nsx::naming::CATCHALL_OUT_CANARY,
        object_id,
        if p.spec.canary_vms.is_empty() {
            String::new()
        } else {
            format!(", {} first", p.spec.canary_vms.join(", "))
        }
    );
}

/// What each phase of the rollout writes: the group first, the security policy with its rules
/// when it is created, then each phase's change from the one before.
fn rollout(out: &mut String, p: &SegmentationPolicy, cx: &Context<'_>) -> Result<(), PlanError> {
    let (ns, name) = manifest::key(&p.metadata);
    let mut previous: Option<DesiredState> = None;
    for phase in ROLLOUT {
        let d = desired(p, phase, cx)?;
        let _ = writeln!(out, "  {phase}:");
        let created = previous
            .as_ref()
            .map(|x| x.policy.is_none())
            .unwrap_or(true);
        match (&previous, &d.policy) {
            (None, _) => {
                let _ = writeln!(
                    out,
                    "    group {} ({} membership criteria)",
                    d.group.id,
                    d.group.expression.len().div_ceil(2)
                );
            }
            (Some(_), Some(policy)) if created => {
                let _ = writeln!(
                    out,
                    "    create security policy {} ({}, {} rules):",
                    policy.id,
                    policy.category.as_deref().unwrap_or("Application"),
                    policy.rules.len()
                );
                for r in &policy.rules {
                    let _ = writeln!(
                        out,
                        "      {:>10} {:<22} {}",
                        r.sequence_number.unwrap_or(0),
                        r.id,
                        describe_rule(r)
                    );
                }
            }
            (Some(prev), _) => {
                let change = super::diff(
                    &d,
                    &super::LiveState {
                        group: Some(prev.group.clone()),
                        policy: prev.policy.clone(),
                    },
                    cx.identity,
                    &ns,
                    &name,
                )?;
                for line in &change.summary {
                    let _ = writeln!(out, "    {line}");
                }
                if change.summary.is_empty() {
                    let _ = writeln!(out, "    no change");
                }
            }
        }
        previous = Some(d);
    }
    Ok(())
}
