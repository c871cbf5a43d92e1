//! The NSX state cache against the simulator (issue #22): a resync of N unchanged applications
//! costs one read of the tree and no write, and a hand edit made in NSX is found at the next
//! refresh and corrected by one write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::nsx_support;

use microseg::api::manifest::{Resource, resources};
use microseg::api::{Phase, SegmentationPolicy};
use std::sync::Arc;

use microseg::controller::nsx_cache::{CachedNsx, NsxCache, refresh};
use microseg::nsx::NsxApi;
use microseg::nsx::model::Expression;
use microseg::nsx::naming::Identity;
use microseg::plan::{self, Context, LiveState, PeerGroups};
use nsx_support::{ClientExt, Target, real_nsx};

const N: usize = 40;

fn fleet(n: usize) -> Vec<SegmentationPolicy> {
    let yaml: String = (0..n)
        .map(|i| {
            format!(
                "---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{name: app-{i:03}, namespace: fleet}}
spec:
  owners: [{{name: Team, email: team@example.com}}]
  criticality: Low
  window: {{name: wave}}
  members: [{{vmTag: {{scope: app, tag: app-{i:03}}}}}]
  rules:
    - name: r0
      direction: Inbound
      peers: [{{cidr: 10.{i}.0.0/29}}]
      ports: [{{protocol: TCP, port: 8000}}]
    - name: r1
      direction: Outbound
      peers: [{{cidr: 10.{i}.1.0/29}}]
      ports: [{{protocol: TCP, port: 8001}}]
"
            )
        })
        .collect();
    resources(&yaml)
        .unwrap()
        .into_iter()
        .filter_map(|(_, r)| match r {
            Resource::Policy(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn names(p: &SegmentationPolicy) -> (&str, &str) {
    (
        p.metadata.namespace.as_deref().unwrap(),
        p.metadata.name.as_deref().unwrap(),
    )
}

/// The change a reconcile would make for `p` given `live`.
fn change(identity: &Identity, p: &SegmentationPolicy, live: &LiveState) -> plan::Change {
    change_in(identity, p, live, Phase::Monitoring)
}

/// The change a reconcile in `phase` would make.
fn change_in(
    identity: &Identity,
    p: &SegmentationPolicy,
    live: &LiveState,
    phase: Phase,
) -> plan::Change {
    let peers = PeerGroups::new();
    let seq = live.rule_sequence();
    let cx = Context {
        identity,
        peers: &peers,
        previous_sequence: &seq,
    };
    let d = plan::desired(p, phase, &cx).unwrap();
    let (ns, name) = names(p);
    plan::diff(&d, live, identity, ns, name).unwrap()
}

fn calls(t: &Target) -> Vec<(String, u64)> {
    t.sim()
        .counters()
        .into_iter()
        .filter(|(k, _)| !k.contains("/api/session"))
        .map(|(k, v)| (k, v.total))
        .collect()
}

#[tokio::test]
async fn a_resync_of_unchanged_applications_reads_the_tree_once_and_a_hand_edit_is_corrected() {
    if real_nsx() {
        return; // counts the simulator's calls
    }
    // The client's pace stays under the simulator's 100 requests/s.
    let t = Target::with(microseg::nsxsim::Config::default(), |c| {
        c.pacing.rate = 80.0
    })
    .await;
    let identity = Identity::new("fleet").unwrap();
    let policies = fleet(N);
    let domain = t.domain.clone();
    let cache = Arc::new(NsxCache::new(identity.clone()));
    // The client as the controller uses it: reads of groups and policies from the cache.
    let nsx = CachedNsx::new(Arc::new(t.client.clone()), cache.clone());
    refresh(&cache, &nsx).await.unwrap();
    let live = |id: String| {
        let nsx = &nsx;
        let domain = domain.clone();
        async move {
            LiveState {
                group: nsx.get_group(&domain, &id).await.unwrap(),
                policy: nsx.get_policy(&domain, &id).await.unwrap(),
            }
        }
    };

    // Every application written, as reconciles do: nothing read (the cache knows NSX is
    // empty), one write, one read back of the policy (NSX's rule ids).
    t.sim().reset_counters();
    for p in &policies {
        let (ns, name) = names(p);
        let id = identity.object_id(ns, name);
        let before = live(id.clone()).await;
        assert_eq!(before, LiveState::default());
        let patch = change(&identity, p, &before).patch.expect("a first write");
        nsx.patch_infra(&patch).await.unwrap();
        let after = live(id).await;
        assert_eq!(after.rule_ids().len(), after.policy.unwrap().rules.len());
    }
    let n = N as u64;
    assert_eq!(
        calls(&t),
        vec![
            (
                "GET /infra/domains/{d}/security-policies/{id}".to_string(),
                n
            ),
            ("PATCH /infra".to_string(), n)
        ]
    );

    // The resync: one refresh, then every reconcile reads the cache and has nothing to write.
    t.sim().reset_counters();
    let changed = refresh(&cache, &nsx).await.unwrap();
    assert!(changed.is_empty(), "nothing changed in NSX: {changed:?}");
    for p in &policies {
        let (ns, name) = names(p);
        let l = live(identity.object_id(ns, name)).await;
        let ids = l.rule_ids().len();
        assert!(ids >= 2 && ids == l.policy.as_ref().unwrap().rules.len());
        let c = change(&identity, p, &l);
        assert!(c.patch.is_none(), "{name}: {:?}", c.summary);
    }
    assert_eq!(calls(&t), vec![("GET /infra".to_string(), 1)]);

    // A hand edit: an address added to one application's group in NSX.
    let victim = &policies[7];
    let (ns, name) = names(victim);
    let id = identity.object_id(ns, name);
    let mut g = t.client.get_group(&domain, &id).await.unwrap().unwrap();
    g.expression.push(Expression::ConjunctionOperator {
        conjunction_operator: "OR".into(),
    });
    g.expression.push(Expression::IpAddressExpression {
        ip_addresses: vec!["192.0.2.66".into()],
    });
    g.meta = Default::default();
    t.client.patch_group(&domain, &g).await.unwrap();

    // Not seen until the next refresh; then found, for that application only, and corrected.
    let before = live(id.clone()).await;
    assert!(change(&identity, victim, &before).patch.is_none());
    let changed = refresh(&cache, &nsx).await.unwrap();
    assert_eq!(changed, vec![(domain.clone(), id.clone())]);
    let drifted = live(id.clone()).await;
    let fix = change(&identity, victim, &drifted);
    let patch = fix.patch.expect("the drift is corrected");
    nsx.patch_infra(&patch).await.unwrap();
    refresh(&cache, &nsx).await.unwrap();
    let fixed = live(id.clone()).await;
    assert!(change(&identity, victim, &fixed).patch.is_none());
    let group = t.client.get_group(&domain, &id).await.unwrap().unwrap();
    assert!(
        !format!("{:?}", group.expression).contains("192.0.2.66"),
        "{group:?}"
    );

    // A wave: every application flips to DROP (its catch-alls changed in place, no rule
    // created). The cache keeps what it wrote; the next refresh finds each policy as the cache
    // holds it but for NSX's bookkeeping (`_revision`, `_last_modified_time`), and keeps no
    // second, decoded copy of any (at 1,000 applications, tens of MiB for a moment).
    for p in &policies {
        let (ns, name) = names(p);
        let l = live(identity.object_id(ns, name)).await;
        let flip = change_in(&identity, p, &l, Phase::Enforcing)
            .patch
            .expect("the flip");
        nsx.patch_infra(&flip).await.unwrap();
    }
    let ticket = cache.begin_refresh();
    let trees = t
        .client
        .infra_tree_known(ticket.held(&cache))
        .await
        .unwrap();
    let decoded: Vec<&str> = trees
        .iter()
        .flat_map(|t| t.policies.iter().map(|p| p.id.as_str()))
        .filter(|id| id.starts_with("ms_"))
        .collect();
    assert!(decoded.is_empty(), "decoded again: {decoded:?}");
    let changed = cache.apply_refresh(ticket, trees);
    assert!(changed.is_empty(), "{changed:?}");
    for p in &policies {
        let (ns, name) = names(p);
        let l = live(identity.object_id(ns, name)).await;
        let policy = l.policy.as_ref().unwrap();
        let fresh = t
            .client
            .get_policy(&domain, &policy.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*policy, fresh, "the cache holds what NSX returns");
        assert!(
            change_in(&identity, p, &l, Phase::Enforcing)
                .patch
                .is_none()
        );
    }
}
