//! EnforcementWindow status: how many policies name it, how many are in each phase, and the
//! earliest next transition among them. Computed from the window's own policies (the
//! [`WindowIndex`] names them; the policy store holds them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::metrics::PhaseLabel;
use super::shared::WindowIndex;
use super::{Error, FIELD_MANAGER};
use crate::api::condition::{self, reason, set_condition};
use crate::api::k8s::Timestamp;
use crate::api::{
    EnforcementWindow, EnforcementWindowStatus, NextTransition, Phase, SegmentationPolicy,
};

/// Counts of the policies that name `window` (pure).
pub fn summarize(
    window: &EnforcementWindow,
    policies: &[Arc<SegmentationPolicy>],
) -> EnforcementWindowStatus {
    let ns = window.namespace();
    let name = window.name_any();
    let mut phases: BTreeMap<String, i64> = BTreeMap::new();
    let mut next: Option<NextTransition> = None;
    let mut count = 0;
    for p in policies
        .iter()
        .filter(|p| p.namespace() == ns && p.spec.window.name == name)
    {
        count += 1;
        // Borrowed, not cloned: a status carries its monitor summary (hundreds of flows), and
        // this runs for every policy whenever one of them changes.
        let status = p.status.as_ref();
        *phases
            .entry(status.and_then(|s| s.phase).unwrap_or_default().to_string())
            .or_default() += 1;
        if let Some(n) = status.and_then(|s| s.next_transition.as_ref())
            && let Some(at) = &n.at
            && next
                .as_ref()
                .and_then(|x| x.at.as_ref())
                .is_none_or(|cur| at.0 < cur.0)
        {
            next = Some(n.clone());
        }
    }
    EnforcementWindowStatus {
        observed_generation: window.metadata.generation,
        policies: count,
        phases,
        next_transition: next,
        conditions: window.status.clone().unwrap_or_default().conditions,
    }
}

/// The window's own health for GitOps tools. A window is Ready once its spec is observed; it
/// never says Stalled for a policy of its wave (that policy is Stalled itself, and Flux or Argo
/// CD report it by name) but counts them in the message. `spec.suspend` is a designed wait:
/// Ready=True, reason Suspended (Argo CD shows Suspended). Pure.
pub fn set_conditions(
    window: &EnforcementWindow,
    policies: &[Arc<SegmentationPolicy>],
    status: &mut EnforcementWindowStatus,
    now: Timestamp,
) {
    let ns = window.namespace();
    let name = window.name_any();
    let stalled: Vec<String> = policies
        .iter()
        .filter(|p| p.namespace() == ns && p.spec.window.name == name)
        .filter_map(|p| {
            let c = condition::find(&p.status.as_ref()?.conditions, condition::STALLED)?;
            (c.status == condition::TRUE).then(|| format!("{} ({})", p.name_any(), c.reason))
        })
        .collect();
    let mut msg = format!("{} policies in this wave", status.policies);
    if !stalled.is_empty() {
        msg.push_str(&format!("; stalled: {}", stalled.join(", ")));
    }
    let (rs, msg) = if window.spec.suspend {
        (
            reason::SUSPENDED,
            format!("suspended: no policy of this wave enforces; {msg}"),
        )
    } else {
        (reason::AS_EXPECTED, msg)
    };
    let generation = window.metadata.generation;
    let c = &mut status.conditions;
    set_condition(
        c,
        condition::READY,
        condition::TRUE,
        rs,
        msg,
        generation,
        now,
    );
    for type_ in [condition::RECONCILING, condition::STALLED] {
        set_condition(
            c,
            type_,
            condition::FALSE,
            reason::NONE,
            "",
            generation,
            now,
        );
    }
}

/// Writes the window's status (only when it changed).
pub async fn reconcile(
    window: Arc<EnforcementWindow>,
    ctx: Arc<Context>,
    index: WindowIndex,
) -> Result<Action, Error> {
    let ns = window.namespace().unwrap_or_default();
    let policies = index.policies(&ctx.policies, &ns, &window.name_any());
    let mut status = summarize(&window, &policies);
    set_conditions(&window, &policies, &mut status, ctx.clock.now());
    if window.status.as_ref() == Some(&status) {
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let api: Api<EnforcementWindow> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({"apiVersion": "microseg.io/v1alpha1", "kind": "EnforcementWindow", "status": status});
    api.patch_status(
        &window.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(Action::requeue(ctx.settings.resync))
}

/// What to do after an error: at least 10 s, longer when the error asks for it (a caught
/// panic).
pub fn error_policy(_: Arc<EnforcementWindow>, error: &Error, _: Arc<Context>) -> Action {
    Action::requeue(
        error
            .retry_after()
            .unwrap_or_default()
            .max(Duration::from_secs(10)),
    )
}

/// Keeps the `microseg_policies{phase}` gauges current from the store.
pub async fn phase_gauges(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        let mut counts: BTreeMap<Phase, i64> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
        for p in ctx.policies.state() {
            let phase = p.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
            *counts.entry(phase).or_default() += 1;
        }
        for (phase, n) in counts {
            ctx.metrics
                .policies
                .get_or_create(&PhaseLabel {
                    phase: phase.to_string(),
                })
                .set(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {},
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::k8s::Condition;

    fn window() -> EnforcementWindow {
        let text = include_str!("../../deploy/examples/01-windows.yaml");
        let first = text.split("\n---\n").next().unwrap();
        let mut w: EnforcementWindow = serde_yaml::from_str(first).unwrap();
        w.metadata.generation = Some(2);
        w
    }

    fn policy(name: &str, stalled: Option<&str>) -> Arc<SegmentationPolicy> {
        let text = include_str!("../../deploy/examples/10-web.yaml");
        let mut p: SegmentationPolicy = serde_yaml::from_str(text).unwrap();
        p.metadata.name = Some(name.into());
        let mut conditions: Vec<Condition> = Vec::new();
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let (st, rs) = stalled.map_or((condition::FALSE, reason::NONE), |r| (condition::TRUE, r));
        set_condition(
            &mut conditions,
            condition::STALLED,
            st,
            rs,
            "",
            Some(1),
            now,
        );
        p.status = Some(crate::api::SegmentationPolicyStatus {
            conditions,
            ..Default::default()
        });
        Arc::new(p)
    }

    fn ready(s: &EnforcementWindowStatus) -> &Condition {
        condition::find(&s.conditions, condition::READY).unwrap()
    }

    #[test]
    fn a_window_is_ready_names_its_stalled_policies_and_a_suspend_is_a_designed_wait() {
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let mut w = window();
        let policies = vec![
            policy("web", Some(reason::PEER_NOT_FOUND)),
            policy("app", None),
        ];
        let mut s = summarize(&w, &policies);
        set_conditions(&w, &policies, &mut s, now);
        assert_eq!(ready(&s).status, condition::TRUE);
        assert_eq!(ready(&s).observed_generation, Some(2));
        assert_eq!(
            ready(&s).message,
            "2 policies in this wave; stalled: web (PeerNotFound)"
        );
        let stalled = condition::find(&s.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.status, condition::FALSE);
        w.spec.suspend = true;
        let mut s = summarize(&w, &policies);
        set_conditions(&w, &policies, &mut s, now);
        assert_eq!(
            (ready(&s).status.as_str(), ready(&s).reason.as_str()),
            (condition::TRUE, reason::SUSPENDED)
        );
    }
}
