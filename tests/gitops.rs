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
