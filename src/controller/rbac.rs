//! The permissions the controller needs, declared next to the code that uses them. A test keeps
//! the chart's ClusterRole rules (`charts/microseg/files/rbac/clusterrole-rules.yaml`) equal to
//! this list in both directions: nothing missing, nothing extra.

/// (API group, resource, verbs).
pub const REQUIRED: &[(&str, &str, &[&str])] = &[
    // Policies: watched, finalizer added and removed (patch), status written.
    (
        "microseg.io",
        "segmentationpolicies",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "microseg.io",
        "segmentationpolicies/status",
        &["get", "patch", "update"],
    ),
    // Windows: watched, status written.
    (
        "microseg.io",
        "enforcementwindows",
        &["get", "list", "watch"],
    ),
    (
        "microseg.io",
        "enforcementwindows/status",
        &["get", "patch", "update"],
    ),
    // Events (events.k8s.io/v1 through the Recorder).
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// Leader election (namespaced Role in the controller's namespace).
pub const LEADER_ELECTION: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "list", "watch", "create", "patch", "update"],
)];
