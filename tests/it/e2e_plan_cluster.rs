//! `microseg plan --from-cluster` on the real API server: the recorded monitor flows of the
//! cluster's SegmentationPolicies are evaluated against a change, and the cluster's policies
//! are the state before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

const WINDOW: &str = "apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {name: w, namespace: NS}
spec:
  notifyAt: \"2027-02-01T09:00:00Z\"
  monitorFrom: \"2027-02-01T09:00:00Z\"
  enforceAt: \"2027-02-16T09:00:00Z\"
  gates: {maxLogSilence: 24h}
";

const POLICY: &str = "apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {name: billing, namespace: NS}
spec:
  owners: [{name: Billing, email: billing@example.com}]
  criticality: Low
  window: {name: w}
  members: [{ipAddress: 10.66.0.5}]
  rules:
    - name: https
      direction: Inbound
      peers: [{cidr: 10.0.0.0/8}]
      ports: [{protocol: TCP, port: 443}]
";

#[test]
fn from_cluster_the_monitor_flows_a_new_rule_allows_are_reported_newly_allowed() {
    // Its own API server: `--from-cluster` reads every SegmentationPolicy of the cluster, and the
    // other tests keep theirs on the shared one.
    let cp = common::ControlPlane::start();
    cp.install_crds();
    let ns = cp.namespace("plancluster");
    let manifests = format!("{}---\n{}", WINDOW, POLICY).replace("NS", &ns);
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What monitor mode recorded: one flow to 8443 that no rule allows.
    let status = r#"{"status":{"monitor":{"unmatchedTotal":4,"openAlerts":1,"flows":[{"id":"f1","source":"10.1.2.3","destination":"10.66.0.5","protocol":"TCP","port":8443,"direction":"Inbound","action":"PASS","count":4,"firstSeen":"2027-02-03T10:00:00Z","lastSeen":"2027-02-05T10:00:00Z"}]}}}"#;
    cp.kubectl_ok(&[
        "patch",
        "segpol",
        "billing",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    // The pull request adds the rule.
    let tmp = tempfile::Builder::new()
        .prefix("microseg-plan-cluster-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let changed = manifests.replace(
        "      ports: [{protocol: TCP, port: 443}]\n",
        "      ports: [{protocol: TCP, port: 443}]\n    - name: api\n      direction: Inbound\n      peers: [{cidr: 10.1.0.0/16}]\n      ports: [{protocol: TCP, port: 8443}]\n",
    );
    std::fs::write(dir.join("billing.yaml"), changed).unwrap();
    let run = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
            .args([
                "plan",
                "-f",
                dir.to_str().unwrap(),
                "--at",
                "2027-02-20T00:00:00Z",
                "--from-cluster",
                "--kubeconfig",
                cp.kubeconfig.to_str().unwrap(),
            ])
            .env_remove("MICROSEG_CLUSTER")
            .output()
            .unwrap()
    };
    let out = run(dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("before: the cluster's SegmentationPolicies"),
        "{text}"
    );
    let key = format!("{ns}/billing");
    assert!(
        text.contains(&format!("{key}: 0 newly dropped, 1 newly allowed")),
        "{text}"
    );
    assert!(
        text.contains(
            "newly allowed: TCP 10.1.2.3 -> 10.66.0.5:8443, 4 seen, last 2027-02-05T10:00:00Z"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "now: {key} api ALLOW at the destination; was: {key} catchall_in DROP"
        )),
        "{text}"
    );
}
