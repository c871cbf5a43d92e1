//! Checks a manifest the way the API server would, without one: the structural OpenAPI schema
//! (types, required fields, enums, patterns, bounds, unknown fields, list-map keys) and the CEL
//! rules (through kube's client-side CEL evaluator). Used by `microseg plan` and by tests that
//! keep `deploy/examples/` valid. The real API server check lives in the e2e suite.

use std::collections::BTreeSet;
use std::fmt;

use kube::core::cel::Validator;
use serde_json::Value;

use super::k8s::CustomResourceDefinition;

/// One reason a manifest is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path such as `spec.rules[1].ports[0].port`.
    pub field: String,
    /// Why, in words.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Validates an object (the whole manifest, as JSON) against a CRD's first version schema.
pub fn against_crd(crd: &CustomResourceDefinition, object: &Value) -> Vec<FieldError> {
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return vec![FieldError {
            field: String::new(),
            reason: "CRD has no schema".into(),
        }];
    };
    let schema = match serde_json::to_value(schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![FieldError {
                field: String::new(),
                reason: format!("schema does not serialise: {e}"),
            }];
        }
    };
    // Only spec is validated structurally: metadata is checked by the API server itself and
    // status is written by the controller.
    let mut errors = Vec::new();
    if let (Some(spec_schema), Some(spec)) =
        (schema.pointer("/properties/spec"), object.get("spec"))
    {
        structural(spec_schema, spec, "spec", &mut errors);
    } else if object.get("spec").is_none() {
        errors.push(FieldError {
            field: "spec".into(),
            reason: "Required value".into(),
        });
    }
    if errors.is_empty() {
        let mut cel_object = object.clone();
        if let Some(map) = cel_object.as_object_mut() {
            map.remove("status");
        }
        if let Err(failures) = Validator::new().validate(&schema, &cel_object, None) {
            for failure in failures.iter() {
                errors.push(FieldError {
                    field: failure.field_path.clone(),
                    reason: failure.message.clone(),
                });
            }
        }
    }
    errors
}

fn push(errors: &mut Vec<FieldError>, path: &str, reason: String) {
    errors.push(FieldError {
        field: path.to_string(),
        reason,
    });
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Structural validation of `value` at `path` against an OpenAPI v3 (Kubernetes structural)
/// schema.
pub fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        push(errors, path, "must not be null".into());
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            push(
                errors,
                path,
                format!("Invalid value: {actual}: must be of type {expected}"),
            );
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let names: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        push(
            errors,
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                names.join(", ")
            ),
        );
    }
    match value {
        Value::String(s) => string(schema, s, path, errors),
        Value::Number(n) => {
            if let (Some(min), Some(x)) =
                (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                && x < min
            {
                push(
                    errors,
                    path,
                    format!("Invalid value: {n}: must be at least {min}"),
                );
            }
            if let (Some(max), Some(x)) =
                (schema.get("maximum").and_then(Value::as_f64), n.as_f64())
                && x > max
            {
                push(
                    errors,
                    path,
                    format!("Invalid value: {n}: must be at most {max}"),
                );
            }
        }
        Value::Array(items) => array(schema, items, path, errors),
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        push(errors, &format!("{path}.{name}"), "Required value".into());
                    }
                }
            }
            let additional = schema.get("additionalProperties");
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    structural(child_schema, child, &child_path, errors);
                } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                    structural(extra, child, &child_path, errors);
                } else if !preserve && props.is_some() {
                    push(errors, &child_path, "unknown field".into());
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn string(schema: &Value, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        push(
            errors,
            path,
            format!("Invalid value: {s:?}: must be at least {min} characters"),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        push(
            errors,
            path,
            format!("Too long: may not be longer than {max}"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => push(
                errors,
                path,
                format!("Invalid value: {s:?}: should match '{pattern}'"),
            ),
            Ok(_) => {}
            Err(e) => push(
                errors,
                path,
                format!("schema pattern does not compile: {e}"),
            ),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<super::k8s::Timestamp>().is_err()
    {
        push(
            errors,
            path,
            format!(
                "Invalid value: {s:?}: must be an RFC 3339 date-time such as 2026-03-01T09:00:00Z"
            ),
        );
    }
}

fn array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        push(
            errors,
            path,
            format!("Invalid value: must have at least {min} items"),
        );
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && (items.len() as u64) > max
    {
        push(
            errors,
            path,
            format!("Too many: {}: must have at most {max} items", items.len()),
        );
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            structural(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
        && let Some(keys) = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
    {
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let key: Vec<String> = keys
                .iter()
                .filter_map(Value::as_str)
                .map(|k| item.get(k).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            if !seen.insert(key.clone()) {
                push(
                    errors,
                    &format!("{path}[{i}]"),
                    format!("Duplicate value: {}", key.join(", ")),
                );
            }
        }
    }
}
