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
pub mod validate;

pub use enforcement_window::{
    Blackout, EnforcementWindow, EnforcementWindowSpec, EnforcementWindowStatus, Gates,
    RollbackGate,
};
pub use segmentation_policy::*;

use kube::CustomResourceExt;

/// API group of every microseg resource.
pub const GROUP: &str = "microseg.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Annotation that approves enforcement when a window's gates require approval. Its value names
/// who approved (free text, shown in status).
pub const APPROVAL_ANNOTATION: &str = "microseg.io/approved-by";

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
