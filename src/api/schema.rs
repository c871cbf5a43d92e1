//! Hand-written schema fragments for fields whose Rust type alone does not say enough to the
//! API server: list-maps, CEL rules on strings, formats.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Shape of an NSX policy path to an existing object the user names (a group or a service).
pub const NSX_PATH_PATTERN: &str = r"^/infra(/[A-Za-z0-9_.:-][A-Za-z0-9_.: -]*)+$";

/// Shape of a spec timestamp: RFC 3339 with at most nine fraction digits. The API server's
/// `date-time` format also lets through more digits, which the controller cannot parse.
pub const TIMESTAMP_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// A DNS-label name (rules, owners' keys): what NSX ids and Kubernetes both accept.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// `conditions`: a list-map keyed by `type`, so server-side apply merges by condition type.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<super::k8s::Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// An RFC 3339 timestamp (in status: written by the controller, not bounded).
pub fn timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// An optional RFC 3339 timestamp (in status).
pub fn optional_timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}

/// An RFC 3339 timestamp in a spec, bounded to what the controller can represent
/// ([`super::time::EARLIEST`] ..= [`super::time::LATEST`]) and shaped by [`TIMESTAMP_PATTERN`].
pub fn spec_timestamp(_: &mut SchemaGenerator) -> Schema {
    use super::time::{EARLIEST, LATEST};
    json_schema!({
        "type": "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "x-kubernetes-validations": [{
            "rule": format!("self >= timestamp('{EARLIEST}') && self <= timestamp('{LATEST}')"),
            "message": format!("must be between {EARLIEST} and {LATEST}"),
        }],
    })
}

/// An optional RFC 3339 timestamp in a spec, bounded like [`spec_timestamp`].
pub fn optional_spec_timestamp(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = spec_timestamp(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

/// A single IP address or a CIDR block, IPv4 or IPv6 (checked by the API server's CEL IP
/// library).
pub fn ip_or_cidr(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 64,
        "x-kubernetes-validations": [{
            "rule": "isIP(self) || isCIDR(self)",
            "message": "must be an IP address or a CIDR block such as 10.0.0.0/24",
        }],
    })
}

/// A CIDR block or single address used as a rule peer.
pub fn optional_ip_or_cidr(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = ip_or_cidr(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

/// The policy path of an existing NSX object (group or service).
pub fn optional_nsx_path(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "maxLength": 1024,
        "pattern": NSX_PATH_PATTERN,
    })
}

/// `gates.waive`: a set of evidence gates (each at most once).
pub fn waived_gates(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 3,
        "items": { "type": "string", "enum": ["Blind", "OpenAlerts", "QuietPeriod"] },
        "x-kubernetes-list-type": "set",
    })
}

/// A copy of spec fields the controller records in status for itself (the spec under DROP, the
/// window as last seen): kept as written, without the spec's validation rules (their CEL cost
/// would count a second time against the CRD's budget, and the copy was validated as spec).
pub fn recorded_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
