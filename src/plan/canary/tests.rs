//! Canary subset choice and the NSX shape of a canary step.

use proptest::prelude::*;

use super::*;
use crate::api::Phase;

fn vms(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("orders-{i:02}")).collect()
}

const ID: &str = "ms_demo_shop_app";

#[test]
fn a_step_takes_at_least_one_vm_and_never_all() {
    assert_eq!(step_count(StepSize::Members(1), 12), Some(1));
    assert_eq!(step_count(StepSize::Percent(50), 12), Some(6));
    assert_eq!(step_count(StepSize::Percent(1), 12), Some(1));
    assert_eq!(step_count(StepSize::Members(12), 12), Some(11));
    assert_eq!(step_count(StepSize::Percent(99), 3), Some(2));
    assert_eq!(step_count(StepSize::Members(1), 1), None);
    assert_eq!(step_count(StepSize::Members(0), 5), Some(1));
}

#[test]
fn the_explicit_list_comes_first_and_names_outside_the_application_are_ignored() {
    let members = vms(6);
    let explicit = vec![
        "orders-04".to_string(),
        "not-a-member".into(),
        "orders-02".into(),
    ];
    let s = subset(ID, &members, &explicit, StepSize::Members(3)).unwrap();
    assert_eq!(&s[..2], &["orders-04".to_string(), "orders-02".to_string()]);
    assert_eq!(s.len(), 3);
    assert!(!s.contains(&"not-a-member".to_string()));
}

#[test]
fn another_application_with_the_same_vm_names_gets_another_order() {
    let members = vms(20);
    let a = subset("ms_demo_shop_app", &members, &[], StepSize::Members(3)).unwrap();
    let b = subset("ms_demo_shop_web", &members, &[], StepSize::Members(3)).unwrap();
    assert_ne!(a, b);
}

/// An application with one rule and both catch-alls, enforcing.
pub(crate) fn enforcing() -> DesiredState {
    let text = "apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: { name: app, namespace: shop }
spec:
  owners: [{ name: Team, email: team@example.com }]
  criticality: Low
  window: { name: w }
  members: [{ vmTag: { scope: app, tag: orders } }]
  rules:
    - { name: from-web, direction: Inbound, peers: [{ cidr: 10.1.0.0/24 }], ports: [{ protocol: TCP, port: 8443 }] }
  catchAll: { inbound: true, outbound: true }
";
    crate::plan::tests::plan(
        &crate::plan::tests::policy(text),
        Phase::Enforcing,
        &Default::default(),
    )
}

#[test]
fn a_canary_step_drops_for_the_canary_groups_and_passes_for_the_rest_with_the_same_rules() {
    let d = enforcing();
    let canary = vms(7);
    let (c, groups) = shape(&d, &canary).unwrap();
    // Seven VMs: two groups (at most five conditions each).
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].id, "ms_demo_shop_app_canary1");
    assert_eq!(groups[0].expression.len(), 9);
    assert_eq!(groups[1].expression.len(), 3);
    let rules = &c.policy.as_ref().unwrap().rules;
    let ids: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.id.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("from-web", "ALLOW"),
            (CATCHALL_IN_CANARY, "DROP"),
            (CATCHALL_OUT_CANARY, "DROP"),
            (CATCHALL_IN, "ALLOW"),
            (CATCHALL_OUT, "ALLOW"),
        ]
    );
    let drop = &rules[1];
    let pass = &rules[3];
    assert_eq!(
        drop.scope,
        vec![
            "/infra/domains/default/groups/ms_demo_shop_app_canary1".to_string(),
            "/infra/domains/default/groups/ms_demo_shop_app_canary2".to_string()
        ]
    );
    assert!(drop.logged);
    assert_eq!(drop.tag, pass.tag, "both catch-alls log the monitor tag");
    assert_eq!(drop.destination_groups, pass.destination_groups);
    assert_eq!(
        pass.scope,
        vec!["/infra/domains/default/groups/ms_demo_shop_app".to_string()]
    );
    // The explicit rule is untouched.
    assert_eq!(rules[0], d.policy.as_ref().unwrap().rules[0]);
}

#[test]
fn a_canary_needs_the_enforcing_plan_and_a_vm() {
    let mut d = enforcing();
    assert!(shape(&d, &[]).is_err());
    d.policy = None;
    assert!(shape(&d, &vms(1)).is_err());
}

#[test]
fn the_canary_groups_travel_in_the_same_hierarchical_call_as_the_policy() {
    let d = enforcing();
    let (c, groups) = shape(&d, &vms(2)).unwrap();
    let identity = crate::plan::tests::identity();
    let change = crate::plan::diff(&c, &Default::default(), &identity, "shop", "app").unwrap();
    let change = with_groups(change, &c.domain, &groups);
    let body = serde_json::to_value(change.patch.unwrap()).unwrap();
    let children = body["children"][0]["children"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = children
        .iter()
        .map(|c| {
            (
                c["resource_type"].as_str().unwrap(),
                c["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("ChildGroup", "ms_demo_shop_app_canary1"),
            ("ChildGroup", "ms_demo_shop_app"),
            ("ChildSecurityPolicy", "ms_demo_shop_app"),
        ]
    );
    assert!(change.summary[0].contains("write canary group ms_demo_shop_app_canary1"));
}

proptest! {
    /// Deterministic and stable: the order NSX lists members in does not matter; never empty,
    /// never all; a larger step keeps the smaller step's VMs.
    #[test]
    fn subsets_are_stable_deterministic_nested_never_empty_never_all(
        n in 2usize..60,
        rot in 0usize..60,
        small in 1u32..30,
        extra in 0u32..30,
        pct in 1u8..=100,
    ) {
        let members = vms(n);
        let mut shuffled = members.clone();
        shuffled.rotate_left(rot % n);
        shuffled.reverse();
        let a = subset(ID, &members, &[], StepSize::Members(small)).unwrap();
        let b = subset(ID, &shuffled, &[], StepSize::Members(small)).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert!(!a.is_empty());
        prop_assert!(a.len() < n);
        let wider = subset(ID, &members, &[], StepSize::Members(small + extra)).unwrap();
        prop_assert!(a.iter().all(|v| wider.contains(v)));
        let p = subset(ID, &members, &[], StepSize::Percent(pct)).unwrap();
        prop_assert!(!p.is_empty() && p.len() < n);
        prop_assert!(p.iter().all(|v| members.contains(v)));
    }
}
