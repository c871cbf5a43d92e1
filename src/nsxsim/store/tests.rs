use super::*;
use crate::nsx::codes;
use crate::nsxsim::validate as v;
use serde_json::json;

fn ctx() -> Ctx {
    Ctx {
        user: "admin".into(),
        now_ms: 1,
        principal: false,
        allow_overwrite: false,
        pending_delete_ms: 0,
    }
}

fn obj(v: Value) -> Obj {
    v.as_object().cloned().unwrap_or_default()
}

fn rule_op(policy: &str, id: &str, src: &str) -> Op {
    Op::Rule {
        domain: "default".into(),
        policy: policy.into(),
        id: id.into(),
        body: obj(json!({"action": "ALLOW", "source_groups": [src]})),
        rev: RevCheck::Ignore,
    }
}

fn policy_op(id: &str) -> Op {
    Op::Policy {
        domain: "default".into(),
        id: id.into(),
        body: obj(json!({"category": "Application"})),
        rev: RevCheck::Ignore,
        mode: Mode::Replace,
        replace_rules: None,
    }
}

#[test]
fn a_failed_transaction_leaves_no_trace() {
    let mut s = Store::new();
    let before = serde_json::to_value(&s).unwrap();
    let err = s
        .transact(
            vec![
                Op::Group {
                    domain: "default".into(),
                    id: "g".into(),
                    body: Obj::new(),
                    rev: RevCheck::Ignore,
                    mode: Mode::Merge,
                },
                policy_op("p"),
                rule_op("p", "r", "/infra/domains/default/groups/missing"),
            ],
            &ctx(),
        )
        .unwrap_err();
    assert_eq!(err.body.error_code, codes::INVALID_PATH);
    assert_eq!(serde_json::to_value(&s).unwrap(), before);
}

/// An update of a policy that exists (its fields, a rule changed, a rule added, a rule deleted,
/// the rules a PUT-like replacement drops) is undone exactly when the transaction fails: the
/// journal keeps the policy's fields and each rule touched, not a copy of the whole policy.
#[test]
fn a_failed_update_of_an_existing_policy_leaves_no_trace() {
    let mut s = Store::new();
    s.transact(
        vec![
            policy_op("p"),
            rule_op("p", "a", "ANY"),
            rule_op("p", "b", "ANY"),
            rule_op("p", "c", "ANY"),
        ],
        &ctx(),
    )
    .unwrap();
    let before = serde_json::to_value(&s).unwrap();
    let replace = Op::Policy {
        domain: "default".into(),
        id: "p".into(),
        body: obj(json!({"category": "Environment", "description": "changed"})),
        rev: RevCheck::Ignore,
        mode: Mode::Replace,
        replace_rules: Some(["a".to_string()].into_iter().collect()),
    };
    let err = s
        .transact(
            vec![
                replace,
                rule_op("p", "a", "10.0.0.1"),
                rule_op("p", "d", "ANY"),
                Op::DeleteRule {
                    domain: "default".into(),
                    policy: "p".into(),
                    id: "a".into(),
                },
                rule_op("p", "e", "/infra/domains/default/groups/missing"),
            ],
            &ctx(),
        )
        .unwrap_err();
    assert_eq!(err.body.error_code, codes::INVALID_PATH);
    assert_eq!(serde_json::to_value(&s).unwrap(), before);
    // The replacement without the bad rule lands: b and c dropped, a kept, d added.
    s.transact(
        vec![
            Op::Policy {
                domain: "default".into(),
                id: "p".into(),
                body: obj(json!({"category": "Environment"})),
                rev: RevCheck::Ignore,
                mode: Mode::Replace,
                replace_rules: Some(["a".to_string()].into_iter().collect()),
            },
            rule_op("p", "d", "ANY"),
        ],
        &ctx(),
    )
    .unwrap();
    let rules: Vec<&String> = s.domains["default"].policies["p"].rules.keys().collect();
    assert_eq!(rules, ["a", "d"]);
}

#[test]
fn rule_ids_start_at_1002_stay_with_the_rule_and_are_never_reused() {
    let mut s = Store::new();
    s.transact(
        vec![
            policy_op("p"),
            rule_op("p", "a", "ANY"),
            rule_op("p", "b", "ANY"),
        ],
        &ctx(),
    )
    .unwrap();
    let id = |s: &Store, r: &str| s.domains["default"].policies["p"].rules[r]["rule_id"].clone();
    assert_eq!(id(&s, "a"), json!(1002));
    assert_eq!(id(&s, "b"), json!(1003));
    s.transact(vec![rule_op("p", "a", "10.0.0.1")], &ctx())
        .unwrap();
    assert_eq!(id(&s, "a"), json!(1002));
    assert_eq!(
        s.domains["default"].policies["p"].rules["a"]["_revision"],
        json!(1)
    );
    s.transact(
        vec![Op::DeleteRule {
            domain: "default".into(),
            policy: "p".into(),
            id: "b".into(),
        }],
        &ctx(),
    )
    .unwrap();
    s.transact(vec![rule_op("p", "b", "ANY")], &ctx()).unwrap();
    assert_eq!(id(&s, "b"), json!(1004));
}

#[test]
fn default_objects_are_read_only() {
    let mut s = Store::new();
    let err = s
        .transact(vec![Op::DeleteService { id: "HTTPS".into() }], &ctx())
        .unwrap_err();
    assert_eq!(err.body.error_code, codes::READ_ONLY);
    assert!(s.service_exists("/infra/services/HTTPS"));
}

// ---- What a real manager returns on GET (reference §11a) and does on delete (§3). ----

fn rule_body(body: Value) -> Op {
    Op::Rule {
        domain: "default".into(),
        policy: "p".into(),
        id: body["id"].as_str().unwrap_or("r").to_string(),
        body: v::writable(&obj(body)),
        rev: RevCheck::Ignore,
    }
}

fn group_op(id: &str, body: Value) -> Op {
    Op::Group {
        domain: "default".into(),
        id: id.into(),
        body: v::writable(&obj(body)),
        rev: RevCheck::Ignore,
        mode: Mode::Merge,
    }
}

fn rule<'a>(s: &'a Store, id: &str) -> &'a Obj {
    &s.domains["default"].policies["p"].rules[id]
}

fn group<'a>(s: &'a Store, id: &str) -> &'a Obj {
    &s.domains["default"].groups[id]
}

fn l4(port: &str) -> Value {
    json!({"resource_type": "L4PortSetServiceEntry", "l4_protocol": "TCP",
           "source_ports": [], "destination_ports": [port]})
}

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

fn three_part_group() -> Value {
    json!({"expression": [
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag",
         "operator": "EQUALS", "value": "tier|web"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.10.20.0/24", "10.1.1.1-10.1.1.9"]}
    ]})
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

fn policy_with(id: &str, body: Value) -> Op {
    Op::Policy {
        domain: "default".into(),
        id: id.into(),
        body: v::writable(&obj(body)),
        rev: RevCheck::Ignore,
        mode: Mode::Replace,
        replace_rules: None,
    }
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

fn pending_ctx(now_ms: i64) -> Ctx {
    Ctx {
        now_ms,
        pending_delete_ms: 1000,
        ..ctx()
    }
}

#[test]
fn a_deleted_group_or_policy_stays_pending_and_blocks_its_path_until_purged() {
    // §3: kept with marked_for_delete until purged, hidden, re-create → 400/500045.
    let mut s = Store::new();
    let c = pending_ctx(10_000);
    s.transact(
        vec![
            group_op("g", three_part_group()),
            policy_op("p"),
            rule_op("p", "r", "ANY"),
        ],
        &c,
    )
    .unwrap();
    let rule_id = rule(&s, "r")["rule_id"].clone();
    s.transact(
        vec![
            Op::DeleteGroup {
                domain: "default".into(),
                id: "g".into(),
            },
            Op::DeletePolicy {
                domain: "default".into(),
                id: "p".into(),
            },
        ],
        &c,
    )
    .unwrap();
    assert!(!s.group_exists("/infra/domains/default/groups/g"));
    let gpath = group_path("default", "g");
    let pending = s.pending_object(&gpath, 10_500).unwrap();
    assert_eq!(pending["marked_for_delete"], json!(true));
    let ppath = policy_path("default", "p");
    assert_eq!(
        s.pending_object(&ppath, 10_500).unwrap()["rules"][0]["marked_for_delete"],
        json!(true)
    );
    assert!(
        s.pending_object(&rule_path("default", "p", "r"), 10_500)
            .is_some()
    );
    assert_eq!(
        s.pending_children("/infra/domains/default", "Group", 10_500)
            .len(),
        1
    );
    // Re-create within the pending time: refused, nothing written.
    for op in [group_op("g", json!({})), policy_op("p")] {
        let err = s.transact(vec![op], &pending_ctx(10_999)).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.body.error_code, codes::PENDING_DELETE);
        assert!(
            err.body.error_message.contains("marked for deletion"),
            "{}",
            err.body.error_message
        );
    }
    assert!(!s.group_exists(&gpath));
    // Once the time is up: purged, and the paths are free.
    assert!(s.pending_object(&gpath, 11_000).is_none());
    s.transact(
        vec![
            group_op("g", json!({})),
            policy_op("p"),
            rule_op("p", "r", "ANY"),
        ],
        &pending_ctx(11_000),
    )
    .unwrap();
    assert!(s.pending.is_empty());
    assert_ne!(
        rule(&s, "r")["rule_id"],
        rule_id,
        "rule ids are never reused"
    );
}

#[test]
fn a_rule_deleted_from_a_live_policy_shows_pending_but_frees_its_path() {
    let mut s = Store::new();
    let c = pending_ctx(10_000);
    s.transact(vec![policy_op("p"), rule_op("p", "r", "ANY")], &c)
        .unwrap();
    let rule_id = rule(&s, "r")["rule_id"].clone();
    s.transact(
        vec![Op::DeleteRule {
            domain: "default".into(),
            policy: "p".into(),
            id: "r".into(),
        }],
        &c,
    )
    .unwrap();
    let rpath = rule_path("default", "p", "r");
    assert!(s.pending_object(&rpath, 10_001).is_some());
    s.transact(vec![rule_op("p", "r", "ANY")], &pending_ctx(10_001))
        .unwrap();
    assert!(s.pending_object(&rpath, 10_001).is_none());
    assert_ne!(rule(&s, "r")["rule_id"], rule_id);
}

#[test]
fn pending_deletes_can_be_off_and_are_rolled_back_with_a_failed_transaction() {
    let mut s = Store::new();
    s.transact(vec![group_op("g", json!({}))], &ctx()).unwrap();
    // 0: purged at once (fast tests).
    s.transact(
        vec![Op::DeleteGroup {
            domain: "default".into(),
            id: "g".into(),
        }],
        &ctx(),
    )
    .unwrap();
    assert!(s.pending.is_empty());
    s.transact(vec![group_op("g", json!({}))], &ctx()).unwrap();
    // A delete in a transaction that fails leaves no pending trace.
    let err = s
        .transact(
            vec![
                Op::DeleteGroup {
                    domain: "default".into(),
                    id: "g".into(),
                },
                rule_op("missing-policy", "r", "ANY"),
            ],
            &pending_ctx(1),
        )
        .unwrap_err();
    assert_eq!(err.status.as_u16(), 404);
    assert!(s.pending.is_empty());
    assert!(s.group_exists(&group_path("default", "g")));
}

fn default_rule_op(id: &str, body: Value) -> Op {
    Op::Rule {
        domain: "default".into(),
        policy: "default-layer3-section".into(),
        id: id.into(),
        body: v::writable(&obj(body)),
        rev: RevCheck::IfGiven(None),
    }
}

#[test]
fn the_default_rule_can_be_set_to_drop_and_logged_but_not_otherwise_changed() {
    // §11a / §8: users set the default layer-3 rule to DROP; default objects stay
    // undeletable and their other fields read-only.
    let mut s = Store::new();
    let dr = |s: &Store| {
        s.domains["default"].policies["default-layer3-section"].rules["default-layer3-rule"].clone()
    };
    let before = dr(&s);
    s.transact(
        vec![default_rule_op(
            "default-layer3-rule",
            json!({"action": "DROP", "logged": true}),
        )],
        &ctx(),
    )
    .unwrap();
    let after = dr(&s);
    assert_eq!(after["action"], json!("DROP"));
    assert_eq!(after["logged"], json!(true));
    for k in [
        "sequence_number",
        "source_groups",
        "services",
        "rule_id",
        "is_default",
        "_system_owned",
        "display_name",
    ] {
        assert_eq!(after[k], before[k], "{k}");
    }
    assert_eq!(after["_revision"], json!(1));
    // An echo of the GET with the action changed back: accepted.
    let mut echo = Value::Object(Store::rule_view(&after));
    echo["action"] = json!("ALLOW");
    s.transact(vec![default_rule_op("default-layer3-rule", echo)], &ctx())
        .unwrap();
    assert_eq!(dr(&s)["action"], json!("ALLOW"));
    // What a real manager refuses stays refused.
    for (id, body) in [
        (
            "default-layer3-rule",
            json!({"source_groups": ["10.0.0.0/8"]}),
        ),
        ("default-layer3-rule", json!({"sequence_number": 1})),
        ("default_rule_NDP", json!({"action": "DROP"})),
    ] {
        let err = s
            .transact(vec![default_rule_op(id, body.clone())], &ctx())
            .unwrap_err();
        assert_eq!(err.body.error_code, codes::READ_ONLY, "{id} {body}");
    }
    let err = s
        .transact(
            vec![Op::DeleteRule {
                domain: "default".into(),
                policy: "default-layer3-section".into(),
                id: "default-layer3-rule".into(),
            }],
            &ctx(),
        )
        .unwrap_err();
    assert_eq!(err.body.error_code, codes::READ_ONLY);
    let err = s
        .transact(
            vec![Op::DeletePolicy {
                domain: "default".into(),
                id: "default-layer3-section".into(),
            }],
            &ctx(),
        )
        .unwrap_err();
    assert_eq!(err.body.error_code, codes::READ_ONLY);
}

#[test]
fn every_field_a_get_returns_is_accepted_when_written_back() {
    // §2: unknown properties → 287, but RO fields echoed from a GET are accepted.
    let mut s = Store::new();
    let mut entry = l4("443");
    entry["id"] = json!("e");
    s.transact(
        vec![
            group_op("g", three_part_group()),
            policy_with("p", json!({"category": "Application"})),
            rule_body(json!({"id": "r", "service_entries": [l4("80"), entry],
                             "destination_groups": ["/infra/domains/default/groups/g"]})),
            Op::Service {
                id: "svc".into(),
                body: Obj::new(),
                entries: entries_of(&obj(json!({"service_entries": [{
                    "resource_type": "L4PortSetServiceEntry", "id": "e",
                    "l4_protocol": "TCP", "destination_ports": ["8443"]}]}))),
                rev: RevCheck::Ignore,
                mode: Mode::Merge,
            },
        ],
        &ctx(),
    )
    .unwrap();
    let g = Store::group_view(group(&s, "g"));
    let ps = &s.domains["default"].policies["p"];
    let p = Store::policy_view(ps, true);
    let r = Value::Object(Store::rule_view(rule(&s, "r")));
    let svc = Store::service_view(&s.services["svc"]);
    let mut errs = Vec::new();
    v::check_group(g.as_object().unwrap(), "g", &mut errs);
    v::check_policy(p.as_object().unwrap(), "p", &mut errs);
    for r in p["rules"].as_array().unwrap() {
        v::check_rule(r.as_object().unwrap(), "r", &mut errs);
    }
    v::check_rule(r.as_object().unwrap(), "r", &mut errs);
    v::check_service(svc.as_object().unwrap(), "svc", &mut errs);
    // The default objects too.
    let dps = &s.domains["default"].policies["default-layer3-section"];
    let dp = Store::policy_view(dps, true);
    v::check_policy(dp.as_object().unwrap(), "default-layer3-section", &mut errs);
    for r in dp["rules"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        v::check_rule(r.as_object().unwrap(), id, &mut errs);
    }
    assert!(errs.is_empty(), "{errs:?}");

    // Through the H-API: the GET bodies wrapped as children are accepted and change
    // nothing but revisions and modification times.
    let mut pol = p.clone();
    let rules = pol.as_object_mut().unwrap().remove("rules").unwrap();
    let children: Vec<Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"resource_type": "ChildRule", "id": r["id"], "Rule": r}))
        .collect();
    pol["children"] = json!(children);
    let body = json!({"resource_type": "Infra", "children": [
        {"resource_type": "ChildService", "id": "svc", "Service": svc},
        {"resource_type": "ChildResourceReference", "id": "default", "target_type": "Domain",
         "children": [
            {"resource_type": "ChildGroup", "id": "g", "Group": g},
            {"resource_type": "ChildSecurityPolicy", "id": "p", "SecurityPolicy": pol}]}]});
    let before = s.clone();
    let ops = s.hapi_ops(&body, false).unwrap();
    s.transact(ops, &ctx()).unwrap();
    let strip = |o: &Obj| {
        let mut o = o.clone();
        for k in ["_revision", "_last_modified_time"] {
            o.remove(k);
        }
        o
    };
    assert_eq!(strip(group(&s, "g")), strip(group(&before, "g")));
    assert_eq!(strip(rule(&s, "r")), strip(rule(&before, "r")));
    assert_eq!(
        strip(&s.domains["default"].policies["p"].policy),
        strip(&before.domains["default"].policies["p"].policy)
    );
}
