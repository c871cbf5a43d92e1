//! The Helm chart: lint, a matrix of values rendered and accepted by a real API server, the
//! values schema refusing wrong values, the plain manifests in `deploy/` kept in sync, and an
//! upgrade that keeps existing custom resources. Helm comes from `scripts/test.sh`
//! (`go install helm.sh/helm/v3/cmd/helm` into `.tmp/bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

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
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);
    let ns = cp.namespace("chart");
    let matrix: [&[&str]; 7] = [
        &[],
        &[
            "--set",
            "networkPolicy.enabled=true,monitor.ingest.secretName=ingest,monitor.ingest.hmacKey=hmac,monitor.syslog.udpPort=5514,monitor.syslog.tcpPort=6514",
        ],
        &["--set", "namespaceScoped=true"],
        &["--set", "serviceMonitor.enabled=true"],
        &["--set", "networkPolicy.enabled=true"],
        &["--set", "replicaCount=1"],
        &[
            "--set",
            "dashboard.tokenSecret.name=microseg-dashboard",
            "--set",
            "dashboard.userHeader=X-Forwarded-User",
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
                    && rendered.contains("secretName: microseg-dashboard"),
                "dashboard token mounted from its Secret"
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
    let kubeconfig = cp.kubeconfig.to_str().unwrap().to_string();
    helm_ok(&[
        "install",
        "microseg",
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
        "microseg",
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
        "microseg",
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
        "microseg",
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
