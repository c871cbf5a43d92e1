//! `microseg plan -f DIR` against NSX, run as the built binary: the state NSX holds is written
//! into a simulator on 127.0.0.1 by the plan's own hierarchical calls (as the controller would
//! have written it), dumped as `/admin/state` does, and compared by `--nsx-snapshot` (and once by
//! `--nsx-url`). Each case checks the exit code and the difference against a golden file in
//! tests/fixtures/plan/ (`MICROSEG_UPDATE_GOLDEN=1` rewrites them after an intended change).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::nsx_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use microseg::api::manifest::{Resource, resources};
use microseg::api::{EnforcementWindow, SegmentationPolicy};
use microseg::nsx::naming::Identity;
use microseg::nsx::{Client, NsxApi};
use microseg::nsxsim;
use microseg::plan::report::{peer_groups, phase_at};
use microseg::plan::{self, Context};
use nsx_support::{
    ClientExt, CredentialFiles, credential_files, group, live_state, put_external_groups,
    sim_client_config,
};

const MONITORING: &str = "2027-02-05T00:00:00Z";
const ENFORCING: &str = "2027-02-20T00:00:00Z";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples")
}

/// A path in a temporary directory that is removed when this is dropped.
struct Scratch {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

fn temp_dir(label: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("microseg-plan-cli-{label}-"))
        .tempdir()
        .unwrap();
    Scratch {
        path: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// A copy of deploy/examples with `edit(file name, text)` applied to every file.
fn examples_with(label: &str, edit: impl Fn(&str, String) -> String) -> Scratch {
    let dir = temp_dir(label);
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = edit(&name, text.clone());
        std::fs::write(dir.join(&name), edited).unwrap();
    }
    dir
}

fn manifests(dir: &Path) -> (Vec<EnforcementWindow>, Vec<SegmentationPolicy>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut w, mut p) = (Vec::new(), Vec::new());
    for f in files {
        for (_, r) in resources(&std::fs::read_to_string(&f).unwrap()).unwrap() {
            match r {
                Resource::Window(x) => w.push(*x),
                Resource::Policy(x) => p.push(*x),
            }
        }
    }
    (w, p)
}

/// Writes what the controller would have written for `dir` at `at` into `client`'s NSX.
async fn write_state(client: &Client, dir: &Path, at: &str) {
    let (windows, policies) = manifests(dir);
    let identity = Identity::new("demo").unwrap();
    let peers = peer_groups(&policies, &identity);
    let now = at.parse().unwrap();
    // NSX groups the examples name by path exist before microseg runs.
    let texts: String = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    put_external_groups(client, &texts).await;
    // Groups first so rules naming peer applications find them, then each policy's phase.
    for pass in 0..2 {
        for p in &policies {
            let ns = p.metadata.namespace.clone().unwrap();
            let name = p.metadata.name.clone().unwrap();
            let id = identity.object_id(&ns, &name);
            let domain = p.spec.nsx.domain.clone();
            let phase = if pass == 0 {
                microseg::api::Phase::Pending
            } else {
                phase_at(p, &windows, now).unwrap().phase
            };
            let live = live_state(client, &domain, &id).await;
            let seq = live.rule_sequence();
            let cx = Context {
                identity: &identity,
                peers: &peers,
                previous_sequence: &seq,
            };
            let d = plan::desired(p, phase, &cx).unwrap();
            let change = plan::diff(&d, &live, &identity, &ns, &name).unwrap();
            if let Some(body) = &change.patch {
                client.patch_infra(body).await.unwrap();
            }
        }
    }
}

/// A simulator holding what the controller wrote for `dir` at `at`, its admin credential files
/// and a client. A TLS simulator's CA is written to `ca` and trusted from there.
async fn simulator_holding(
    config: nsxsim::Config,
    ca: Option<&Path>,
    dir: &Path,
    at: &str,
) -> (nsxsim::Running, CredentialFiles, Client) {
    let sim = nsxsim::spawn(config).await.unwrap();
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let mut client_config = sim_client_config(&sim.url, &creds, false);
    if let Some(ca) = ca {
        std::fs::write(ca, sim.ca_pem.clone().unwrap()).unwrap();
        client_config.ca_bundle = Some(ca.to_path_buf());
    }
    let client = Client::new(client_config).unwrap();
    write_state(&client, dir, at).await;
    (sim, creds, client)
}

/// A simulator snapshot of NSX after the controller handled `dir` at `at`.
async fn snapshot(dir: &Path, at: &str) -> Scratch {
    let (sim, _creds, _) = simulator_holding(nsxsim::Config::default(), None, dir, at).await;
    let tmp = temp_dir("snapshot");
    let path = tmp.join("state.json");
    std::fs::write(&path, serde_json::to_string_pretty(&sim.state()).unwrap()).unwrap();
    sim.shutdown().await;
    Scratch {
        path,
        _dir: tmp._dir,
    }
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(args)
        .env_remove("MICROSEG_CLUSTER")
        .output()
        .unwrap()
}

/// `microseg plan -f DIR --cluster demo --at AT` followed by `extra`.
fn plan_with(dir: &Path, at: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "plan",
        "-f",
        dir.to_str().unwrap(),
        "--cluster",
        "demo",
        "--at",
        at,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn plan(dir: &Path, at: &str, snapshot: &Path) -> Output {
    plan_with(dir, at, &["--nsx-snapshot", snapshot.to_str().unwrap()])
}

/// `microseg plan` of deploy/examples at `at` against the manager at `url` (basic auth with
/// the credential files in `creds_dir`) followed by `extra`, off the async runtime.
async fn plan_live(at: &'static str, url: &str, creds_dir: &str, extra: Vec<String>) -> Output {
    let mut args: Vec<String> = [
        "--nsx-insecure-allow-http",
        "--nsx-url",
        url,
        "--nsx-auth",
        "basic",
        "--nsx-credentials-dir",
        creds_dir,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra);
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        plan_with(&examples(), at, &refs)
    })
    .await
    .unwrap()
}

/// A copy of deploy/examples with `edit` applied to the file `file` only.
fn examples_editing(label: &str, file: &str, edit: impl Fn(String) -> String) -> Scratch {
    examples_with(
        label,
        |name, text| {
            if name == file { edit(text) } else { text }
        },
    )
}

/// deploy/examples without the db's `from-backup` rule.
fn examples_without_backup_rule(label: &str) -> Scratch {
    examples_editing(label, "12-db.yaml", |text| {
        let start = text.find("    - name: from-backup").unwrap();
        let end = start + text[start..].find("  afterCleanup:").unwrap();
        format!("{}{}", &text[..start], &text[end..])
    })
}

/// The difference part of the output (after the per-phase plan).
fn difference(out: &Output) -> String {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let start = text
        .find("Difference from NSX")
        .unwrap_or_else(|| panic!("no difference in output:\n{text}"));
    text[start..].to_string()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(format!("{name}.txt"));
    if std::env::var("MICROSEG_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with MICROSEG_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        want,
        "{} differs; run with MICROSEG_UPDATE_GOLDEN=1 after an intended change",
        path.display()
    );
}

#[tokio::test]
async fn no_change_exits_zero() {
    let snap = snapshot(&examples(), MONITORING).await;
    let out = plan(&examples(), MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(0), "{diff}");
    assert!(
        diff.contains("0 added, 0 changed, 0 removed, 4 unchanged, 0 errors"),
        "{diff}"
    );
    golden("no-change", &diff);
}

/// Sets `field` to `value` on the rule `rule` wherever the snapshot holds it.
fn edit_rule(
    v: &mut serde_json::Value,
    rule: &str,
    field: &str,
    value: serde_json::Value,
) -> usize {
    match v {
        serde_json::Value::Object(o) => {
            let mut n = 0;
            if o.get("resource_type").and_then(|t| t.as_str()) == Some("Rule")
                && o.get("id").and_then(|t| t.as_str()) == Some(rule)
            {
                o.insert(field.into(), value.clone());
                n += 1;
            }
            for child in o.values_mut() {
                n += edit_rule(child, rule, field, value.clone());
            }
            n
        }
        serde_json::Value::Array(a) => a
            .iter_mut()
            .map(|x| edit_rule(x, rule, field, value.clone()))
            .sum(),
        _ => 0,
    }
}

#[tokio::test]
async fn a_flipped_sources_excluded_exits_two_and_names_the_rule_and_the_field() {
    // The snapshot holds microseg's own write the way the manager returns it (defaults
    // filled, services ["ANY"] beside entries): no change. Someone then inverts one rule's
    // source match in the NSX UI.
    let snap = snapshot(&examples(), MONITORING).await;
    let clean = plan(&examples(), MONITORING, &snap);
    assert_eq!(clean.status.code(), Some(0), "{}", difference(&clean));
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    assert_eq!(
        edit_rule(
            &mut state,
            "ssh-from-bastion",
            "sources_excluded",
            serde_json::json!(true)
        ),
        1
    );
    std::fs::write(&snap, serde_json::to_string(&state).unwrap()).unwrap();
    let out = plan(&examples(), MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(
        diff.contains("~ rule ssh-from-bastion: sources_excluded true -> false"),
        "{diff}"
    );
}

#[tokio::test]
async fn one_added_rule_exits_two_and_names_it() {
    let snap = snapshot(&examples(), MONITORING).await;
    let dir = examples_editing("added-rule", "10-web.yaml", |text| {
        text.replace(
            "  catchAll:",
            "    - name: metrics-scrape\n      direction: Inbound\n      peers: [{ cidr: 10.50.0.0/24 }]\n      ports: [{ protocol: TCP, port: 9100 }]\n  catchAll:",
        )
    });
    let out = plan(&dir, MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(
        diff.contains(
            "+ rule metrics-scrape: ALLOW IN from 10.50.0.0/24 to application shop/web on TCP/9100"
        ),
        "{diff}"
    );
    assert!(
        diff.contains("0 added, 1 changed, 0 removed, 3 unchanged"),
        "{diff}"
    );
    golden("added-rule", &diff);
}

#[tokio::test]
async fn one_removed_peer_exits_two_and_names_it() {
    // NSX was written when the bastion rule had two peers; the pull request drops one.
    let before = examples_editing("two-peers", "10-web.yaml", |text| {
        text.replace(
            "peers: [{ cidr: 10.0.0.10/32 }]",
            "peers: [{ cidr: 10.0.0.10/32 }, { cidr: 10.0.0.11/32 }]",
        )
    });
    let snap = snapshot(&before, MONITORING).await;
    let out = plan(&examples(), MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(
        diff.contains("~ rule ssh-from-bastion: sources - 10.0.0.11"),
        "{diff}"
    );
    golden("removed-peer", &diff);
}

#[tokio::test]
async fn a_phase_change_shows_the_catch_all_turning_to_drop() {
    let snap = snapshot(&examples(), MONITORING).await;
    let out = plan(&examples(), ENFORCING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(
        diff.contains("shop/web (Enforcing): changed")
            && diff.contains("~ rule catchall_in: action ALLOW -> DROP"),
        "{diff}"
    );
    assert!(diff.contains("shop/dns (Pending): no change"), "{diff}");
    golden("phase-change", &diff);
}

#[test]
fn a_schema_error_names_file_and_line_and_exits_one() {
    let dir = examples_editing("schema-error", "12-db.yaml", |text| {
        text.replace("port: 5432", "port: 70000")
    });
    let snap = dir.join("unused-snapshot.json");
    std::fs::write(&snap, "{\"domains\": {}}").unwrap();
    let out = plan(&dir, MONITORING, &snap);
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing is planned from a broken directory"
    );
    assert!(stderr.contains("12-db.yaml: line "), "{stderr}");
    assert!(
        stderr.contains("SegmentationPolicy db: spec.rules[0].ports[0].port: Invalid value: 70000: must be at most 65535"),
        "{stderr}"
    );
}

#[test]
fn a_broken_snapshot_is_an_error_naming_the_file() {
    let dir = temp_dir("broken-snapshot");
    let snap = dir.join("state.json");
    std::fs::write(&snap, "{\"domains\": 3}").unwrap();
    let out = plan(&examples(), MONITORING, &snap);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state.json: domains: missing or not an object"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_manager_is_read_through_the_nsx_flags() {
    let (sim, creds, client) =
        simulator_holding(nsxsim::Config::default(), None, &examples(), MONITORING).await;
    // An object microseg does not own, in the same domain: never reported.
    client
        .patch_group("default", &group("hand-made", vec!["10.7.0.0/24"]))
        .await
        .unwrap();
    let creds_dir = creds.0.parent().unwrap().to_str().unwrap();
    let out = plan_live(ENFORCING, &sim.url, creds_dir, Vec::new()).await;
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(!diff.contains("hand-made"), "{diff}");
    assert!(
        diff.contains("0 added, 3 changed, 0 removed, 1 unchanged, 0 errors"),
        "{diff}"
    );
    sim.shutdown().await;
}

const CACHE: &str = "# A cache the shop adds in this pull request.
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata:
  name: cache
  namespace: shop
spec:
  owners: [{ name: Orders team, email: orders@example.com }]
  criticality: Low
  window: { name: wave-1 }
  members: [{ vmName: { startsWith: cache- } }]
  rules:
    - name: from-app
      direction: Inbound
      peers: [{ application: { name: app } }]
      ports: [{ protocol: TCP, port: 6379 }]
";

fn examples_and_cache(label: &str) -> Scratch {
    let dir = examples_with(label, |_, text| text);
    std::fs::write(dir.join("30-cache.yaml"), CACHE).unwrap();
    dir
}

#[tokio::test]
async fn a_policy_nsx_does_not_have_yet_is_added() {
    let snap = snapshot(&examples(), MONITORING).await;
    let out = plan(&examples_and_cache("added-policy"), MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(diff.contains("shop/cache (Monitoring): added"), "{diff}");
    golden("added-policy", &diff);
}

#[tokio::test]
async fn a_policy_gone_from_git_is_removed() {
    let snap = snapshot(&examples_and_cache("removed-policy"), MONITORING).await;
    let out = plan(&examples(), MONITORING, &snap);
    let diff = difference(&out);
    assert_eq!(out.status.code(), Some(2), "{diff}");
    assert!(diff.contains("shop/cache: removed"), "{diff}");
    assert!(
        diff.contains("0 added, 0 changed, 1 removed, 4 unchanged"),
        "{diff}"
    );
    golden("removed-policy", &diff);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_certificate_is_verified_unless_told_otherwise() {
    let dir = temp_dir("tls");
    let ca = dir.join("ca.pem");
    let tls = nsxsim::Config {
        tls: true,
        ..nsxsim::Config::default()
    };
    let (sim, creds, _) = simulator_holding(tls, Some(&ca), &examples(), MONITORING).await;
    let creds_dir = creds.0.parent().unwrap().to_str().unwrap();
    let with = |extra: Vec<String>| plan_live(MONITORING, &sim.url, creds_dir, extra);
    let unverified = with(Vec::new()).await;
    let stderr = String::from_utf8(unverified.stderr).unwrap();
    assert_eq!(unverified.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NSX unreachable"), "{stderr}");
    let verified = with(vec!["--nsx-ca-file".into(), ca.display().to_string()]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", difference(&verified));
    let skipped = with(vec!["--nsx-insecure-skip-tls-verify".into()]).await;
    assert_eq!(skipped.status.code(), Some(0), "{}", difference(&skipped));
    assert!(
        String::from_utf8(skipped.stderr)
            .unwrap()
            .contains("certificate is NOT verified")
    );
    sim.shutdown().await;
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `plan -f DIR --base deploy/examples --flows ... --inventory ...` at the enforcement instant.
fn impact(dir: &Path) -> (Output, String) {
    let out = plan_with(
        dir,
        ENFORCING,
        &[
            "--base",
            examples().to_str().unwrap(),
            "--flows",
            &fixture("flows.log"),
            "--inventory",
            &fixture("vms.json"),
        ],
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let start = text.find("Impact on recorded traffic").unwrap_or_else(|| {
        panic!(
            "no impact in output:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The flows file's path depends on the checkout: keep its name only.
    let report = text[start..]
        .replace(&fixture(""), "tests/fixtures/plan/")
        .replace(examples().to_str().unwrap(), "deploy/examples");
    (out, report)
}

#[test]
fn a_pull_request_that_removes_a_rule_reports_the_flows_it_would_drop_and_exits_two() {
    let dir = examples_without_backup_rule("flows-removed");
    let (out, report) = impact(&dir);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(
        report.contains("shop/db: 2 newly dropped, 0 newly allowed"),
        "{report}"
    );
    assert!(
        report.contains(
            "TCP 10.99.4.20 -> 10.20.30.5 (shop-db-01):10050, 2 seen, last 2027-02-10T02:00:00.000Z"
        ),
        "{report}"
    );
    golden("flows-removed-rule", &report);
}

#[test]
fn a_pull_request_that_adds_a_rule_reports_the_flows_it_newly_allows_and_exits_zero() {
    let dir = examples_editing("flows-added", "12-db.yaml", |text| {
        text.replace(
            "  afterCleanup:",
            "    - name: node-exporter\n      direction: Inbound\n      peers: [{ cidr: 10.50.0.0/24 }]\n      ports: [{ protocol: TCP, port: 9100 }]\n  afterCleanup:",
        )
    });
    let (out, report) = impact(&dir);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("shop/db: 0 newly dropped, 1 newly allowed"),
        "{report}"
    );
    assert!(
        report.contains("now: shop/db node-exporter ALLOW at the destination; was: shop/db catchall_in DROP at the destination"),
        "{report}"
    );
    golden("flows-added-rule", &report);
}

#[test]
fn no_change_to_the_manifests_changes_no_flow() {
    let (out, report) = impact(&examples());
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("0 newly dropped, 0 newly allowed"),
        "{report}"
    );
}

#[test]
fn a_flows_file_that_holds_no_flow_is_an_error_naming_the_file() {
    let dir = temp_dir("bad-flows");
    let bad = dir.join("flows.log");
    std::fs::write(&bad, "hello\n").unwrap();
    let out = run(&[
        "plan",
        "-f",
        examples().to_str().unwrap(),
        "--at",
        ENFORCING,
        "--flows",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flows.log") && err.contains("no DFW log line"),
        "{err}"
    );
}

#[tokio::test]
async fn against_what_nsx_holds_only_the_removed_rule_drops_flows() {
    // Before is the simulator's state, default section and all: an unchanged set changes no
    // flow, the removed rule drops the same two flows as against the base manifests.
    let snap = snapshot(&examples(), ENFORCING).await;
    let args = |dir: &Path| {
        plan_with(
            dir,
            ENFORCING,
            &[
                "--nsx-snapshot",
                snap.to_str().unwrap(),
                "--flows",
                &fixture("flows.log"),
                "--inventory",
                &fixture("vms.json"),
            ],
        )
    };
    let same = args(&examples());
    let text = String::from_utf8(same.stdout.clone()).unwrap();
    assert_eq!(same.status.code(), Some(0), "{text}");
    assert!(text.contains("before: what NSX holds now"), "{text}");
    assert!(
        text.contains("7 flows: 0 newly dropped, 0 newly allowed, 7 unchanged"),
        "{text}"
    );
    let dir = examples_without_backup_rule("flows-removed-live");
    let removed = args(&dir);
    let text = String::from_utf8(removed.stdout.clone()).unwrap();
    assert_eq!(removed.status.code(), Some(2), "{text}");
    assert!(text.contains("shop/db: 2 newly dropped"), "{text}");
}

#[test]
fn a_canary_window_shows_its_steps_and_the_step_in_force() {
    let dir = examples_editing("canary", "01-windows.yaml", |text| {
        text.replacen(
            "  blackouts:",
            "  canary:\n    steps:\n      - { members: 1, for: 24h }\n      - { percent: 50, for: 24h }\n  blackouts:",
            1,
        )
    });
    let out = plan_with(&dir, "2027-02-17T00:00:00Z", &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("at 2027-02-17T00:00:00Z: Enforcing (canary step 1)"),
        "{text}"
    );
    assert!(
        text.contains("canary: step 1: 1 VM, at least 24h0m0s; step 2: 50% of the VMs, at least 24h0m0s; then every VM. Each step: DROP catch-alls catchall_in_canary/catchall_out_canary applied to groups ms_demo_shop_web_canary1.."),
        "{text}"
    );
}
