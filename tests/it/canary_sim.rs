//! The canary shape (src/plan/canary.rs) written to the NSX simulator on 127.0.0.1 in one
//! hierarchical call: the simulator's DFW line generator honours the canary DROP catch-all's
//! applied-to, so the same flow is dropped to a canary VM and passes to another member; the
//! pure flow evaluator (src/plan/impact.rs), reading the simulator's state, agrees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::nsx_support;

use std::collections::BTreeSet;

use microseg::api::Phase;
use microseg::api::manifest::{Resource, resources};
use microseg::net::Protocol;
use microseg::nsx::naming::Identity;
use microseg::nsx::{Client, NsxApi};
use microseg::nsxsim;
use microseg::plan::canary::{self, StepSize};
use microseg::plan::impact::Fleet;
use microseg::plan::live::Live;
use microseg::plan::{Context, desired, diff};
use microseg::recommend::{Endpoint, Observation};
use nsx_support::{credential_files, sim_client_config};
use serde_json::{Value, json};

const POLICY: &str = "apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: { name: app, namespace: shop }
spec:
  owners: [{ name: Team, email: team@example.com }]
  criticality: Low
  window: { name: w }
  members: [{ vmTag: { scope: app, tag: orders } }]
  rules:
    - { name: https, direction: Inbound, peers: [{ any: true }], ports: [{ protocol: TCP, port: 443 }] }
";

fn vm(name: &str, ip: &str, tag: Option<&str>) -> Value {
    let tags: Vec<Value> = tag
        .map(|t| json!({"scope": "app", "tag": t}))
        .into_iter()
        .collect();
    json!({"name": name, "ips": [ip], "tags": tags})
}

async fn lines(url: &str, dst: &str, port: u16) -> Vec<String> {
    nsx_support::flow_lines(url, "10.9.0.1", dst, port).await
}

#[tokio::test]
async fn a_flow_to_a_canary_vm_is_dropped_and_the_same_flow_to_another_member_passes() {
    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let client = Client::new(sim_client_config(&sim.url, &creds, false)).unwrap();
    let members: Vec<(String, String)> = (1..=4)
        .map(|i| (format!("orders-{i:02}"), format!("10.2.0.{i}")))
        .collect();
    let mut inventory: Vec<Value> = members
        .iter()
        .map(|(n, ip)| vm(n, ip, Some("orders")))
        .collect();
    inventory.push(vm("client-01", "10.9.0.1", None));
    let r = reqwest::Client::new()
        .put(format!("{}/admin/vms", sim.url))
        .json(&inventory)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let Resource::Policy(policy) = resources(POLICY).unwrap().remove(0).1 else {
        panic!("not a policy")
    };
    let identity = Identity::new("demo").unwrap();
    let (peers, seq) = (Default::default(), Default::default());
    let cx = Context {
        identity: &identity,
        peers: &peers,
        previous_sequence: &seq,
    };
    let d = desired(&policy, Phase::Enforcing, &cx).unwrap();
    let names: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    let chosen = canary::subset(&d.group.id, &names, &[], StepSize::Members(1)).unwrap();
    assert_eq!(chosen.len(), 1);
    let (step, groups) = canary::shape(&d, &chosen).unwrap();
    let change = diff(&step, &Default::default(), &identity, "shop", "app").unwrap();
    let change = canary::with_groups(change, &step.domain, &groups);
    // One hierarchical call holds the canary group, the group and the policy.
    client
        .patch_infra(change.patch.as_ref().unwrap())
        .await
        .unwrap();

    let ip_of = |name: &str| members.iter().find(|m| m.0 == name).unwrap().1.clone();
    let canary_ip = ip_of(&chosen[0]);
    let other = names.iter().find(|n| **n != chosen[0]).unwrap();
    let other_ip = ip_of(other);

    let to_canary = lines(&sim.url, &canary_ip, 8080).await;
    assert_eq!(to_canary.len(), 1, "{to_canary:?}");
    assert!(to_canary[0].contains(" match DROP "), "{to_canary:?}");
    assert!(to_canary[0].contains(" IN "), "{to_canary:?}");
    let to_other = lines(&sim.url, &other_ip, 8080).await;
    assert_eq!(to_other.len(), 1, "{to_other:?}");
    assert!(to_other[0].contains(" match PASS "), "{to_other:?}");
    // Both lines carry the monitor tag, so monitor mode keeps seeing the rest of the application.
    let tag = microseg::nsx::naming::monitor_tag(&d.group.id, microseg::api::Direction::Inbound);
    assert!(to_canary[0].ends_with(&tag) && to_other[0].ends_with(&tag));
    // The explicit rule still allows HTTPS to the canary VM.
    let https = lines(&sim.url, &canary_ip, 443).await;
    assert!(https.iter().all(|l| !l.contains(" DROP ")), "{https:?}");

    // The pure evaluator, reading what the simulator holds, agrees.
    let live = Live::from_snapshot(&serde_json::to_value(sim.state()).unwrap()).unwrap();
    let fleet = Fleet::from_live(&live);
    let endpoint = |name: &str, ip: &str| Endpoint {
        ip: ip.parse().unwrap(),
        vm: Some(name.to_string()),
        tags: vec!["app|orders".into()],
    };
    let flow = |dst: Endpoint, port: u16| Observation {
        src: Endpoint::ip("10.9.0.1".parse().unwrap()),
        dst,
        protocol: Protocol::Tcp,
        src_port: Some(50000),
        port: Some((port, port)),
        count: 1,
        direction: None,
        seen: None,
        volume: None,
    };
    let mut unresolved = BTreeSet::new();
    let v = fleet.evaluate(
        &flow(endpoint(&chosen[0], &canary_ip), 8080),
        &mut unresolved,
    );
    assert!(!v.allowed);
    assert_eq!(
        v.decider.unwrap().rule,
        microseg::nsx::naming::CATCHALL_IN_CANARY
    );
    let v = fleet.evaluate(&flow(endpoint(other, &other_ip), 8080), &mut unresolved);
    assert!(v.allowed);
    assert_eq!(v.decider.unwrap().rule, microseg::nsx::naming::CATCHALL_IN);

    // Rollback: the plain Monitoring plan, written over the canary step, returns every VM to
    // PASS; the canary DROP rule is removed in the same call.
    let monitoring = desired(&policy, Phase::Monitoring, &cx).unwrap();
    let live_state = microseg::plan::LiveState {
        group: client.get_group("default", &d.group.id).await.unwrap(),
        policy: client.get_policy("default", &d.group.id).await.unwrap(),
    };
    let back = diff(&monitoring, &live_state, &identity, "shop", "app").unwrap();
    assert!(
        back.summary
            .iter()
            .any(|l| l.contains("remove rule catchall_in_canary")),
        "{:?}",
        back.summary
    );
    client
        .patch_infra(back.patch.as_ref().unwrap())
        .await
        .unwrap();
    let after = lines(&sim.url, &canary_ip, 8080).await;
    assert!(after[0].contains(" match PASS "), "{after:?}");
    sim.shutdown().await;
}
