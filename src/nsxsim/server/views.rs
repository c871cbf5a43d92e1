//! Read-only answers built from the store: the `GET /infra` tree, list pages, realized
//! entities, and `_protection` as a viewer sees it.

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::{Resp, json_response};
use crate::nsx::codes;
use crate::nsxsim::errors::{Fail, invalid};
use crate::nsxsim::limits::Faults;
use crate::nsxsim::store::{self, Ctx, Store};
use crate::nsxsim::validate::Obj;

/// `GET /infra`, with the subtree when `filter` is `Type-A|B|..` (reference §1: a Java regex
/// on the resource type; only this alternation form is understood). Domains, groups, security
/// policies and rules come back as `Child<Type>` wrappers, rules in their policy's `children`,
/// as a real manager answers.
pub(super) fn infra_tree(st: &Store, filter: Option<&str>) -> Value {
    let types: std::collections::BTreeSet<&str> = filter
        .and_then(|f| f.strip_prefix("Type-"))
        .map(|f| f.split('|').map(str::trim).collect())
        .unwrap_or_default();
    let wrap = |kind: &str, id: &str, obj: Value| json!({"resource_type": format!("Child{kind}"), "id": id, "marked_for_delete": false, kind: obj});
    let mut children = Vec::new();
    if types.contains("Domain") {
        for (d, dom) in &st.domains {
            let mut sub = Vec::new();
            if types.contains("Group") {
                for (g, obj) in &dom.groups {
                    sub.push(wrap("Group", g, Value::Object(obj.clone())));
                }
            }
            if types.contains("SecurityPolicy") {
                for (p, ps) in &dom.policies {
                    let rules: Vec<Value> = if types.contains("Rule") {
                        Store::ordered_rules(ps)
                            .into_iter()
                            .map(|r| {
                                let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
                                wrap("Rule", id, Value::Object(Store::rule_view(r)))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let mut pol = ps.policy.clone();
                    pol.insert("children".into(), Value::Array(rules));
                    sub.push(wrap("SecurityPolicy", p, Value::Object(pol)));
                }
            }
            let mut o = dom.domain.clone();
            o.insert("children".into(), Value::Array(sub));
            children.push(wrap("Domain", d, Value::Object(o)));
        }
    }
    json!({"resource_type": "Infra", "id": "infra", "path": "/infra",
           "relative_path": "infra", "_revision": 0, "children": children,
           "marked_for_delete": false, "overridden": false})
}

/// Sets `_protection` on every object of `v` a principal identity owns: `NOT_PROTECTED` for
/// the owner, `PROTECTED` for other principal identities, `REQUIRE_OVERRIDE` for users (all
/// simulator users are superusers).
pub(super) fn mark_protection(v: &mut Value, protected: &BTreeMap<String, String>, ctx: &Ctx) {
    match v {
        Value::Object(o) => {
            let owner = o
                .get("path")
                .and_then(Value::as_str)
                .and_then(|p| protected.get(p))
                .cloned();
            if let Some(owner) = owner {
                let seen = if owner == ctx.user {
                    "NOT_PROTECTED"
                } else if ctx.principal {
                    "PROTECTED"
                } else {
                    "REQUIRE_OVERRIDE"
                };
                o.insert("_protection".into(), json!(seen));
            }
            for child in o.values_mut() {
                mark_protection(child, protected, ctx);
            }
        }
        Value::Array(items) => {
            for item in items {
                mark_protection(item, protected, ctx);
            }
        }
        _ => {}
    }
}

pub(super) fn domain<'a>(st: &'a Store, d: &str) -> Result<&'a store::DomainState, Fail> {
    st.domains
        .get(d)
        .ok_or_else(|| Fail::not_found(&format!("/infra/domains/{d}")))
}

/// One page of a list: `page_size` (default and maximum 1000), decimal `cursor`, `result_count`
/// always set, no `cursor` on the last page; `sort_by` (`id` or `display_name`) and
/// `sort_ascending` are honoured.
pub(super) fn page(
    mut items: Vec<Value>,
    q: &BTreeMap<String, String>,
    last_cursor: bool,
) -> Result<Resp, Fail> {
    if let Some(key) = q.get("sort_by") {
        items.sort_by(|a, b| {
            let ka = a.get(key).map(|x| x.to_string()).unwrap_or_default();
            let kb = b.get(key).map(|x| x.to_string()).unwrap_or_default();
            ka.cmp(&kb)
        });
        if q.get("sort_ascending").map(String::as_str) == Some("false") {
            items.reverse();
        }
    }
    let size = match q.get("page_size") {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Fail::from_errors(vec![invalid(format!("Invalid page_size [{s}]."))]))
            .map_err(|f| f.unwrap_or_else(|| Fail::bad(0, "invalid page_size")))?
            .min(1000),
        None => 1000,
    };
    let start = match q.get("cursor") {
        Some(c) if !c.is_empty() => c
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| Fail::bad(codes::INVALID_PATH, format!("Invalid cursor [{c}].")))?,
        _ => 0,
    };
    let total = items.len();
    let end = (start + size).min(total);
    let results: Vec<Value> = items.drain(start..end).collect();
    let mut body = json!({"results": results, "result_count": total});
    if (end < total || last_cursor)
        && let Some(o) = body.as_object_mut()
    {
        o.insert("cursor".into(), json!(end.to_string()));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Realized entities of an intent path: a policy (its section and one entry per rule), a rule,
/// or a group.
pub(super) fn realized(
    st: &Store,
    path: &str,
    now: i64,
    faults: &Faults,
) -> Result<Vec<Value>, Fail> {
    let segs: Vec<&str> = path.split('/').collect();
    let entry = |obj: &Obj, entity_type: &str, id: String, rpath: String| {
        let modified = obj
            .get("_last_modified_time")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let delay = i64::try_from(faults.realization_delay_ms).unwrap_or(i64::MAX);
        let error = faults.realization_errors.get(path);
        let state = if error.is_some() {
            "ERROR"
        } else if now.saturating_sub(modified) >= delay {
            "REALIZED"
        } else {
            "UNREALIZED"
        };
        let mut v = json!({
            "resource_type": "GenericPolicyRealizedResource",
            "entity_type": entity_type,
            "intent_paths": [path],
            "id": id, "display_name": id,
            "path": rpath,
            "relative_path": id,
            "state": state,
            "runtime_status": if state == "REALIZED" { "SUCCESS" } else { "UNKNOWN" },
            "realization_specific_identifier": obj.get("unique_id").cloned().unwrap_or(Value::Null),
            "publish_status": state,
            "extended_attributes": [],
        });
        if let (Some(msg), Some(o)) = (error, v.as_object_mut()) {
            o.insert("runtime_error".into(), json!(msg));
            o.insert("publish_status_error".into(), json!(msg));
            o.insert("publish_status_error_code".into(), json!(500100));
        }
        v
    };
    let ep = "/infra/realized-state/enforcement-points/default";
    match segs.as_slice() {
        ["", "infra", "domains", d, "security-policies", p] => {
            let ps = st
                .domains
                .get(*d)
                .and_then(|dom| dom.policies.get(*p))
                .ok_or_else(|| Fail::not_found(path))?;
            let section = format!("{d}.{p}");
            let mut out = vec![entry(
                &ps.policy,
                "RealizedFirewallSection",
                section.clone(),
                format!("{ep}/firewalls/firewall-sections/{section}"),
            )];
            for (rid, r) in &ps.rules {
                let id = format!("{section}.{rid}");
                out.push(entry(
                    r,
                    "RealizedFirewallRule",
                    id.clone(),
                    format!("{ep}/firewalls/firewall-sections/{section}/firewall-rules/{id}"),
                ));
            }
            Ok(out)
        }
        [
            "",
            "infra",
            "domains",
            d,
            "security-policies",
            p,
            "rules",
            r,
        ] => {
            let rule = st
                .domains
                .get(*d)
                .and_then(|dom| dom.policies.get(*p))
                .and_then(|ps| ps.rules.get(*r))
                .ok_or_else(|| Fail::not_found(path))?;
            let id = format!("{d}.{p}.{r}");
            Ok(vec![entry(
                rule,
                "RealizedFirewallRule",
                id.clone(),
                format!("{ep}/firewalls/firewall-sections/{d}.{p}/firewall-rules/{id}"),
            )])
        }
        ["", "infra", "domains", d, "groups", g] => {
            let group = st
                .domains
                .get(*d)
                .and_then(|dom| dom.groups.get(*g))
                .ok_or_else(|| Fail::not_found(path))?;
            let id = format!("{d}.{g}");
            Ok(vec![entry(
                group,
                "RealizedGroup",
                id.clone(),
                format!("{ep}/groups/securitygroups/{id}"),
            )])
        }
        _ => Err(Fail::not_found(path)),
    }
}
