use super::input::{csv, dfw_log, policy_flows, to_csv, vrni_json};
use super::*;

fn owner() -> Owner {
    Owner {
        name: "Orders team".into(),
        email: Some("orders@example.com".into()),
        webhook: None,
    }
}

fn opts() -> Options {
    Options::new("orders", "shop", "wave-1", vec![owner()])
}

fn app() -> Application {
    Application {
        networks: vec![parse_net("10.10.2.0/24").unwrap()],
        ..Application::default()
    }
}

fn flow(src: &str, dst: &str, proto: Proto, port: Option<u16>, count: u64) -> Observation {
    Observation {
        src: Endpoint::ip(src.parse().unwrap()),
        dst: Endpoint::ip(dst.parse().unwrap()),
        protocol: proto,
        src_port: Some(50000),
        port: port.map(|p| (p, p)),
        count,
        direction: None,
        seen: None,
        volume: None,
    }
}

fn rule<'a>(r: &'a Recommendation, name: &str) -> &'a PolicyRule {
    r.policy
        .spec
        .rules
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in\n{}", r.yaml))
}

#[test]
fn many_addresses_of_one_network_collapse_to_its_cidr() {
    let mut flows: Vec<Observation> = (10..14)
        .map(|x| {
            flow(
                &format!("10.20.30.{x}"),
                "10.10.2.11",
                Proto::Tcp,
                Some(443),
                3,
            )
        })
        .collect();
    flows.push(flow("10.20.31.9", "10.10.2.11", Proto::Tcp, Some(443), 3));
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    let peers = &rule(&r, "from-10-20-30-0-24-and-1-more-tcp-443").peers;
    let cidrs: Vec<&str> = peers.iter().filter_map(|p| p.cidr.as_deref()).collect();
    assert_eq!(cidrs, ["10.20.30.0/24", "10.20.31.9"]);
    // Three addresses are not enough with the default of four.
    let few = recommend(&flows[..3], &app(), &[], &[], &opts()).unwrap();
    assert_eq!(few.policy.spec.rules[0].peers.len(), 3, "{}", few.yaml);
}

#[test]
fn the_prefix_is_configurable() {
    let flows: Vec<Observation> = ["10.20.1.1", "10.20.2.1", "10.20.3.1", "10.20.4.1"]
        .iter()
        .map(|s| flow(s, "10.10.2.11", Proto::Tcp, Some(443), 5))
        .collect();
    let mut o = opts();
    o.prefix = 16;
    let r = recommend(&flows, &app(), &[], &[], &o).unwrap();
    assert_eq!(
        r.policy.spec.rules[0].peers[0].cidr.as_deref(),
        Some("10.20.0.0/16")
    );
}

#[test]
fn ephemeral_source_ports_are_ignored_and_replies_turned_round() {
    let mut reply = flow("10.0.0.53", "10.10.2.11", Proto::Udp, Some(51000), 5);
    reply.src_port = Some(53);
    let flows = vec![
        flow("10.10.2.11", "10.0.0.53", Proto::Udp, Some(53), 5),
        reply,
    ];
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.policy.spec.rules.len(), 1, "{}", r.yaml);
    let only = &r.policy.spec.rules[0];
    assert_eq!(only.direction, Direction::Outbound);
    assert_eq!(only.ports[0].port, Some(53));
    assert!(
        only.description
            .as_deref()
            .unwrap()
            .contains("observed 10 flows")
    );
    assert!(
        !r.yaml.contains("51000") && !r.yaml.contains("50000"),
        "{}",
        r.yaml
    );
}

#[test]
fn rare_flows_become_comments_not_rules() {
    let flows = vec![
        flow("10.1.1.1", "10.10.2.11", Proto::Tcp, Some(443), 9),
        flow("203.0.113.7", "10.10.2.11", Proto::Tcp, Some(22), 2),
    ];
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.policy.spec.rules.len(), 1);
    assert_eq!(r.rare.len(), 1);
    assert!(
        r.yaml
            .contains("#   Inbound from 203.0.113.7 TCP/22: 2 flows (seen fewer than 3 times)"),
        "{}",
        r.yaml
    );
    let mut o = opts();
    o.rare_below = Some(2);
    let all = recommend(&flows, &app(), &[], &[], &o).unwrap();
    assert_eq!(all.policy.spec.rules.len(), 2);
}

#[test]
fn peers_in_git_are_named_by_application() {
    let text = r#"
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: { name: db, namespace: data }
spec:
  owners: [{ name: DBA, email: dba@example.com }]
  criticality: High
  window: { name: w }
  members: [{ vmName: { startsWith: db- } }]
"#;
    let known: Vec<SegmentationPolicy> = crate::api::manifest::resources(text)
        .unwrap()
        .into_iter()
        .filter_map(|(_, r)| match r {
            crate::api::manifest::Resource::Policy(p) => Some(*p),
            crate::api::manifest::Resource::Window(_) => None,
        })
        .collect();
    let inventory = vec![InventoryVm {
        name: "db-01".into(),
        ips: vec!["10.10.3.31".into()],
        tags: Vec::new(),
    }];
    let flows = vec![flow("10.10.2.11", "10.10.3.31", Proto::Tcp, Some(5432), 7)];
    let r = recommend(&flows, &app(), &inventory, &known, &opts()).unwrap();
    let p = &rule(&r, "to-db-tcp-5432").peers[0];
    assert_eq!(
        p.application,
        Some(ApplicationRef {
            name: "db".into(),
            namespace: Some("data".into())
        })
    );
}

#[test]
fn traffic_inside_the_application_is_allowed_from_itself() {
    let flows = vec![flow("10.10.2.11", "10.10.2.12", Proto::Tcp, Some(7000), 5)];
    let mut o = opts();
    o.outbound_catch_all = true;
    let r = recommend(&flows, &app(), &[], &[], &o).unwrap();
    let inbound = rule(&r, "from-self-tcp-7000");
    assert_eq!(
        inbound.peers[0].application.as_ref().unwrap().name,
        "orders"
    );
    rule(&r, "to-self-tcp-7000");
    assert!(r.policy.spec.catch_all.outbound);
}

#[test]
fn flows_that_do_not_touch_the_application_are_counted_and_ignored() {
    let flows = vec![flow("10.1.1.1", "10.2.2.2", Proto::Tcp, Some(443), 9)];
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    assert!(r.policy.spec.rules.is_empty());
    assert_eq!(r.ignored, 1);
}

#[test]
fn peers_sharing_services_share_a_rule_and_rules_respect_port_limits() {
    let mut flows = Vec::new();
    for port in 1000..1020u16 {
        flows.push(flow("10.1.1.1", "10.10.2.11", Proto::Tcp, Some(port), 5));
        flows.push(flow("10.1.2.1", "10.10.2.11", Proto::Tcp, Some(port), 5));
    }
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.policy.spec.rules.len(), 2, "{}", r.yaml);
    assert_eq!(r.policy.spec.rules[0].ports.len(), MAX_PORTS);
    assert_eq!(r.policy.spec.rules[1].ports.len(), 5);
    assert!(r.policy.spec.rules.iter().all(|x| x.peers.len() == 2));
    let names: BTreeSet<&str> = r
        .policy
        .spec
        .rules
        .iter()
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn the_samples_give_the_same_bytes_twice_and_a_valid_policy() {
    let s = generate::samples(generate::SEED);
    let mut o = opts();
    o.outbound_catch_all = true;
    let app = Application {
        tags: vec![VmTag {
            scope: Some("app".into()),
            tag: "orders".into(),
        }],
        ..Application::default()
    };
    let a = recommend(&s.flows, &app, &s.vms, &[], &o).unwrap();
    let b = recommend(&s.flows, &app, &s.vms, &[], &o).unwrap();
    assert_eq!(a.yaml, b.yaml);
    assert_eq!(
        generate::samples(generate::SEED).files,
        s.files,
        "the generator is deterministic"
    );
    assert_ne!(generate::samples(generate::SEED + 1).files, s.files);
}

#[test]
fn json_csv_and_dfw_forms_read_the_same_flows() {
    let s = generate::samples(generate::SEED);
    let from_json = vrni_json(&s.files["flows.json"]).unwrap();
    let from_csv = csv(&s.files["flows.csv"]).unwrap();
    assert_eq!(from_json, s.flows);
    assert_eq!(from_csv, s.flows);
    assert_eq!(to_csv(&from_csv), s.files["flows.csv"]);
    let log = dfw_log(&s.files["dfw.log"]);
    assert!(log.unparsed.is_empty(), "{:?}", log.unparsed);
    let total: u64 = s.flows.iter().map(|f| f.count).sum();
    assert_eq!(log.flows.len() as u64, total);
}

#[test]
fn input_errors_name_the_place() {
    let e =
        vrni_json(r#"[{"source_ip": {"ip_address": "10.0.0.1"}, "protocol": "TCP"}]"#).unwrap_err();
    assert_eq!(e.to_string(), "flows[0].destination_ip.ip_address: missing");
    let e =
        csv("source_ip,destination_ip,protocol,port\n10.0.0.1,10.0.0.2,TCP,99999\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: port: \"99999\" is not a port or a port range"
    );
    let e = csv("source_ip,destination,protocol\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("line 1: unknown column \"destination\""),
        "{e}"
    );
}

#[test]
fn monitor_flows_of_a_policy_keep_their_direction_and_skip_acknowledged_ones() {
    let text = r#"
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: { name: orders, namespace: shop }
spec:
  owners: [{ name: Orders, email: o@example.com }]
  criticality: Low
  window: { name: w }
  members: [{ ipAddress: 10.10.2.0/24 }]
status:
  monitor:
    flows:
      - { source: 10.5.5.5, destination: 10.10.2.11, protocol: TCP, port: 443, direction: Inbound,
          action: PASS, count: 12, firstSeen: "2027-01-01T00:00:00Z", lastSeen: "2027-01-02T00:00:00Z" }
      - { source: 10.5.5.6, destination: 10.10.2.11, protocol: TCP, port: 22, direction: Inbound,
          action: PASS, count: 40, firstSeen: "2027-01-01T00:00:00Z", lastSeen: "2027-01-02T00:00:00Z",
          acknowledged: { by: ops, at: "2027-01-03T00:00:00Z", comment: scanner } }
"#;
    let (policy, flows) = policy_flows(text).unwrap();
    assert_eq!(policy.metadata.name.as_deref(), Some("orders"));
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].direction, Some(Direction::Inbound));
    assert_eq!(flows[0].count, 12);
}

#[test]
fn the_recommend_module_stays_pure() {
    for file in ["mod.rs", "input.rs", "generate.rs"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/recommend")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for forbidden in [
            "kube::Client",
            "reqwest",
            "tokio::",
            "Timestamp::now",
            "std::fs",
        ] {
            assert!(!text.contains(forbidden), "{file} uses {forbidden}");
        }
    }
}
