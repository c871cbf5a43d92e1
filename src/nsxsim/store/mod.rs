//! The simulator's intent store: domains, groups, security policies with their rules, and
//! services, kept as JSON objects with NSX's read-only fields filled in (`path`, `_revision`,
//! `rule_id`, ...). Every write — a single-object PUT/PATCH/DELETE or a hierarchical
//! `PATCH /infra` — is a transaction: its operations are applied with an undo journal, the
//! references of the result are checked, and on any error everything is rolled back.
//!
//! Simulator decisions where the reference is silent (each also noted where it is made):
//! - `_revision` starts at 0 and is bumped on every write to the object (also when the content
//!   does not change).
//! - Duplicate rule `sequence_number`s are accepted, as NSX accepts them; NSX's order between
//!   them is nondeterministic, the simulator orders ties by rule id.
//! - `rule_id`s start at 1002, are never reused, and stay with a rule (same policy and id)
//!   across updates; a rule deleted and created again gets a new one.
//! - DELETE of an absent object answers 200 (idempotent).
//! - PATCH of a security policy or rule is a full replace of its fields (SDK docstring);
//!   PATCH of a group or service merges the given top-level fields.
//!
//! What a GET returns is what a real manager returns (reference §11a), not an echo of the write:
//! defaults filled in (`rule_defaults`, `policy_defaults`, `group_defaults`), read-only fields
//! stamped (`stamp`), inline service entries and group expressions shaped as NSX shapes them.
//! The simulator reports NSX 4.1.2 (`/api/v1/node/version`) and stamps 4.x's read-only fields
//! (`realization_id`, `owner_id`, `origin_site_id`, `remote_path`); where only an older
//! observation exists (inline entries lose `display_name`, seen up to NSX-T 3.2) it follows that
//! one, the stricter for a client.
//!
//! Deletes are asynchronous (reference §3): a deleted object stays "pending" for
//! [`Ctx::pending_delete_ms`]; meanwhile GET and lists hide it (unless
//! `include_mark_for_delete_objects=true`), re-creating a group, policy or service at its path
//! fails with 400/500045, and it holds no references (deleting what it referred to is allowed:
//! simulator's choice). A rule deleted from a policy that stays is removed with the policy's
//! next section update: it shows as pending but a new rule may take its path at once, with a
//! new `rule_id` (simulator's choice; the reference names 500045 only for whole objects'
//! deletes, e.g. nsx-operator's `NsxPendingDelete`).

//!
//! Submodules: `seed` (the objects of a fresh manager), `objects` (defaults and read-only
//! fields a real manager fills in), `txn` (atomic transactions with an undo journal), `refs`
//! (reference checks after a transaction), `hapi` (hierarchical `PATCH /infra` bodies as
//! operations).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::validate::Obj;

mod hapi;
mod objects;
mod refs;
mod seed;
mod txn;

pub use hapi::{embedded_rules, entries_of, expression_paths};
pub use objects::internal_sequence_number;
use objects::policy_order;

/// First rule id handed to user rules (reference §8).
pub const FIRST_RULE_ID: i64 = 1002;
/// Intent objects allowed in one H-API call on a Local Manager.
pub const MAX_HAPI_OBJECTS: usize = 5000;
/// The local site's id, which NSX 4.x reports as `owner_id` and `origin_site_id` of every
/// intent object (reference §2.1, §11a). Fixed, so dumps and GETs are reproducible.
pub const SITE_ID: &str = "6a8e1e0c-3b7d-4f5a-9c21-5d0b7e4f2a13";
/// `rule_id`s of the default rules whose `action` / `logged` users may change (the default
/// layer-2 rule is 1, the default layer-3 rule 2, reference §8); NDP and DHCP stay read-only.
pub const EDITABLE_DEFAULT_RULES: &[i64] = &[1, 2];
/// Fields of an editable default rule a write may change; any other field must keep its value
/// (a real manager refuses to change the default rule's peers, services or order).
pub const DEFAULT_RULE_EDITABLE: &[&str] =
    &["action", "logged", "tag", "notes", "description", "tags"];

/// `internal_sequence_number` bases per category (reference §2.2). Observed on NSX-T 3.2
/// (S3): an Application policy with sequence 10 reads 13000010, the default layer-3 section
/// (Application) 14000000, the default layer-2 section (Ethernet) 1000000. So a category's
/// user policies read `base + sequence_number` (sequence ≤ 999999) and its default section
/// `base + 1000000`, with Application at 13000000 and Ethernet at 0. The bases of Emergency,
/// Infrastructure and Environment are the simulator's choice (unobserved), one million apart
/// below Application; a policy without category is lowest (reference §2.2), after the default
/// layer-3 section, at 15000000. DFW evaluation order follows this number.
pub const SEQUENCE_BASES: &[(&str, i64)] = &[
    ("Ethernet", 0),
    ("Emergency", 10_000_000),
    ("Infrastructure", 11_000_000),
    ("Environment", 12_000_000),
    ("Application", 13_000_000),
];
/// `internal_sequence_number` base of a policy without category.
pub const UNCATEGORISED_BASE: i64 = 15_000_000;
/// Offset of a category's default section from its base.
pub const DEFAULT_SECTION_OFFSET: i64 = 1_000_000;

/// A security policy and its rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct PolicyState {
    /// The policy without `rules`.
    pub policy: Obj,
    /// Rules by id.
    pub rules: BTreeMap<String, Obj>,
}

/// A service and its entries.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ServiceState {
    /// The service without `service_entries`.
    pub service: Obj,
    /// Entries by id.
    pub entries: BTreeMap<String, Obj>,
}

/// A domain with its groups and policies.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DomainState {
    /// The domain object.
    pub domain: Obj,
    /// Groups by id.
    pub groups: BTreeMap<String, Obj>,
    /// Policies by id.
    pub policies: BTreeMap<String, PolicyState>,
}

/// A VM of the simulated inventory (for effective membership and flow logs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    /// Display name.
    pub name: String,
    /// IP addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<crate::nsx::model::Tag>,
}

/// The whole intent state; this is what `/admin/state` dumps and loads.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Store {
    /// Domains by id.
    pub domains: BTreeMap<String, DomainState>,
    /// Services by id.
    pub services: BTreeMap<String, ServiceState>,
    /// Next rule id to hand out.
    pub next_rule_id: i64,
    /// VM inventory.
    #[serde(default)]
    pub vms: Vec<Vm>,
    /// Objects created by a principal identity (certificate user), by path: other users may
    /// change or delete them only with `X-Allow-Overwrite: true` (reference §3).
    #[serde(default)]
    pub protected: BTreeMap<String, String>,
    /// Deleted objects whose deletion is still pending, by path (reference §3).
    #[serde(default)]
    pub pending: BTreeMap<String, Pending>,
}

/// A deleted object NSX still holds as `marked_for_delete` until its realized entities are gone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Pending {
    /// Epoch milliseconds at which it is purged.
    pub until_ms: i64,
    /// The object as `GET ...?include_mark_for_delete_objects=true` shows it.
    pub object: Value,
}

/// How a write treats `_revision`.
#[derive(Clone, Copy, Debug)]
pub enum RevCheck {
    /// Ignore it (H-API without `enforce_revision_check`).
    Ignore,
    /// PUT: absent on an existing object → 400/500127; stale → 412.
    Put(Option<i64>),
    /// PATCH (or H-API with `enforce_revision_check`): checked when given.
    IfGiven(Option<i64>),
}

/// Whether an update merges fields or replaces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Top-level merge of the given fields.
    Merge,
    /// Full replace of the writable fields.
    Replace,
}

/// One write.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create or update a group.
    Group {
        /// Domain.
        domain: String,
        /// Id.
        id: String,
        /// Writable fields.
        body: Obj,
        /// Revision handling.
        rev: RevCheck,
        /// Merge or replace.
        mode: Mode,
    },
    /// Delete a group.
    DeleteGroup {
        /// Domain.
        domain: String,
        /// Id.
        id: String,
    },
    /// Create or update a policy (not its rules).
    Policy {
        /// Domain.
        domain: String,
        /// Id.
        id: String,
        /// Writable fields.
        body: Obj,
        /// Revision handling.
        rev: RevCheck,
        /// Merge or replace.
        mode: Mode,
        /// PUT: delete the rules not listed in `keep_rules`.
        replace_rules: Option<BTreeSet<String>>,
    },
    /// Delete a policy and its rules.
    DeletePolicy {
        /// Domain.
        domain: String,
        /// Id.
        id: String,
    },
    /// Create or update a rule.
    Rule {
        /// Domain.
        domain: String,
        /// Policy id.
        policy: String,
        /// Id.
        id: String,
        /// Writable fields.
        body: Obj,
        /// Revision handling.
        rev: RevCheck,
    },
    /// Delete a rule.
    DeleteRule {
        /// Domain.
        domain: String,
        /// Policy id.
        policy: String,
        /// Id.
        id: String,
    },
    /// Create or update a service; entries given are upserted (all replaced with `replace`).
    Service {
        /// Id.
        id: String,
        /// Writable fields without entries.
        body: Obj,
        /// Entries by id.
        entries: Vec<(String, Obj)>,
        /// Revision handling.
        rev: RevCheck,
        /// Merge or replace (replace also drops unlisted entries).
        mode: Mode,
    },
    /// Delete a service.
    DeleteService {
        /// Id.
        id: String,
    },
    /// Create a domain if absent.
    Domain {
        /// Id.
        id: String,
    },
}

/// Who writes and when.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// User name for `_create_user` / `_last_modified_user`.
    pub user: String,
    /// Epoch milliseconds.
    pub now_ms: i64,
    /// The user is a principal identity (client certificate): what it creates is protected.
    pub principal: bool,
    /// The request carries `X-Allow-Overwrite: true`.
    pub allow_overwrite: bool,
    /// How long a deleted object stays pending (0: purged at once).
    pub pending_delete_ms: i64,
}

/// A policy path.
pub fn group_path(domain: &str, id: &str) -> String {
    format!("/infra/domains/{domain}/groups/{id}")
}
/// A policy path.
pub fn policy_path(domain: &str, id: &str) -> String {
    format!("/infra/domains/{domain}/security-policies/{id}")
}
/// A policy path.
pub fn rule_path(domain: &str, policy: &str, id: &str) -> String {
    format!("{}/rules/{id}", policy_path(domain, policy))
}
/// A policy path.
pub fn service_path(id: &str) -> String {
    format!("/infra/services/{id}")
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// Whether a group path names an existing group.
    pub fn group_exists(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["", "infra", "domains", d, "groups", g] => self
                .domains
                .get(*d)
                .is_some_and(|dom| dom.groups.contains_key(*g)),
            _ => false,
        }
    }

    /// Whether a service path names an existing service.
    pub fn service_exists(&self, path: &str) -> bool {
        match path.strip_prefix("/infra/services/") {
            Some(id) if !id.contains('/') => self.services.contains_key(id),
            _ => false,
        }
    }

    /// A policy with its rules embedded (as GET returns it); rules ordered by sequence
    /// number, ties by id.
    pub fn policy_view(ps: &PolicyState, with_rules: bool) -> Value {
        let mut p = ps.policy.clone();
        if with_rules {
            let rules: Vec<Value> = Self::ordered_rules(ps)
                .into_iter()
                .map(|r| Value::Object(Self::rule_view(r)))
                .collect();
            p.insert("rules".into(), Value::Array(rules));
        }
        p.insert("children".into(), json!([]));
        Value::Object(p)
    }

    /// A rule as GET returns it.
    pub fn rule_view(r: &Obj) -> Obj {
        let mut r = r.clone();
        r.insert("children".into(), json!([]));
        r
    }

    /// Rules in evaluation order.
    pub fn ordered_rules(ps: &PolicyState) -> Vec<&Obj> {
        let mut rules: Vec<&Obj> = ps.rules.values().collect();
        rules.sort_by_key(|r| {
            (
                r.get("sequence_number")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                r.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        });
        rules
    }

    /// A service with its entries embedded.
    pub fn service_view(ss: &ServiceState) -> Value {
        let mut s = ss.service.clone();
        s.insert(
            "service_entries".into(),
            Value::Array(ss.entries.values().cloned().map(Value::Object).collect()),
        );
        s.insert("children".into(), json!([]));
        Value::Object(s)
    }

    /// A group as GET returns it.
    pub fn group_view(g: &Obj) -> Value {
        let mut g = g.clone();
        g.insert("children".into(), json!([]));
        Value::Object(g)
    }

    /// The object whose deletion is pending at `path` at `now_ms`, if any.
    pub fn pending_object(&self, path: &str, now_ms: i64) -> Option<&Value> {
        self.pending
            .get(path)
            .filter(|p| p.until_ms > now_ms)
            .map(|p| &p.object)
    }

    /// Objects of `kind` under `parent` whose deletion is pending at `now_ms`, by path.
    pub fn pending_children(&self, parent: &str, kind: &str, now_ms: i64) -> Vec<Value> {
        self.pending
            .values()
            .filter(|p| p.until_ms > now_ms)
            .map(|p| &p.object)
            .filter(|o| {
                o.get("parent_path").and_then(Value::as_str) == Some(parent)
                    && o.get("resource_type").and_then(Value::as_str) == Some(kind)
            })
            .cloned()
            .collect()
    }

    /// Every security policy of every domain, in DFW evaluation order (`internal_sequence_number`,
    /// i.e. category, default section last in its category, sequence number; then id), each with
    /// its rules in order.
    pub fn evaluation_order(&self) -> Vec<(&str, &PolicyState)> {
        let mut all: Vec<(&str, &PolicyState)> = self
            .domains
            .iter()
            .flat_map(|(d, dom)| dom.policies.values().map(move |p| (d.as_str(), p)))
            .collect();
        all.sort_by_key(|(_, ps)| {
            (
                policy_order(&ps.policy),
                ps.policy
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        });
        all
    }
}

#[cfg(test)]
mod tests;
