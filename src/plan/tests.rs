//! Golden tests of the plan for every example in every phase, the diff, and id uniqueness.
//! Set `MICROSEG_UPDATE_GOLDEN=1` to rewrite the golden files after an intended change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::api::manifest::{Resource, resources};
use crate::net::Protocol;
use crate::nsx::model::Tag;

pub(crate) const EXAMPLES: [(&str, &str); 6] = [
    (
        "00-namespace.yaml",
        include_str!("../../deploy/examples/00-namespace.yaml"),
    ),
    (
        "01-windows.yaml",
        include_str!("../../deploy/examples/01-windows.yaml"),
    ),
    (
        "10-web.yaml",
        include_str!("../../deploy/examples/10-web.yaml"),
    ),
    (
        "11-app.yaml",
        include_str!("../../deploy/examples/11-app.yaml"),
    ),
    (
        "12-db.yaml",
        include_str!("../../deploy/examples/12-db.yaml"),
    ),
    (
        "20-dns.yaml",
        include_str!("../../deploy/examples/20-dns.yaml"),
    ),
];

fn example_policies() -> Vec<SegmentationPolicy> {
    EXAMPLES
        .iter()
        .flat_map(|(file, text)| resources(text).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter_map(|(_, r)| match r {
            Resource::Policy(p) => Some(*p),
            Resource::Window(_) => None,
        })
        .collect()
}

fn peers_of(policies: &[SegmentationPolicy]) -> PeerGroups {
    let id = identity();
    policies
        .iter()
        .map(|p| {
            let ns = p.metadata.namespace.clone().unwrap();
            let name = p.metadata.name.clone().unwrap();
            let path = group_path(&p.spec.nsx.domain, &id.object_id(&ns, &name));
            ((ns, name), path)
        })
        .collect()
}

/// The one SegmentationPolicy of a manifest.
pub(crate) fn policy(text: &str) -> SegmentationPolicy {
    let Resource::Policy(p) = resources(text).unwrap().remove(0).1 else {
        panic!("not a policy")
    };
    *p
}

pub(crate) fn identity() -> Identity {
    Identity::new("demo").unwrap()
}

/// The desired state of `p` in `phase` for NSX holding no rule yet.
pub(crate) fn plan(p: &SegmentationPolicy, phase: Phase, peers: &PeerGroups) -> DesiredState {
    plan_over(p, phase, peers, &BTreeMap::new())
}

/// The desired state of `p` in `phase` for NSX holding rules with the sequence numbers `seq`.
fn plan_over(
    p: &SegmentationPolicy,
    phase: Phase,
    peers: &PeerGroups,
    seq: &BTreeMap<String, i64>,
) -> DesiredState {
    let id = identity();
    desired(
        p,
        phase,
        &Context {
            identity: &id,
            peers,
            previous_sequence: seq,
        },
    )
    .unwrap()
}

fn as_json(d: &DesiredState) -> serde_json::Value {
    serde_json::json!({ "domain": d.domain, "group": d.group, "policy": d.policy })
}

#[test]
fn every_example_is_valid_against_the_generated_schema() {
    let mut kinds = BTreeMap::new();
    for (file, text) in EXAMPLES {
        for (_, r) in resources(text).unwrap_or_else(|e| panic!("deploy/examples/{file}: {e}")) {
            let k = match r {
                Resource::Window(_) => "EnforcementWindow",
                Resource::Policy(_) => "SegmentationPolicy",
            };
            *kinds.entry(k).or_insert(0) += 1;
        }
    }
    assert_eq!(kinds.get("EnforcementWindow"), Some(&2));
    assert_eq!(kinds.get("SegmentationPolicy"), Some(&4));
}

#[test]
fn plan_of_every_example_in_every_phase_matches_its_golden_file() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/plan/golden");
    let update = std::env::var("MICROSEG_UPDATE_GOLDEN").is_ok();
    let mut checked = 0;
    for p in &policies {
        for phase in [
            Phase::Pending,
            Phase::Monitoring,
            Phase::Enforcing,
            Phase::Completed,
        ] {
            let got = as_json(&plan(p, phase, &peers));
            let path = dir.join(format!(
                "{}-{}.json",
                p.metadata.name.as_ref().unwrap(),
                phase
            ));
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let want: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("{}: {e}; run with MICROSEG_UPDATE_GOLDEN=1", path.display())
                }))
                .unwrap();
            assert_eq!(got, want, "{} differs", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

#[test]
fn held_and_rolled_back_look_like_monitoring_in_nsx() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    for p in &policies {
        let monitoring = plan(p, Phase::Monitoring, &peers);
        assert_eq!(plan(p, Phase::Held, &peers), monitoring);
        assert_eq!(plan(p, Phase::RolledBack, &peers), monitoring);
    }
}

#[test]
fn catch_all_is_pass_then_drop_then_unlogged_or_removed() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let web = &policies[0];
    let catch = |phase| {
        plan(web, phase, &peers)
            .policy
            .map(|p| {
                p.rules
                    .into_iter()
                    .filter(|r| r.id.starts_with("catchall"))
                    .map(|r| (r.id, r.action, r.logged, r.tag.is_some()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(catch(Phase::Pending).is_empty());
    assert_eq!(
        catch(Phase::Monitoring),
        vec![
            ("catchall_in".into(), "ALLOW".into(), true, true),
            ("catchall_out".into(), "ALLOW".into(), true, true)
        ]
    );
    assert!(
        catch(Phase::Enforcing)
            .iter()
            .all(|r| r.1 == "DROP" && r.2 && r.3)
    );
    assert!(
        catch(Phase::Completed)
            .iter()
            .all(|r| r.1 == "DROP" && !r.2 && !r.3)
    );
    let mut removed = web.clone();
    removed.spec.after_cleanup = AfterCleanup::Remove;
    let rules = plan(&removed, Phase::Completed, &peers)
        .policy
        .unwrap()
        .rules;
    assert!(rules.iter().all(|r| !r.id.starts_with("catchall")));
    assert!(!rules.is_empty(), "explicit rules stay");
}

#[test]
fn catch_alls_come_after_every_explicit_rule() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    for p in &policies {
        let rules = plan(p, Phase::Enforcing, &peers).policy.unwrap().rules;
        let explicit_max = rules
            .iter()
            .filter(|r| !r.id.starts_with("catchall"))
            .filter_map(|r| r.sequence_number)
            .max()
            .unwrap();
        let catch_min = rules
            .iter()
            .filter(|r| r.id.starts_with("catchall"))
            .filter_map(|r| r.sequence_number)
            .min()
            .unwrap();
        assert!(explicit_max < catch_min);
    }
}

#[test]
fn a_missing_peer_application_is_an_error_naming_the_rule() {
    let policies = example_policies();
    let mut peers = peers_of(&policies);
    peers.remove(&("shop".to_string(), "db".to_string()));
    let app = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("app"))
        .unwrap();
    let id = identity();
    let none = BTreeMap::new();
    let err = desired(
        app,
        Phase::Monitoring,
        &Context {
            identity: &id,
            peers: &peers,
            previous_sequence: &none,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlanError::PeerNotFound {
            rule: "to-db".into(),
            peer: "shop/db".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "spec.rules[to-db].peers: application shop/db not found"
    );
}

fn live_from(d: &DesiredState, first_rule_id: i64) -> LiveState {
    let mut policy = d.policy.clone();
    if let Some(p) = &mut policy {
        p.meta.revision = Some(3);
        for (i, r) in p.rules.iter_mut().enumerate() {
            r.rule_id = Some(first_rule_id + i as i64);
            r.meta.path = Some(format!("/x/{}", r.id));
        }
    }
    let mut group = d.group.clone();
    group.meta.revision = Some(1);
    LiveState {
        group: Some(group),
        policy,
    }
}

#[test]
fn nothing_is_written_when_nsx_already_matches() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    for p in &policies {
        let d = plan(p, Phase::Enforcing, &peers);
        let live = live_from(&d, 1002);
        let change = diff(
            &d,
            &live,
            &identity(),
            "shop",
            p.metadata.name.as_ref().unwrap(),
        )
        .unwrap();
        assert!(change.is_empty(), "{change}");
    }
}

#[test]
fn phase_change_rewrites_only_the_catch_all() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let web = &policies[0];
    let live = live_from(&plan(web, Phase::Monitoring, &peers), 1002);
    let d = plan(web, Phase::Enforcing, &peers);
    let change = diff(&d, &live, &identity(), "shop", "web").unwrap();
    let patch = serde_json::to_value(change.patch.unwrap()).unwrap();
    let rules = patch
        .pointer("/children/0/children/0/SecurityPolicy/children")
        .unwrap();
    let ids: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["catchall_in", "catchall_out"]);
    assert!(
        change
            .summary
            .iter()
            .any(|s| s.starts_with("change rule catchall_in (action, notes) to DROP")),
        "{:?}",
        change.summary
    );
}

#[test]
fn adding_a_rule_leaves_the_other_rules_untouched() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let mut db = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("db"))
        .unwrap()
        .clone();
    let before = plan(&db, Phase::Monitoring, &peers);
    let live = live_from(&before, 1002);
    let mut extra = db.spec.rules[1].clone();
    extra.name = "from-reporting".into();
    db.spec.rules.insert(1, extra);
    let id = identity();
    let after = plan_over(&db, Phase::Monitoring, &peers, &live.rule_sequence());
    let change = diff(&after, &live, &id, "shop", "db").unwrap();
    assert_eq!(change.summary.len(), 1, "{:?}", change.summary);
    assert!(change.summary[0].starts_with("add rule from-reporting"));
    let rules = after.policy.unwrap().rules;
    assert_eq!(rules[0].sequence_number, Some(1000));
    assert_eq!(rules[1].sequence_number, Some(1500));
    assert_eq!(rules[2].sequence_number, Some(2000));
}

#[test]
fn removing_a_rule_marks_only_it_for_deletion() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let mut web = policies[0].clone();
    let live = live_from(&plan(&web, Phase::Monitoring, &peers), 1002);
    web.spec.rules.remove(1);
    let id = identity();
    let after = plan_over(&web, Phase::Monitoring, &peers, &live.rule_sequence());
    let change = diff(&after, &live, &id, "shop", "web").unwrap();
    assert_eq!(
        change.summary,
        vec!["remove rule ssh-from-bastion".to_string()]
    );
    let patch = serde_json::to_value(change.patch.unwrap()).unwrap();
    let child = patch
        .pointer("/children/0/children/0/SecurityPolicy/children/0")
        .unwrap();
    assert_eq!(child["marked_for_delete"], true);
    assert_eq!(child["id"], "ssh-from-bastion");
}

#[test]
fn objects_without_our_ownership_tags_are_never_changed() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let web = &policies[0];
    let d = plan(web, Phase::Monitoring, &peers);
    let mut live = live_from(&d, 1002);
    live.group.as_mut().unwrap().tags = vec![Tag::new("owner", "someone-else")];
    let err = diff(&d, &live, &identity(), "shop", "web").unwrap_err();
    assert!(matches!(err, PlanError::NotOwned { .. }), "{err}");
    // Another namespace's policy with the same tags structure is not ours either.
    let mut live = live_from(&d, 1002);
    live.policy.as_mut().unwrap().tags = identity().owner_tags("other", "web");
    assert!(diff(&d, &live, &identity(), "shop", "web").is_err());
}

#[test]
fn first_write_creates_group_policy_and_rules_in_one_call() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let d = plan(&policies[0], Phase::Monitoring, &peers);
    let change = diff(&d, &LiveState::default(), &identity(), "shop", "web").unwrap();
    let patch = serde_json::to_value(change.patch.unwrap()).unwrap();
    let domain_children = patch
        .pointer("/children/0/children")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(domain_children.len(), 2);
    assert_eq!(domain_children[0]["resource_type"], "ChildGroup");
    assert_eq!(domain_children[1]["resource_type"], "ChildSecurityPolicy");
    assert_eq!(
        domain_children[1]["SecurityPolicy"]["children"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(change.summary[0], format!("create group {}", d.group.id));
}

#[test]
fn removal_deletes_policy_and_group() {
    let policies = example_policies();
    let peers = peers_of(&policies);
    let live = live_from(&plan(&policies[0], Phase::Enforcing, &peers), 1002);
    let patch = serde_json::to_value(removal(&live, "default").unwrap()).unwrap();
    let children = patch
        .pointer("/children/0/children")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(children.iter().all(|c| c["marked_for_delete"] == true));
    assert_eq!(children.len(), 2);
    assert!(removal(&LiveState::default(), "default").is_none());
}

#[test]
fn ports_are_grouped_per_protocol_and_split_at_nsx_limits() {
    let ports: Vec<Port> = (1..=20)
        .map(|p| Port {
            protocol: Some(Protocol::Tcp),
            port: Some(p),
            end_port: None,
            icmp_type: None,
            nsx_service: None,
        })
        .chain([Port {
            protocol: Some(Protocol::Tcp),
            port: Some(100),
            end_port: Some(200),
            icmp_type: None,
            nsx_service: None,
        }])
        .collect();
    let (services, entries) = services(&ports, "ports").unwrap();
    assert_eq!(
        services,
        vec!["ANY"],
        "ANY beside inline entries, as NSX reads it back"
    );
    assert_eq!(entries.len(), 2);
    for e in &entries {
        let ServiceEntry::L4PortSetServiceEntry {
            destination_ports, ..
        } = e
        else {
            panic!()
        };
        let weight: usize = destination_ports
            .iter()
            .map(|v| if v.contains('-') { 2 } else { 1 })
            .sum();
        assert!(weight <= MAX_PORT_VALUES);
    }
}

#[test]
fn a_protocol_without_an_nsx_service_entry_is_invalid_not_dropped() {
    for protocol in [Protocol::Other(47), Protocol::Unnamed] {
        let port = Port {
            protocol: Some(protocol),
            port: None,
            end_port: None,
            icmp_type: None,
            nsx_service: None,
        };
        let err = services(&[port], "spec.rules[0].ports").unwrap_err();
        let PlanError::Invalid { field, reason } = err else {
            panic!("{err:?}")
        };
        assert_eq!(field, "spec.rules[0].ports[0].protocol");
        assert!(reason.contains(&protocol.to_string()), "{reason}");
    }
}

#[test]
fn monitor_tags_fit_nsx_and_differ_per_application() {
    let id = identity();
    let a = monitor_tag(&id.object_id("shop", "web"), Direction::Inbound);
    let b = monitor_tag(&id.object_id("shop", "app"), Direction::Inbound);
    assert!(a.len() <= 32 && a != b);
}

fn k8s_name() -> impl Strategy<Value = String> {
    // DNS-1123 subdomains up to 63 characters (the CRD caps policy names at 63).
    "[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?"
}

fn namespace() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
}

proptest! {
    #[test]
    fn two_different_policies_never_share_an_nsx_id(
        cluster in "[a-z0-9-]{1,32}",
        a in (namespace(), k8s_name()),
        b in (namespace(), k8s_name()),
    ) {
        let id = Identity::new(&cluster).unwrap();
        let (ida, idb) = (id.object_id(&a.0, &a.1), id.object_id(&b.0, &b.1));
        prop_assert_eq!(ida == idb, a == b);
        prop_assert!(ida.len() <= 255 && !ida.contains('/') && !ida.contains('&'));
    }
}

#[test]
fn ids_that_would_collide_with_a_naive_separator_do_not() {
    let id = identity();
    assert_ne!(id.object_id("a-b", "c"), id.object_id("a", "b-c"));
    assert_ne!(id.object_id("a", "b.c"), id.object_id("a.b", "c"));
    let other = Identity::new("demo-2").unwrap();
    assert_ne!(id.object_id("x", "y"), other.object_id("x", "y"));
    assert!(Identity::new("Bad_Cluster").is_err());
}
