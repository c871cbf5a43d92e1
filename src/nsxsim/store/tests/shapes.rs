//! What a real manager returns on GET (reference §11a).

use super::*;

#[test]
fn rules_with_inline_entries_read_back_services_any_and_shaped_entries() {
    // §11a "Services beside inline entries": no service paths (absent or []) beside inline
    // entries reads back ["ANY"]; entries gain marked_for_delete/overridden/_protection, no
    // path, no id unless written, no display_name (NSX-T ≤ 3.2).
    let mut s = Store::new();
    let mut named = l4("8443");
    named["id"] = json!("tcp-8443");
    named["display_name"] = json!("app port");
    named["path"] = json!("/echoed/from/a/get");
    s.transact(
        vec![
            policy_op("p"),
            rule_body(json!({"id": "absent", "service_entries": [l4("443")]})),
            rule_body(json!({"id": "empty", "services": [], "service_entries": [named]})),
            rule_body(json!({"id": "plain", "services": []})),
        ],
        &ctx(),
    )
    .unwrap();
    for id in ["absent", "empty", "plain"] {
        assert_eq!(rule(&s, id)["services"], json!(["ANY"]), "{id}");
    }
    let e = &rule(&s, "absent")["service_entries"][0];
    assert_eq!(
        *e,
        json!({"resource_type": "L4PortSetServiceEntry", "l4_protocol": "TCP",
               "source_ports": [], "destination_ports": ["443"],
               "marked_for_delete": false, "overridden": false,
               "_protection": "NOT_PROTECTED"})
    );
    let e = &rule(&s, "empty")["service_entries"][0];
    assert_eq!(e["id"], json!("tcp-8443"));
    assert!(
        e.get("display_name").is_none() && e.get("path").is_none(),
        "{e}"
    );
    assert!(rule(&s, "plain").get("service_entries").is_none());
}

#[test]
fn any_beside_inline_entries_admits_only_the_entries_traffic() {
    // §11a: ["ANY"] plus non-empty entries = only the entries' traffic; ["ANY"] alone = all.
    let mut s = Store::new();
    s.vms = vec![
        Vm {
            name: "client".into(),
            ips: vec!["10.0.0.1".into()],
            tags: vec![],
        },
        Vm {
            name: "server".into(),
            ips: vec!["10.0.0.2".into()],
            tags: vec![],
        },
    ];
    s.transact(
        vec![
            policy_op("p"),
            rule_body(json!({"id": "https", "action": "DROP", "logged": true,
                             "services": ["ANY"], "service_entries": [l4("443")]})),
        ],
        &ctx(),
    )
    .unwrap();
    let id = rule(&s, "https")["rule_id"].as_i64().unwrap();
    let flow = |port: u16| crate::nsxsim::inventory::Flow {
        src_ip: "10.0.0.1".into(),
        dst_ip: "10.0.0.2".into(),
        protocol: "TCP".into(),
        dst_port: Some(port),
        src_port: None,
    };
    let hit = crate::nsxsim::inventory::packet_log(&s, &flow(443));
    assert!(
        hit.iter().any(|l| l.contains(&format!("DROP {id} OUT"))),
        "{hit:?}"
    );
    let miss = crate::nsxsim::inventory::packet_log(&s, &flow(22));
    assert!(
        !miss.iter().any(|l| l.contains(&format!(" {id} "))),
        "{miss:?}"
    );
}

#[test]
fn rules_read_back_with_the_defaults_and_read_only_fields_of_a_real_manager() {
    // §11a "Rule defaults" and §2.1 (4.x read-only fields).
    let mut s = Store::new();
    s.transact(vec![policy_op("p"), rule_body(json!({"id": "r"}))], &ctx())
        .unwrap();
    let r = rule(&s, "r");
    for (k, want) in [
        ("display_name", json!("r")),
        ("scope", json!(["ANY"])),
        ("profiles", json!(["ANY"])),
        ("services", json!(["ANY"])),
        ("ip_protocol", json!("IPV4_IPV6")),
        ("direction", json!("IN_OUT")),
        ("logged", json!(false)),
        ("disabled", json!(false)),
        ("sources_excluded", json!(false)),
        ("destinations_excluded", json!(false)),
        ("sequence_number", json!(0)),
        ("is_default", json!(false)),
        ("marked_for_delete", json!(false)),
        ("overridden", json!(false)),
        ("remote_path", json!("")),
        ("owner_id", json!(SITE_ID)),
        ("origin_site_id", json!(SITE_ID)),
        ("_system_owned", json!(false)),
        ("_protection", json!("NOT_PROTECTED")),
        ("_revision", json!(0)),
    ] {
        assert_eq!(r.get(k), Some(&want), "{k}");
    }
    assert_eq!(r["realization_id"], r["unique_id"]);
    for absent in ["tag", "notes", "description"] {
        assert!(r.get(absent).is_none(), "{absent} must be absent, not \"\"");
    }
    // A layer-2 (Ethernet) rule has no ip_protocol (§11a).
    s.transact(
        vec![
            policy_with("l2", json!({"category": "Ethernet", "stateful": false})),
            Op::Rule {
                domain: "default".into(),
                policy: "l2".into(),
                id: "mac".into(),
                body: Obj::new(),
                rev: RevCheck::Ignore,
            },
        ],
        &ctx(),
    )
    .unwrap();
    let l2 = &s.domains["default"].policies["l2"].rules["mac"];
    assert!(l2.get("ip_protocol").is_none(), "{l2:?}");
    // rule_id stays with the rule across updates.
    let r = rule(&s, "r");
    let id = r["rule_id"].clone();
    s.transact(vec![rule_body(json!({"id": "r", "tag": "t"}))], &ctx())
        .unwrap();
    assert_eq!(rule(&s, "r")["rule_id"], id);
    assert_eq!(rule(&s, "r")["tag"], json!("t"));
}

#[test]
fn group_expressions_gain_stable_ids_paths_and_scope_operator() {
    // §11a "Group expressions", §2.4.
    let mut s = Store::new();
    s.transact(vec![group_op("g", three_part_group())], &ctx())
        .unwrap();
    let first = group(&s, "g").clone();
    let gpath = "/infra/domains/default/groups/g";
    let items = first["expression"].as_array().unwrap();
    let kinds = ["Condition", "ConjunctionOperator", "IPAddressExpression"];
    let segments = [
        "condition-expressions",
        "conjunction-expressions",
        "ip-address-expressions",
    ];
    for (i, e) in items.iter().enumerate() {
        assert_eq!(e["resource_type"], json!(kinds[i]), "order kept");
        let id = e["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "UUID: {id}");
        assert_eq!(e["path"], json!(format!("{gpath}/{}/{id}", segments[i])));
        assert_eq!(e["relative_path"], json!(id));
        assert_eq!(e["parent_path"], json!(gpath));
        assert_eq!(e["marked_for_delete"], json!(false));
        assert_eq!(e["overridden"], json!(false));
        assert_eq!(e["_protection"], json!("NOT_PROTECTED"));
    }
    assert_eq!(items[0]["scope_operator"], json!("EQUALS"));
    assert_eq!(items[0]["value"], json!("tier|web"));
    assert_eq!(
        items[2]["ip_addresses"],
        json!(["10.10.20.0/24", "10.1.1.1-10.1.1.9"])
    );
    assert_eq!(first["extended_expression"], json!([]));
    assert_eq!(first["reference"], json!(false));

    // The same expression PATCHed again, or the GET echoed back: the same ids.
    s.transact(vec![group_op("g", three_part_group())], &ctx())
        .unwrap();
    assert_eq!(group(&s, "g")["expression"], first["expression"]);
    let echo = Store::group_view(group(&s, "g"));
    s.transact(vec![group_op("g", echo)], &ctx()).unwrap();
    assert_eq!(group(&s, "g")["expression"], first["expression"]);
    // Another group's expressions get other ids.
    s.transact(vec![group_op("h", three_part_group())], &ctx())
        .unwrap();
    assert_ne!(
        group(&s, "h")["expression"][0]["id"],
        first["expression"][0]["id"]
    );
    // A written scope_operator is kept; nested expressions are shaped too.
    s.transact(
        vec![group_op(
            "n",
            json!({"expression": [{"resource_type": "NestedExpression", "expressions": [
                {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Name",
                 "operator": "STARTSWITH", "value": "web", "scope_operator": "NOTEQUALS"}]}]}),
        )],
        &ctx(),
    )
    .unwrap();
    let nested = &group(&s, "n")["expression"][0];
    assert!(
        nested["path"]
            .as_str()
            .unwrap()
            .contains("/nested-expressions/")
    );
    assert_eq!(
        nested["expressions"][0]["scope_operator"],
        json!("NOTEQUALS")
    );
    assert!(
        nested["expressions"][0]["path"]
            .as_str()
            .unwrap()
            .contains("/condition-expressions/")
    );
}

#[test]
fn policies_read_back_with_defaults_and_internal_sequence_numbers() {
    // §11a "SecurityPolicy defaults", §2.2 internal_sequence_number observations.
    let mut s = Store::new();
    s.transact(
        vec![
            policy_with(
                "app",
                json!({"category": "Application", "sequence_number": 10}),
            ),
            policy_with("l2", json!({"category": "Ethernet", "stateful": false})),
            policy_with(
                "loose",
                json!({"category": "Emergency", "tcp_strict": false}),
            ),
        ],
        &ctx(),
    )
    .unwrap();
    let p = |id: &str| s.domains["default"].policies[id].policy.clone();
    let app = p("app");
    for (k, want) in [
        ("scope", json!(["ANY"])),
        ("stateful", json!(true)),
        ("tcp_strict", json!(true)),
        ("locked", json!(false)),
        ("lock_modified_time", json!(0)),
        ("logging_enabled", json!(false)),
        ("is_default", json!(false)),
        ("sequence_number", json!(10)),
        ("internal_sequence_number", json!(13_000_010)),
    ] {
        assert_eq!(app.get(k), Some(&want), "{k}");
    }
    assert_eq!(p("l2")["tcp_strict"], json!(false), "stateless: not strict");
    assert_eq!(p("l2")["sequence_number"], json!(0));
    assert_eq!(p("l2")["internal_sequence_number"], json!(0));
    assert_eq!(p("loose")["tcp_strict"], json!(false), "written value kept");
    assert_eq!(p("loose")["internal_sequence_number"], json!(10_000_000));
    assert_eq!(
        p("default-layer3-section")["internal_sequence_number"],
        json!(14_000_000)
    );
    assert_eq!(
        p("default-layer2-section")["internal_sequence_number"],
        json!(1_000_000)
    );
    assert_eq!(p("default-layer2-section")["tcp_strict"], json!(false));
    // DFW evaluation follows the number.
    let order: Vec<&str> = s
        .evaluation_order()
        .into_iter()
        .map(|(_, ps)| ps.policy["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "l2",
            "default-layer2-section",
            "loose",
            "app",
            "default-layer3-section"
        ]
    );
}
