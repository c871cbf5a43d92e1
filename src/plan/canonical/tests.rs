//! Canonical comparison, with objects shaped as a real manager returns them (reference §2.3's
//! observed default rule, §11a's normalisation facts).

use serde_json::json;

use super::*;

fn rule_json(v: serde_json::Value) -> Rule {
    serde_json::from_value(v).unwrap()
}

/// What microseg writes for an HTTPS rule (services beside entries, as production clients do).
fn written() -> Rule {
    rule_json(json!({
        "resource_type": "Rule", "id": "https", "display_name": "https", "action": "ALLOW",
        "source_groups": ["10.0.0.10/32"], "sources_excluded": false,
        "destination_groups": ["/infra/domains/default/groups/ms_c_ns_web"], "destinations_excluded": false,
        "services": ["ANY"], "profiles": ["ANY"],
        "service_entries": [{"resource_type": "L4PortSetServiceEntry", "id": "tcp-1", "l4_protocol": "TCP",
            "source_ports": [], "destination_ports": ["443", "8443"]}],
        "scope": ["/infra/domains/default/groups/ms_c_ns_web"], "direction": "IN",
        "ip_protocol": "IPV4_IPV6", "logged": false, "disabled": false, "sequence_number": 10
    }))
}

/// The same rule as a real manager returns it (§11a): RO fields added, entry id and
/// display_name dropped, `notes`/`tag` absent, the /32 spelled as written or not.
fn read_back() -> Rule {
    rule_json(json!({
        "action": "ALLOW", "resource_type": "Rule", "id": "https", "display_name": "https",
        "path": "/infra/domains/default/security-policies/ms_c_ns_web/rules/https",
        "relative_path": "https", "parent_path": "/infra/domains/default/security-policies/ms_c_ns_web",
        "unique_id": "6d6f98c5-c712-4be3-9175-22fafbc6b6a4", "realization_id": "6d6f98c5-c712-4be3-9175-22fafbc6b6a4",
        "children": [], "marked_for_delete": false, "overridden": false, "rule_id": 1002,
        "sequence_number": 10, "sources_excluded": false, "destinations_excluded": false,
        "source_groups": ["10.0.0.10"], "destination_groups": ["/infra/domains/default/groups/ms_c_ns_web"],
        "services": ["ANY"], "profiles": ["ANY"],
        "service_entries": [{"resource_type": "L4PortSetServiceEntry", "l4_protocol": "TCP",
            "source_ports": [], "destination_ports": ["8443", "443"], "marked_for_delete": false,
            "overridden": false, "_protection": "NOT_PROTECTED"}],
        "logged": false, "scope": ["/infra/domains/default/groups/ms_c_ns_web"], "disabled": false,
        "direction": "IN", "ip_protocol": "IPV4_IPV6", "is_default": false,
        "_create_user": "admin", "_create_time": 1626886867590_i64, "_last_modified_user": "admin",
        "_last_modified_time": 1626886867592_i64, "_system_owned": false, "_protection": "NOT_PROTECTED",
        "_revision": 0, "owner_id": "b0f2…", "origin_site_id": "b0f2…", "remote_path": ""
    }))
}

#[test]
fn a_rule_read_back_the_way_a_real_manager_returns_it_is_unchanged() {
    assert_eq!(
        rule_differences(&read_back(), &written()),
        Vec::<&str>::new()
    );
}

#[test]
fn services_absent_empty_and_any_are_equal_only_beside_entries() {
    let mut empty = written();
    empty.services = vec![];
    assert!(rule_differences(&read_back(), &empty).is_empty());
    // Without entries, ANY is every service and [] is not the same thing.
    let mut any = written();
    any.service_entries.clear();
    let mut none = any.clone();
    none.services.clear();
    assert_eq!(rule_differences(&any, &none), vec!["services"]);
    // An entry dropped while ANY stays: the rule now allows every service.
    let mut widened = read_back();
    widened.service_entries.clear();
    assert_eq!(
        rule_differences(&widened, &written()),
        vec!["services", "service_entries"]
    );
}

#[test]
fn ports_are_compared_by_meaning_and_entry_ids_are_ignored() {
    let entry = |ports: &[&str], id: &str| ServiceEntry::L4PortSetServiceEntry {
        id: id.into(),
        l4_protocol: "TCP".into(),
        source_ports: vec![],
        destination_ports: ports.iter().map(|p| p.to_string()).collect(),
    };
    assert_eq!(
        entries(&[entry(&["80", "81", "82"], "a")]),
        entries(&[entry(&["80-82"], "")])
    );
    assert_eq!(
        entries(&[entry(&["80"], "tcp-1"), entry(&["443"], "tcp-2")]),
        entries(&[entry(&["443", "80"], "x")]),
        "entries split at 15 values are one service"
    );
    assert_ne!(
        entries(&[entry(&["80"], "a")]),
        entries(&[entry(&["81"], "a")])
    );
    assert_ne!(
        entries(&[entry(&[], "a")]),
        entries(&[entry(&["80"], "a")]),
        "no ports is all ports"
    );
}

#[test]
fn defaults_equal_unset() {
    let mut bare = written();
    bare.profiles.clear();
    bare.ip_protocol = None;
    bare.display_name = None;
    bare.id = "https".into();
    bare.notes = Some(String::new());
    assert!(rule_differences(&read_back(), &bare).is_empty());
    let mut any_scope = written();
    any_scope.scope = vec!["ANY".into()];
    let mut no_scope = written();
    no_scope.scope.clear();
    assert!(rule_differences(&any_scope, &no_scope).is_empty());
    let mut long = written();
    long.tag = Some("ms_c_ns_web_monitor_in_0123456789abcdef".into());
    let mut cut = written();
    cut.tag = Some(long.tag.clone().unwrap().chars().take(32).collect());
    assert!(
        rule_differences(&long, &cut).is_empty(),
        "NSX keeps 32 characters of a tag"
    );
}

#[test]
fn fields_that_change_what_a_rule_does_are_named() {
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("sources_excluded", json!(true), "sources_excluded"),
        (
            "destinations_excluded",
            json!(true),
            "destinations_excluded",
        ),
        (
            "profiles",
            json!(["/infra/context-profiles/HTTP"]),
            "profiles",
        ),
        ("scope", json!(["ANY"]), "scope"),
        ("action", json!("DROP"), "action"),
        ("direction", json!("IN_OUT"), "direction"),
        ("source_groups", json!(["10.0.0.0/8"]), "source_groups"),
    ];
    for (field, value, name) in cases {
        let mut v = serde_json::to_value(read_back()).unwrap();
        v[field] = value;
        let edited = rule_json(v);
        assert_eq!(rule_differences(&edited, &written()), vec![name], "{field}");
    }
}

#[test]
fn decoding_is_tolerant_where_safe_and_strict_where_not() {
    // The observed default rule of an NSX-T 3.2 manager (reference §2.3) decodes.
    let observed = json!({"action":"ALLOW","resource_type":"Rule","id":"default-layer3-rule","display_name":"Default Layer3 Rule",
        "path":"/infra/domains/default/security-policies/default-layer3-section/rules/default-layer3-rule",
        "relative_path":"default-layer3-rule","parent_path":"/infra/domains/default/security-policies/default-layer3-section",
        "unique_id":"6d6f98c5-c712-4be3-9175-22fafbc6b6a4","children":[],"marked_for_delete":false,"overridden":false,
        "rule_id":2,"sequence_number":2147483647,"sources_excluded":false,"destinations_excluded":false,
        "source_groups":["ANY"],"destination_groups":["ANY"],"services":["ANY"],"profiles":["ANY"],"logged":false,
        "scope":["ANY"],"disabled":false,"direction":"IN_OUT","ip_protocol":"IPV4_IPV6","is_default":true,
        "_create_user":"system","_create_time":1626886867590_i64,"_last_modified_user":"system",
        "_last_modified_time":1626886867592_i64,"_system_owned":false,"_protection":"NOT_PROTECTED","_revision":0});
    let r: Rule = serde_json::from_value(observed).unwrap();
    assert_eq!((r.rule_id, r.direction.as_str()), (Some(2), "IN_OUT"));
    // Missing lists and direction: defaults.
    let sparse: Rule =
        serde_json::from_value(json!({"resource_type": "Rule", "id": "x", "action": "DROP"}))
            .unwrap();
    assert!(sparse.source_groups.is_empty() && sparse.services.is_empty());
    assert_eq!(sparse.direction, "IN_OUT");
    // An entry kind microseg does not write decodes, and is a difference.
    let mut v = serde_json::to_value(read_back()).unwrap();
    v["service_entries"] =
        json!([{"resource_type": "IPProtocolServiceEntry", "protocol_number": 47}]);
    let other = rule_json(v);
    assert_eq!(
        rule_differences(&other, &written()),
        vec!["service_entries"]
    );
    // An unknown action is kept as read, not defaulted (one odd rule must not fail a whole
    // listing), and is a difference.
    let mut v = serde_json::to_value(read_back()).unwrap();
    v["action"] = json!("ALLOW_ALL");
    let odd = rule_json(v);
    assert_eq!(odd.action, RuleAction::Other("ALLOW_ALL".into()));
    assert_eq!(rule_differences(&odd, &written()), vec!["action"]);
}

fn group_json(expression: serde_json::Value) -> Group {
    serde_json::from_value(
        json!({"resource_type": "Group", "id": "g", "display_name": "web",
        "expression": expression, "tags": [{"scope": "microseg.io/cluster", "tag": "c"}]}),
    )
    .unwrap()
}

#[test]
fn group_expressions_read_back_with_ids_and_scope_operator_are_unchanged() {
    let written = group_json(json!([
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag", "operator": "EQUALS", "value": "app|web"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.1.0.7/32", "10.2.0.0/24"]}
    ]));
    // §11a: ids, paths, scope_operator EQUALS on recent versions, addresses verbatim.
    let read = group_json(json!([
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag", "operator": "EQUALS", "value": "app|web",
         "scope_operator": "EQUALS", "id": "3f1c…", "path": "/infra/domains/default/groups/g/condition-expressions/3f1c…",
         "marked_for_delete": false, "overridden": false, "_protection": "NOT_PROTECTED"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR", "id": "9a2e…"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.2.0.0/24", "10.1.0.7"], "id": "77b0…"}
    ]));
    assert!(group_differences(&read, &written).is_empty());
    let inverted = group_json(json!([
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag", "operator": "EQUALS", "value": "app|web", "scope_operator": "NOTEQUALS"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.1.0.7/32", "10.2.0.0/24"]}
    ]));
    assert_eq!(group_differences(&inverted, &written), vec!["expression"]);
    let nested = group_json(json!([{"resource_type": "NestedExpression", "expressions": []}]));
    assert_eq!(group_differences(&nested, &written), vec!["expression"]);
}

#[test]
fn policy_defaults_equal_unset_and_tcp_strict_is_compared() {
    let p = |v: serde_json::Value| -> SecurityPolicy { serde_json::from_value(v).unwrap() };
    let written = p(
        json!({"resource_type": "SecurityPolicy", "id": "ms", "category": "Application",
        "scope": ["/infra/domains/default/groups/ms"], "stateful": true, "tcp_strict": true}),
    );
    let read = p(
        json!({"resource_type": "SecurityPolicy", "id": "ms", "display_name": "ms", "category": "Application",
        "scope": ["/infra/domains/default/groups/ms"], "stateful": true, "tcp_strict": true, "locked": false,
        "lock_modified_time": 0, "logging_enabled": false, "sequence_number": 0,
        "internal_sequence_number": 13000000, "is_default": false, "rules": []}),
    );
    assert!(policy_differences(&read, &written).is_empty());
    let unset = p(
        json!({"resource_type": "SecurityPolicy", "id": "ms", "category": "Application",
        "scope": ["/infra/domains/default/groups/ms"]}),
    );
    assert!(policy_differences(&read, &unset).is_empty());
    let loose = p(
        json!({"resource_type": "SecurityPolicy", "id": "ms", "category": "Application",
        "scope": ["/infra/domains/default/groups/ms"], "stateful": true, "tcp_strict": false}),
    );
    assert_eq!(policy_differences(&loose, &written), vec!["tcp_strict"]);
    let everywhere = p(
        json!({"resource_type": "SecurityPolicy", "id": "ms", "category": "Application", "scope": ["ANY"]}),
    );
    assert_eq!(policy_differences(&everywhere, &written), vec!["scope"]);
}
