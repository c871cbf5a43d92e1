//! The IO side of canary enforcement: which VMs the step in force takes (the group's effective
//! VM members read from NSX, chosen by `plan::canary::subset`), the canary groups NSX already
//! holds, and the status entry. The shape itself is pure (`plan::canary`).

use k8s_openapi::jiff::Timestamp;

use crate::api::k8s::Time;
use crate::api::{CanaryStatus, Phase, SegmentationPolicy, SegmentationPolicyStatus};
use crate::nsx::model::Group;
use crate::nsx::{Error, NsxApi};
use crate::plan::canary;
use crate::plan::{Change, DesiredState, PlanError, canonical};
use crate::schedule::{Decision, Window};

/// The canary step in force and its VMs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Step (from 1).
    pub step: i64,
    /// Steps of the window.
    pub steps: i64,
    /// The application's VM names.
    pub members: usize,
    /// The canary VMs (empty when the application has fewer than two VMs: every VM stays
    /// PASS until the canary ends).
    pub vms: Vec<String>,
    /// When the step may widen.
    pub widens_at: Timestamp,
    /// The canary groups NSX holds now, by id.
    pub live: Vec<Group>,
}

/// How many canary groups a set of canary VMs needs.
fn groups_for(vms: usize) -> usize {
    vms.div_ceil(crate::plan::MAX_CONDITIONS)
}

/// The choice for `decision`, or `None` when no canary step is in force.
pub async fn choose(
    nsx: &dyn NsxApi,
    p: &SegmentationPolicy,
    domain: &str,
    id: &str,
    decision: &Decision,
    w: &Window,
) -> Result<Option<Choice>, Error> {
    let (Phase::Enforcing, Some(step), Some(since)) = (
        decision.phase,
        decision.schedule.canary_step,
        decision.schedule.canary_since,
    ) else {
        return Ok(None);
    };
    let Some(&(size, duration)) = usize::try_from(step - 1).ok().and_then(|i| w.canary.get(i))
    else {
        return Ok(None);
    };
    let names = nsx.group_vm_names(domain, id).await?;
    let vms = canary::subset(id, &names, &p.spec.canary_vms, size).unwrap_or_default();
    let mut live = Vec::new();
    for n in 1..=groups_for(vms.len()) {
        if let Some(g) = nsx.get_group(domain, &canary::group_id(id, n)).await? {
            live.push(g);
        }
    }
    Ok(Some(Choice {
        step,
        steps: w.canary.len() as i64,
        members: names.len(),
        vms,
        widens_at: crate::api::time::plus(since, duration),
        live,
    }))
}

/// The desired state of the step in force and the change that writes it, canary groups
/// included (in the same hierarchical call), canary groups no longer needed deleted. Without a
/// choice, only the deletion of the groups a previous step used (`previous`).
pub fn change(
    desired: DesiredState,
    choice: Option<&Choice>,
    previous: Option<&CanaryStatus>,
    diff: impl Fn(&DesiredState) -> Result<Change, PlanError>,
) -> Result<(DesiredState, Change), PlanError> {
    let needed = choice.map_or(0, |c| groups_for(c.vms.len()));
    let (desired, groups) = match choice {
        Some(c) if !c.vms.is_empty() => canary::shape(&desired, &c.vms)?,
        // Fewer than two VMs: no canary can leave one at PASS, so all stay PASS.
        Some(_) => (canary::pass_all(&desired), Vec::new()),
        None => (desired, Vec::new()),
    };
    let mut change = diff(&desired)?;
    let write: Vec<Group> = groups
        .into_iter()
        .filter(|g| {
            choice
                .and_then(|c| c.live.iter().find(|l| l.id == g.id))
                .is_none_or(|l| !canonical::group_differences(l, g).is_empty())
        })
        .collect();
    change = canary::with_groups(change, &desired.domain, &write);
    let had = previous.map_or(0, |s| groups_for(s.vms.len()));
    let stale: Vec<String> = (needed + 1..=had)
        .map(|n| canary::group_id(&desired.group.id, n))
        .collect();
    change = canary::without_groups(change, &desired.domain, &stale);
    Ok((desired, change))
}

/// The canary part of an owner notice: the canary VMs (when chosen) and the earliest instant
/// each remaining step widens, from the step in force (or, before enforcement, from
/// `enforce_at`). `None` when the window has no canary, or once every VM enforces.
pub fn notice_plan(
    w: &Window,
    d: &Decision,
    choice: Option<&Choice>,
    enforce_at: Timestamp,
) -> Option<crate::notify::CanaryPlan> {
    use crate::notify::{CanaryPlan, CanaryStepPlan};
    use crate::plan::canary::StepSize;
    if w.canary.is_empty() {
        return None;
    }
    let (first, mut since) = match (d.schedule.canary_step, d.schedule.canary_since) {
        (Some(k), Some(s)) => (usize::try_from(k - 1).unwrap_or(0), s),
        _ if d.schedule.enforced_since.is_some() => return None,
        _ => (0, enforce_at),
    };
    let mut steps = Vec::new();
    for (size, duration) in w.canary.iter().skip(first) {
        since = crate::api::time::plus(since, *duration);
        steps.push(CanaryStepPlan {
            covers: match size {
                StepSize::Members(1) => "1 VM".to_string(),
                StepSize::Members(n) => format!("{n} VMs"),
                StepSize::Percent(p) => format!("{p}% of the VMs"),
            },
            widens_at: since,
        });
    }
    Some(CanaryPlan {
        vms: choice.map(|c| c.vms.clone()).unwrap_or_default(),
        members: choice.map_or(0, |c| c.members),
        steps,
    })
}

/// `status.canary` for a choice.
pub fn status(choice: Option<&Choice>) -> Option<CanaryStatus> {
    choice.map(|c| CanaryStatus {
        step: c.step,
        steps: c.steps,
        vms: c.vms.clone(),
        members: c.members as i64,
        summary: format!(
            "{}/{} VMs (step {} of {})",
            c.vms.len(),
            c.members,
            c.step,
            c.steps
        ),
        widens_at: Some(Time(c.widens_at)),
    })
}

/// The canary groups a policy's previous status says NSX holds (for the finalizer).
pub fn previous_groups(prev: &SegmentationPolicyStatus, id: &str) -> Vec<String> {
    let had = prev.canary.as_ref().map_or(0, |s| groups_for(s.vms.len()));
    (1..=had).map(|n| canary::group_id(id, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsx::naming::Identity;
    use crate::plan::{LiveState, diff};

    fn enforcing() -> (DesiredState, Identity) {
        (
            crate::plan::canary::tests::enforcing(),
            crate::plan::tests::identity(),
        )
    }

    fn choice(vms: usize, live: Vec<Group>) -> Choice {
        Choice {
            step: 1,
            steps: 2,
            members: 12,
            vms: (1..=vms).map(|i| format!("orders-{i:02}")).collect(),
            widens_at: Timestamp::UNIX_EPOCH,
            live,
        }
    }

    fn children(c: &Change) -> Vec<(String, String, bool)> {
        let v = serde_json::to_value(c.patch.as_ref().unwrap()).unwrap();
        v["children"][0]["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["resource_type"].as_str().unwrap().to_string(),
                    c["id"].as_str().unwrap().to_string(),
                    c["marked_for_delete"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn a_narrower_step_deletes_the_canary_groups_it_no_longer_needs_and_skips_matching_ones() {
        let (d, identity) = enforcing();
        let live = LiveState::default();
        let run = |c: Option<&Choice>, prev: Option<&CanaryStatus>| {
            change(d.clone(), c, prev, |x| {
                diff(x, &live, &identity, "shop", "app")
            })
            .unwrap()
        };
        // Seven VMs: two groups written with the policy.
        let (_, first) = run(Some(&choice(7, vec![])), None);
        let groups: Vec<_> = children(&first)
            .into_iter()
            .filter(|c| c.1.contains("_canary"))
            .collect();
        assert_eq!(groups.len(), 2);
        // The same step with both groups live and equal: not written again.
        let (_, written) = canary::shape(&d, &choice(7, vec![]).vms).unwrap();
        let (_, again) = run(Some(&choice(7, written.clone())), None);
        assert!(children(&again).iter().all(|c| !c.1.contains("_canary")));
        // The canary over (no choice) after a step of seven: both groups deleted, in the same
        // call as the policy without the canary rule.
        let prev = status(Some(&choice(7, vec![]))).unwrap();
        let (after, done) = run(None, Some(&prev));
        assert!(
            after
                .policy
                .unwrap()
                .rules
                .iter()
                .all(|r| !r.id.contains("canary"))
        );
        let deleted: Vec<_> = children(&done).into_iter().filter(|c| c.2).collect();
        assert_eq!(
            deleted,
            vec![
                (
                    "ChildGroup".to_string(),
                    "ms_demo_shop_app_canary1".to_string(),
                    true
                ),
                (
                    "ChildGroup".to_string(),
                    "ms_demo_shop_app_canary2".to_string(),
                    true
                ),
            ]
        );
        assert_eq!(prev.summary, "7/12 VMs (step 1 of 2)");
    }

    #[test]
    fn an_application_with_one_vm_stays_pass_during_the_steps() {
        let (d, identity) = enforcing();
        let mut c = choice(0, vec![]);
        c.members = 1;
        let (out, _) = change(d, Some(&c), None, |x| {
            diff(x, &LiveState::default(), &identity, "shop", "app")
        })
        .unwrap();
        // No canary VM: a canary never takes every VM, so the catch-all stays PASS.
        let rules = out.policy.unwrap().rules;
        let catch_all = rules
            .iter()
            .find(|r| r.id == crate::nsx::naming::CATCHALL_IN)
            .unwrap();
        assert_eq!(catch_all.action, "ALLOW");
        assert!(catch_all.logged);
        assert!(rules.iter().all(|r| r.action != "DROP"));
    }
}
