//! End-to-end on a real kube-apiserver: the CRDs install, `kubectl explain` shows their docs, and
//! the API server refuses bad manifests with a message that names the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn crds_install_and_explain_shows_the_field_docs() {
    let cp = common::shared();
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let o = cp.kubectl(&["explain", "segmentationpolicy.spec.rules"]);
        if o.status.success() || std::time::Instant::now() > deadline {
            break String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        out.contains("Explicit rules, matched before the catch-all"),
        "{out}"
    );
    assert!(out.contains("peers"), "{out}");
    let out = cp.kubectl_ok(&["explain", "enforcementwindow.spec.minimumNotice"]);
    assert!(
        out.contains("Least time between the delivered owner notice and enforcement"),
        "{out}"
    );
    let names = cp.kubectl_ok(&["api-resources", "--categories=microseg", "-o", "name"]);
    assert!(
        names.contains("segmentationpolicies.microseg.io")
            && names.contains("enforcementwindows.microseg.io"),
        "{names}"
    );
}

#[test]
fn the_examples_are_accepted_by_the_api_server() {
    let cp = common::shared();
    let dir = common::repo().join("deploy/examples");
    let out = cp.kubectl(&["apply", "--dry-run=server", "-f", dir.to_str().unwrap()]);
    // The namespace does not exist in a dry run, so create it first for real.
    if !out.status.success() {
        cp.kubectl_ok(&["create", "namespace", "shop"]);
    }
    cp.kubectl_ok(&["apply", "--dry-run=server", "-f", dir.to_str().unwrap()]);
}

const WINDOW: &str = r#"
apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {name: w, namespace: NS}
spec:
  notifyAt: "2027-02-01T09:00:00Z"
  monitorFrom: "2027-02-01T09:00:00Z"
  enforceAt: "2027-02-16T09:00:00Z"
"#;

const POLICY: &str = r#"
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {name: web, namespace: NS}
spec:
  owners: [{name: Web team, email: web@example.com}]
  criticality: Medium
  window: {name: w}
  members: [{vmTag: {tag: web}}]
  rules:
    - name: https
      direction: Inbound
      peers: [{cidr: 10.0.0.0/8}]
      ports: [{protocol: TCP, port: 443}]
"#;

#[test]
fn the_api_server_refuses_bad_manifests_naming_the_field() {
    let cp = common::shared();
    let ns = cp.namespace("schema");
    let w = WINDOW.replace("NS", &ns);
    let p = POLICY.replace("NS", &ns);
    let ok = cp.kubectl_stdin(&["apply", "-f", "-"], &format!("{w}---{p}"));
    assert!(
        ok.status.success(),
        "valid manifests refused: {}",
        stderr(&ok)
    );

    let enforce = "enforceAt: \"2027-02-16T09:00:00Z\"";
    let with_notice = |d: &str| w.replace(enforce, &format!("{enforce}\n  minimumNotice: \"{d}\""));
    let before_1970 = w.replace("2027-02-01T09:00:00Z", "1969-12-31T23:59:59Z");
    let with_canary = |steps: &str| {
        w.replace(
            enforce,
            &format!("{enforce}\n  canary:\n    steps: {steps}"),
        )
    };

    // What the controller can represent is accepted, however far away: a rule that subtracted
    // the timestamps overflowed CEL's int64 nanoseconds here.
    let accepted: Vec<(&str, String)> = vec![
        (
            "window at 9999-12-20",
            w.replace("2027-02-16T09:00:00Z", "9999-12-20T00:00:00Z"),
        ),
        (
            "last representable instant",
            w.replace("2027-02-16T09:00:00Z", "9999-12-30T22:00:00Z"),
        ),
        ("72h notice", with_notice("72h")),
        (
            "canary steps",
            with_canary("[{members: 1, for: 24h}, {percent: 50, for: 24h}]"),
        ),
        (
            "ten-year notice",
            with_notice("87600h").replace("2027-02-16T09:00:00Z", "9999-12-20T00:00:00Z"),
        ),
    ];
    for (what, manifest) in accepted {
        let out = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifest);
        assert!(out.status.success(), "{what}: refused: {}", stderr(&out));
    }

    let cases: Vec<(&str, String, &str)> = vec![
        ("timestamp in year 10000", w.replace("2027-02-16T09:00:00Z", "10000-01-01T00:00:00Z"), "spec.enforceAt"),
        ("timestamp jiff cannot hold", w.replace("2027-02-16T09:00:00Z", "9999-12-31T23:59:59Z"), "spec.enforceAt: Invalid value: \"string\": must be between 1970-01-01T00:00:00Z and 9999-12-30T22:00:00Z"),
        ("timestamp before 1970", before_1970.clone(), "spec.notifyAt: Invalid value: \"string\": must be between 1970-01-01T00:00:00Z and 9999-12-30T22:00:00Z"),
        ("more than nine fraction digits", w.replace("2027-02-16T09:00:00Z", "2027-02-16T09:00:00.1234567891Z"), "spec.enforceAt in body should match"),
        ("far-future notice too short", w.replace("2027-02-01T09:00:00Z", "9999-12-20T00:00:00Z").replace("2027-02-16T09:00:00Z", "9999-12-30T22:00:00Z"), "enforceAt must be at least minimumNotice after notifyAt"),
        ("duration overflowing int64 nanoseconds", with_notice("99999999999h"), "spec.minimumNotice in body should match"),
        ("duration overflowing int64 nanoseconds (CEL)", with_notice("99999999999h"), "must be at most 87600h (10 years)"),
        ("duration over ten years", with_notice("87601h"), "spec.minimumNotice: Invalid value: \"string\": must be at most 87600h (10 years)"),
        ("wrong timestamp order", w.replace("monitorFrom: \"2027-02-01T09:00:00Z\"", "monitorFrom: \"2027-01-01T09:00:00Z\""), "notifyAt must not be after monitorFrom"),
        ("notice shorter than minimumNotice", w.replace("2027-02-16T09:00:00Z", "2027-02-10T09:00:00Z"), "enforceAt must be at least minimumNotice after notifyAt"),
        ("duplicate rule names", p.replace("  rules:\n", "  rules:\n    - name: https\n      direction: Outbound\n      peers: [{any: true}]\n"), "Duplicate value"),
        ("bad CIDR", p.replace("10.0.0.0/8", "10.0.0.0/33"), "must be an IP address or a CIDR block"),
        ("port 0", p.replace("port: 443", "port: 0"), "spec.rules[0].ports[0].port"),
        ("port 70000", p.replace("port: 443", "port: 70000"), "spec.rules[0].ports[0].port"),
        ("unknown enum", p.replace("criticality: Medium", "criticality: Extreme"), "spec.criticality"),
        ("unknown direction", p.replace("direction: Inbound", "direction: Sideways"), "spec.rules[0].direction"),
        ("canary step with members and percent", with_canary("[{members: 1, percent: 50, for: 24h}]"), "set exactly one of members and percent"),
        ("canary step with neither", with_canary("[{for: 24h}]"), "set exactly one of members and percent"),
        ("canary percent 100", with_canary("[{percent: 100, for: 24h}]"), "spec.canary.steps[0].percent"),
        ("canary step of no time", with_canary("[{members: 1, for: 0s}]"), "a canary step lasts at least 1s"),
        ("canary without steps", with_canary("[]"), "spec.canary.steps"),
        ("owner nobody can reach", p.replace("owners: [{name: Web team, email: web@example.com}]", "owners: [{name: Web team}]"), "an owner needs an email or a webhook"),
    ];
    for (what, manifest, expected) in cases {
        let out = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifest);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in:\n{err}"
        );
    }
}
