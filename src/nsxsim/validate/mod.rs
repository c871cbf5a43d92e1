//! Request-body checks of the simulator: strict JSON (unknown property → 400/287, read-only
//! fields accepted and ignored) and NSX's field limits (reference §2): ids, lengths, tags, rule
//! peers and services, port sets, group expressions. References between objects are checked
//! later, against the whole state after a transaction (see `store`). Group bodies and their
//! expressions are checked in `group`.

use serde_json::{Map, Value};

use super::errors::{invalid, json_error};
use crate::nsx::model::ApiError;

mod group;

pub use group::{check_group, parse_address};

/// A JSON object.
pub type Obj = Map<String, Value>;

/// Writable fields of every policy object (ManagedResource / PolicyConfigResource).
const BASE_WRITABLE: &[&str] = &[
    "_revision",
    "id",
    "display_name",
    "description",
    "resource_type",
    "tags",
];

/// Read-only fields of every policy object: accepted in a request (echoed from a GET) and
/// ignored.
const BASE_READ_ONLY: &[&str] = &[
    "_links",
    "_schema",
    "_self",
    "_create_time",
    "_last_modified_time",
    "_create_user",
    "_last_modified_user",
    "_protection",
    "_system_owned",
    "path",
    "parent_path",
    "relative_path",
    "unique_id",
    "realization_id",
    "origin_site_id",
    "owner_id",
    "remote_path",
    "marked_for_delete",
    "overridden",
    "children",
];

/// Read-only fields of some object types (rules, policies, groups): accepted and ignored too.
const TYPE_READ_ONLY: &[&str] = &[
    "rule_id",
    "is_default",
    "internal_sequence_number",
    "rule_count",
    "default_rule_id",
    "lock_modified_by",
    "lock_modified_time",
    "reference",
    "state",
];

const GROUP: &[&str] = &[
    "expression",
    "extended_expression",
    "group_type",
    "reference",
    "state",
];
const POLICY: &[&str] = &[
    "category",
    "sequence_number",
    "internal_sequence_number",
    "rules",
    "rule_count",
    "scope",
    "stateful",
    "tcp_strict",
    "locked",
    "comments",
    "lock_modified_by",
    "lock_modified_time",
    "scheduler_path",
    "is_default",
    "logging_enabled",
    "connectivity_strategy",
    "connectivity_preference",
    "default_rule_id",
    "application_connectivity_strategy",
];
const RULE: &[&str] = &[
    "action",
    "source_groups",
    "destination_groups",
    "sources_excluded",
    "destinations_excluded",
    "services",
    "service_entries",
    "profiles",
    "scope",
    "direction",
    "ip_protocol",
    "logged",
    "disabled",
    "sequence_number",
    "tag",
    "notes",
    "rule_id",
    "is_default",
];
const SERVICE: &[&str] = &["service_entries", "service_type", "is_default"];
const L4: &[&str] = &["l4_protocol", "source_ports", "destination_ports"];
const ICMP: &[&str] = &["protocol", "icmp_type", "icmp_code"];
const IP_PROTO: &[&str] = &["protocol_number"];
const CONDITION: &[&str] = &[
    "member_type",
    "key",
    "operator",
    "value",
    "scope_operator",
    "exclude",
];
const TAG: &[&str] = &["scope", "tag"];
/// Fields of an H-API `Child*` wrapper besides the object property.
pub const WRAPPER: &[&str] = &[
    "resource_type",
    "id",
    "marked_for_delete",
    "mark_for_override",
    "request_parameter",
    "_revision",
    "path",
    "parent_path",
    "relative_path",
];
/// Fields of a `ChildResourceReference`.
pub const REFERENCE: &[&str] = &[
    "resource_type",
    "id",
    "target_type",
    "children",
    "marked_for_delete",
    "mark_for_override",
    "path",
    "parent_path",
    "relative_path",
];
/// Fields of Infra.
pub const INFRA: &[&str] = &["domains", "connectivity_strategy"];

/// DFW categories (reference §2.2).
pub const CATEGORIES: &[&str] = &[
    "Ethernet",
    "Emergency",
    "Infrastructure",
    "Environment",
    "Application",
    "",
];

/// Limits from the reference.
pub const MAX_ID: usize = 255;
/// Display-name limit.
pub const MAX_DISPLAY_NAME: usize = 255;
/// Description limit.
pub const MAX_DESCRIPTION: usize = 1024;
/// Tag-scope limit.
pub const MAX_TAG_SCOPE: usize = 128;
/// Tag-value limit.
pub const MAX_TAG: usize = 256;
/// Tags per object.
pub const MAX_TAGS: usize = 30;
/// Source or destination entries per rule.
pub const MAX_PEERS: usize = 128;
/// Port values per port list (a range counts 2).
pub const MAX_PORTS: usize = 15;
/// Condition + NestedExpression per group.
pub const MAX_CONDITIONS: usize = 5;
/// IPs, MACs, external ids and paths per group.
pub const MAX_MEMBERS: usize = 500;

/// Rejects properties outside `allowed` (plus the base fields when `base`).
pub fn strict(obj: &Obj, base: bool, allowed: &[&[&str]], errs: &mut Vec<ApiError>) {
    for key in obj.keys() {
        let key = key.as_str();
        let known = (base && (BASE_WRITABLE.contains(&key) || BASE_READ_ONLY.contains(&key)))
            || allowed.iter().any(|list| list.contains(&key));
        if !known {
            errs.push(json_error(format!("property {key} is unrecognized.")));
        }
    }
}

/// The object's writable fields: read-only ones removed.
pub fn writable(obj: &Obj) -> Obj {
    obj.iter()
        .filter(|(k, _)| {
            !BASE_READ_ONLY.contains(&k.as_str()) && !TYPE_READ_ONLY.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The value as an object, or a JSON error.
pub fn as_obj<'a>(v: &'a Value, what: &str, errs: &mut Vec<ApiError>) -> Option<&'a Obj> {
    match v.as_object() {
        Some(o) => Some(o),
        None => {
            errs.push(json_error(format!("{what} must be a JSON object.")));
            None
        }
    }
}

fn opt_str<'a>(obj: &'a Obj, key: &str, errs: &mut Vec<ApiError>) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errs.push(json_error(format!("property {key} must be a string.")));
            None
        }
    }
}

fn opt_int(obj: &Obj, key: &str, errs: &mut Vec<ApiError>) -> Option<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(n),
            None => {
                errs.push(json_error(format!("property {key} must be an integer.")));
                None
            }
        },
    }
}

fn opt_bool(obj: &Obj, key: &str, errs: &mut Vec<ApiError>) {
    if let Some(v) = obj.get(key)
        && !v.is_null()
        && !v.is_boolean()
    {
        errs.push(json_error(format!("property {key} must be a boolean.")));
    }
}

fn str_list(obj: &Obj, key: &str, errs: &mut Vec<ApiError>) -> Option<Vec<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        errs.push(json_error(format!(
                            "property {key} must be an array of strings."
                        )));
                        return None;
                    }
                }
            }
            Some(out)
        }
        Some(_) => {
            errs.push(json_error(format!("property {key} must be an array.")));
            None
        }
    }
}

/// The `_revision` of a request body.
pub fn revision(obj: &Obj, errs: &mut Vec<ApiError>) -> Option<i64> {
    opt_int(obj, "_revision", errs)
}

/// Checks an id: not empty, no `/` or `&`, at most 255 characters.
pub fn check_id(id: &str, kind: &str, errs: &mut Vec<ApiError>) {
    if id.is_empty() {
        errs.push(invalid(format!("{kind} id must not be empty.")));
    } else if id.contains('/') || id.contains('&') {
        errs.push(invalid(format!(
            "{kind} id [{id}] contains invalid characters: '/' and '&' are not allowed."
        )));
    } else if id.chars().count() > MAX_ID {
        errs.push(invalid(format!(
            "{kind} id is {} characters long, the maximum is {MAX_ID}.",
            id.chars().count()
        )));
    }
}

/// Checks the fields every object has: `resource_type`, `id` (equal to the URL's), lengths of
/// `display_name`, `description`, and the tags.
pub fn check_common(obj: &Obj, kind: &str, url_id: &str, errs: &mut Vec<ApiError>) {
    check_id(url_id, kind, errs);
    match opt_str(obj, "resource_type", errs) {
        Some(rt) if rt != kind => errs.push(invalid(format!(
            "resource_type {rt} is invalid here, expected {kind}."
        ))),
        _ => {}
    }
    if let Some(id) = opt_str(obj, "id", errs)
        && id != url_id
    {
        errs.push(invalid(format!(
            "id [{id}] in the body does not match the id [{url_id}] in the path."
        )));
    }
    for (field, max) in [
        ("display_name", MAX_DISPLAY_NAME),
        ("description", MAX_DESCRIPTION),
    ] {
        if let Some(text) = opt_str(obj, field, errs)
            && text.chars().count() > max
        {
            errs.push(invalid(format!(
                "{field} of {kind} [{url_id}] is {} characters long, the maximum is {max}.",
                text.chars().count()
            )));
        }
    }
    check_tags(obj, kind, url_id, errs);
}

fn check_tags(obj: &Obj, kind: &str, id: &str, errs: &mut Vec<ApiError>) {
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => return,
        Some(Value::Array(t)) => t,
        Some(_) => {
            errs.push(json_error("property tags must be an array."));
            return;
        }
    };
    if tags.len() > MAX_TAGS {
        errs.push(invalid(format!(
            "{kind} [{id}] has {} tags, the maximum is {MAX_TAGS}.",
            tags.len()
        )));
    }
    for tag in tags {
        let Some(t) = as_obj(tag, "a tag", errs) else {
            continue;
        };
        strict(t, false, &[TAG], errs);
        if let Some(scope) = opt_str(t, "scope", errs)
            && scope.chars().count() > MAX_TAG_SCOPE
        {
            errs.push(invalid(format!(
                "tag scope [{scope}] is longer than {MAX_TAG_SCOPE} characters."
            )));
        }
        if let Some(value) = opt_str(t, "tag", errs)
            && value.chars().count() > MAX_TAG
        {
            errs.push(invalid(format!(
                "tag [{}...] is longer than {MAX_TAG} characters.",
                value.chars().take(32).collect::<String>()
            )));
        }
    }
}

fn check_enum(obj: &Obj, key: &str, allowed: &[&str], errs: &mut Vec<ApiError>) {
    if let Some(v) = opt_str(obj, key, errs)
        && !allowed.contains(&v)
    {
        errs.push(invalid(format!(
            "Invalid value [{v}] for field {key}, allowed values are {}.",
            allowed.join(", ")
        )));
    }
}

/// Checks a security-policy body (without its rules, which are checked one by one).
pub fn check_policy(obj: &Obj, id: &str, errs: &mut Vec<ApiError>) {
    strict(obj, true, &[POLICY], errs);
    check_common(obj, "SecurityPolicy", id, errs);
    check_enum(obj, "category", CATEGORIES, errs);
    if let Some(seq) = opt_int(obj, "sequence_number", errs)
        && !(0..=999_999).contains(&seq)
    {
        errs.push(invalid(format!(
            "SecurityPolicy [{id}] sequence_number {seq} must be between 0 and 999999."
        )));
    }
    for key in ["stateful", "tcp_strict", "locked", "logging_enabled"] {
        opt_bool(obj, key, errs);
    }
    if let Some(scope) = str_list(obj, "scope", errs) {
        check_any_alone(&scope, "scope", id, errs);
    }
}

fn check_any_alone(list: &[String], field: &str, id: &str, errs: &mut Vec<ApiError>) {
    let any = list
        .iter()
        .filter(|s| s.eq_ignore_ascii_case("ANY"))
        .count();
    if any > 0 && list.len() > 1 {
        errs.push(invalid(format!(
            "[{id}] {field}: ANY must be the only element when it is given."
        )));
    }
}

/// Checks a rule body.
pub fn check_rule(obj: &Obj, id: &str, errs: &mut Vec<ApiError>) {
    strict(obj, true, &[RULE], errs);
    check_common(obj, "Rule", id, errs);
    check_enum(
        obj,
        "action",
        &["ALLOW", "DROP", "REJECT", "JUMP_TO_APPLICATION"],
        errs,
    );
    check_enum(obj, "direction", &["IN", "OUT", "IN_OUT"], errs);
    check_enum(obj, "ip_protocol", &["IPV4", "IPV6", "IPV4_IPV6"], errs);
    for key in [
        "logged",
        "disabled",
        "sources_excluded",
        "destinations_excluded",
    ] {
        opt_bool(obj, key, errs);
    }
    opt_str(obj, "tag", errs);
    opt_str(obj, "notes", errs);
    if let Some(seq) = opt_int(obj, "sequence_number", errs)
        && seq < 0
    {
        errs.push(invalid(format!(
            "Rule [{id}] sequence_number {seq} must not be negative."
        )));
    }
    for field in ["source_groups", "destination_groups"] {
        if let Some(list) = str_list(obj, field, errs) {
            check_any_alone(&list, field, id, errs);
            if list.len() > MAX_PEERS {
                errs.push(invalid(format!(
                    "Rule [{id}] {field} has {} entries, the maximum is {MAX_PEERS}.",
                    list.len()
                )));
            }
            for peer in &list {
                if !peer.eq_ignore_ascii_case("ANY")
                    && !peer.starts_with('/')
                    && parse_address(peer).is_none()
                {
                    errs.push(invalid(format!(
                        "Rule [{id}] {field} entry [{peer}] is neither ANY, a group path nor an IP address, range or CIDR."
                    )));
                }
            }
        }
    }
    for field in ["services", "scope", "profiles"] {
        if let Some(list) = str_list(obj, field, errs) {
            check_any_alone(&list, field, id, errs);
            for p in &list {
                if !p.eq_ignore_ascii_case("ANY") && !p.starts_with('/') {
                    errs.push(invalid(format!(
                        "Rule [{id}] {field} entry [{p}] is neither ANY nor a policy path."
                    )));
                }
            }
        }
    }
    // Inline entries may come without an id (reference §11a: "an entry written without `id`
    // has none").
    match obj.get("service_entries") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for e in entries {
                if let Some(e) = as_obj(e, "a service entry", errs) {
                    let eid = opt_str(e, "id", errs);
                    check_service_entry(e, eid.unwrap_or(""), eid.is_some(), errs);
                }
            }
        }
        Some(_) => errs.push(json_error("property service_entries must be an array.")),
    }
}

/// Checks a service body with its entries.
pub fn check_service(obj: &Obj, id: &str, errs: &mut Vec<ApiError>) {
    strict(obj, true, &[SERVICE], errs);
    check_common(obj, "Service", id, errs);
    match obj.get("service_entries") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for e in entries {
                if let Some(e) = as_obj(e, "a service entry", errs) {
                    let eid = e.get("id").and_then(Value::as_str).unwrap_or("");
                    check_service_entry(e, eid, true, errs);
                }
            }
        }
        Some(_) => errs.push(json_error("property service_entries must be an array.")),
    }
}

/// Checks one service entry (L4 port set, ICMP, IP protocol); its `id` only when `id_required`
/// or given.
pub fn check_service_entry(e: &Obj, id: &str, id_required: bool, errs: &mut Vec<ApiError>) {
    let rt = e
        .get("resource_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if id_required || !id.is_empty() {
        check_id(id, "ServiceEntry", errs);
    }
    match rt.as_str() {
        "L4PortSetServiceEntry" => {
            strict(e, true, &[L4], errs);
            check_enum(e, "l4_protocol", &["TCP", "UDP"], errs);
            if opt_str(e, "l4_protocol", errs).is_none() {
                errs.push(invalid(format!(
                    "L4PortSetServiceEntry [{id}] requires field l4_protocol."
                )));
            }
            for field in ["source_ports", "destination_ports"] {
                if let Some(ports) = str_list(e, field, errs) {
                    check_ports(&ports, id, field, errs);
                }
            }
        }
        "ICMPTypeServiceEntry" => {
            strict(e, true, &[ICMP], errs);
            check_enum(e, "protocol", &["ICMPv4", "ICMPv6"], errs);
            for field in ["icmp_type", "icmp_code"] {
                if let Some(n) = opt_int(e, field, errs)
                    && !(0..=255).contains(&n)
                {
                    errs.push(invalid(format!(
                        "ICMPTypeServiceEntry [{id}] {field} {n} must be between 0 and 255."
                    )));
                }
            }
        }
        "IPProtocolServiceEntry" => {
            strict(e, true, &[IP_PROTO], errs);
            if let Some(n) = opt_int(e, "protocol_number", errs)
                && !(0..=255).contains(&n)
            {
                errs.push(invalid(format!(
                    "IPProtocolServiceEntry [{id}] protocol_number {n} must be between 0 and 255."
                )));
            }
        }
        other => errs.push(invalid(format!(
            "service entry resource_type [{other}] is not supported."
        ))),
    }
}

/// Port values: `"443"` or `"8000-8080"`, 1–65535, ascending ranges, at most 15 values with a
/// range counting 2.
pub fn check_ports(ports: &[String], id: &str, field: &str, errs: &mut Vec<ApiError>) {
    let mut count = 0usize;
    for p in ports {
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=65535).contains(n))
        };
        match p.split_once('-') {
            Some((a, b)) => {
                count += 2;
                match (parse(a), parse(b)) {
                    (Some(a), Some(b)) if a <= b => {}
                    (Some(_), Some(_)) => errs.push(invalid(format!(
                        "Service entry [{id}] {field}: port range [{p}] is reversed."
                    ))),
                    _ => errs.push(invalid(format!(
                        "Service entry [{id}] {field}: port range [{p}] must be within 1-65535."
                    ))),
                }
            }
            None => {
                count += 1;
                if parse(p).is_none() {
                    errs.push(invalid(format!(
                        "Service entry [{id}] {field}: port [{p}] must be within 1-65535."
                    )));
                }
            }
        }
    }
    if count > MAX_PORTS {
        errs.push(invalid(format!(
            "Service entry [{id}] {field} has {count} port values (a range counts 2), the maximum is {MAX_PORTS}."
        )));
    }
}

/// Group paths a rule or policy refers to (`/infra/domains/../groups/..` entries of the peer
/// and scope lists).
pub fn referenced_paths(obj: &Obj, fields: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields {
        if let Some(Value::Array(items)) = obj.get(*f) {
            for i in items {
                if let Some(s) = i.as_str()
                    && s.starts_with('/')
                {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(p: &[&str]) -> Vec<ApiError> {
        let mut errs = Vec::new();
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        check_ports(&p, "e", "destination_ports", &mut errs);
        errs
    }

    #[test]
    fn port_sets_follow_nsx_limits() {
        assert!(ports(&["443", "8000-8080", "65535", "1"]).is_empty());
        assert_eq!(ports(&["0"]).len(), 1);
        assert_eq!(ports(&["65536"]).len(), 1);
        assert_eq!(ports(&["90-80"]).len(), 1);
        assert_eq!(ports(&["x"]).len(), 1);
        // 7 ranges + 1 port = 15 values: allowed; one more port: refused.
        let mut ok: Vec<&str> = vec!["1-2"; 7];
        ok.push("3");
        assert!(ports(&ok).is_empty());
        ok.push("4");
        assert_eq!(ports(&ok).len(), 1);
    }

    #[test]
    fn addresses_parse_by_family() {
        assert_eq!(parse_address("10.0.0.1"), Some(true));
        assert_eq!(parse_address("10.0.0.0/8"), Some(true));
        assert_eq!(parse_address("10.0.0.1-10.0.0.9"), Some(true));
        assert_eq!(parse_address("fd00::/64"), Some(false));
        assert_eq!(parse_address("10.0.0.9-10.0.0.1"), None);
        assert_eq!(parse_address("web"), None);
    }
}
