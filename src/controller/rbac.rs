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
    // The dashboard asks whether a proxy-named user may acknowledge alerts in a namespace.
    (
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        &["create"],
    ),
];

/// Leader election (namespaced Role in the controller's namespace).
/// `create` cannot be limited to a name (the object does not exist yet); `get` and `patch` are
/// limited to the lease's name in the rules file (`resourceNames: [LEASE_NAME]`, replaced by the
/// chart with the lease's name).
pub const LEADER_ELECTION: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["create", "get", "patch"])];

/// The placeholder of the lease's name in `role-leader-election-rules.yaml`.
pub const LEASE_NAME_PLACEHOLDER: &str = "LEASE_NAME";

/// One rule of a Role or ClusterRole.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// API groups.
    pub api_groups: Vec<String>,
    /// Resources.
    pub resources: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
    /// Names the rule is limited to (empty: any).
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// Flattens rules to (group, resource, verb) triples.
pub fn triples<'a>(
    rules: impl IntoIterator<Item = (&'a str, &'a str, &'a [&'a str])>,
) -> std::collections::BTreeSet<(String, String, String)> {
    rules
        .into_iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_triples(text: &str) -> std::collections::BTreeSet<(String, String, String)> {
        let rules: Vec<PolicyRule> = serde_yaml::from_str(text).unwrap();
        let mut out = std::collections::BTreeSet::new();
        for r in rules {
            for g in &r.api_groups {
                for res in &r.resources {
                    for v in &r.verbs {
                        out.insert((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_chart_grants_exactly_what_the_controller_uses() {
        let chart = file_triples(include_str!(
            "../../charts/microseg/files/rbac/clusterrole-rules.yaml"
        ));
        let code = triples(REQUIRED.iter().copied());
        let missing: Vec<_> = code.difference(&chart).collect();
        let extra: Vec<_> = chart.difference(&code).collect();
        assert!(missing.is_empty(), "missing from the chart: {missing:?}");
        assert!(
            extra.is_empty(),
            "granted but unused (least privilege): {extra:?}"
        );
    }

    #[test]
    fn the_leader_election_role_matches_too() {
        let chart = file_triples(include_str!(
            "../../charts/microseg/files/rbac/role-leader-election-rules.yaml"
        ));
        assert_eq!(chart, triples(LEADER_ELECTION.iter().copied()));
    }

    #[test]
    fn only_create_on_leases_is_not_limited_to_the_lease_name() {
        let rules: Vec<PolicyRule> = serde_yaml::from_str(include_str!(
            "../../charts/microseg/files/rbac/role-leader-election-rules.yaml"
        ))
        .unwrap();
        for r in rules {
            if r.resource_names.is_empty() {
                assert_eq!(r.verbs, ["create"], "{r:?}");
            } else {
                assert_eq!(r.resource_names, [LEASE_NAME_PLACEHOLDER], "{r:?}");
            }
        }
    }
}
