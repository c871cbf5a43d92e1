//! The Helm chart: lint, a matrix of values rendered and accepted by a real API server, the
//! values schema refusing wrong values, the plain manifests in `deploy/` kept in sync, and an
//! upgrade that keeps existing custom resources. Helm comes from `scripts/test.sh`
//! (`go install helm.sh/helm/v3/cmd/helm` into `.tmp/bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::process::{Command, Output};

fn helm(args: &[&str]) -> Output {
    let bin = common::repo().join(".tmp/bin/helm");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh (it installs Helm)",
        bin.display()
    );
    Command::new(bin)
        .args(args)
        .current_dir(common::repo())
        .output()
        .unwrap()
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CI: &str = "charts/microseg/ci/default-values.yaml";

#[test]
fn lint_is_clean_in_strict_mode() {
    helm_ok(&["lint", "--strict", "charts/microseg", "-f", CI]);
}

#[test]
fn every_values_combination_renders_and_the_api_server_accepts_it() {
    let cp = common::shared();
    // ServiceMonitor is a Prometheus-operator CRD; install a minimal one so the server can check.
    cp.kubectl_stdin(&["apply", "-f", "-"], SERVICE_MONITOR_CRD);
    cp.wait_established("crd/servicemonitors.monitoring.coreos.com");
    let ns = cp.namespace("chart");
    let matrix: [&[&str]; 9] = [
        &[],
        &[
            "--set",
            "networkPolicy.enabled=true,networkPolicy.logSourceCidr=10.0.0.0/8,monitor.ingest.secretName=ingest,monitor.ingest.hmacKey=hmac,monitor.syslog.udpPort=5514,monitor.syslog.tcpPort=6514",
        ],
        // UDP syslog alone (its port must render as UDP).
        &[
            "--set",
            "networkPolicy.logSourceCidr=10.0.0.0/8,monitor.syslog.udpPort=5514",
        ],
        &["--set", "networkPolicy.enabled=false"],
        &["--set", "namespaceScoped=true"],
        &["--set", "serviceMonitor.enabled=true"],
        &["--set", "networkPolicy.enabled=true"],
        &["--set", "replicaCount=1"],
        &[
            "--set",
            "dashboard.tokenSecret.name=microseg-dashboard",
            "--set",
            "dashboard.userHeader=X-Forwarded-User",
            "--set",
            "dashboard.proxy.secret.name=proxy-secret,dashboard.proxy.cidrs={10.9.0.0/16}",
        ],
    ];
    for extra in matrix {
        let mut args = vec![
            "template",
            "microseg",
            "charts/microseg",
            "-n",
            &ns,
            "-f",
            CI,
        ];
        args.extend_from_slice(extra);
        let rendered = helm_ok(&args);
        let out = cp.kubectl_stdin(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &rendered,
        );
        assert!(
            out.status.success(),
            "{extra:?} refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if extra.contains(&"replicaCount=1") {
            assert!(
                !rendered.contains("kind: PodDisruptionBudget"),
                "no PDB with one replica"
            );
        }
        if extra.contains(&"dashboard.userHeader=X-Forwarded-User") {
            assert!(
                rendered.contains("--dashboard-token-file=/etc/microseg/dashboard/token")
                    && rendered.contains("--dashboard-user-header=X-Forwarded-User")
                    && rendered.contains("secretName: microseg-dashboard")
                    && rendered.contains("--dashboard-addr=0.0.0.0:8082")
                    && rendered.contains(
                        "--dashboard-proxy-secret-file=/etc/microseg/dashboard-proxy/secret"
                    )
                    && rendered.contains("--dashboard-proxy-cidrs=10.9.0.0/16"),
                "dashboard token mounted from its Secret, its own port, the proxy's proof"
            );
        } else {
            assert!(
                !rendered.contains("--dashboard-"),
                "dashboard off by default"
            );
        }
        if extra
            .iter()
            .any(|e| e.contains("monitor.ingest.secretName"))
        {
            for needle in [
                "--ingest-token-file=/etc/microseg/ingest/token",
                "--ingest-hmac-secret-file=/etc/microseg/ingest/hmac",
                "--syslog-udp-addr=0.0.0.0:5514",
                "--syslog-tcp-addr=0.0.0.0:6514",
                "name: syslog-udp",
            ] {
                assert!(rendered.contains(needle), "{needle} not rendered");
            }
        }
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&rendered)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|d: &serde_yaml::Value| !d.is_null())
            .collect();
        let kind = |k: &str| docs.iter().find(|d| d["kind"] == k);
        let container = &kind("Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0];
        let ports = container["ports"].as_sequence().unwrap();
        for p in ports {
            let want = if p["name"] == "syslog-udp" {
                "UDP"
            } else {
                "TCP"
            };
            assert_eq!(p["protocol"].as_str(), Some(want), "{extra:?}: {p:?}");
        }
        if extra.iter().any(|e| e.contains("monitor.syslog.udpPort")) {
            assert!(
                ports.iter().any(|p| p["name"] == "syslog-udp"),
                "{extra:?}: no syslog-udp port"
            );
        }
        let netpol = kind("NetworkPolicy");
        if extra.contains(&"networkPolicy.enabled=false") {
            assert!(netpol.is_none());
        } else {
            // On by default: health/metrics, API server, NSX and DNS, and the syslog sources.
            let np = netpol.expect("a NetworkPolicy by default");
            let text = serde_yaml::to_string(np).unwrap();
            assert!(
                text.contains("port: 6443") && text.contains("port: http"),
                "{text}"
            );
            if extra.iter().any(|e| e.contains("syslog")) {
                assert!(text.contains("cidr: 10.0.0.0/8"), "{text}");
            }
        }
        let role = docs
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "microseg-leader-election");
        if let Some(role) = role {
            let text = serde_yaml::to_string(role).unwrap();
            assert!(
                text.contains("resourceNames:") && text.contains("- microseg\n"),
                "the lease rules name the lease: {text}"
            );
        }
        if extra.contains(&"namespaceScoped=true") {
            assert!(!rendered.contains("kind: ClusterRole\n") && rendered.contains("--namespace="));
        }
    }
}

#[test]
fn the_values_schema_refuses_wrong_values_with_a_message() {
    let cases = [
        ("clusterName=Prod_1", "clusterName"),
        ("nsx.auth=kerberos", "auth"),
        ("nsx.rateLimit=500", "rateLimit"),
        ("logFormat=yaml", "logFormat"),
        ("replicaCount=0", "replicaCount"),
        ("service.port=70000", "port"),
        ("nsx.url=nsx.example.com", "url"),
        ("dashboard.userHeader=X Forwarded User", "userHeader"),
        ("monitor.maxFlows=501", "maxFlows"),
        ("monitor.syslog.udpPort=70000", "udpPort"),
        // Syslog has no authentication: its sources must be named.
        ("monitor.syslog.tcpPort=6514", "logSourceCidr"),
        // A user header is believed only from the proxy.
        ("dashboard.userHeader=X-Forwarded-User", "proxy"),
    ];
    for (set, field) in cases {
        let out = helm(&["template", "x", "charts/microseg", "-f", CI, "--set", set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} accepted");
        assert!(
            err.contains(field),
            "{set}: message does not name {field}: {err}"
        );
    }
}

#[test]
fn deploy_manifests_are_the_chart_rendered_with_deploy_values() {
    let rendered = helm_ok(&[
        "template",
        "microseg",
        "charts/microseg",
        "-n",
        "microseg-system",
        "-f",
        "deploy/values.yaml",
    ]);
    let on_disk = std::fs::read_to_string(common::repo().join("deploy/microseg.yaml")).unwrap();
    assert!(
        rendered == on_disk,
        "deploy/microseg.yaml is stale; regenerate: .tmp/bin/helm template microseg charts/microseg -n microseg-system -f deploy/values.yaml > deploy/microseg.yaml"
    );
}

#[test]
fn upgrading_the_chart_keeps_existing_custom_resources() {
    let cp = common::shared();
    let ns = cp.namespace("upgrade");
    // Its own release name: cluster-scoped objects (ClusterRole, ...) are named after it, and the
    // matrix test applies those of release "microseg" on the same API server at the same time.
    let kubeconfig = cp.kubeconfig.to_str().unwrap().to_string();
    helm_ok(&[
        "install",
        "microseg-upgrade",
        "charts/microseg",
        "-n",
        &ns,
        "-f",
        CI,
        "--kubeconfig",
        &kubeconfig,
        "--skip-crds",
    ]);
    let window = format!(
        "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: w, namespace: {ns}}}\nspec:\n  notifyAt: \"2027-02-01T09:00:00Z\"\n  monitorFrom: \"2027-02-01T09:00:00Z\"\n  enforceAt: \"2027-02-16T09:00:00Z\"\n"
    );
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &window);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    helm_ok(&[
        "upgrade",
        "microseg-upgrade",
        "charts/microseg",
        "-n",
        &ns,
        "-f",
        CI,
        "--set",
        "replicaCount=1",
        "--set",
        "resync=10m",
        "--kubeconfig",
        &kubeconfig,
    ]);
    let deployment = cp.kubectl_ok(&[
        "get",
        "deploy",
        "-n",
        &ns,
        "microseg-upgrade",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].args}",
    ]);
    assert!(
        deployment.starts_with("1 ") && deployment.contains("--resync=10m"),
        "{deployment}"
    );
    let windows = cp.kubectl_ok(&["get", "ew", "-n", &ns, "-o", "name"]);
    assert_eq!(windows.trim(), "enforcementwindow.microseg.io/w");
    helm_ok(&[
        "uninstall",
        "microseg-upgrade",
        "-n",
        &ns,
        "--kubeconfig",
        &kubeconfig,
    ]);
    let windows = cp.kubectl_ok(&["get", "ew", "-n", &ns, "-o", "name"]);
    assert_eq!(
        windows.trim(),
        "enforcementwindow.microseg.io/w",
        "uninstall must not delete custom resources"
    );
}

const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// Deletes what the test applied cluster-wide, also when it fails.
struct ClusterScoped<'a> {
    cp: &'a common::ControlPlane,
    yaml: String,
}

impl Drop for ClusterScoped<'_> {
    fn drop(&mut self) {
        let _ = self.cp.kubectl_stdin(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            &self.yaml,
        );
    }
}

/// Issue 16 (items 19 and 20): the optional admission policies, applied to a real API server and
/// scoped to this test's namespace, refuse status writes and approvals from others, members a
/// namespace may not claim and a minimumNotice under the cluster-wide minimum.
#[test]
fn the_optional_admission_policies_refuse_what_they_say() {
    let cp = common::shared();
    cp.install_crds();
    let ns = cp.namespace("vap");
    let rendered = helm_ok(&[
        "template",
        &format!("vap-{ns}"),
        "charts/microseg",
        "-n",
        &ns,
        "-f",
        CI,
        "--show-only",
        "templates/admissionpolicies.yaml",
        "--set",
        "admissionPolicies.statusAndApprovals.enabled=true,admissionPolicies.memberScope.enabled=true",
        "--set",
        "admissionPolicies.statusAndApprovals.approvers.users={change-board}",
        "--set-json",
        &format!(
            "admissionPolicies.namespaceSelector={{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"{ns}\"}}}}"
        ),
        "--set-json",
        &format!(
            "admissionPolicies.memberScope.namespaces={{\"{ns}\":{{\"tagScopes\":[\"app\"],\"namePrefixes\":[\"shop-\"],\"nsxGroups\":[\"/infra/domains/default/groups/shop-\"],\"cidrs\":[\"10.1.0.0/16\"]}}}}"
        ),
    ]);
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &rendered);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _cleanup = ClusterScoped {
        cp,
        yaml: rendered.clone(),
    };
    let policy = |member: &str| {
        format!(
            "apiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  owners: [{{name: t, email: t@example.com}}]\n  criticality: Low\n  window: {{name: w}}\n  members: [{member}]\n"
        )
    };
    let apply = |yaml: &str, dry: bool| {
        let mut args = vec!["apply", "-f", "-"];
        if dry {
            args.push("--dry-run=server");
        }
        cp.kubectl_stdin(&args, yaml)
    };
    // A binding takes effect a moment after it is created: wait until a bad member is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let refused = loop {
        let out = apply(&policy("{vmName: {startsWith: db-}}"), true);
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the member scope policy never took effect"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        refused.contains("vmName outside the name prefixes"),
        "{refused}"
    );
    for (member, says) in [
        ("{vmTag: {scope: os, tag: linux}}", "vmTag scope"),
        ("{ipAddress: 10.2.0.0/24}", "ipAddress outside"),
        ("{ipAddress: 10.9.9.9}", "ipAddress outside"),
        (
            "{nsxGroup: /infra/domains/default/groups/db}",
            "nsxGroup outside",
        ),
    ] {
        let out = apply(&policy(member), true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{member}: {err}"
        );
    }
    // What the namespace may claim is accepted, and created for the next checks.
    let ok = policy(
        "{vmName: {startsWith: shop-web}}, {vmTag: {scope: app, tag: shop}}, {ipAddress: 10.1.2.0/24}, {ipAddress: 10.1.0.9}, {nsxGroup: /infra/domains/default/groups/shop-db}",
    );
    let out = apply(&ok, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let window = |notice: &str| {
        format!(
            "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: w, namespace: {ns}}}\nspec:\n  notifyAt: \"2027-02-01T09:00:00Z\"\n  monitorFrom: \"2027-02-01T09:00:00Z\"\n  enforceAt: \"2027-02-16T09:00:00Z\"\n  minimumNotice: {notice}\n"
        )
    };
    let out = apply(&window("1h"), true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cluster-wide minimum of 336h"),
        "{err}"
    );
    assert!(apply(&window("336h"), true).status.success());
    // Status is the controller's alone; approvals are the change board's.
    let out = cp.kubectl(&[
        "patch",
        "segpol",
        "p",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\":{\"phase\":\"Completed\"}}",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only the microseg controller writes the status"),
        "{err}"
    );
    let out = cp.kubectl(&[
        "annotate",
        "segpol",
        "p",
        "-n",
        &ns,
        "microseg.io/approved-generation=1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not an approver"),
        "{err}"
    );
    // Other changes by the same user pass.
    cp.kubectl_ok(&["label", "segpol", "p", "-n", &ns, "team=shop"]);
}
