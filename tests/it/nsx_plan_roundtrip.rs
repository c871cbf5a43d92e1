//! The plan's hierarchical writes for every example application and phase are accepted by the
//! simulator, and what the client reads back compares equal to the plan (no change on the
//! next resync): the compare-first rule holds end to end through the NSX wire format, and
//! rules keep their NSX rule ids from phase to phase.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::nsx_support;

use std::collections::BTreeMap;

use microseg::api::manifest::{Resource, resources};
use microseg::api::{Phase, SegmentationPolicy};
use microseg::nsx::NsxApi;
use microseg::nsx::naming::Identity;
use microseg::nsxsim;
use microseg::plan::{self, Context, PeerGroups};
use nsx_support::*;

const EXAMPLES: [&str; 4] = [
    include_str!("../../deploy/examples/10-web.yaml"),
    include_str!("../../deploy/examples/11-app.yaml"),
    include_str!("../../deploy/examples/12-db.yaml"),
    include_str!("../../deploy/examples/20-dns.yaml"),
];

fn policies() -> Vec<SegmentationPolicy> {
    EXAMPLES
        .iter()
        .flat_map(|text| resources(text).unwrap())
        .filter_map(|(_, r)| match r {
            Resource::Policy(p) => Some(*p),
            Resource::Window(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn plan_writes_are_accepted_and_read_back_in_sync() {
    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let (client, _creds) = admin_client(&sim, true);
    let identity = Identity::new("demo").unwrap();
    let policies = policies();
    assert!(!policies.is_empty());
    let peers: PeerGroups = policies
        .iter()
        .map(|p| {
            let ns = p.metadata.namespace.clone().unwrap();
            let name = p.metadata.name.clone().unwrap();
            let path = microseg::nsx::naming::group_path(
                &p.spec.nsx.domain,
                &identity.object_id(&ns, &name),
            );
            ((ns, name), path)
        })
        .collect();
    // Existing NSX objects the examples refer to (services such as DNS-UDP are defaults).
    put_external_groups(&client, &EXAMPLES.concat()).await;
    let mut seen: BTreeMap<(String, String), i64> = BTreeMap::new();
    // Pending first (groups only), so that rules naming peer applications find their groups.
    for phase in [
        Phase::Pending,
        Phase::Monitoring,
        Phase::Enforcing,
        Phase::Completed,
    ] {
        for p in &policies {
            let ns = p.metadata.namespace.clone().unwrap();
            let name = p.metadata.name.clone().unwrap();
            let id = identity.object_id(&ns, &name);
            let domain = p.spec.nsx.domain.clone();
            let before = live_state(&client, &domain, &id).await;
            let seq = before.rule_sequence();
            let ctx = Context {
                identity: &identity,
                peers: &peers,
                previous_sequence: &seq,
            };
            let desired = plan::desired(p, phase, &ctx).unwrap();
            let change = plan::diff(&desired, &before, &identity, &ns, &name).unwrap();
            if let Some(body) = &change.patch {
                client
                    .patch_infra(body)
                    .await
                    .unwrap_or_else(|e| panic!("{name} {phase}: {e}"));
            }
            let after = live_state(&client, &domain, &id).await;
            let again = plan::diff(&desired, &after, &identity, &ns, &name).unwrap();
            assert!(
                again.is_empty(),
                "{name} {phase}: NSX read back differs from the plan: {again}"
            );
            if desired.policy.is_some() {
                let ids: BTreeMap<String, i64> = after.rule_ids();
                assert!(!ids.is_empty(), "{name} {phase}: no rule ids read back");
                // A rule keeps its NSX rule id across phase changes (DFW logs stay readable).
                for (rule, n) in ids {
                    let before = *seen.entry((id.clone(), rule.clone())).or_insert(n);
                    assert_eq!(before, n, "{name} {phase}: rule {rule} changed id");
                }
            }
        }
    }
    sim.shutdown().await;
}
