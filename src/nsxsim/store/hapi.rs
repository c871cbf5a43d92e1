//! Hierarchical `PATCH /infra` bodies (reference §2.6) as store operations, with every
//! validation error of the tree collected.

use serde_json::Value;

use super::*;
use crate::nsx::codes;
use crate::nsx::model::ApiError;
use crate::nsxsim::errors::{Fail, bad_request, invalid, json_error};
use crate::nsxsim::validate::{self as v, Obj};

impl Store {
    /// Builds the operations of a hierarchical `PATCH /infra` body, collecting every
    /// validation error of the tree.
    pub fn hapi_ops(&self, body: &Value, enforce_revision: bool) -> Result<Vec<Op>, Fail> {
        let mut errs = Vec::new();
        let mut ops = Vec::new();
        let mut count = 0usize;
        let rev = |o: &Obj, errs: &mut Vec<ApiError>| {
            if enforce_revision {
                RevCheck::IfGiven(v::revision(o, errs))
            } else {
                RevCheck::Ignore
            }
        };
        let Some(root) = v::as_obj(body, "the request body", &mut errs) else {
            return Err(fail(errs));
        };
        v::strict(root, true, &[v::INFRA], &mut errs);
        if root.get("resource_type").and_then(Value::as_str) != Some("Infra") {
            errs.push(invalid("resource_type of the root must be Infra."));
        }
        for child in array(root, "children", &mut errs) {
            let Some(c) = v::as_obj(child, "a child of Infra", &mut errs) else {
                continue;
            };
            let rt = c.get("resource_type").and_then(Value::as_str).unwrap_or("");
            match rt {
                "ChildResourceReference" | "ChildDomain" => {
                    let (domain, inner) = if rt == "ChildDomain" {
                        v::strict(c, false, &[v::WRAPPER, &["Domain"]], &mut errs);
                        let Some(d) = c.get("Domain").and_then(Value::as_object) else {
                            errs.push(invalid("ChildDomain requires the Domain property."));
                            continue;
                        };
                        v::strict(d, true, &[], &mut errs);
                        let id = d
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        v::check_id(&id, "Domain", &mut errs);
                        if flag(c, "marked_for_delete") {
                            errs.push(invalid(format!(
                                "Domain [{id}] cannot be deleted through this simulator."
                            )));
                        }
                        ops.push(Op::Domain { id: id.clone() });
                        count += 1;
                        (id, d)
                    } else {
                        let Some(id) = reference(
                            c,
                            ("Infra", "Domain"),
                            |id| self.domains.contains_key(id),
                            |id| format!("/infra/domains/{id}"),
                            &mut errs,
                        ) else {
                            continue;
                        };
                        (id, c)
                    };
                    for dc in array(inner, "children", &mut errs) {
                        self.hapi_domain_child(&domain, dc, &rev, &mut ops, &mut errs, &mut count);
                    }
                }
                "ChildService" => {
                    v::strict(c, false, &[v::WRAPPER, &["Service"]], &mut errs);
                    let Some(s) = c.get("Service").and_then(Value::as_object) else {
                        errs.push(invalid("ChildService requires the Service property."));
                        continue;
                    };
                    let id = wrapper_id(c, s, "Service", &mut errs);
                    count += 1;
                    if flag(c, "marked_for_delete") {
                        ops.push(Op::DeleteService { id });
                        continue;
                    }
                    v::check_service(s, &id, &mut errs);
                    let entries = entries_of(s);
                    count += entries.len();
                    ops.push(Op::Service {
                        id,
                        body: strip(s, &["service_entries"]),
                        entries,
                        rev: rev(s, &mut errs),
                        mode: Mode::Merge,
                    });
                }
                other => errs.push(invalid(format!(
                    "Child type [{other}] is not supported under Infra."
                ))),
            }
        }
        if count > MAX_HAPI_OBJECTS {
            errs.push(invalid(format!(
                "The request has {count} intent objects, the maximum per hierarchical call is {MAX_HAPI_OBJECTS}."
            )));
        }
        if errs.is_empty() {
            Ok(ops)
        } else {
            Err(fail(errs))
        }
    }

    fn hapi_domain_child(
        &self,
        domain: &str,
        child: &Value,
        rev: &dyn Fn(&Obj, &mut Vec<ApiError>) -> RevCheck,
        ops: &mut Vec<Op>,
        errs: &mut Vec<ApiError>,
        count: &mut usize,
    ) {
        let Some(c) = v::as_obj(child, "a child of Domain", errs) else {
            return;
        };
        let rt = c.get("resource_type").and_then(Value::as_str).unwrap_or("");
        *count += 1;
        match rt {
            "ChildGroup" => {
                let Some((g, id, delete)) = unwrap_child(c, "Group", errs) else {
                    return;
                };
                if delete {
                    ops.push(Op::DeleteGroup {
                        domain: domain.into(),
                        id,
                    });
                    return;
                }
                v::check_group(g, &id, errs);
                ops.push(Op::Group {
                    domain: domain.into(),
                    id,
                    body: v::writable(g),
                    rev: rev(g, errs),
                    mode: Mode::Merge,
                });
            }
            "ChildSecurityPolicy" | "ChildResourceReference" => {
                let (id, p, modify, delete) = if rt == "ChildSecurityPolicy" {
                    let Some((p, id, delete)) = unwrap_child(c, "SecurityPolicy", errs) else {
                        return;
                    };
                    (id, p, true, delete)
                } else {
                    let Some(id) = reference(
                        c,
                        ("Domain", "SecurityPolicy"),
                        |id| {
                            self.domains
                                .get(domain)
                                .is_some_and(|d| d.policies.contains_key(id))
                        },
                        |id| policy_path(domain, id),
                        errs,
                    ) else {
                        return;
                    };
                    (id, c, false, false)
                };
                if delete {
                    ops.push(Op::DeletePolicy {
                        domain: domain.into(),
                        id,
                    });
                    return;
                }
                if modify {
                    v::check_policy(p, &id, errs);
                    ops.push(Op::Policy {
                        domain: domain.into(),
                        id: id.clone(),
                        body: strip(p, &["rules"]),
                        rev: rev(p, errs),
                        mode: Mode::Replace,
                        replace_rules: None,
                    });
                    let rules = embedded_rules(domain, &id, array(p, "rules", errs), rev, errs);
                    *count += rules.len();
                    ops.extend(rules);
                }
                rule_children(domain, &id, p, rev, ops, errs, count);
            }
            other => errs.push(invalid(format!(
                "Child type [{other}] is not supported under Domain."
            ))),
        }
    }
}

/// The id of the existing object a `ChildResourceReference` under `parent` names: it must name
/// a `target` (`exists` tells whether there is one with that id, at `path`).
fn reference(
    c: &Obj,
    (parent, target): (&str, &str),
    exists: impl Fn(&str) -> bool,
    path: impl Fn(&str) -> String,
    errs: &mut Vec<ApiError>,
) -> Option<String> {
    v::strict(c, false, &[v::REFERENCE], errs);
    if c.get("target_type").and_then(Value::as_str) != Some(target) {
        errs.push(invalid(format!(
            "ChildResourceReference under {parent} must have target_type {target}."
        )));
        return None;
    }
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !exists(&id) {
        errs.push(bad_request(
            codes::INVALID_PATH,
            format!("The path=[{}] is invalid", path(&id)),
        ));
        return None;
    }
    Some(id)
}

/// The object a `Child<kind>` wrapper carries, its id, and whether the wrapper deletes it
/// (`marked_for_delete`).
fn unwrap_child<'a>(
    c: &'a Obj,
    kind: &str,
    errs: &mut Vec<ApiError>,
) -> Option<(&'a Obj, String, bool)> {
    v::strict(c, false, &[v::WRAPPER, &[kind]], errs);
    let Some(inner) = c.get(kind).and_then(Value::as_object) else {
        errs.push(invalid(format!(
            "Child{kind} requires the {kind} property."
        )));
        return None;
    };
    let id = wrapper_id(c, inner, kind, errs);
    Some((inner, id, flag(c, "marked_for_delete")))
}

/// The rules embedded in a security policy's `rules`, each checked, as rule operations.
pub fn embedded_rules(
    domain: &str,
    policy: &str,
    rules: &[Value],
    rev: &dyn Fn(&Obj, &mut Vec<ApiError>) -> RevCheck,
    errs: &mut Vec<ApiError>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for r in rules {
        let Some(r) = v::as_obj(r, "a rule", errs) else {
            continue;
        };
        let rid = r
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        ops.push(rule_op((domain, policy, rid), r, rev, errs));
    }
    ops
}

/// A checked rule write.
fn rule_op(
    (domain, policy, id): (&str, &str, String),
    r: &Obj,
    rev: &dyn Fn(&Obj, &mut Vec<ApiError>) -> RevCheck,
    errs: &mut Vec<ApiError>,
) -> Op {
    v::check_rule(r, &id, errs);
    Op::Rule {
        domain: domain.into(),
        policy: policy.into(),
        id,
        body: v::writable(r),
        rev: rev(r, errs),
    }
}

/// The `ChildRule` wrappers in a security policy's `children`, as rule operations.
fn rule_children(
    domain: &str,
    policy: &str,
    p: &Obj,
    rev: &dyn Fn(&Obj, &mut Vec<ApiError>) -> RevCheck,
    ops: &mut Vec<Op>,
    errs: &mut Vec<ApiError>,
    count: &mut usize,
) {
    for rc in array(p, "children", errs) {
        let Some(rc) = v::as_obj(rc, "a child of SecurityPolicy", errs) else {
            continue;
        };
        *count += 1;
        if rc.get("resource_type").and_then(Value::as_str) != Some("ChildRule") {
            errs.push(invalid(format!(
                "Child type [{}] is not supported under SecurityPolicy.",
                rc.get("resource_type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )));
            continue;
        }
        let Some((r, rid, delete)) = unwrap_child(rc, "Rule", errs) else {
            continue;
        };
        if delete {
            ops.push(Op::DeleteRule {
                domain: domain.into(),
                policy: policy.into(),
                id: rid,
            });
            continue;
        }
        ops.push(rule_op((domain, policy, rid), r, rev, errs));
    }
}

pub(super) fn fail(errs: Vec<ApiError>) -> Fail {
    Fail::from_errors(errs).unwrap_or_else(|| Fail::bad(0, "invalid request"))
}

pub(super) fn flag(o: &Obj, key: &str) -> bool {
    o.get(key).and_then(Value::as_bool) == Some(true)
}

pub(super) fn array<'a>(o: &'a Obj, key: &str, errs: &mut Vec<ApiError>) -> &'a [Value] {
    match o.get(key) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &[],
        Some(_) => {
            errs.push(json_error(format!("property {key} must be an array.")));
            &[]
        }
    }
}

pub(super) fn strip(o: &Obj, keys: &[&str]) -> Obj {
    let mut w = v::writable(o);
    for k in keys {
        w.remove(*k);
    }
    w
}

/// The id of a wrapped object: the inner id, which must agree with the wrapper's.
pub(super) fn wrapper_id(
    wrapper: &Obj,
    inner: &Obj,
    kind: &str,
    errs: &mut Vec<ApiError>,
) -> String {
    let outer = wrapper.get("id").and_then(Value::as_str);
    let id = inner.get("id").and_then(Value::as_str);
    match (outer, id) {
        (Some(a), Some(b)) if a != b => {
            errs.push(invalid(format!(
                "Child{kind} wrapper id [{a}] does not match the {kind} id [{b}]."
            )));
            b.to_string()
        }
        (_, Some(b)) => b.to_string(),
        (Some(a), None) => a.to_string(),
        (None, None) => {
            errs.push(invalid(format!("{kind} requires an id.")));
            String::new()
        }
    }
}

/// Service entries of a service body, by id.
pub fn entries_of(s: &Obj) -> Vec<(String, Obj)> {
    s.get("service_entries")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|e| {
                    (
                        e.get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        v::writable(e),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Paths in a group's PathExpressions.
pub fn expression_paths(g: &Obj) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = g.get("expression") {
        for e in items {
            if e.get("resource_type").and_then(Value::as_str) == Some("PathExpression")
                && let Some(Value::Array(paths)) = e.get("paths")
            {
                out.extend(paths.iter().filter_map(Value::as_str).map(String::from));
            }
        }
    }
    out
}
