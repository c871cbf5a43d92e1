//! The GitOps policy repository example holds the same manifests as `deploy/examples/`, laid out
//! by wave, and every document in it passes the CRD schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_policy_repo_matches_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let repo = root.join("gitops/policy-repo");
    let pairs = [
        ("examples/00-namespace.yaml", "namespace.yaml"),
        ("examples/10-web.yaml", "waves/wave-1/10-web.yaml"),
        ("examples/11-app.yaml", "waves/wave-1/11-app.yaml"),
        ("examples/12-db.yaml", "waves/wave-1/12-db.yaml"),
        ("examples/20-dns.yaml", "waves/wave-critical/20-dns.yaml"),
    ];
    for (example, copy) in pairs {
        assert_eq!(
            read(&root.join(example)),
            read(&repo.join(copy)),
            "{copy} differs from deploy/{example}"
        );
    }
    let windows = read(&root.join("examples/01-windows.yaml"));
    for w in [
        "waves/wave-1/window.yaml",
        "waves/wave-critical/window.yaml",
    ] {
        let text = read(&repo.join(w));
        let body = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            windows.contains(body.trim()),
            "{w} is not one of deploy/examples/01-windows.yaml"
        );
        let resources = microseg::api::manifest::resources(&text).unwrap();
        assert_eq!(resources.len(), 1, "{w}");
    }
}

/// The argocd-cm snippet carries exactly the health.lua scripts that tests/gitops-health runs.
#[test]
fn the_argocd_cm_snippet_carries_the_tested_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gitops/argocd");
    let cm: serde_json::Value =
        serde_yaml::from_str(&read(&dir.join("argocd-cm-microseg.yaml"))).unwrap();
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    for kind in ["SegmentationPolicy", "EnforcementWindow"] {
        let key = format!("resource.customizations.health.microseg.io_{kind}");
        let script = read(&dir.join("microseg.io").join(kind).join("health.lua"));
        assert_eq!(
            cm["data"][&key].as_str(),
            Some(script.as_str()),
            "{key} in argocd-cm-microseg.yaml differs from microseg.io/{kind}/health.lua"
        );
    }
}

/// The Flux example waits for the policies' health (kstatus), which their conditions support.
#[test]
fn the_flux_kustomization_waits_for_health() {
    let text =
        read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gitops/flux/kustomization.yaml"));
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let ks = docs
        .iter()
        .find(|d| d["kind"] == "Kustomization")
        .expect("a Kustomization");
    assert_eq!(ks["spec"]["wait"], true);
}

/// kstatus (`status.Compute`) and Argo CD's Lua health over the objects tests/e2e_health.rs
/// recorded: Argo CD's health_test.yaml cases, the acceptance table (tests/gitops-health/
/// acceptance.yaml) and its copy in README.md.
#[test]
fn kstatus_and_argo_cd_read_the_e2e_objects_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gitops-health");
    let go = ["go", "/usr/local/go/bin/go"]
        .into_iter()
        .find(|g| {
            std::process::Command::new(g)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Go is required (scripts/test.sh checks for it)");
    let out = std::process::Command::new(go)
        .args(["test", "-count=1", "-v", "./..."])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "go test in tests/gitops-health:\n{text}"
    );
    for test in [
        "TestArgoCDHealthTests",
        "TestAcceptanceTable",
        "TestTableCoversEveryObject",
    ] {
        assert!(
            text.contains(&format!("--- PASS: {test}")),
            "{test} did not run:\n{text}"
        );
    }
}
