//! The custom resources of microseg (`microseg.io/v1alpha1`): their types, their schema
//! (OpenAPI plus CEL rules, so the API server refuses a bad manifest) and the checks the schema
//! cannot express.
//!
//! Pure: no IO, no clock. `all_crds()` is the only producer of the CRD YAML in `crds/`.

pub mod condition;
pub mod duration;
pub mod enforcement_window;
pub mod k8s;
pub mod manifest;
pub mod schema;
pub mod segmentation_policy;
pub mod time;
pub mod validate;

pub use enforcement_window::{
    Blackout, EnforcementWindow, EnforcementWindowSpec, EnforcementWindowStatus, Gates,
    RollbackGate, WaivedGate,
};
pub use segmentation_policy::*;

use kube::CustomResourceExt;

/// API group of every microseg resource.
pub const GROUP: &str = "microseg.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Annotation that approves enforcement: its value is the `metadata.generation` approved, so an
/// approval of an older spec does not open the gate. Needed when a window requires approval, and
/// to keep enforcing through a widening change under DROP.
pub const APPROVAL_ANNOTATION: &str = "microseg.io/approved-generation";
/// Who approved (free text, optional, for people reading the policy; not a gate).
pub const APPROVED_BY_ANNOTATION: &str = "microseg.io/approved-by";

/// Whether the policy's current generation is approved (`microseg.io/approved-generation` equal
/// to `metadata.generation`).
pub fn approved_generation(meta: &k8s::ObjectMeta) -> bool {
    let Some(generation) = meta.generation else {
        return false;
    };
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(APPROVAL_ANNOTATION))
        .and_then(|v| v.trim().parse::<i64>().ok())
        == Some(generation)
}

/// Every CRD microseg owns, in a stable order.
pub fn all_crds() -> Vec<k8s::CustomResourceDefinition> {
    vec![EnforcementWindow::crd(), SegmentationPolicy::crd()]
}

/// File name of a CRD in `crds/` and `charts/microseg/crds/`.
pub fn crd_file_name(crd: &k8s::CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default())
}

/// Renders one CRD as YAML, the form checked in under `crds/`.
pub fn crd_yaml(crd: &k8s::CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Renders every CRD as one multi-document YAML stream (`microseg crds`).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}
