//! Reference checks after a transaction: every path the touched objects refer to exists, and
//! nothing still refers to a deleted object.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::nsx::codes;
use crate::nsx::model::ApiError;
use crate::nsxsim::errors::bad_request;
use crate::nsxsim::validate as v;

impl Store {
    /// After a transaction: every path that touched objects refer to exists, and nothing still
    /// refers to a deleted object.
    pub(super) fn check_references(
        &self,
        policies: &BTreeSet<(String, String)>,
        groups: &BTreeSet<(String, String)>,
        deleted: &BTreeSet<String>,
    ) -> Vec<ApiError> {
        let mut errs = Vec::new();
        let bad_path = |owner: &str, field: &str, p: &str| {
            bad_request(
                codes::INVALID_PATH,
                format!("Invalid path [{p}] in {field} of [{owner}]: the path=[{p}] is invalid."),
            )
        };
        for (d, pid) in policies {
            let Some(ps) = self.domains.get(d).and_then(|dom| dom.policies.get(pid)) else {
                continue;
            };
            let ppath = policy_path(d, pid);
            for p in v::referenced_paths(&ps.policy, &["scope"]) {
                if !self.group_exists(&p) {
                    errs.push(bad_path(&ppath, "scope", &p));
                }
            }
            for (rid, r) in &ps.rules {
                let rpath = format!("{ppath}/rules/{rid}");
                for field in ["source_groups", "destination_groups", "scope"] {
                    for p in v::referenced_paths(r, &[field]) {
                        if !self.group_exists(&p) {
                            errs.push(bad_path(&rpath, field, &p));
                        }
                    }
                }
                for p in v::referenced_paths(r, &["services"]) {
                    if !self.service_exists(&p) {
                        errs.push(bad_path(&rpath, "services", &p));
                    }
                }
            }
        }
        for (d, gid) in groups {
            let Some(g) = self.domains.get(d).and_then(|dom| dom.groups.get(gid)) else {
                continue;
            };
            for p in expression_paths(g) {
                if p.contains("/groups/") && !self.group_exists(&p) {
                    errs.push(bad_path(&group_path(d, gid), "expression", &p));
                }
            }
        }
        if !deleted.is_empty() {
            for (p, users) in self.referrers(deleted) {
                errs.push(bad_request(codes::IN_USE, format!(
                        "The object path=[{p}] cannot be deleted as either it has children or it is being referenced by other objects path=[{}].",
                        users.join(",")
                    ),
                ));
            }
        }
        errs
    }

    /// For each of `targets`, the paths of the objects that still refer to it.
    pub(super) fn referrers(&self, targets: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (d, dom) in &self.domains {
            for (pid, ps) in &dom.policies {
                let ppath = policy_path(d, pid);
                for p in v::referenced_paths(&ps.policy, &["scope"]) {
                    if targets.contains(&p) {
                        out.entry(p).or_default().push(ppath.clone());
                    }
                }
                for (rid, r) in &ps.rules {
                    for p in v::referenced_paths(
                        r,
                        &["source_groups", "destination_groups", "scope", "services"],
                    ) {
                        if targets.contains(&p) {
                            out.entry(p)
                                .or_default()
                                .push(format!("{ppath}/rules/{rid}"));
                        }
                    }
                }
            }
            for (gid, g) in &dom.groups {
                for p in expression_paths(g) {
                    if targets.contains(&p) {
                        out.entry(p).or_default().push(group_path(d, gid));
                    }
                }
            }
        }
        for list in out.values_mut() {
            list.sort();
            list.dedup();
        }
        out
    }
}
