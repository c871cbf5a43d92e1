use super::input::{csv, dfw_log, is_vrni_csv, policy_flows, to_csv, vrni_csv, vrni_json};
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

fn flow(src: &str, dst: &str, proto: Protocol, port: Option<u16>, count: u64) -> Observation {
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
                Protocol::Tcp,
                Some(443),
                3,
            )
        })
        .collect();
    flows.push(flow(
        "10.20.31.9",
        "10.10.2.11",
        Protocol::Tcp,
        Some(443),
        3,
    ));
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
        .map(|s| flow(s, "10.10.2.11", Protocol::Tcp, Some(443), 5))
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
    let mut reply = flow("10.0.0.53", "10.10.2.11", Protocol::Udp, Some(51000), 5);
    reply.src_port = Some(53);
    let flows = vec![
        flow("10.10.2.11", "10.0.0.53", Protocol::Udp, Some(53), 5),
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
        flow("10.1.1.1", "10.10.2.11", Protocol::Tcp, Some(443), 9),
        flow("203.0.113.7", "10.10.2.11", Protocol::Tcp, Some(22), 2),
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
    let flows = vec![flow(
        "10.10.2.11",
        "10.10.3.31",
        Protocol::Tcp,
        Some(5432),
        7,
    )];
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
    let flows = vec![flow(
        "10.10.2.11",
        "10.10.2.12",
        Protocol::Tcp,
        Some(7000),
        5,
    )];
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
    let flows = vec![flow("10.1.1.1", "10.2.2.2", Protocol::Tcp, Some(443), 9)];
    let r = recommend(&flows, &app(), &[], &[], &opts()).unwrap();
    assert!(r.policy.spec.rules.is_empty());
    assert_eq!(r.ignored, 1);
}

#[test]
fn peers_sharing_services_share_a_rule_and_rules_respect_port_limits() {
    let mut flows = Vec::new();
    for port in 1000..1020u16 {
        flows.push(flow("10.1.1.1", "10.10.2.11", Protocol::Tcp, Some(port), 5));
        flows.push(flow("10.1.2.1", "10.10.2.11", Protocol::Tcp, Some(port), 5));
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

const FLOW: &str = r#"{"entity_id": "18230:515:3317701", "entity_type": "Flow",
  "source_ip": {"ip_address": "10.10.1.21", "netmask": "255.255.255.0", "network_address": "10.10.1.0"},
  "destination_ip": {"ip_address": "10.10.2.11", "netmask": "255.255.255.0", "network_address": "10.10.2.0"},
  "port": {"start": 8443, "end": 8443, "display": "8443", "iana_name": "", "iana_port_display": "8443"},
  "protocol": "TCP", "destination_vm": {"entity_id": "18230:1:1201", "entity_type": "VirtualMachine", "entity_name": "orders-01"},
  "destination_vm_tags": ["Application:orders"]}"#;

#[test]
fn every_vrni_json_shape_reads_as_conversations() {
    let one = vrni_json(FLOW).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].port, Some((8443, 8443)));
    assert_eq!(one[0].dst.vm.as_deref(), Some("orders-01"));
    assert_eq!(one[0].dst.tags, ["Application:orders"]);
    assert_eq!(
        one[0].volume,
        Some(Volume::default()),
        "a Flow is one conversation"
    );
    assert_eq!(one[0].seen, None);
    let list = vrni_json(&format!("[{FLOW}, {FLOW}]")).unwrap();
    assert_eq!(list, [one[0].clone(), one[0].clone()]);
    let results = vrni_json(&format!(r#"{{"results": [{FLOW}], "total_count": 1}}"#)).unwrap();
    assert_eq!(results, one);
    let fetched = vrni_json(&format!(
        r#"{{"results": [{{"entity_id": "18230:515:3317701", "entity_type": "Flow", "time": 1764403200, "entity": {FLOW}}}]}}"#
    ))
    .unwrap();
    assert_eq!(
        fetched[0].seen,
        Some((
            "2025-11-29T08:00:00Z".to_string(),
            "2025-11-29T08:00:00Z".to_string()
        ))
    );
    assert_eq!(fetched[0].src, one[0].src);
    // Ids only: refused, saying how to get the details.
    let e = vrni_json(r#"{"results": [{"entity_id": "18230:515:1", "entity_type": "Flow", "time": 1}], "cursor": "x"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("results[0]: a flow id without details"),
        "{e}"
    );
    assert!(
        e.contains("POST /api/ni/entities/fetch") && e.contains("--vrni-url"),
        "{e}"
    );
    // OTHER is a protocol vRNI may report: read, not refused.
    let other = vrni_json(&FLOW.replace(r#""protocol": "TCP""#, r#""protocol": "OTHER""#)).unwrap();
    assert_eq!(other[0].protocol, Protocol::Unnamed);
    let e = vrni_json(r#"{"name": "x"}"#).unwrap_err().to_string();
    assert!(e.starts_with("flow: neither a Flow"), "{e}");
}

const EXPORT: &str = "name,Source IP Address,Source VM,Source Cluster,Destination IP Address,Destination VM,Port,Port Name,Protocol,Bytes (In Bytes),Session Count
\"a\",10.20.30.1,,,10.10.2.11,orders-01,443 [https],https,TCP,6.06971876E8,12
\"b\",10.20.30.2,,,10.10.2.11,orders-01,443 [https],https,TCP,1024,1
\"c\",10.10.2.11,orders-01,,10.0.0.53,dns-01,53,dns,UDP,1848320,
\"d\",10.10.2.11,orders-01,,10.0.0.9,,,,OTHER,3904,2
";

#[test]
fn the_vrni_ui_export_is_read_by_its_display_names() {
    assert!(is_vrni_csv(EXPORT));
    assert!(!is_vrni_csv(&to_csv(&[])));
    let flows = vrni_csv(EXPORT).unwrap();
    assert_eq!(flows.len(), 4);
    assert_eq!(flows[0].port, Some((443, 443)));
    assert_eq!(flows[0].dst.vm.as_deref(), Some("orders-01"));
    assert_eq!(
        flows[0].volume,
        Some(Volume {
            bytes: Some(606_971_876),
            sessions: Some(12)
        })
    );
    assert_eq!(
        flows[2].volume,
        Some(Volume {
            bytes: Some(1_848_320),
            sessions: None
        }),
        "empty volumes are unknown"
    );
    assert_eq!(flows[3].protocol, Protocol::Unnamed);
    assert_eq!(flows[3].port, None);
    // Case, spaces, underscores and column order do not matter; other columns are ignored.
    let shuffled = "PROTOCOL,destination_ip_address,Extra Column,source ip address,port\nTCP,10.10.2.11,x,10.20.30.1,443\n";
    let f = vrni_csv(shuffled).unwrap();
    assert_eq!(
        (f[0].src.ip.to_string(), f[0].port),
        ("10.20.30.1".to_string(), Some((443, 443)))
    );
    // Errors name the line and the column.
    let e = vrni_csv(
        "Source IP Address,Destination IP Address,Protocol,Bytes\n10.0.0.1,10.0.0.2,TCP,lots\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "line 2: Bytes: \"lots\" is not a volume");
    let e = vrni_csv("Source IP Address,Protocol\n10.0.0.1,TCP\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"Destination IP Address\" is missing"), "{e}");
    let e = vrni_csv(EXPORT.lines().next().unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "flows: no flow lines after the header");
}

#[test]
fn conversations_are_weighed_by_their_volume_not_counted_as_records() {
    // Every record has sessions: sessions are the measure, 3 the default threshold.
    let all =
        "Source IP Address,Destination IP Address,Port,Protocol,Bytes (In Bytes),Session Count
10.20.30.1,10.10.2.11,443,TCP,9000,40
10.20.31.1,10.10.2.11,8443,TCP,200,2
";
    let r = recommend(&vrni_csv(all).unwrap(), &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.measure, Measure::Sessions);
    assert_eq!(r.rare_below, 3);
    assert_eq!(r.policy.spec.rules.len(), 1, "{}", r.yaml);
    assert_eq!(
        r.policy.spec.rules[0].description.as_deref(),
        Some("observed 1 conversation (8.8 KiB, 40 sessions) from 1 peer address")
    );
    assert!(
        r.yaml
            .contains("# Evidence is counted in sessions; entries below 3"),
        "{}",
        r.yaml
    );
    assert!(
        r.yaml.contains("2 sessions in 1 conversation, below 3"),
        "{}",
        r.yaml
    );
    // Some records lack sessions: bytes are the measure and only a conversation that moved
    // nothing is rare, where counting records (3) would have left no rule at all.
    let r = recommend(&vrni_csv(EXPORT).unwrap(), &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.measure, Measure::Bytes);
    assert_eq!(r.policy.spec.rules.len(), 2, "{}", r.yaml);
    assert_eq!(r.rare.len(), 1, "only OTHER: {}", r.yaml);
    let mut records = opts();
    records.rare_below = Some(2000);
    let strict = recommend(&vrni_csv(EXPORT).unwrap(), &app(), &[], &[], &records).unwrap();
    assert!(
        strict.rare.len() > r.rare.len(),
        "an explicit threshold applies to the measure"
    );
    // Flows without volume: counted as conversations, each one evidence.
    let r = recommend(&vrni_json(FLOW).unwrap(), &app(), &[], &[], &opts()).unwrap();
    assert_eq!(r.measure, Measure::Conversations);
    assert_eq!(r.policy.spec.rules.len(), 1, "{}", r.yaml);
    assert!(
        r.yaml
            .contains("#   from-10-10-1-21-tcp-8443: 1 conversation with 1 peer address"),
        "{}",
        r.yaml
    );
}

#[test]
fn a_vcenter_tag_becomes_the_vm_names_nsx_knows() {
    let flows = vrni_json(FLOW).unwrap();
    let by_tag = Application {
        tags: vec![VmTag {
            scope: None,
            tag: "Application:orders".into(),
        }],
        ..Application::default()
    };
    let r = recommend(&flows, &by_tag, &[], &[], &opts()).unwrap();
    let names: Vec<_> = r
        .policy
        .spec
        .members
        .iter()
        .map(|m| {
            (
                m.vm_tag.clone(),
                m.vm_name.as_ref().and_then(|n| n.equals.clone()),
            )
        })
        .collect();
    assert_eq!(names, [(None, Some("orders-01".to_string()))], "{}", r.yaml);
    assert!(
        r.notes[0].contains("looks like a vCenter tag"),
        "{:?}",
        r.notes
    );
    assert!(
        r.yaml.contains("# NOTE: VM tag \"Application:orders\""),
        "{}",
        r.yaml
    );
    // An NSX tag the inventory carries stays a tag.
    let inventory = vec![InventoryVm {
        name: "orders-01".into(),
        ips: vec!["10.10.2.11".into()],
        tags: vec![Tag::new("Application", "orders")],
    }];
    let nsx = Application {
        tags: vec![VmTag {
            scope: Some("Application".into()),
            tag: "orders".into(),
        }],
        ..Application::default()
    };
    let r = recommend(&flows, &nsx, &inventory, &[], &opts()).unwrap();
    assert!(r.policy.spec.members[0].vm_tag.is_some(), "{}", r.yaml);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // The vCenter tag, when the inventory has an NSX tag on exactly the matched VMs: that tag.
    let r = recommend(&flows, &by_tag, &inventory, &[], &opts()).unwrap();
    assert_eq!(
        r.policy.spec.members[0].vm_tag,
        Some(VmTag {
            scope: Some("Application".into()),
            tag: "orders".into()
        }),
        "{}",
        r.yaml
    );
    assert!(
        r.notes[0]
            .contains("the NSX tag \"Application|orders\" that exactly the VMs it matched carry"),
        "{:?}",
        r.notes
    );
    // ... and not when other VMs carry it too (the group would be wider): the names.
    let mut wider = inventory.clone();
    wider.push(InventoryVm {
        name: "billing-01".into(),
        ips: vec!["10.10.5.1".into()],
        tags: vec![Tag::new("Application", "orders")],
    });
    let r = recommend(&flows, &by_tag, &wider, &[], &opts()).unwrap();
    assert_eq!(r.policy.spec.members[0].vm_tag, None, "{}", r.yaml);
    assert!(
        r.notes[0].contains("is on no VM of the NSX inventory"),
        "{:?}",
        r.notes
    );
}

#[test]
fn quoted_csv_fields_may_hold_commas_quotes_and_line_breaks() {
    // microseg's CSV: a VM name over two lines and tags with a comma; the next record's errors
    // name the line it starts on.
    let text = "source_ip,destination_ip,port,protocol,source_vm,destination_vm_tags\n\
                10.0.0.1,10.0.0.2,443,TCP,\"web\n01\",\"Application:orders, Tier:\"\"db\"\"\"\n\
                \n\
                10.0.0.3,10.0.0.2,443,TCP,,\n";
    let flows = csv(text).unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].src.vm.as_deref(), Some("web\n01"));
    assert_eq!(flows[0].dst.tags, ["Application:orders, Tier:\"db\""]);
    assert_eq!(flows[1].src.ip.to_string(), "10.0.0.3");
    let bad = text.replace("10.0.0.3", "ten");
    let e = csv(&bad).unwrap_err().to_string();
    assert!(e.contains("line 5: source_ip"), "{e}");
    // What to_csv writes reads back the same, line breaks and quotes included.
    assert_eq!(csv(&to_csv(&flows)).unwrap(), flows);

    // vRNI's export: a quoted cell over two lines.
    let export = "Source IP Address,Destination IP Address,Protocol,Destination VM\n\
                  10.20.30.1,10.10.2.11,TCP,\"orders-01\n(primary)\"\n\
                  10.20.30.2,10.10.2.11,TCP,orders-02\n";
    assert!(is_vrni_csv(export));
    let flows = vrni_csv(export).unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].dst.vm.as_deref(), Some("orders-01\n(primary)"));
    assert_eq!(flows[1].dst.vm.as_deref(), Some("orders-02"));
    let e = vrni_csv(&export.replace("orders-02", "orders-02,extra"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 4"), "{e}");
}
