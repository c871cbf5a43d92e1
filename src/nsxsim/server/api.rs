//! The policy API's resources. [`Sim::dispatch`] hands a routed call to the handler of its
//! resource (domains, groups, security policies, rules, services, service entries,
//! realization, the hierarchical `/infra`); each handler answers the methods its resource
//! supports, reads and writes the store through [`Store::transact`], and refuses the others
//! with 405.

use std::collections::{BTreeMap, BTreeSet};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::route::Route;
use super::views::{domain, infra_tree, page, realized};
use super::{Resp, Sim, empty, json_response, lock};
use crate::nsx::codes;
use crate::nsx::model::ApiError;
use crate::nsxsim::errors::{Fail, json_error};
use crate::nsxsim::limits::Faults;
use crate::nsxsim::store::{self, Ctx, Mode, Op, RevCheck, Store};
use crate::nsxsim::validate::{self as v, Obj};

/// One policy-API call as the handlers see it.
pub(super) struct Call<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Decoded query parameters.
    pub query: &'a BTreeMap<String, String>,
    /// Request body.
    pub body: &'a [u8],
    /// Who writes and when.
    pub ctx: &'a Ctx,
    /// Faults in force.
    pub faults: &'a Faults,
}

impl Call<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn is_put(&self) -> bool {
        *self.method == Method::PUT
    }

    /// The body as JSON (400/287 when it is not).
    fn json(&self) -> Result<Value, Fail> {
        serde_json::from_slice::<Value>(self.body).map_err(|e| {
            Fail::from_errors(vec![json_error(format!("{e}"))])
                .unwrap_or_else(|| Fail::bad(0, "bad json"))
        })
    }

    /// The body of a PUT or PATCH of one object: an object that `check` accepts, and how its
    /// `_revision` is treated (PUT: required on an existing object; PATCH: checked when given).
    fn object(
        &self,
        check: impl FnOnce(&Obj, &mut Vec<ApiError>),
    ) -> Result<(Obj, RevCheck), Fail> {
        let body = self.json()?;
        let mut errs = Vec::new();
        let obj = v::as_obj(&body, "the request body", &mut errs)
            .cloned()
            .unwrap_or_default();
        check(&obj, &mut errs);
        let rev = v::revision(&obj, &mut errs);
        if let Some(f) = Fail::from_errors(errs) {
            return Err(f);
        }
        let rev = if self.is_put() {
            RevCheck::Put(rev)
        } else {
            RevCheck::IfGiven(rev)
        };
        Ok((obj, rev))
    }

    /// The answer to a write: PUT returns the object as stored, PATCH an empty 200.
    fn written(&self, view: impl FnOnce() -> Value) -> Resp {
        if self.is_put() {
            json_response(StatusCode::OK, &view())
        } else {
            empty(StatusCode::OK)
        }
    }

    /// A list page (with the fault that adds a cursor to the last page).
    fn page(&self, items: Vec<Value>) -> Result<Resp, Fail> {
        page(items, self.query, self.faults.cursor_on_last_page)
    }

    /// Objects whose deletion is pending are hidden unless asked for (reference §1, §3).
    fn with_pending(&self) -> bool {
        self.param("include_mark_for_delete_objects") == Some("true")
    }

    /// A single object absent from the store: its pending-delete view when asked for, else 404.
    fn pending_one(&self, st: &Store, path: &str) -> Result<Resp, Fail> {
        st.pending_object(path, self.ctx.now_ms)
            .filter(|_| self.with_pending())
            .map(|o| json_response(StatusCode::OK, o))
            .ok_or_else(|| Fail::not_found(path))
    }

    /// Objects of `kind` under `parent` whose deletion is pending, when asked for.
    fn pending_list(&self, st: &Store, parent: &str, kind: &str) -> Vec<Value> {
        if self.with_pending() {
            st.pending_children(parent, kind, self.ctx.now_ms)
        } else {
            Vec::new()
        }
    }

    /// 405 for a method the resource does not support.
    fn not_allowed(&self) -> Fail {
        Fail::new(
            StatusCode::METHOD_NOT_ALLOWED,
            0,
            "common-services",
            format!("Method {} is not supported on this resource.", self.method),
        )
    }

    /// A handler's answer: its own for the methods it supports, 405 otherwise.
    fn answer(&self, supported: Option<Result<Resp, Fail>>) -> Result<Resp, Fail> {
        supported.unwrap_or_else(|| Err(self.not_allowed()))
    }
}

/// The `intent_path` parameter a realization call needs.
fn intent_path(call: &Call<'_>) -> Result<String, Fail> {
    call.param("intent_path")
        .map(str::to_string)
        .ok_or_else(|| {
            Fail::bad(
                codes::INVALID_PATH,
                "Required parameter intent_path is missing.",
            )
        })
}

impl Sim {
    /// Answers a routed policy-API call from its resource's handler.
    pub(super) fn dispatch(&self, call: &Call<'_>, route: Route) -> Result<Resp, Fail> {
        let mut st = lock(&self.store);
        let st = &mut *st;
        let get = *call.method == Method::GET;
        match route {
            Route::Version => call.answer(get.then(|| {
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"product_version": "4.1.2.0.0.0000000", "node_version": "4.1.2.0.0.0000000"}),
                ))
            })),
            Route::Infra => infra(st, call),
            Route::Domains => call.answer(get.then(|| {
                let items = st
                    .domains
                    .values()
                    .map(|d| Value::Object(d.domain.clone()))
                    .collect();
                call.page(items)
            })),
            Route::Domain(d) => call.answer(get.then(|| {
                domain(st, &d).map(|dom| {
                    json_response(StatusCode::OK, &Value::Object(dom.domain.clone()))
                })
            })),
            Route::Groups(d) => call.answer(get.then(|| {
                let mut items: Vec<Value> =
                    domain(st, &d)?.groups.values().map(Store::group_view).collect();
                items.extend(call.pending_list(st, &format!("/infra/domains/{d}"), "Group"));
                call.page(items)
            })),
            Route::Group(d, g) => group(st, call, &d, &g),
            Route::GroupVms(d, g) => call.answer(get.then(|| group_vms(st, call, &d, &g))),
            Route::GroupIps(d, g) => call.answer(get.then(|| {
                let group = existing_group(st, &d, &g)?;
                let ips = crate::nsxsim::inventory::member_ips(st, &group);
                call.page(ips.into_iter().map(Value::String).collect())
            })),
            Route::Policies(d) => call.answer(get.then(|| policies(st, call, &d))),
            Route::Policy(d, p) => policy(st, call, &d, &p),
            Route::Rules(d, p) => call.answer(get.then(|| {
                let ppath = store::policy_path(&d, &p);
                let ps = domain(st, &d)?
                    .policies
                    .get(&p)
                    .ok_or_else(|| Fail::not_found(&ppath))?;
                let mut items: Vec<Value> = Store::ordered_rules(ps)
                    .into_iter()
                    .map(|r| Value::Object(Store::rule_view(r)))
                    .collect();
                items.extend(call.pending_list(st, &ppath, "Rule"));
                call.page(items)
            })),
            Route::Rule(d, p, r) => rule(st, call, &d, &p, &r),
            Route::Services => call.answer(get.then(|| services(st, call))),
            Route::Service(s) => service(st, call, &s),
            Route::Entries(s) => call.answer(get.then(|| {
                let ss = st
                    .services
                    .get(&s)
                    .ok_or_else(|| Fail::not_found(&store::service_path(&s)))?;
                call.page(ss.entries.values().cloned().map(Value::Object).collect())
            })),
            Route::Entry(s, e) => call.answer(get.then(|| {
                st.services
                    .get(&s)
                    .and_then(|ss| ss.entries.get(&e))
                    .map(|o| json_response(StatusCode::OK, &Value::Object(o.clone())))
                    .ok_or_else(|| {
                        Fail::not_found(&format!(
                            "{}/service-entries/{e}",
                            store::service_path(&s)
                        ))
                    })
            })),
            Route::Realized => call.answer(get.then(|| {
                let path = intent_path(call)?;
                let items = realized(st, &path, call.ctx.now_ms, call.faults)?;
                let n = items.len();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"results": items, "result_count": n}),
                ))
            })),
            Route::RealizedStatus => call.answer(get.then(|| realized_status(st, call))),
            Route::SessionCreate | Route::SessionDestroy => Err(call.not_allowed()),
            Route::Unknown => Err(Fail::new(
                StatusCode::NOT_FOUND,
                codes::INVALID_PATH,
                "common-services",
                "The requested URI could not be found.",
            )),
        }
    }
}

/// `GET /infra` (the tree) and `PATCH /infra` (a hierarchical, atomic write).
fn infra(st: &mut Store, call: &Call<'_>) -> Result<Resp, Fail> {
    match call.method.as_str() {
        "GET" => Ok(json_response(
            StatusCode::OK,
            &infra_tree(st, call.param("filter")),
        )),
        "PATCH" => {
            if rand::random::<f64>() < call.faults.atomic_conflict_fraction {
                return Err(Fail::bad(
                    codes::EXISTS,
                    codes::atomic_request_message(rand::random::<u16>()),
                ));
            }
            let body = call.json()?;
            let enforce = call.param("enforce_revision_check") == Some("true");
            let ops = st.hapi_ops(&body, enforce)?;
            st.transact(ops, call.ctx)?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(call.not_allowed()),
    }
}

fn existing_group(st: &Store, d: &str, g: &str) -> Result<Obj, Fail> {
    domain(st, d)?
        .groups
        .get(g)
        .cloned()
        .ok_or_else(|| Fail::not_found(&store::group_path(d, g)))
}

fn group(st: &mut Store, call: &Call<'_>, d: &str, g: &str) -> Result<Resp, Fail> {
    match call.method.as_str() {
        "GET" => match domain(st, d)?.groups.get(g) {
            Some(o) => Ok(json_response(StatusCode::OK, &Store::group_view(o))),
            None => call.pending_one(st, &store::group_path(d, g)),
        },
        "PUT" | "PATCH" => {
            let (obj, rev) = call.object(|obj, errs| v::check_group(obj, g, errs))?;
            let mode = if call.is_put() {
                Mode::Replace
            } else {
                Mode::Merge
            };
            let op = Op::Group {
                domain: d.into(),
                id: g.into(),
                body: v::writable(&obj),
                rev,
                mode,
            };
            st.transact(vec![op], call.ctx)?;
            let stored = domain(st, d)?.groups.get(g).cloned().unwrap_or_default();
            Ok(call.written(|| Store::group_view(&stored)))
        }
        "DELETE" => {
            let op = Op::DeleteGroup {
                domain: d.into(),
                id: g.into(),
            };
            st.transact(vec![op], call.ctx)?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(call.not_allowed()),
    }
}

fn group_vms(st: &Store, call: &Call<'_>, d: &str, g: &str) -> Result<Resp, Fail> {
    let group = existing_group(st, d, g)?;
    let vms = crate::nsxsim::inventory::members(st, &group);
    call.page(
        vms.into_iter()
            .map(|vm| {
                json!({"resource_type": "VirtualMachine", "display_name": vm.name,
                       "external_id": vm.name, "tags": vm.tags})
            })
            .collect(),
    )
}

fn policies(st: &Store, call: &Call<'_>, d: &str) -> Result<Resp, Fail> {
    let dom = domain(st, d)?;
    let count = call.param("include_rule_count") == Some("true");
    let mut items: Vec<Value> = dom
        .policies
        .values()
        .map(|ps| {
            let mut p = Store::policy_view(ps, false);
            if count && let Some(o) = p.as_object_mut() {
                o.insert("rule_count".into(), json!(ps.rules.len()));
            }
            p
        })
        .collect();
    for mut p in call.pending_list(st, &format!("/infra/domains/{d}"), "SecurityPolicy") {
        if let Some(o) = p.as_object_mut() {
            let rules = o.remove("rules");
            if count {
                let n = rules.as_ref().and_then(Value::as_array).map_or(0, Vec::len);
                o.insert("rule_count".into(), json!(n));
            }
        }
        items.push(p);
    }
    call.page(items)
}

fn policy(st: &mut Store, call: &Call<'_>, d: &str, p: &str) -> Result<Resp, Fail> {
    match call.method.as_str() {
        "GET" => match domain(st, d)?.policies.get(p) {
            Some(ps) => Ok(json_response(StatusCode::OK, &Store::policy_view(ps, true))),
            None => call.pending_one(st, &store::policy_path(d, p)),
        },
        "PUT" | "PATCH" => {
            let mut rule_ops = Vec::new();
            let (obj, rev) = call.object(|obj, errs| {
                v::check_policy(obj, p, errs);
                if let Some(Value::Array(rules)) = obj.get("rules") {
                    rule_ops = store::embedded_rules(d, p, rules, &|_, _| RevCheck::Ignore, errs);
                }
            })?;
            let mut body = v::writable(&obj);
            body.remove("rules");
            let mut ops = vec![Op::Policy {
                domain: d.into(),
                id: p.into(),
                body,
                rev,
                mode: Mode::Replace,
                replace_rules: call.is_put().then(|| rule_ids(&rule_ops)),
            }];
            ops.extend(rule_ops);
            st.transact(ops, call.ctx)?;
            let dom = domain(st, d)?;
            Ok(call.written(|| {
                dom.policies
                    .get(p)
                    .map(|ps| Store::policy_view(ps, true))
                    .unwrap_or(Value::Null)
            }))
        }
        "DELETE" => {
            let op = Op::DeletePolicy {
                domain: d.into(),
                id: p.into(),
            };
            st.transact(vec![op], call.ctx)?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(call.not_allowed()),
    }
}

/// The ids of the rules that rule operations write.
fn rule_ids(ops: &[Op]) -> BTreeSet<String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Rule { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn rule(st: &mut Store, call: &Call<'_>, d: &str, p: &str, r: &str) -> Result<Resp, Fail> {
    let stored = |st: &Store| -> Result<Option<Value>, Fail> {
        Ok(domain(st, d)?
            .policies
            .get(p)
            .and_then(|ps| ps.rules.get(r))
            .map(|o| Value::Object(Store::rule_view(o))))
    };
    match call.method.as_str() {
        "GET" => match stored(st)? {
            Some(o) => Ok(json_response(StatusCode::OK, &o)),
            None => call.pending_one(st, &store::rule_path(d, p, r)),
        },
        "PUT" | "PATCH" => {
            let (obj, rev) = call.object(|obj, errs| v::check_rule(obj, r, errs))?;
            let op = Op::Rule {
                domain: d.into(),
                policy: p.into(),
                id: r.into(),
                body: v::writable(&obj),
                rev,
            };
            st.transact(vec![op], call.ctx)?;
            let o = stored(st)?.unwrap_or(Value::Null);
            Ok(call.written(|| o))
        }
        "DELETE" => {
            let op = Op::DeleteRule {
                domain: d.into(),
                policy: p.into(),
                id: r.into(),
            };
            st.transact(vec![op], call.ctx)?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(call.not_allowed()),
    }
}

fn services(st: &Store, call: &Call<'_>) -> Result<Resp, Fail> {
    let only_default = call.param("default_service").map(|s| s == "true");
    let mut items: Vec<Value> = st
        .services
        .values()
        .filter(|s| {
            only_default.is_none_or(|want| {
                (s.service.get("is_default").and_then(Value::as_bool) == Some(true)) == want
            })
        })
        .map(Store::service_view)
        .collect();
    if only_default != Some(true) {
        items.extend(call.pending_list(st, "/infra", "Service"));
    }
    call.page(items)
}

fn service(st: &mut Store, call: &Call<'_>, s: &str) -> Result<Resp, Fail> {
    match call.method.as_str() {
        "GET" => match st.services.get(s) {
            Some(ss) => Ok(json_response(StatusCode::OK, &Store::service_view(ss))),
            None => call.pending_one(st, &store::service_path(s)),
        },
        "PUT" | "PATCH" => {
            let (obj, rev) = call.object(|obj, errs| v::check_service(obj, s, errs))?;
            let entries = store::entries_of(&obj);
            let mut body = v::writable(&obj);
            body.remove("service_entries");
            let mode = if call.is_put() {
                Mode::Replace
            } else {
                Mode::Merge
            };
            let op = Op::Service {
                id: s.into(),
                body,
                entries,
                rev,
                mode,
            };
            st.transact(vec![op], call.ctx)?;
            Ok(call.written(|| {
                st.services
                    .get(s)
                    .map(Store::service_view)
                    .unwrap_or(Value::Null)
            }))
        }
        "DELETE" => {
            st.transact(vec![Op::DeleteService { id: s.into() }], call.ctx)?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(call.not_allowed()),
    }
}

fn realized_status(st: &Store, call: &Call<'_>) -> Result<Resp, Fail> {
    let path = intent_path(call)?;
    let items = realized(st, &path, call.ctx.now_ms, call.faults)?;
    let state = |s: &str| items.iter().any(|i| i["state"] == s);
    let (consolidated, publish) = if state("ERROR") {
        ("ERROR", "ERROR")
    } else if state("UNREALIZED") {
        ("IN_PROGRESS", "UNREALIZED")
    } else {
        ("SUCCESS", "REALIZED")
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"intent_path": path,
                "consolidated_status": {"consolidated_status": consolidated},
                "publish_status": publish}),
    ))
}
