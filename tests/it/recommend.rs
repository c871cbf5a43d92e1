//! `microseg recommend` on the flow samples under tests/fixtures/flows/ (made by the project's own
//! generator, `microseg::recommend::generate`, seeded; `MICROSEG_UPDATE_SAMPLES=1` rewrites them
//! and the expected recommendation): the built binary gives the same bytes every time and the
//! same policy from the JSON, CSV and DFW-log forms; and the recommended policy, written in
//! monitor mode into a simulator on 127.0.0.1 with the samples' VMs, leaves no replayed flow on
//! the catch-all rule except the ones it lists as rare.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::nsx_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Output;

use microseg::api::manifest::{Resource, resources};
use microseg::api::{Direction, Owner, Phase, SegmentationPolicy, VmTag};
use microseg::monitor::parse::parse_line;
use microseg::net::Protocol;
use microseg::nsx::naming::{CATCHALL_IN, CATCHALL_OUT, Identity};
use microseg::nsx::{Client, NsxApi};
use microseg::nsxsim;
use microseg::plan::report::peer_groups;
use microseg::plan::{self, Context, LiveState};
use microseg::recommend::generate::{SEED, samples};
use microseg::recommend::{
    Application, Endpoint, Observation, Options, PeerKey, Rare, enrich, recommend,
};
use nsx_support::{credential_files, sim_client_config};
use serde_json::json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows")
}

fn update() -> bool {
    std::env::var("MICROSEG_UPDATE_SAMPLES").is_ok()
}

/// The options the CLI runs below give.
fn options() -> (Application, Options) {
    let app = Application {
        tags: vec![VmTag {
            scope: Some("app".into()),
            tag: "orders".into(),
        }],
        ..Application::default()
    };
    let mut o = Options::new(
        "orders",
        "shop",
        "wave-1",
        vec![Owner {
            name: "Orders team".into(),
            email: Some("orders@example.com".into()),
            webhook: None,
        }],
    );
    o.application = Some("Order service".into());
    o.outbound_catch_all = true;
    (app, o)
}

fn recommend_cli(flows: &str, extra: &[&str]) -> Output {
    let dir = fixtures();
    let mut args = vec![
        "recommend".to_string(),
        "--flows".into(),
        dir.join(flows).display().to_string(),
        "--app-tag".into(),
        "app|orders".into(),
        "--policies".into(),
        dir.join("policies").display().to_string(),
        "--inventory".into(),
        dir.join("vms.json").display().to_string(),
        "--name".into(),
        "orders".into(),
        "--namespace".into(),
        "shop".into(),
        "--application".into(),
        "Order service".into(),
        "--window".into(),
        "wave-1".into(),
        "--owner".into(),
        "Orders team <orders@example.com>".into(),
        "--catch-all-outbound".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn policies_in(text: &str) -> Vec<SegmentationPolicy> {
    resources(text)
        .unwrap()
        .into_iter()
        .filter_map(|(_, r)| match r {
            Resource::Policy(p) => Some(*p),
            Resource::Window(_) => None,
        })
        .collect()
}

fn known() -> Vec<SegmentationPolicy> {
    policies_in(&std::fs::read_to_string(fixtures().join("policies/shop.yaml")).unwrap())
}

#[test]
fn the_committed_samples_are_what_the_generator_makes() {
    let s = samples(SEED);
    for (name, content) in &s.files {
        let path = fixtures().join(name);
        if update() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with MICROSEG_UPDATE_SAMPLES=1",
                path.display()
            )
        });
        assert!(
            committed == *content,
            "{} differs from the generator's output; run with MICROSEG_UPDATE_SAMPLES=1",
            path.display()
        );
    }
    // A realistic mix: several peers, ephemeral source ports, one /24 of clients, DNS and NTP,
    // a few one-off flows.
    let ephemeral = s
        .flows
        .iter()
        .filter(|f| f.src_port.is_some_and(|p| p >= 49152))
        .count();
    assert!(ephemeral > 50, "{ephemeral}");
    let clients: BTreeSet<IpAddr> = s
        .flows
        .iter()
        .map(|f| f.src.ip)
        .filter(|ip| ip.to_string().starts_with("10.20.30."))
        .collect();
    assert!(clients.len() >= 20);
    assert!(s.flows.iter().any(|f| f.port == Some((53, 53))));
    assert!(s.flows.iter().any(|f| f.port == Some((123, 123))));
    assert!(s.flows.iter().filter(|f| f.count <= 2).count() >= 3);
}

#[test]
fn the_same_input_gives_the_same_bytes_and_every_form_the_same_policy() {
    let json = recommend_cli("flows.json", &[]);
    let again = recommend_cli("flows.json", &[]);
    assert_eq!(json.stdout, again.stdout, "same input, same bytes");
    let yaml = String::from_utf8(json.stdout).unwrap();
    let golden = fixtures().join("recommended.yaml");
    if update() {
        std::fs::write(&golden, &yaml).unwrap();
    }
    assert_eq!(
        yaml,
        std::fs::read_to_string(&golden).unwrap(),
        "{} differs; run with MICROSEG_UPDATE_SAMPLES=1 after an intended change",
        golden.display()
    );
    // It passes the CRD schema (the reader used by `plan` validates it).
    let policy = &policies_in(&yaml)[0];
    let csv = String::from_utf8(recommend_cli("flows.csv", &[]).stdout).unwrap();
    // The same columns: the same bytes but for the lines that name the source file.
    let unsourced = |y: &str| -> String {
        y.lines()
            .filter(|l| {
                !l.starts_with("# Source: ") && !l.starts_with("# Evidence per rule, from ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        csv.contains("# Source: file flows.csv (microseg CSV).\n"),
        "{csv}"
    );
    assert_eq!(
        unsourced(&csv),
        unsourced(&yaml),
        "CSV and JSON carry the same columns"
    );
    let dfw = String::from_utf8(recommend_cli("dfw.log", &[]).stdout).unwrap();
    assert_eq!(
        policies_in(&dfw)[0].spec,
        policy.spec,
        "DFW lines give the same rules"
    );
    // Peers in Git are named by application, the /24 of clients by its CIDR.
    assert!(yaml.contains("application:\n        name: web"), "{yaml}");
    assert!(yaml.contains("namespace: infra"), "{yaml}");
    assert!(yaml.contains("cidr: 10.20.30.0/24"), "{yaml}");
    assert!(yaml.contains("# Rare flows"), "{yaml}");
    // Written to a file with -o, the same bytes.
    let tmp = tempfile::Builder::new()
        .prefix("microseg-recommend-")
        .tempdir()
        .unwrap();
    let out = tmp.path().join("recommended.yaml");
    recommend_cli("flows.json", &["-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), yaml);
}

/// True when the flow's application-side view matches a rare entry.
fn is_rare(f: &Observation, rare: &Rare, app: &Application, known: &[SegmentationPolicy]) -> bool {
    let service_ok = rare.service.protocol == f.protocol
        && match f.protocol {
            Protocol::Tcp | Protocol::Udp => rare.service.ports == f.port,
            _ => true,
        };
    let (mine, other) = match rare.direction {
        Direction::Inbound => (&f.dst, &f.src),
        Direction::Outbound => (&f.src, &f.dst),
    };
    if !service_ok || !app.contains(mine) {
        return false;
    }
    match &rare.peer {
        PeerKey::Itself => app.contains(other),
        PeerKey::Address(ip) => *ip == other.ip,
        PeerKey::Network(n) => n.contains(&other.ip),
        PeerKey::Application(ns, name) => known.iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && p.metadata.name.as_deref() == Some(name.as_str())
                && Application::from_members(&p.spec.members).contains(other)
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_monitor_mode_only_the_rare_flows_reach_the_catch_all() {
    let s = samples(SEED);
    let (app, opts) = options();
    let known = known();
    let rec = recommend(&s.flows, &app, &s.vms, &known, &opts).unwrap();
    assert!(
        !rec.rare.is_empty() && rec.policy.spec.rules.len() >= 6,
        "{}",
        rec.yaml
    );

    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let client = Client::new(sim_client_config(&sim.url, &creds, false)).unwrap();
    let http = reqwest::Client::new();
    let vms = http
        .put(format!("{}/admin/vms", sim.url))
        .json(&s.vms)
        .send()
        .await
        .unwrap();
    assert!(vms.status().is_success());

    // The other applications' groups (they are Pending), then the recommendation in Monitoring.
    let identity = Identity::new("demo").unwrap();
    let mut all = known.clone();
    all.push(rec.policy.clone());
    let peers = peer_groups(&all, &identity);
    for (p, phase) in known
        .iter()
        .map(|p| (p, Phase::Pending))
        .chain([(&rec.policy, Phase::Monitoring)])
    {
        let ns = p.metadata.namespace.clone().unwrap();
        let name = p.metadata.name.clone().unwrap();
        let seq = BTreeMap::new();
        let cx = Context {
            identity: &identity,
            peers: &peers,
            previous_sequence: &seq,
        };
        let d = plan::desired(p, phase, &cx).unwrap();
        let change = plan::diff(&d, &LiveState::default(), &identity, &ns, &name).unwrap();
        client.patch_infra(&change.patch.unwrap()).await.unwrap();
    }
    let id = identity.object_id("shop", "orders");
    let written = client.get_policy("default", &id).await.unwrap().unwrap();
    let ids = LiveState {
        group: None,
        policy: Some(written),
    }
    .rule_ids();
    let catch_all: BTreeSet<u32> = [CATCHALL_IN, CATCHALL_OUT]
        .iter()
        .map(|r| u32::try_from(ids[*r]).unwrap())
        .collect();
    assert_eq!(catch_all.len(), 2);

    // Replay every flow as initiated (replies turned round, as the recommendation reads them).
    let mut on_catch_all: Vec<Observation> = Vec::new();
    let mut replayed = 0;
    let mut logged = 0;
    for f in &s.flows {
        let f = f.normalised();
        let proto = match f.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            _ => "ICMP",
        };
        let body = json!({
            "src_ip": f.src.ip.to_string(),
            "dst_ip": f.dst.ip.to_string(),
            "protocol": proto,
            "dst_port": f.port.map(|p| p.0),
            "src_port": f.src_port,
        });
        let answer: serde_json::Value = http
            .post(format!("{}/admin/flow", sim.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        replayed += 1;
        let lines = answer["lines"].as_array().unwrap();
        logged += lines.len();
        let hit = lines.iter().any(|l| {
            let record = parse_line(l.as_str().unwrap()).unwrap();
            catch_all.contains(&record.rule_id)
        });
        if hit {
            on_catch_all.push(f);
        }
    }
    assert_eq!(replayed, s.flows.len());
    assert!(replayed > 60, "{replayed}");
    assert!(logged > 0, "monitor mode logs the catch-all");

    let mut enriched = Vec::new();
    for f in &on_catch_all {
        let mut f = f.clone();
        enrich(&mut f.src, &s.vms);
        enrich(&mut f.dst, &s.vms);
        enriched.push(f);
    }
    for f in &enriched {
        assert!(
            rec.rare.iter().any(|r| is_rare(f, r, &app, &known)),
            "{} -> {} {:?} {:?} reached the catch-all but is not listed as rare:\n{}",
            f.src.ip,
            f.dst.ip,
            f.protocol,
            f.port,
            rec.yaml
        );
    }
    for r in &rec.rare {
        assert!(
            enriched.iter().any(|f| is_rare(f, r, &app, &known)),
            "rare entry {r:?} has no flow on the catch-all: it should have been a rule or not listed"
        );
    }
    let unrelated = Endpoint::ip("10.10.1.22".parse().unwrap());
    assert!(!app.contains(&unrelated));
    sim.shutdown().await;
}

const MONITORED: &str = r#"apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata:
  name: orders
  namespace: shop
spec:
  owners: [{ name: Orders team, email: orders@example.com }]
  criticality: High
  window: { name: wave-1 }
  members: [{ vmTag: { scope: app, tag: orders } }]
  rules:
    - name: https
      direction: Inbound
      peers: [{ cidr: 10.20.30.0/24 }]
      ports: [{ protocol: TCP, port: 443 }]
status:
  monitor:
    unmatchedTotal: 61
    flows:
      - { source: 10.5.5.5, destination: 10.10.2.11, protocol: TCP, port: 9443, direction: Inbound,
          action: PASS, count: 20, firstSeen: "2027-02-02T10:00:00Z", lastSeen: "2027-02-03T10:00:00Z" }
      - { source: 10.10.2.12, destination: 10.0.0.25, protocol: TCP, port: 25, direction: Outbound,
          action: PASS, count: 40, firstSeen: "2027-02-02T10:00:00Z", lastSeen: "2027-02-03T10:00:00Z",
          acknowledged: { by: ops, at: "2027-02-03T11:00:00Z", comment: mail relay goes away } }
      - { source: 192.0.2.200, destination: 10.10.2.13, protocol: UDP, port: 161, direction: Inbound,
          action: PASS, count: 1, firstSeen: "2027-02-02T12:00:00Z", lastSeen: "2027-02-02T12:00:00Z" }
"#;

#[test]
fn a_policys_unmatched_monitor_flows_become_rules_added_to_it() {
    let tmp = tempfile::Builder::new()
        .prefix("microseg-recommend-policy-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let path = dir.join("orders.yaml");
    std::fs::write(&path, MONITORED).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["recommend", "--flows", path.to_str().unwrap()])
        .output()
        .unwrap();
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = &policies_in(&yaml)[0];
    let names: Vec<&str> = p.spec.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["https", "from-10-5-5-5-tcp-9443"], "{yaml}");
    assert_eq!(p.spec.criticality, microseg::api::Criticality::High);
    assert!(
        !yaml.contains("10.0.0.25"),
        "acknowledged flows are decided: {yaml}"
    );
    assert!(
        yaml.contains("#   Inbound from 192.0.2.200 UDP/161: 1 flow (seen fewer than 3 times, first 2027-02-02T12:00:00Z, last 2027-02-02T12:00:00Z)"),
        "{yaml}"
    );
}

#[test]
fn missing_identity_flags_are_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args([
            "recommend",
            "--flows",
            fixtures().join("flows.csv").to_str().unwrap(),
            "--app-tag",
            "app|orders",
            "--window",
            "wave-1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--name: required"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args([
            "recommend",
            "--flows",
            fixtures().join("flows.csv").to_str().unwrap(),
            "--name",
            "orders",
            "--window",
            "wave-1",
            "--owner",
            "Orders <orders@example.com>",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("recommend: application: give a VM tag"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_cluster_reads_the_policy_through_the_kubeconfig() {
    // A stand-in API server on 127.0.0.1 that serves the one object the command reads.
    let body: serde_json::Value = serde_yaml::from_str(MONITORED).unwrap();
    let body = body.to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let body = body.clone();
        let log = log.clone();
        async move {
            let path = req.uri().path().to_string();
            log.lock().unwrap().push(path.clone());
            if path == "/apis/microseg.io/v1alpha1/namespaces/shop/segmentationpolicies/orders" {
                (
                    axum::http::StatusCode::OK,
                    [("content-type", "application/json")],
                    body,
                )
            } else {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"})
                    .to_string(),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let tmp = tempfile::Builder::new()
        .prefix("microseg-recommend-kube-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: t\n    user: u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let run = |key: &'static str| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
                .args([
                    "recommend",
                    "--from-cluster",
                    key,
                    "--kubeconfig",
                    kubeconfig.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        })
    };
    let out = run("shop/orders").await.unwrap();
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = policies_in(&yaml)[0]
        .spec
        .rules
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, ["https", "from-10-5-5-5-tcp-9443"], "{yaml}");
    let missing = run("shop/nope").await.unwrap();
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--from-cluster: SegmentationPolicy shop/nope"),
        "{stderr}"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.ends_with("/namespaces/shop/segmentationpolicies/orders"))
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}
