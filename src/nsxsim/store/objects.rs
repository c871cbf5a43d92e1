//! What a real manager fills in on a write: defaults, read-only fields (`path`, `_revision`,
//! ids), the shapes of inline service entries and group expressions, and the errors of
//! writes to read-only or pending objects. Pure functions over JSON objects.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::nsx::codes;
use crate::nsxsim::errors::Fail;
use crate::nsxsim::validate::{self as v, Obj};

pub(super) fn unique_id() -> String {
    uuid_text(rand::random())
}

/// A name-based (version-5 style) UUID: the same seed always gives the same id.
pub(super) fn derived_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(b)
}

pub(super) fn uuid_text(b: [u8; 16]) -> String {
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
pub(super) fn stamp(
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

pub(super) fn check_rev(path: &str, current: Option<&Obj>, rev: RevCheck) -> Result<(), Fail> {
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
        return Err(Fail::precondition_failed(
            codes::REVISION,
            format!(
                "Object _revision mismatch! (current: {have}, requested: {given}). Fetch the latest copy of the object and retry!"
            ),
        ));
    }
    Ok(())
}

pub(super) fn merged(previous: Option<&Obj>, body: Obj, mode: Mode) -> Obj {
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

pub(super) fn is_system(obj: &Obj) -> bool {
    obj.get("_system_owned").and_then(Value::as_bool) == Some(true)
        || obj.get("is_default").and_then(Value::as_bool) == Some(true)
}

pub(super) fn read_only(path: &str) -> Fail {
    Fail::bad(
        codes::READ_ONLY,
        format!(
            "The object path=[{path}] is a system-owned default object and cannot be modified or deleted."
        ),
    )
}

/// Fills the defaults of a missing or null field.
pub(super) fn fill(obj: &mut Obj, defaults: impl IntoIterator<Item = (&'static str, Value)>) {
    for (k, val) in defaults {
        if obj.get(k).is_none_or(Value::is_null) {
            obj.insert(k.into(), val);
        }
    }
}

/// `[]` reads back as `["ANY"]` in the applied-to and service lists: the same meaning.
pub(super) fn empty_is_any(obj: &mut Obj, keys: &[&str]) {
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
pub(super) fn rule_defaults(mut obj: Obj, layer2: bool) -> Obj {
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
pub(super) fn inline_entry(e: &Obj) -> Obj {
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
pub(super) fn policy_defaults(mut obj: Obj) -> Obj {
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
pub(super) fn policy_order(p: &Obj) -> i64 {
    internal_sequence_number(
        p.get("category").and_then(Value::as_str).unwrap_or(""),
        p.get("sequence_number")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        p.get("is_default").and_then(Value::as_bool) == Some(true),
    )
}

pub(super) fn set_internal_sequence(p: &mut Obj) {
    let n = policy_order(p);
    p.insert("internal_sequence_number".into(), json!(n));
}

/// A group as a real manager stores it (reference §11a "Group expressions", §2.4): every
/// expression element (order kept, values verbatim) gains `id`, `path`, `relative_path`,
/// `parent_path`, `marked_for_delete`, `overridden` and `_protection`; a `Condition` without
/// `scope_operator` gains `EQUALS`; the group gains `extended_expression: []` and
/// `reference: false`.
pub(super) fn group_defaults(mut obj: Obj, path: &str) -> Obj {
    if let Some(Value::Array(items)) = obj.get_mut("expression") {
        shape_expressions(items, path, "");
    }
    fill(&mut obj, [("extended_expression", json!([]))]);
    obj.insert("reference".into(), json!(false));
    obj
}

/// Path segment of an expression kind under its group (`<group>/<segment>/<id>`).
pub(super) fn expression_segment(kind: &str) -> &'static str {
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
pub(super) fn shape_expressions(items: &mut [Value], group: &str, prefix: &str) {
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
pub(super) fn default_rule_edit(prev: &Obj, body: Obj, path: &str) -> Result<Obj, Fail> {
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

pub(super) fn pending_delete(path: &str) -> Fail {
    Fail::bad(
        codes::PENDING_DELETE,
        format!(
            "Cannot create an object with path=[{path}] as it is marked for deletion. Retry once the deletion is complete."
        ),
    )
}

/// Sets `marked_for_delete: true` on an object and the objects embedded in it.
pub(super) fn mark_deleted(v: &mut Value) {
    if let Value::Object(o) = v {
        o.insert("marked_for_delete".into(), json!(true));
        for key in ["rules", "service_entries"] {
            if let Some(Value::Array(items)) = o.get_mut(key) {
                items.iter_mut().for_each(mark_deleted);
            }
        }
    }
}
