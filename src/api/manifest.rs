//! Reads multi-document YAML manifests (as committed to Git) into typed resources, keeping the
//! line each document starts on so errors can point at it. Pure: takes text, not files.

use serde_json::Value;

use super::validate::{FieldError, against_crd};
use super::{EnforcementWindow, SegmentationPolicy};
use kube::CustomResourceExt;

/// The namespace and name of a resource read from a manifest: a manifest that names no
/// namespace applies to `default`, as `kubectl apply` does.
pub fn key(meta: &super::k8s::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// One YAML document of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// 1-based line where the document starts.
    pub line: usize,
    /// Its content.
    pub value: Value,
}

/// A microseg resource read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// An EnforcementWindow.
    Window(Box<EnforcementWindow>),
    /// A SegmentationPolicy.
    Policy(Box<SegmentationPolicy>),
}

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("line {line}: not valid YAML: {reason}")]
    Yaml {
        /// Line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// Refused by the schema.
    #[error("line {line}: {kind} {name}: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// Line.
        line: usize,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// What is wrong.
        errors: Vec<FieldError>,
    },
}

/// Splits a YAML stream into documents.
pub fn documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    let flush = |doc: &str, line: usize, out: &mut Vec<Document>| -> Result<(), ManifestError> {
        if doc.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            return Ok(());
        }
        let value: Value = serde_yaml::from_str(doc).map_err(|e| ManifestError::Yaml {
            line: line
                + e.location()
                    .map(|l| l.line().saturating_sub(1))
                    .unwrap_or(0),
            reason: e.to_string(),
        })?;
        out.push(Document { line, value });
        Ok(())
    };
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "---" || l.starts_with("--- ") {
            flush(&current, start, &mut out)?;
            current.clear();
            start = i + 2;
            continue;
        }
        current.push_str(l);
        current.push('\n');
    }
    flush(&current, start, &mut out)?;
    Ok(out)
}

/// Reads the microseg resources of a YAML stream, validating each against its CRD schema (and
/// CEL rules). Documents of other kinds are skipped.
pub fn resources(text: &str) -> Result<Vec<(usize, Resource)>, ManifestError> {
    let mut out = Vec::new();
    for doc in documents(text)? {
        let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or("");
        let api = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if api != format!("{}/{}", super::GROUP, super::VERSION) {
            continue;
        }
        let name = doc
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let crd = match kind {
            "EnforcementWindow" => EnforcementWindow::crd(),
            "SegmentationPolicy" => SegmentationPolicy::crd(),
            _ => continue,
        };
        let invalid = |errors| ManifestError::Invalid {
            line: doc.line,
            kind: kind.to_string(),
            name: name.clone(),
            errors,
        };
        let errors = against_crd(&crd, &doc.value);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let decode_error = |e: serde_json::Error| {
            invalid(vec![FieldError {
                field: "spec".into(),
                reason: e.to_string(),
            }])
        };
        let resource = match kind {
            "EnforcementWindow" => Resource::Window(Box::new(
                serde_json::from_value(doc.value.clone()).map_err(decode_error)?,
            )),
            _ => Resource::Policy(Box::new(
                serde_json::from_value(doc.value.clone()).map_err(decode_error)?,
            )),
        };
        out.push((doc.line, resource));
    }
    Ok(out)
}
