//! Flow evaluation: first match, direction, ports, CIDRs, application peers, catch-alls, and the
//! comparison of two fleets.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;
use crate::api::manifest::{Resource, resources};
use crate::api::{Phase, SegmentationPolicy};
use crate::net::Protocol;
use crate::nsx::naming::Identity;
use crate::nsx::naming::{CATCHALL_IN, CATCHALL_OUT};

fn identity() -> Identity {
    Identity::new("demo").unwrap()
}

fn policy(name: &str, members: &str, rules: &str, catch_all: &str) -> SegmentationPolicy {
    let text = format!(
        "apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{ name: {name}, namespace: shop }}
spec:
  owners: [{{ name: Team, email: team@example.com }}]
  criticality: Low
  window: {{ name: w }}
  members: {members}
  rules: {rules}
  catchAll: {catch_all}
"
    );
    match resources(&text).unwrap().remove(0).1 {
        Resource::Policy(p) => *p,
        Resource::Window(_) => panic!("not a policy"),
    }
}

/// web (10.1.0.0/24) → app (VM tag app|orders) on 8443; app → db (10.3.0.5) on 5432; db takes
/// backups from 10.99.0.0/16 on 10000-10100.
fn shop() -> Vec<SegmentationPolicy> {
    vec![
        policy(
            "web",
            "[{ ipAddress: 10.1.0.0/24 }]",
            "[{ name: to-app, direction: Outbound, peers: [{ application: { name: app } }], ports: [{ protocol: TCP, port: 8443 }] },
              { name: https, direction: Inbound, peers: [{ any: true }], ports: [{ protocol: TCP, port: 443 }] }]",
            "{ inbound: true, outbound: true }",
        ),
        policy(
            "app",
            "[{ vmTag: { scope: app, tag: orders } }]",
            "[{ name: from-web, direction: Inbound, peers: [{ application: { name: web } }], ports: [{ protocol: TCP, port: 8443 }] },
              { name: ping, direction: Inbound, peers: [{ cidr: 10.50.0.0/16 }], ports: [{ protocol: ICMP, icmpType: 8 }] }]",
            "{ inbound: true }",
        ),
        policy(
            "db",
            "[{ ipAddress: 10.3.0.5 }]",
            "[{ name: from-app, direction: Inbound, peers: [{ application: { name: app } }], ports: [{ protocol: TCP, port: 5432 }] },
              { name: no-telnet, direction: Inbound, peers: [{ any: true }], ports: [{ protocol: TCP, port: 23 }], action: Drop },
              { name: backup, direction: Inbound, peers: [{ cidr: 10.99.0.0/16 }], ports: [{ protocol: TCP, port: 10000, endPort: 10100 }] }]",
            "{ inbound: true }",
        ),
    ]
}

fn fleet(phase: Phase) -> Fleet {
    static MONITORING: LazyLock<Fleet> = LazyLock::new(|| build(Phase::Monitoring));
    static ENFORCING: LazyLock<Fleet> = LazyLock::new(|| build(Phase::Enforcing));
    match phase {
        Phase::Monitoring => MONITORING.clone(),
        Phase::Enforcing => ENFORCING.clone(),
        other => build(other),
    }
}

fn build(phase: Phase) -> Fleet {
    Fleet::default()
        .with_desired(&shop(), &identity(), |_| Some(phase))
        .unwrap()
}

fn endpoint(ip: &str, vm: Option<&str>, tags: &[&str]) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        vm: vm.map(str::to_string),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn app_vm() -> Endpoint {
    endpoint("10.2.0.7", Some("orders-01"), &["app|orders"])
}

fn flow(src: Endpoint, dst: Endpoint, protocol: Protocol, port: Option<u16>) -> Observation {
    Observation {
        src,
        dst,
        protocol,
        src_port: Some(50000),
        port: port.map(|p| (p, p)),
        count: 1,
        direction: None,
        seen: Some(("2027-01-01T00:00:00Z".into(), "2027-01-02T00:00:00Z".into())),
        volume: None,
    }
}

fn verdict(f: &Fleet, o: &Observation) -> (bool, Option<(String, String, End)>) {
    let v = f.evaluate(o, &mut BTreeSet::new());
    (v.allowed, v.decider.map(|d| (d.application, d.rule, d.end)))
}

fn by(app: &str, rule: &str, end: End) -> Option<(String, String, End)> {
    Some((format!("shop/{app}"), rule.into(), end))
}

#[test]
fn an_application_peer_rule_allows_at_both_ends() {
    let o = flow(
        endpoint("10.1.0.4", None, &[]),
        app_vm(),
        Protocol::Tcp,
        Some(8443),
    );
    assert_eq!(
        verdict(&fleet(Phase::Enforcing), &o),
        (true, by("app", "from-web", End::Destination))
    );
}

#[test]
fn the_wrong_port_reaches_the_catch_all_which_drops_only_when_enforcing() {
    let o = flow(
        endpoint("10.1.0.4", None, &[]),
        app_vm(),
        Protocol::Tcp,
        Some(8080),
    );
    // The source's outbound catch-all decides first.
    assert_eq!(
        verdict(&fleet(Phase::Enforcing), &o),
        (false, by("web", CATCHALL_OUT, End::Source))
    );
    assert_eq!(
        verdict(&fleet(Phase::Monitoring), &o),
        (true, by("app", CATCHALL_IN, End::Destination))
    );
}

#[test]
fn direction_matters_an_inbound_rule_does_not_allow_the_reverse_flow() {
    // app → web on 8443: web's to-app is outbound from web, so web's inbound catch-all decides.
    let o = flow(
        app_vm(),
        endpoint("10.1.0.4", None, &[]),
        Protocol::Tcp,
        Some(8443),
    );
    assert_eq!(
        verdict(&fleet(Phase::Enforcing), &o),
        (false, by("web", CATCHALL_IN, End::Destination))
    );
}

#[test]
fn first_match_wins_an_earlier_drop_beats_the_catch_all_even_in_monitor_mode() {
    let o = flow(
        endpoint("10.9.9.9", None, &[]),
        endpoint("10.3.0.5", None, &[]),
        Protocol::Tcp,
        Some(23),
    );
    assert_eq!(
        verdict(&fleet(Phase::Monitoring), &o),
        (false, by("db", "no-telnet", End::Destination))
    );
}

#[test]
fn cidr_peers_and_port_ranges_match_inside_and_not_outside() {
    let db = || endpoint("10.3.0.5", None, &[]);
    let inside = flow(
        endpoint("10.99.4.4", None, &[]),
        db(),
        Protocol::Tcp,
        Some(10050),
    );
    let other_net = flow(
        endpoint("10.98.4.4", None, &[]),
        db(),
        Protocol::Tcp,
        Some(10050),
    );
    let other_port = flow(
        endpoint("10.99.4.4", None, &[]),
        db(),
        Protocol::Tcp,
        Some(10101),
    );
    let f = fleet(Phase::Enforcing);
    assert_eq!(
        verdict(&f, &inside),
        (true, by("db", "backup", End::Destination))
    );
    assert_eq!(
        verdict(&f, &other_net),
        (false, by("db", CATCHALL_IN, End::Destination))
    );
    assert_eq!(
        verdict(&f, &other_port),
        (false, by("db", CATCHALL_IN, End::Destination))
    );
}

#[test]
fn icmp_entries_match_their_type_and_protocol_only() {
    let f = fleet(Phase::Enforcing);
    let src = || endpoint("10.50.1.1", None, &[]);
    let echo = flow(src(), app_vm(), Protocol::Icmp, Some(8));
    let other_type = flow(src(), app_vm(), Protocol::Icmp, Some(13));
    let udp = flow(src(), app_vm(), Protocol::Udp, Some(8));
    assert!(verdict(&f, &echo).0);
    assert!(!verdict(&f, &other_type).0);
    assert!(!verdict(&f, &udp).0);
}

#[test]
fn membership_by_tag_needs_the_vm_facts() {
    // The same address without its tag is not the app: nothing applies at the destination.
    let bare = flow(
        endpoint("10.1.0.4", None, &[]),
        endpoint("10.2.0.7", None, &[]),
        Protocol::Tcp,
        Some(8443),
    );
    assert_eq!(
        verdict(&fleet(Phase::Enforcing), &bare),
        (false, by("web", CATCHALL_OUT, End::Source))
    );
}

#[test]
fn traffic_between_addresses_no_application_holds_passes_by_default() {
    let o = flow(
        endpoint("192.168.1.1", None, &[]),
        endpoint("192.168.1.2", None, &[]),
        Protocol::Tcp,
        Some(22),
    );
    assert_eq!(verdict(&fleet(Phase::Enforcing), &o), (true, None));
}

#[test]
fn a_reply_is_evaluated_as_the_flow_that_initiated_it() {
    let mut o = flow(
        app_vm(),
        endpoint("10.1.0.4", None, &[]),
        Protocol::Tcp,
        Some(51000),
    );
    o.src_port = Some(443);
    // Turned round: web's https inbound from anywhere... web → app? No: 10.1.0.4:51000 → app:443
    // is the initiator; app has no rule for 443, so its catch-all drops at the destination —
    // after web's outbound catch-all, which comes first.
    assert_eq!(
        verdict(&fleet(Phase::Enforcing), &o),
        (false, by("web", CATCHALL_OUT, End::Source))
    );
}

#[test]
fn removing_a_rule_newly_drops_its_flows_and_adding_it_back_newly_allows_them() {
    let before = fleet(Phase::Enforcing);
    let mut changed = shop();
    changed[2].spec.rules.retain(|r| r.name != "backup");
    let after = Fleet::default()
        .with_desired(&changed, &identity(), |_| Some(Phase::Enforcing))
        .unwrap();
    let mut backup = flow(
        endpoint("10.99.4.4", None, &[]),
        endpoint("10.3.0.5", None, &[]),
        Protocol::Tcp,
        Some(10050),
    );
    backup.count = 3;
    let mut again = backup.clone();
    again.count = 4;
    again.seen = Some(("2027-01-03T00:00:00Z".into(), "2027-01-05T00:00:00Z".into()));
    let web = flow(
        endpoint("10.1.0.4", None, &[]),
        app_vm(),
        Protocol::Tcp,
        Some(8443),
    );
    let flows = vec![backup, again, web];

    let removed = compare(&before, &after, &flows);
    assert_eq!(removed.flows, 2, "identical records merge");
    assert_eq!(removed.newly_dropped(), 1);
    assert_eq!(removed.exit_code(), 2);
    let db = &removed.applications["shop/db"];
    assert_eq!(db.newly_dropped[0].flow.count, 7);
    assert_eq!(db.newly_dropped[0].last_seen(), "2027-01-05T00:00:00Z");
    assert_eq!(removed.applications["shop/app"].unchanged_allowed, 1);

    let added = compare(&after, &before, &flows);
    assert_eq!(added.newly_dropped(), 0);
    assert_eq!(added.newly_allowed(), 1);
    assert_eq!(added.exit_code(), 0);
    let text = added.render();
    assert!(
        text.contains("shop/db: 0 newly dropped, 1 newly allowed"),
        "{text}"
    );
    assert!(
        text.contains(
            "now: shop/db backup ALLOW at the destination; was: shop/db catchall_in DROP"
        ),
        "{text}"
    );
}

#[test]
fn an_unknown_group_path_has_no_member_and_is_reported() {
    let p = policy(
        "mon",
        "[{ ipAddress: 10.7.0.1 }]",
        "[{ name: scrape, direction: Inbound, peers: [{ nsxGroup: /infra/domains/default/groups/prometheus }], ports: [{ protocol: TCP, port: 9100 }] }]",
        "{ inbound: true }",
    );
    let f = Fleet::default()
        .with_desired(&[p], &identity(), |_| Some(Phase::Enforcing))
        .unwrap();
    let mut unresolved = BTreeSet::new();
    let v = f.evaluate(
        &flow(
            endpoint("10.8.0.1", None, &[]),
            endpoint("10.7.0.1", None, &[]),
            Protocol::Tcp,
            Some(9100),
        ),
        &mut unresolved,
    );
    assert!(!v.allowed);
    assert!(unresolved.contains("/infra/domains/default/groups/prometheus"));
}

#[test]
fn dropped_at_enforcement_lists_what_the_catch_all_would_drop_for_one_application() {
    let all = shop();
    let unknown = flow(
        endpoint("10.60.0.1", None, &[]),
        endpoint("10.3.0.5", None, &[]),
        Protocol::Tcp,
        Some(5432),
    );
    let from_app = flow(
        app_vm(),
        endpoint("10.3.0.5", None, &[]),
        Protocol::Tcp,
        Some(5432),
    );
    let i = dropped_at_enforcement(&all[2], &all, &identity(), &[unknown, from_app]).unwrap();
    assert_eq!(i.newly_dropped(), 1);
    assert_eq!(
        i.applications["shop/db"].newly_dropped[0]
            .flow
            .src
            .ip
            .to_string(),
        "10.60.0.1"
    );
}

proptest! {
    /// Monitor mode never drops a flow that only a catch-all matches, and enforcing changes
    /// nothing for flows an explicit ALLOW rule matches at both ends.
    #[test]
    fn catch_alls_decide_last(a in 0u8..=255, b in 0u8..=255, port in 1u16..=65535, tcp in any::<bool>()) {
        let src = endpoint(&format!("10.{a}.{b}.1"), None, &[]);
        let dst = endpoint("10.3.0.5", None, &[]);
        let o = flow(src, dst, if tcp { Protocol::Tcp } else { Protocol::Udp }, Some(port));
        let (monitor, _) = verdict(&fleet(Phase::Monitoring), &o);
        let (enforce, by_rule) = verdict(&fleet(Phase::Enforcing), &o);
        let telnet = tcp && port == 23;
        prop_assert_eq!(monitor, !telnet);
        let backup = tcp && a == 99 && (10000..=10100).contains(&port);
        if backup {
            prop_assert!(enforce);
        }
        if !enforce && !telnet {
            let (_, rule, _) = by_rule.unwrap();
            prop_assert!(rule.starts_with("catchall"));
        }
    }

    /// The verdict of a flow is the same whatever order the sections are given in.
    #[test]
    fn order_of_sections_given_does_not_matter(rot in 0usize..3, port in 1u16..=65535) {
        let f = fleet(Phase::Enforcing);
        let mut sections = f.sections().to_vec();
        sections.rotate_left(rot);
        let g = Fleet::new(f.groups.clone(), sections);
        let o = flow(endpoint("10.1.0.4", None, &[]), app_vm(), Protocol::Tcp, Some(port));
        prop_assert_eq!(verdict(&f, &o), verdict(&g, &o));
    }
}
