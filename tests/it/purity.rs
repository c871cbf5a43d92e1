//! The pure modules (DESIGN.md, STYLE.md §3.1) name no clock, no tokio, no reqwest, no kube client
//! and no file, socket or stdio IO. One test walks their source files and reports every forbidden
//! name with its file and line; the few names they legitimately need are listed in [`ALLOWED`],
//! each with its reason.

use std::path::{Path, PathBuf};

/// The pure modules: a file, or a module file and its directory (walked recursively).
const PURE: &[&str] = &[
    "api",
    "schedule",
    "plan",
    "monitor/parse",
    "monitor/aggregate",
    "monitor/format",
    "monitor/loginsight",
    "controller/status",
    "controller/notices",
    "recommend",
];

/// Names a pure module must not contain: clocks, the async runtime, HTTP and Kubernetes clients,
/// file, stdio and socket IO.
const FORBIDDEN: &[&str] = &[
    "Timestamp::now",
    "Zoned::now",
    "Instant::now",
    "SystemTime",
    "tokio",
    "reqwest",
    "kube::",
    "std::fs",
    "std::io",
    "std::net::Tcp",
    "std::net::Udp",
];

/// What the pure modules may name after `kube::`: the CRD derive and its traits (`CustomResource`,
/// `CustomResourceExt`, `KubeSchema`) and `kube::core` (kube-core: types and the CEL validator,
/// no client). `api` derives its CRD types and checks CEL rules with them; none does IO.
const ALLOWED_KUBE: &[&str] = &["CustomResource", "CustomResourceExt", "KubeSchema", "core"];

/// Files of the pure modules that are not pure code, and why (none: the IO shell of
/// `microseg recommend` is `src/cli/recommend.rs`, outside the pure module).
const ALLOWED: &[(&str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source files of one pure module (`name.rs` or `name/mod.rs`, and `name/**`).
fn module_files(module: &str) -> Vec<PathBuf> {
    let base = src().join(module);
    let mut files = Vec::new();
    let file = base.with_extension("rs");
    if file.is_file() {
        files.push(file);
    }
    if base.is_dir() {
        rust_files(&base, &mut files);
    }
    files.sort();
    files
}

/// Unit tests (`tests.rs`, `proptests.rs` and `#[cfg(test)] mod` blocks) are compiled only for
/// `cargo test`: they may read golden files or time a loop. Returns the production part of a file.
fn production(path: &Path, text: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name == "proptests.rs" {
        return None;
    }
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// The forbidden names in `text` as `(line, name)`, comments included (a pure module has no
/// reason to talk about a clock it does not read either).
fn forbidden_names(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for name in FORBIDDEN {
            for (at, _) in line.match_indices(name) {
                if *name == "kube::" && kube_path_allowed(&line[at + name.len()..]) {
                    continue;
                }
                found.push((i + 1, (*name).to_string()));
            }
        }
    }
    found
}

/// Whether what follows `kube::` names only [`ALLOWED_KUBE`] items (`kube::{A, B}` included).
fn kube_path_allowed(rest: &str) -> bool {
    let allowed = |item: &str| {
        let head = item.trim().split("::").next().unwrap_or("");
        ALLOWED_KUBE.contains(&head)
    };
    match rest.strip_prefix('{') {
        Some(group) => match group.split_once('}') {
            Some((items, _)) => items
                .split(',')
                .filter(|i| !i.trim().is_empty())
                .all(allowed),
            None => false,
        },
        None => {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            allowed(&rest[..end])
        }
    }
}

#[test]
fn pure_modules_name_no_clock_runtime_client_or_io() {
    let mut violations = Vec::new();
    for module in PURE {
        let files = module_files(module);
        assert!(
            !files.is_empty(),
            "pure module {module}: no source file under src/ (renamed? update PURE)"
        );
        for path in files {
            let rel = path
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ALLOWED.iter().any(|(file, _)| *file == rel) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let Some(code) = production(&path, &text) else {
                continue;
            };
            for (line, name) in forbidden_names(&code) {
                violations.push(format!("src/{rel}:{line}: {name}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure modules name a clock, tokio, reqwest, a kube client or IO:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_purity_check_reports_each_forbidden_name_with_its_line() {
    let text = "use kube::{CustomResource, KubeSchema};\nuse kube::core::cel::Validator;\n\
                let now = jiff::Timestamp::now();\nuse kube::{Api, CustomResource};\n\
                let c: kube::Client;\ntokio::spawn(f);\n";
    assert_eq!(
        forbidden_names(text),
        vec![
            (3, "Timestamp::now".to_string()),
            (4, "kube::".to_string()),
            (5, "kube::".to_string()),
            (6, "tokio".to_string()),
        ]
    );
    let tests = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use std::fs;\n}\n";
    let code = production(Path::new("x.rs"), tests).unwrap();
    assert!(forbidden_names(&code).is_empty(), "{code}");
    assert!(production(Path::new("tests.rs"), tests).is_none());
}
