//! Golden files: the rendered example of every notice kind (text and HTML) and of each webhook
//! payload format are committed under `docs/notices/` for reviewers. This test fails when they
//! drift from the templates; `MICROSEG_UPDATE_GOLDEN=1 cargo test --test it notify_render::`
//! rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use microseg::notify::render::{self, RenderOptions};
use microseg::notify::{NoticeKind, examples, webhook};

fn options() -> RenderOptions {
    RenderOptions {
        contact: "the network security team, netsec@example.com".to_string(),
        dashboard_url: Some("https://microseg.example.com/".to_string()),
    }
}

fn file_stem(kind: NoticeKind) -> String {
    render::template_name(kind).replace('_', "-")
}

/// Every generated file: name → content.
fn generated() -> BTreeMap<String, String> {
    let options = options();
    let mut files = BTreeMap::new();
    for notice in examples::all() {
        let r = render::render_with(&notice, &options).unwrap();
        let stem = file_stem(notice.kind);
        files.insert(
            format!("{stem}.txt"),
            format!("Subject: {}\n\n{}", r.subject, r.text),
        );
        files.insert(format!("{stem}.html"), r.html);
    }
    let digest = examples::notice(NoticeKind::AlertDigest);
    let scheduled = examples::notice(NoticeKind::Scheduled);
    for format in [
        webhook::WebhookFormat::Generic,
        webhook::WebhookFormat::Slack,
        webhook::WebhookFormat::Teams,
    ] {
        for n in [&scheduled, &digest] {
            let r = render::render_with(n, &options).unwrap();
            let body = webhook::payload(format, n, &r, &options);
            files.insert(
                format!("webhook-{}-{}.json", format.as_str(), file_stem(n.kind)),
                serde_json::to_string_pretty(&body).unwrap() + "\n",
            );
        }
    }
    files
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/notices")
}

#[test]
fn rendered_examples_in_docs_match_the_templates() {
    let dir = dir();
    let files = generated();
    if std::env::var("MICROSEG_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name != "README.md" && !files.contains_key(&name) {
                std::fs::remove_file(&path).unwrap();
            }
        }
        for (name, content) in &files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        return;
    }
    let hint = "run `MICROSEG_UPDATE_GOLDEN=1 cargo test --test it notify_render::` and commit docs/notices/";
    let mut problems = Vec::new();
    for (name, want) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(have) if &have == want => {}
            Ok(_) => problems.push(format!("{name}: differs from the templates")),
            Err(_) => problems.push(format!("{name}: missing")),
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name != "README.md" && !files.contains_key(&name) {
            problems.push(format!("{name}: not generated any more"));
        }
    }
    assert!(problems.is_empty(), "{}\n{hint}", problems.join("\n"));
}

#[test]
fn every_kind_has_text_and_html_examples() {
    let files = generated();
    for kind in examples::KINDS {
        let stem = file_stem(kind);
        assert!(files.contains_key(&format!("{stem}.txt")), "{stem}.txt");
        assert!(files[&format!("{stem}.html")].starts_with("<!DOCTYPE html>"));
    }
    assert_eq!(examples::KINDS.len(), 7);
}
