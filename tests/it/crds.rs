//! The checked-in CRDs (`crds/` and the chart's copy) must equal what the types generate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::path::Path;

use microseg::api;

const REGENERATE: &str = "regenerate with: cargo run -- crds --write";

#[test]
fn crds_match_generated_yaml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = api::all_crds();
    let expected_files: BTreeSet<String> = generated.iter().map(api::crd_file_name).collect();
    for dir in microseg::cli::CRD_DIRS {
        let dir = root.join(dir);
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        assert_eq!(
            present,
            expected_files,
            "files in {}; {REGENERATE}",
            dir.display()
        );
        for crd in &generated {
            let path = dir.join(api::crd_file_name(crd));
            let text = std::fs::read_to_string(&path).unwrap();
            let on_disk: serde_json::Value = serde_yaml::from_str(&text).unwrap();
            let want = serde_json::to_value(crd).unwrap();
            assert!(
                on_disk == want,
                "{} differs from the types; {REGENERATE}",
                path.display()
            );
        }
    }
}

#[test]
fn chart_crds_are_byte_identical_to_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crd in api::all_crds() {
        let name = api::crd_file_name(&crd);
        let top = std::fs::read(root.join("crds").join(&name)).unwrap();
        let chart = std::fs::read(root.join("charts/microseg/crds").join(&name)).unwrap();
        assert!(
            top == chart,
            "charts/microseg/crds/{name} differs from crds/{name}; {REGENERATE}"
        );
    }
}
