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

use std::collections::{BTreeMap, BTreeSet};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::errors::{Fail, api_error, invalid};
use super::validate::{self as v, Obj};
use crate::nsx::codes;
use crate::nsx::model::ApiError;

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

enum Undo {
    Group(String, String, Option<Obj>),
    Policy(String, String, Option<PolicyState>),
    Service(String, Option<ServiceState>),
    Domain(String, Option<DomainState>),
    NextRuleId(i64),
    Protected(String, Option<String>),
    Pending(String, Option<Pending>),
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

fn unique_id() -> String {
    uuid_text(rand::random())
}

/// A name-based (version-5 style) UUID: the same seed always gives the same id.
fn derived_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(b)
}

fn uuid_text(b: [u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Fills the read-only fields of a new or updated object.
fn stamp(
    mut obj: Obj,
    previous: Option<&Obj>,
    kind: &str,
    id: &str,
    path: String,
    parent: &str,
    ctx: &Ctx,
) -> Obj {
    obj.insert("resource_type".into(), json!(kind));
    obj.insert("id".into(), json!(id));
    if !obj.contains_key("display_name") {
        obj.insert("display_name".into(), json!(id));
    }
    obj.remove("_revision");
    let (rev, created, creator, uid) = match previous {
        Some(p) => (
            p.get("_revision").and_then(Value::as_i64).unwrap_or(0) + 1,
            p.get("_create_time").cloned().unwrap_or(json!(ctx.now_ms)),
            p.get("_create_user").cloned().unwrap_or(json!(ctx.user)),
            p.get("unique_id")
                .cloned()
                .unwrap_or_else(|| json!(unique_id())),
        ),
        None => (0, json!(ctx.now_ms), json!(ctx.user), json!(unique_id())),
    };
    obj.insert("path".into(), json!(path));
    obj.insert("parent_path".into(), json!(parent));
    obj.insert("relative_path".into(), json!(id));
    obj.insert("realization_id".into(), uid.clone());
    obj.insert("unique_id".into(), uid);
    // NSX 4.x (reference §11a): the local site owns every object; `remote_path` is empty.
    obj.insert("owner_id".into(), json!(SITE_ID));
    obj.insert("origin_site_id".into(), json!(SITE_ID));
    obj.insert("remote_path".into(), json!(""));
    obj.insert("marked_for_delete".into(), json!(false));
    obj.insert("overridden".into(), json!(false));
    obj.insert("_revision".into(), json!(rev));
    obj.insert("_create_time".into(), created);
    obj.insert("_create_user".into(), creator);
    obj.insert("_last_modified_time".into(), json!(ctx.now_ms));
    obj.insert("_last_modified_user".into(), json!(ctx.user));
    obj.insert("_protection".into(), json!("NOT_PROTECTED"));
    obj.insert("_system_owned".into(), json!(false));
    obj
}

fn check_rev(path: &str, current: Option<&Obj>, rev: RevCheck) -> Result<(), Fail> {
    let Some(current) = current else {
        return Ok(());
    };
    let have = current
        .get("_revision")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let given = match rev {
        RevCheck::Ignore => return Ok(()),
        RevCheck::Put(None) => {
            return Err(Fail::bad(
                codes::EXISTS,
                format!("Cannot create an object with path=[{path}] as it already exists."),
            ));
        }
        RevCheck::Put(Some(r)) | RevCheck::IfGiven(Some(r)) => r,
        RevCheck::IfGiven(None) => return Ok(()),
    };
    if given != have {
        return Err(Fail {
            status: StatusCode::PRECONDITION_FAILED,
            body: Box::new(api_error(
                StatusCode::PRECONDITION_FAILED,
                codes::REVISION,
                "Policy",
                format!(
                    "Object _revision mismatch! (current: {have}, requested: {given}). Fetch the latest copy of the object and retry!"
                ),
            )),
        });
    }
    Ok(())
}

fn merged(previous: Option<&Obj>, body: Obj, mode: Mode) -> Obj {
    match (previous, mode) {
        (Some(p), Mode::Merge) => {
            let mut out = v::writable(p);
            for (k, val) in body {
                out.insert(k, val);
            }
            out
        }
        _ => body,
    }
}

fn is_system(obj: &Obj) -> bool {
    obj.get("_system_owned").and_then(Value::as_bool) == Some(true)
        || obj.get("is_default").and_then(Value::as_bool) == Some(true)
}

fn read_only(path: &str) -> Fail {
    Fail::bad(
        codes::READ_ONLY,
        format!(
            "The object path=[{path}] is a system-owned default object and cannot be modified or deleted."
        ),
    )
}

/// Fills the defaults of a missing or null field.
fn fill(obj: &mut Obj, defaults: impl IntoIterator<Item = (&'static str, Value)>) {
    for (k, val) in defaults {
        if obj.get(k).is_none_or(Value::is_null) {
            obj.insert(k.into(), val);
        }
    }
}

/// `[]` reads back as `["ANY"]` in the applied-to and service lists: the same meaning.
fn empty_is_any(obj: &mut Obj, keys: &[&str]) {
    for k in keys {
        if obj
            .get(*k)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            obj.insert((*k).into(), json!(["ANY"]));
        }
    }
}

/// A rule as a real manager stores it (reference §11a "Rule defaults"): `scope`, `profiles`
/// ANY, `ip_protocol` IPV4_IPV6 (absent in a layer-2, Ethernet, policy), `direction` IN_OUT, the
/// flags false, `sequence_number` 0, `is_default` false; `tag`, `notes` and `description` stay absent when not written. A rule
/// with no service paths (absent or `[]`) reads `services: ["ANY"]`, also beside inline
/// entries (§11a "Services beside inline entries"), where it still means "only the entries'
/// traffic" (see `inventory::service_matches`).
fn rule_defaults(mut obj: Obj, layer2: bool) -> Obj {
    if !layer2 {
        fill(&mut obj, [("ip_protocol", json!("IPV4_IPV6"))]);
    }
    fill(
        &mut obj,
        [
            ("action", json!("ALLOW")),
            ("source_groups", json!(["ANY"])),
            ("destination_groups", json!(["ANY"])),
            ("services", json!(["ANY"])),
            ("profiles", json!(["ANY"])),
            ("scope", json!(["ANY"])),
            ("direction", json!("IN_OUT")),
            ("logged", json!(false)),
            ("disabled", json!(false)),
            ("sources_excluded", json!(false)),
            ("destinations_excluded", json!(false)),
            ("sequence_number", json!(0)),
            ("is_default", json!(false)),
        ],
    );
    empty_is_any(&mut obj, &["services", "profiles", "scope"]);
    if let Some(Value::Array(entries)) = obj.get_mut("service_entries") {
        for e in entries.iter_mut() {
            if let Value::Object(o) = e {
                *e = Value::Object(inline_entry(o));
            }
        }
    }
    obj
}

/// An inline service entry as GET returns it (reference §11a): `marked_for_delete: false`,
/// `overridden: false`, `_protection`, no `path` (nor the other read-only fields an echo may
/// carry); an entry written without `id` has none. `display_name` is dropped, as NSX-T up to
/// 3.2 does (the only observation; whether 4.x keeps it is unknown).
fn inline_entry(e: &Obj) -> Obj {
    let mut out = v::writable(e);
    out.remove("_revision");
    out.remove("display_name");
    out.insert("marked_for_delete".into(), json!(false));
    out.insert("overridden".into(), json!(false));
    out.insert("_protection".into(), json!("NOT_PROTECTED"));
    out
}

/// A security policy as a real manager stores it (reference §11a "SecurityPolicy defaults",
/// NSX-T 3.2 dump): `scope: ["ANY"]`, `stateful: true`, `tcp_strict` = `stateful` when not
/// written (true for a stateful policy, false for a stateless one), `locked: false`,
/// `lock_modified_time: 0`, `logging_enabled: false`, `is_default: false`, `sequence_number`
/// 0, and the read-only `internal_sequence_number`.
fn policy_defaults(mut obj: Obj) -> Obj {
    fill(
        &mut obj,
        [
            ("sequence_number", json!(0)),
            ("stateful", json!(true)),
            ("scope", json!(["ANY"])),
            ("locked", json!(false)),
            ("lock_modified_time", json!(0)),
            ("logging_enabled", json!(false)),
            ("is_default", json!(false)),
        ],
    );
    let stateful = obj.get("stateful").and_then(Value::as_bool) != Some(false);
    fill(&mut obj, [("tcp_strict", json!(stateful))]);
    empty_is_any(&mut obj, &["scope"]);
    set_internal_sequence(&mut obj);
    obj
}

/// Global DFW order of a policy, see [`SEQUENCE_BASES`].
pub fn internal_sequence_number(category: &str, sequence: i64, is_default: bool) -> i64 {
    let base = SEQUENCE_BASES
        .iter()
        .find(|(c, _)| *c == category)
        .map_or(UNCATEGORISED_BASE, |(_, b)| *b);
    if is_default {
        base + DEFAULT_SECTION_OFFSET
    } else {
        base + sequence.clamp(0, DEFAULT_SECTION_OFFSET - 1)
    }
}

/// The `internal_sequence_number` a policy object's fields give.
fn policy_order(p: &Obj) -> i64 {
    internal_sequence_number(
        p.get("category").and_then(Value::as_str).unwrap_or(""),
        p.get("sequence_number")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        p.get("is_default").and_then(Value::as_bool) == Some(true),
    )
}

fn set_internal_sequence(p: &mut Obj) {
    let n = policy_order(p);
    p.insert("internal_sequence_number".into(), json!(n));
}

/// A group as a real manager stores it (reference §11a "Group expressions", §2.4): every
/// expression element (order kept, values verbatim) gains `id`, `path`, `relative_path`,
/// `parent_path`, `marked_for_delete`, `overridden` and `_protection`; a `Condition` without
/// `scope_operator` gains `EQUALS`; the group gains `extended_expression: []` and
/// `reference: false`.
fn group_defaults(mut obj: Obj, path: &str) -> Obj {
    if let Some(Value::Array(items)) = obj.get_mut("expression") {
        shape_expressions(items, path, "");
    }
    fill(&mut obj, [("extended_expression", json!([]))]);
    obj.insert("reference".into(), json!(false));
    obj
}

/// Path segment of an expression kind under its group (`<group>/<segment>/<id>`).
fn expression_segment(kind: &str) -> &'static str {
    match kind {
        "Condition" => "condition-expressions",
        "ConjunctionOperator" => "conjunction-expressions",
        "IPAddressExpression" => "ip-address-expressions",
        "PathExpression" => "path-expressions",
        "ExternalIDExpression" => "external-id-expressions",
        "MACAddressExpression" => "mac-address-expressions",
        "NestedExpression" => "nested-expressions",
        _ => "expressions",
    }
}

/// Shapes expression elements in place. An element keeps the id it is written with (an echo of
/// a GET keeps its ids); one without gets an id derived from the group path, its kind and its
/// position, so PATCHing the same expression again yields the same ids and repeated GETs are
/// identical (a real manager keeps the ids of unchanged expressions). The elements of a
/// `NestedExpression` are shaped the same way, their position prefixed with the nested one's,
/// and hang under the group too (unverified).
fn shape_expressions(items: &mut [Value], group: &str, prefix: &str) {
    for (i, item) in items.iter_mut().enumerate() {
        let Value::Object(e) = item else { continue };
        let mut out = v::writable(e);
        out.remove("_revision");
        let kind = out
            .get("resource_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let position = format!("{prefix}{i}");
        if kind == "Condition" {
            fill(&mut out, [("scope_operator", json!("EQUALS"))]);
        }
        if let Some(Value::Array(inner)) = out.get_mut("expressions") {
            shape_expressions(inner, group, &format!("{position}."));
        }
        let id = match out.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => derived_uuid(&format!("{group}|{kind}|{position}")),
        };
        out.insert("id".into(), json!(id));
        out.insert(
            "path".into(),
            json!(format!("{group}/{}/{id}", expression_segment(&kind))),
        );
        out.insert("relative_path".into(), json!(id));
        out.insert("parent_path".into(), json!(group));
        out.insert("marked_for_delete".into(), json!(false));
        out.insert("overridden".into(), json!(false));
        out.insert("_protection".into(), json!("NOT_PROTECTED"));
        *item = Value::Object(out);
    }
}

/// A write to an editable default rule (reference §11a and §8: users set the default rule to
/// DROP and log it): the fields of [`DEFAULT_RULE_EDITABLE`] change, every other field given
/// must keep its value (an echo of a GET is fine), fields not given keep theirs.
fn default_rule_edit(prev: &Obj, body: Obj, path: &str) -> Result<Obj, Fail> {
    let mut out = v::writable(prev);
    let mut given = body;
    empty_is_any(&mut given, &["services", "profiles", "scope"]);
    for (k, val) in given {
        if DEFAULT_RULE_EDITABLE.contains(&k.as_str()) {
            out.insert(k, val);
        } else if !matches!(k.as_str(), "_revision" | "resource_type" | "id")
            && prev.get(&k) != Some(&val)
        {
            return Err(Fail::bad(
                codes::READ_ONLY,
                format!(
                    "Field {k} of the default rule path=[{path}] cannot be modified; only {} can.",
                    DEFAULT_RULE_EDITABLE.join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

fn pending_delete(path: &str) -> Fail {
    Fail::bad(
        codes::PENDING_DELETE,
        format!(
            "Cannot create an object with path=[{path}] as it is marked for deletion. Retry once the deletion is complete."
        ),
    )
}

/// Sets `marked_for_delete: true` on an object and the objects embedded in it.
fn mark_deleted(v: &mut Value) {
    if let Value::Object(o) = v {
        o.insert("marked_for_delete".into(), json!(true));
        for key in ["rules", "service_entries"] {
            if let Some(Value::Array(items)) = o.get_mut(key) {
                items.iter_mut().for_each(mark_deleted);
            }
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// A fresh manager: domain `default`, its default L2/L3 policies and the default services.
    pub fn new() -> Self {
        let ctx = Ctx {
            user: "system".into(),
            now_ms: 0,
            principal: false,
            allow_overwrite: false,
            pending_delete_ms: 0,
        };
        let mut store = Store {
            domains: BTreeMap::new(),
            services: BTreeMap::new(),
            next_rule_id: FIRST_RULE_ID,
            vms: Vec::new(),
            protected: BTreeMap::new(),
            pending: BTreeMap::new(),
        };
        let domain = stamp(
            Obj::new(),
            None,
            "Domain",
            "default",
            "/infra/domains/default".into(),
            "/infra",
            &ctx,
        );
        let mut d = DomainState {
            domain,
            ..DomainState::default()
        };
        let sys = |mut o: Obj| {
            o.insert("_system_owned".into(), json!(true));
            o.insert("is_default".into(), json!(true));
            o.insert("_create_user".into(), json!("system"));
            o
        };
        for (pid, category, stateful, rules) in [
            (
                "default-layer3-section",
                "Application",
                true,
                vec![
                    ("default_rule_NDP", 3, 25000, "IPV6"),
                    ("default_rule_DHCP", 4, 50000, "IPV4_IPV6"),
                    ("default-layer3-rule", 2, 2_147_483_647, "IPV4_IPV6"),
                ],
            ),
            (
                "default-layer2-section",
                "Ethernet",
                false,
                vec![("default-layer2-rule", 1, 2_147_483_647, "")],
            ),
        ] {
            let mut p = Obj::new();
            p.insert("category".into(), json!(category));
            p.insert("stateful".into(), json!(stateful));
            p.insert("sequence_number".into(), json!(0));
            p.insert("scope".into(), json!(["ANY"]));
            let path = policy_path("default", pid);
            let mut policy = sys(stamp(
                policy_defaults(p),
                None,
                "SecurityPolicy",
                pid,
                path.clone(),
                "/infra/domains/default",
                &ctx,
            ));
            set_internal_sequence(&mut policy);
            let mut ps = PolicyState {
                policy,
                rules: BTreeMap::new(),
            };
            for (rid, num, seq, proto) in rules {
                let mut r = rule_defaults(Obj::new(), category == "Ethernet");
                r.insert("sequence_number".into(), json!(seq));
                let services = match rid {
                    "default_rule_NDP" => {
                        json!(["/infra/services/IPv6-ICMP_Neighbor_Solicitation"])
                    }
                    "default_rule_DHCP" => {
                        json!(["/infra/services/DHCP-Server", "/infra/services/DHCP-Client"])
                    }
                    _ => json!(["ANY"]),
                };
                r.insert("services".into(), services);
                if proto.is_empty() {
                    r.remove("ip_protocol");
                } else {
                    r.insert("ip_protocol".into(), json!(proto));
                }
                if rid == "default-layer3-rule" {
                    // Observed display name (reference §2.3).
                    r.insert("display_name".into(), json!("Default Layer3 Rule"));
                }
                let mut r = sys(stamp(
                    r,
                    None,
                    "Rule",
                    rid,
                    rule_path("default", pid, rid),
                    &path,
                    &ctx,
                ));
                r.insert("rule_id".into(), json!(num));
                ps.rules.insert(rid.to_string(), r);
            }
            d.policies.insert(pid.to_string(), ps);
        }
        store.domains.insert("default".into(), d);
        let services: &[(&str, &str, &[&str])] = &[
            ("HTTP", "TCP", &["80"]),
            ("HTTPS", "TCP", &["443"]),
            ("SSH", "TCP", &["22"]),
            ("RDP", "TCP", &["3389"]),
            ("DNS", "TCP", &["53"]),
            ("DNS-UDP", "UDP", &["53"]),
            ("NTP", "UDP", &["123"]),
            ("LDAP", "TCP", &["389"]),
            ("MySQL", "TCP", &["3306"]),
            ("DHCP-Server", "UDP", &["67"]),
            ("DHCP-Client", "UDP", &["68"]),
        ];
        for (id, proto, ports) in services {
            let mut s = Obj::new();
            s.insert("service_type".into(), json!("NON_ETHER"));
            let path = service_path(id);
            let service = sys(stamp(s, None, "Service", id, path.clone(), "/infra", &ctx));
            let eid = format!("{id}-{}", proto.to_ascii_lowercase());
            let mut e = Obj::new();
            e.insert("l4_protocol".into(), json!(proto));
            e.insert("source_ports".into(), json!([]));
            e.insert("destination_ports".into(), json!(ports));
            let entry = sys(stamp(
                e,
                None,
                "L4PortSetServiceEntry",
                &eid,
                format!("{path}/service-entries/{eid}"),
                &path,
                &ctx,
            ));
            let mut entries = BTreeMap::new();
            entries.insert(eid, entry);
            store
                .services
                .insert((*id).to_string(), ServiceState { service, entries });
        }
        let mut icmp = Obj::new();
        icmp.insert("service_type".into(), json!("NON_ETHER"));
        let path = service_path("IPv6-ICMP_Neighbor_Solicitation");
        let service = sys(stamp(
            icmp,
            None,
            "Service",
            "IPv6-ICMP_Neighbor_Solicitation",
            path.clone(),
            "/infra",
            &ctx,
        ));
        let mut e = Obj::new();
        e.insert("protocol".into(), json!("ICMPv6"));
        e.insert("icmp_type".into(), json!(135));
        let entry = sys(stamp(
            e,
            None,
            "ICMPTypeServiceEntry",
            "ICMPv6-NS",
            format!("{path}/service-entries/ICMPv6-NS"),
            &path,
            &ctx,
        ));
        store.services.insert(
            "IPv6-ICMP_Neighbor_Solicitation".into(),
            ServiceState {
                service,
                entries: BTreeMap::from([("ICMPv6-NS".to_string(), entry)]),
            },
        );
        store
    }

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

    /// Keeps a deleted object as pending for `ctx.pending_delete_ms` (journaled).
    fn mark_pending(
        &mut self,
        path: String,
        mut object: Value,
        ctx: &Ctx,
        journal: &mut Vec<Undo>,
    ) {
        if ctx.pending_delete_ms <= 0 {
            return;
        }
        mark_deleted(&mut object);
        journal.push(Undo::Pending(
            path.clone(),
            self.pending.get(&path).cloned(),
        ));
        self.pending.insert(
            path,
            Pending {
                until_ms: ctx.now_ms.saturating_add(ctx.pending_delete_ms),
                object,
            },
        );
    }

    /// Applies `ops` atomically.
    pub fn transact(&mut self, ops: Vec<Op>, ctx: &Ctx) -> Result<(), Fail> {
        // Deletions whose time is up are complete (purged; nothing to undo).
        self.pending.retain(|_, p| p.until_ms > ctx.now_ms);
        let mut journal = Vec::new();
        let mut touched_policies = BTreeSet::new();
        let mut touched_groups = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        let mut result = Ok(());
        for op in ops {
            let target = self.target(&op);
            let deleting = matches!(
                op,
                Op::DeleteGroup { .. }
                    | Op::DeletePolicy { .. }
                    | Op::DeleteRule { .. }
                    | Op::DeleteService { .. }
            );
            if let Some((path, exists)) = &target
                && *exists
                && let Err(e) = self.guard(path, ctx)
            {
                result = Err(e);
                break;
            }
            // A rule deleted from a policy that stays goes with the policy's next section update
            // and does not block its path; a group, policy or service does until purged.
            if let Some((path, false)) = &target
                && !deleting
                && !matches!(op, Op::Rule { .. })
                && self.pending.contains_key(path)
            {
                result = Err(pending_delete(path));
                break;
            }
            if let Some((path, exists)) = target {
                self.track(
                    path,
                    !exists && !deleting,
                    deleting && exists,
                    ctx,
                    &mut journal,
                );
            }
            if let Err(e) = self.apply(
                op,
                ctx,
                &mut journal,
                &mut touched_policies,
                &mut touched_groups,
                &mut deleted,
            ) {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            let errs = self.check_references(&touched_policies, &touched_groups, &deleted);
            if let Some(f) = Fail::from_errors(errs) {
                result = Err(f);
            }
        }
        if result.is_err() {
            self.rollback(journal);
        }
        result
    }

    fn rollback(&mut self, journal: Vec<Undo>) {
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Group(d, id, prev) => {
                    if let Some(dom) = self.domains.get_mut(&d) {
                        match prev {
                            Some(p) => {
                                dom.groups.insert(id, p);
                            }
                            None => {
                                dom.groups.remove(&id);
                            }
                        }
                    }
                }
                Undo::Policy(d, id, prev) => {
                    if let Some(dom) = self.domains.get_mut(&d) {
                        match prev {
                            Some(p) => {
                                dom.policies.insert(id, p);
                            }
                            None => {
                                dom.policies.remove(&id);
                            }
                        }
                    }
                }
                Undo::Service(id, prev) => match prev {
                    Some(s) => {
                        self.services.insert(id, s);
                    }
                    None => {
                        self.services.remove(&id);
                    }
                },
                Undo::Domain(id, prev) => match prev {
                    Some(d) => {
                        self.domains.insert(id, d);
                    }
                    None => {
                        self.domains.remove(&id);
                    }
                },
                Undo::NextRuleId(n) => self.next_rule_id = n,
                Undo::Protected(path, prev) => match prev {
                    Some(owner) => {
                        self.protected.insert(path, owner);
                    }
                    None => {
                        self.protected.remove(&path);
                    }
                },
                Undo::Pending(path, prev) => match prev {
                    Some(p) => {
                        self.pending.insert(path, p);
                    }
                    None => {
                        self.pending.remove(&path);
                    }
                },
            }
        }
    }

    fn domain_mut(&mut self, d: &str) -> Result<&mut DomainState, Fail> {
        self.domains
            .get_mut(d)
            .ok_or_else(|| Fail::not_found(&format!("/infra/domains/{d}")))
    }

    /// Refuses a change to an object another principal identity created, unless the request
    /// says `X-Allow-Overwrite: true` (403 assumed: the reference leaves the status open).
    fn guard(&self, path: &str, ctx: &Ctx) -> Result<(), Fail> {
        match self.protected.get(path) {
            Some(owner) if *owner != ctx.user && !ctx.allow_overwrite => Err(Fail::new(
                StatusCode::FORBIDDEN,
                codes::PROTECTED,
                "Policy",
                format!(
                    "The object path=[{path}] is owned by principal identity {owner} and is protected; set X-Allow-Overwrite: true to modify it."
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Records who owns a created object, or forgets a deleted one (journaled).
    fn track(
        &mut self,
        path: String,
        created: bool,
        deleted: bool,
        ctx: &Ctx,
        journal: &mut Vec<Undo>,
    ) {
        if created && ctx.principal {
            journal.push(Undo::Protected(
                path.clone(),
                self.protected.get(&path).cloned(),
            ));
            self.protected.insert(path, ctx.user.clone());
        } else if deleted && self.protected.contains_key(&path) {
            journal.push(Undo::Protected(
                path.clone(),
                self.protected.get(&path).cloned(),
            ));
            self.protected.remove(&path);
        }
    }

    /// The path an operation writes, and whether the object exists before it.
    fn target(&self, op: &Op) -> Option<(String, bool)> {
        let dom = |d: &str| self.domains.get(d);
        Some(match op {
            Op::Domain { .. } => return None,
            Op::Group { domain, id, .. } | Op::DeleteGroup { domain, id } => (
                group_path(domain, id),
                dom(domain).is_some_and(|x| x.groups.contains_key(id)),
            ),
            Op::Policy { domain, id, .. } | Op::DeletePolicy { domain, id } => (
                policy_path(domain, id),
                dom(domain).is_some_and(|x| x.policies.contains_key(id)),
            ),
            Op::Rule {
                domain, policy, id, ..
            }
            | Op::DeleteRule { domain, policy, id } => (
                rule_path(domain, policy, id),
                dom(domain)
                    .and_then(|x| x.policies.get(policy))
                    .is_some_and(|p| p.rules.contains_key(id)),
            ),
            Op::Service { id, .. } | Op::DeleteService { id } => {
                (service_path(id), self.services.contains_key(id))
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        op: Op,
        ctx: &Ctx,
        journal: &mut Vec<Undo>,
        touched_policies: &mut BTreeSet<(String, String)>,
        touched_groups: &mut BTreeSet<(String, String)>,
        deleted: &mut BTreeSet<String>,
    ) -> Result<(), Fail> {
        match op {
            Op::Domain { id } => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.domains.entry(id.clone())
                {
                    journal.push(Undo::Domain(id.clone(), None));
                    let domain = stamp(
                        Obj::new(),
                        None,
                        "Domain",
                        &id,
                        format!("/infra/domains/{id}"),
                        "/infra",
                        ctx,
                    );
                    slot.insert(DomainState {
                        domain,
                        ..DomainState::default()
                    });
                }
            }
            Op::Group {
                domain,
                id,
                body,
                rev,
                mode,
            } => {
                let path = group_path(&domain, &id);
                let dom = self.domain_mut(&domain)?;
                let prev = dom.groups.get(&id).cloned();
                check_rev(&path, prev.as_ref(), rev)?;
                let obj = group_defaults(merged(prev.as_ref(), body, mode), &path);
                let obj = stamp(
                    obj,
                    prev.as_ref(),
                    "Group",
                    &id,
                    path,
                    &format!("/infra/domains/{domain}"),
                    ctx,
                );
                dom.groups.insert(id.clone(), obj);
                journal.push(Undo::Group(domain.clone(), id.clone(), prev));
                touched_groups.insert((domain, id));
            }
            Op::DeleteGroup { domain, id } => {
                let Some(dom) = self.domains.get_mut(&domain) else {
                    return Ok(());
                };
                if let Some(prev) = dom.groups.remove(&id) {
                    let view = Self::group_view(&prev);
                    journal.push(Undo::Group(domain.clone(), id.clone(), Some(prev)));
                    let path = group_path(&domain, &id);
                    deleted.insert(path.clone());
                    self.mark_pending(path, view, ctx, journal);
                }
            }
            Op::Policy {
                domain,
                id,
                body,
                rev,
                mode,
                replace_rules,
            } => {
                let path = policy_path(&domain, &id);
                let dom = self.domain_mut(&domain)?;
                let prev = dom.policies.get(&id).cloned();
                if let Some(p) = &prev
                    && is_system(&p.policy)
                {
                    return Err(read_only(&path));
                }
                check_rev(&path, prev.as_ref().map(|p| &p.policy), rev)?;
                let obj = policy_defaults(merged(prev.as_ref().map(|p| &p.policy), body, mode));
                let policy = stamp(
                    obj,
                    prev.as_ref().map(|p| &p.policy),
                    "SecurityPolicy",
                    &id,
                    path,
                    &format!("/infra/domains/{domain}"),
                    ctx,
                );
                let mut rules = prev.as_ref().map(|p| p.rules.clone()).unwrap_or_default();
                if let Some(keep) = replace_rules {
                    rules.retain(|rid, _| keep.contains(rid));
                }
                dom.policies
                    .insert(id.clone(), PolicyState { policy, rules });
                journal.push(Undo::Policy(domain.clone(), id.clone(), prev));
                touched_policies.insert((domain, id));
            }
            Op::DeletePolicy { domain, id } => {
                let path = policy_path(&domain, &id);
                let Some(dom) = self.domains.get_mut(&domain) else {
                    return Ok(());
                };
                if let Some(prev) = dom.policies.get(&id) {
                    if is_system(&prev.policy) {
                        return Err(read_only(&path));
                    }
                    let prev = dom.policies.remove(&id);
                    if let Some(ps) = &prev {
                        for (rid, r) in &ps.rules {
                            let view = Value::Object(Self::rule_view(r));
                            self.mark_pending(rule_path(&domain, &id, rid), view, ctx, journal);
                        }
                        self.mark_pending(path, Self::policy_view(ps, true), ctx, journal);
                    }
                    journal.push(Undo::Policy(domain, id, prev));
                }
            }
            Op::Rule {
                domain,
                policy,
                id,
                body,
                rev,
            } => {
                let path = rule_path(&domain, &policy, &id);
                let ppath = policy_path(&domain, &policy);
                let next = self.next_rule_id;
                let dom = self.domain_mut(&domain)?;
                let Some(ps) = dom.policies.get_mut(&policy) else {
                    return Err(Fail::not_found(&ppath));
                };
                if is_system(&ps.policy) && !ps.rules.contains_key(&id) {
                    return Err(read_only(&ppath));
                }
                let before = ps.clone();
                let prev = ps.rules.get(&id).cloned();
                let mut body = body;
                if let Some(p) = &prev
                    && is_system(p)
                {
                    let editable = p
                        .get("rule_id")
                        .and_then(Value::as_i64)
                        .is_some_and(|n| EDITABLE_DEFAULT_RULES.contains(&n));
                    if !editable {
                        return Err(read_only(&path));
                    }
                    body = default_rule_edit(p, body, &path)?;
                }
                check_rev(&path, prev.as_ref(), rev)?;
                let layer2 = ps.policy.get("category").and_then(Value::as_str) == Some("Ethernet");
                let mut obj = stamp(
                    rule_defaults(body, layer2),
                    prev.as_ref(),
                    "Rule",
                    &id,
                    path,
                    &ppath,
                    ctx,
                );
                let rule_id = match prev.as_ref().and_then(|p| p.get("rule_id")) {
                    Some(n) => n.clone(),
                    None => json!(next),
                };
                if let Some(p) = &prev {
                    for k in ["is_default", "_system_owned"] {
                        if let Some(val) = p.get(k) {
                            obj.insert(k.into(), val.clone());
                        }
                    }
                }
                obj.insert("rule_id".into(), rule_id);
                let rpath = obj
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                ps.rules.insert(id, obj);
                journal.push(Undo::Policy(domain.clone(), policy.clone(), Some(before)));
                if prev.is_none() {
                    journal.push(Undo::NextRuleId(next));
                    self.next_rule_id = next + 1;
                    // A pending delete of the same rule is superseded by the new rule.
                    if let Some(old) = self.pending.remove(&rpath) {
                        journal.push(Undo::Pending(rpath, Some(old)));
                    }
                }
                touched_policies.insert((domain, policy));
            }
            Op::DeleteRule { domain, policy, id } => {
                let ppath = policy_path(&domain, &policy);
                let Some(dom) = self.domains.get_mut(&domain) else {
                    return Ok(());
                };
                let Some(ps) = dom.policies.get_mut(&policy) else {
                    return Ok(());
                };
                if let Some(r) = ps.rules.get(&id) {
                    if is_system(r) {
                        return Err(read_only(&format!("{ppath}/rules/{id}")));
                    }
                    let view = Value::Object(Self::rule_view(r));
                    let before = ps.clone();
                    ps.rules.remove(&id);
                    journal.push(Undo::Policy(domain.clone(), policy.clone(), Some(before)));
                    self.mark_pending(rule_path(&domain, &policy, &id), view, ctx, journal);
                }
            }
            Op::Service {
                id,
                body,
                entries,
                rev,
                mode,
            } => {
                let path = service_path(&id);
                let prev = self.services.get(&id).cloned();
                if let Some(p) = &prev
                    && is_system(&p.service)
                {
                    return Err(read_only(&path));
                }
                check_rev(&path, prev.as_ref().map(|p| &p.service), rev)?;
                let obj = merged(prev.as_ref().map(|p| &p.service), body, mode);
                let service = stamp(
                    obj,
                    prev.as_ref().map(|p| &p.service),
                    "Service",
                    &id,
                    path.clone(),
                    "/infra",
                    ctx,
                );
                let mut all = match (&prev, mode) {
                    (Some(p), Mode::Merge) => p.entries.clone(),
                    _ => BTreeMap::new(),
                };
                for (eid, e) in entries {
                    let kind = e
                        .get("resource_type")
                        .and_then(Value::as_str)
                        .unwrap_or("L4PortSetServiceEntry")
                        .to_string();
                    let old = prev.as_ref().and_then(|p| p.entries.get(&eid));
                    let stamped = stamp(
                        e,
                        old,
                        &kind,
                        &eid,
                        format!("{path}/service-entries/{eid}"),
                        &path,
                        ctx,
                    );
                    all.insert(eid, stamped);
                }
                self.services.insert(
                    id.clone(),
                    ServiceState {
                        service,
                        entries: all,
                    },
                );
                journal.push(Undo::Service(id, prev));
            }
            Op::DeleteService { id } => {
                if let Some(prev) = self.services.get(&id) {
                    if is_system(&prev.service) {
                        return Err(read_only(&service_path(&id)));
                    }
                    let prev = self.services.remove(&id);
                    if let Some(ss) = &prev {
                        self.mark_pending(service_path(&id), Self::service_view(ss), ctx, journal);
                    }
                    journal.push(Undo::Service(id.clone(), prev));
                    deleted.insert(service_path(&id));
                }
            }
        }
        Ok(())
    }

    /// After a transaction: every path that touched objects refer to exists, and nothing still
    /// refers to a deleted object.
    fn check_references(
        &self,
        policies: &BTreeSet<(String, String)>,
        groups: &BTreeSet<(String, String)>,
        deleted: &BTreeSet<String>,
    ) -> Vec<ApiError> {
        let mut errs = Vec::new();
        let bad_path = |owner: &str, field: &str, p: &str| {
            api_error(
                StatusCode::BAD_REQUEST,
                codes::INVALID_PATH,
                "Policy",
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
                errs.push(api_error(
                    StatusCode::BAD_REQUEST,
                    codes::IN_USE,
                    "Policy",
                    format!(
                        "The object path=[{p}] cannot be deleted as either it has children or it is being referenced by other objects path=[{}].",
                        users.join(",")
                    ),
                ));
            }
        }
        errs
    }

    /// For each of `targets`, the paths of the objects that still refer to it.
    fn referrers(&self, targets: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
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
                        v::strict(c, false, &[v::REFERENCE], &mut errs);
                        if c.get("target_type").and_then(Value::as_str) != Some("Domain") {
                            errs.push(invalid(
                                "ChildResourceReference under Infra must have target_type Domain.",
                            ));
                            continue;
                        }
                        let id = c
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if !self.domains.contains_key(&id) {
                            errs.push(api_error(
                                StatusCode::BAD_REQUEST,
                                codes::INVALID_PATH,
                                "Policy",
                                format!("The path=[/infra/domains/{id}] is invalid"),
                            ));
                            continue;
                        }
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
                v::strict(c, false, &[v::WRAPPER, &["Group"]], errs);
                let Some(g) = c.get("Group").and_then(Value::as_object) else {
                    errs.push(invalid("ChildGroup requires the Group property."));
                    return;
                };
                let id = wrapper_id(c, g, "Group", errs);
                if flag(c, "marked_for_delete") {
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
                let (id, p, modify) = if rt == "ChildSecurityPolicy" {
                    v::strict(c, false, &[v::WRAPPER, &["SecurityPolicy"]], errs);
                    let Some(p) = c.get("SecurityPolicy").and_then(Value::as_object) else {
                        errs.push(invalid(
                            "ChildSecurityPolicy requires the SecurityPolicy property.",
                        ));
                        return;
                    };
                    (wrapper_id(c, p, "SecurityPolicy", errs), p, true)
                } else {
                    v::strict(c, false, &[v::REFERENCE], errs);
                    if c.get("target_type").and_then(Value::as_str) != Some("SecurityPolicy") {
                        errs.push(invalid(
                            "ChildResourceReference under Domain must have target_type SecurityPolicy.",
                        ));
                        return;
                    }
                    let id = c
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if !self
                        .domains
                        .get(domain)
                        .is_some_and(|d| d.policies.contains_key(&id))
                    {
                        errs.push(api_error(
                            StatusCode::BAD_REQUEST,
                            codes::INVALID_PATH,
                            "Policy",
                            format!("The path=[{}] is invalid", policy_path(domain, &id)),
                        ));
                        return;
                    }
                    (id, c, false)
                };
                if modify && flag(c, "marked_for_delete") {
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
                    for r in array(p, "rules", errs) {
                        let Some(r) = v::as_obj(r, "a rule", errs) else {
                            continue;
                        };
                        let rid = r
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        v::check_rule(r, &rid, errs);
                        *count += 1;
                        ops.push(Op::Rule {
                            domain: domain.into(),
                            policy: id.clone(),
                            id: rid,
                            body: v::writable(r),
                            rev: rev(r, errs),
                        });
                    }
                }
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
                    v::strict(rc, false, &[v::WRAPPER, &["Rule"]], errs);
                    let Some(r) = rc.get("Rule").and_then(Value::as_object) else {
                        errs.push(invalid("ChildRule requires the Rule property."));
                        continue;
                    };
                    let rid = wrapper_id(rc, r, "Rule", errs);
                    if flag(rc, "marked_for_delete") {
                        ops.push(Op::DeleteRule {
                            domain: domain.into(),
                            policy: id.clone(),
                            id: rid,
                        });
                        continue;
                    }
                    v::check_rule(r, &rid, errs);
                    ops.push(Op::Rule {
                        domain: domain.into(),
                        policy: id.clone(),
                        id: rid,
                        body: v::writable(r),
                        rev: rev(r, errs),
                    });
                }
            }
            other => errs.push(invalid(format!(
                "Child type [{other}] is not supported under Domain."
            ))),
        }
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

fn fail(errs: Vec<ApiError>) -> Fail {
    Fail::from_errors(errs).unwrap_or_else(|| Fail::bad(0, "invalid request"))
}

fn flag(o: &Obj, key: &str) -> bool {
    o.get(key).and_then(Value::as_bool) == Some(true)
}

fn array<'a>(o: &'a Obj, key: &str, errs: &mut Vec<ApiError>) -> &'a [Value] {
    match o.get(key) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &[],
        Some(_) => {
            errs.push(super::errors::json_error(format!(
                "property {key} must be an array."
            )));
            &[]
        }
    }
}

fn strip(o: &Obj, keys: &[&str]) -> Obj {
    let mut w = v::writable(o);
    for k in keys {
        w.remove(*k);
    }
    w
}

/// The id of a wrapped object: the inner id, which must agree with the wrapper's.
fn wrapper_id(wrapper: &Obj, inner: &Obj, kind: &str, errs: &mut Vec<ApiError>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let id =
            |s: &Store, r: &str| s.domains["default"].policies["p"].rules[r]["rule_id"].clone();
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
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
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
        assert_eq!(err.status, StatusCode::NOT_FOUND);
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
            s.domains["default"].policies["default-layer3-section"].rules["default-layer3-rule"]
                .clone()
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
}
