use super::*;
use crate::nsx::codes;
use crate::nsxsim::validate as v;
use serde_json::json;

mod pending;
mod shapes;

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

/// A store with policy `p` in `default` and one rule per id, each from `ANY`.
fn store_with_policy_p(rules: &[&str]) -> Store {
    let mut s = Store::new();
    let ops = std::iter::once(policy_op("p"))
        .chain(rules.iter().map(|r| rule_op("p", r, "ANY")))
        .collect();
    s.transact(ops, &ctx()).unwrap();
    s
}

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

fn three_part_group() -> Value {
    json!({"expression": [
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag",
         "operator": "EQUALS", "value": "tier|web"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.10.20.0/24", "10.1.1.1-10.1.1.9"]}
    ]})
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
    let mut s = store_with_policy_p(&["a", "b", "c"]);
    let before = serde_json::to_value(&s).unwrap();
    // A replacement of the policy that keeps only rule a.
    let replace = |description: &str| Op::Policy {
        domain: "default".into(),
        id: "p".into(),
        body: obj(json!({"category": "Environment", "description": description})),
        rev: RevCheck::Ignore,
        mode: Mode::Replace,
        replace_rules: Some(["a".to_string()].into_iter().collect()),
    };
    let err = s
        .transact(
            vec![
                replace("changed"),
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
    s.transact(vec![replace("changed"), rule_op("p", "d", "ANY")], &ctx())
        .unwrap();
    let rules: Vec<&String> = s.domains["default"].policies["p"].rules.keys().collect();
    assert_eq!(rules, ["a", "d"]);
}

#[test]
fn rule_ids_start_at_1002_stay_with_the_rule_and_are_never_reused() {
    let mut s = store_with_policy_p(&["a", "b"]);
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
