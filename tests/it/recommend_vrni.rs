//! `microseg recommend` on what vRealize Network Insight really gives: the UI's CSV export, the
//! API's Flow JSON shapes (tests/fixtures/vrni/, sources in its README), and vRNI itself through
//! `--vrni-url`, end to end against the crate's vRNI simulator on 127.0.0.1 (TLS with its own CA,
//! token auth, search paging, bulk fetch, a 429 and an expired token on the way). Every
//! recommended policy is checked against the CRD schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Output;

use kube::CustomResourceExt;
use microseg::api::SegmentationPolicy;
use microseg::api::validate::against_crd;
use microseg::vrnisim::{self, Faults, StoredFlow};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"));
    cmd.args(args)
        .env_remove("VRNI_USERNAME")
        .env_remove("VRNI_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn recommend_args(input: &[String], app: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["recommend".into()];
    args.extend(input.iter().cloned());
    for a in app {
        args.push(a.to_string());
    }
    for a in [
        "--policies",
        &fixtures().join("flows/policies").display().to_string(),
        "--inventory",
        &fixtures().join("flows/vms.json").display().to_string(),
        "--name",
        "orders",
        "--namespace",
        "shop",
        "--window",
        "wave-1",
        "--owner",
        "Orders team <orders@example.com>",
    ] {
        args.push(a.to_string());
    }
    args
}

fn file(name: &str) -> Vec<String> {
    vec![
        "--flows".into(),
        fixtures().join("vrni").join(name).display().to_string(),
    ]
}

/// The YAML of a successful run, checked against the CRD schema.
fn valid_policy(out: &Output) -> (String, SegmentationPolicy) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let yaml = String::from_utf8(out.stdout.clone()).unwrap();
    let value: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        against_crd(&SegmentationPolicy::crd(), &value),
        vec![],
        "{yaml}"
    );
    let policy: SegmentationPolicy = serde_json::from_value(value).unwrap();
    (yaml, policy)
}

fn rule_names(p: &SegmentationPolicy) -> Vec<&str> {
    p.spec.rules.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn the_ui_csv_export_gives_rules_weighed_in_bytes() {
    let out = run(
        &recommend_args(&file("export.csv"), &["--app-ip", "10.10.2.0/24"]),
        &[],
    );
    let (yaml, p) = valid_policy(&out);
    assert!(
        yaml.contains("# Source: file export.csv (vRNI UI flow export, CSV)."),
        "{yaml}"
    );
    assert!(
        yaml.contains("# Evidence is counted in bytes; entries below 1"),
        "{yaml}"
    );
    assert_eq!(
        rule_names(&p),
        [
            "from-web-tcp-8443",
            "from-10-99-0-5-tcp-9100",
            "to-db-tcp-5432",
            "to-dns-udp-53"
        ],
        "{yaml}"
    );
    assert_eq!(
        p.spec.rules[0].description.as_deref(),
        Some("observed 3 conversations (1.3 GiB, 3114 sessions) from 3 peer addresses")
    );
    // The SSH attempt that moved no byte and the OTHER conversation are left to a human.
    assert!(yaml.contains("#   Inbound from 203.0.113.77 TCP/22: 1 conversation (0 bytes in 1 conversation, below 1)"), "{yaml}");
    assert!(
        yaml.contains(
            "#   Inbound from application shop/web OTHER: 1 conversation (OTHER cannot be written"
        ),
        "{yaml}"
    );
    // Given explicitly, the format is the same.
    let mut explicit = file("export.csv");
    explicit.extend(["--format".to_string(), "vrni-csv".to_string()]);
    let again = run(
        &recommend_args(&explicit, &["--app-ip", "10.10.2.0/24"]),
        &[],
    );
    assert_eq!(again.stdout, out.stdout);
}

#[test]
fn every_json_shape_of_the_api_gives_a_policy_and_ids_alone_are_refused() {
    // One Flow (GET /entities/flows/{id}).
    let (yaml, p) = valid_policy(&run(
        &recommend_args(&file("flow.json"), &["--app-ip", "10.10.2.0/24"]),
        &[],
    ));
    assert_eq!(rule_names(&p), ["from-web-tcp-8443"], "{yaml}");
    assert!(
        yaml.contains("# Evidence is counted in conversations"),
        "{yaml}"
    );
    // The bulk fetch answer (POST /entities/fetch), found by the vCenter tag vRNI reports.
    let (yaml, p) = valid_policy(&run(
        &recommend_args(&file("fetch.json"), &["--app-tag", "Application:orders"]),
        &[],
    ));
    assert_eq!(
        rule_names(&p),
        [
            "from-self-tcp-7000",
            "from-web-tcp-8443",
            "from-10-99-0-5-tcp-9100",
            "to-db-tcp-5432",
            "to-dns-udp-53"
        ],
        "{yaml}"
    );
    // NSX has no such tag: the member is the NSX tag the inventory has on exactly those VMs,
    // and the output says why.
    let tags: Vec<_> = p
        .spec
        .members
        .iter()
        .filter_map(|m| m.vm_tag.clone())
        .collect();
    assert_eq!(tags.len(), 1, "{yaml}");
    assert_eq!(
        (tags[0].scope.as_deref(), tags[0].tag.as_str()),
        (Some("app"), "orders")
    );
    assert!(yaml.contains("# NOTE: VM tag \"Application:orders\" is on no VM of the NSX inventory: an NSX group on it would be empty, so the member is the NSX tag \"app|orders\""), "{yaml}");
    // Without an inventory NSX's tags are unknown: the VM names vRNI gave.
    let mut args = recommend_args(&file("fetch.json"), &["--app-tag", "Application:orders"]);
    let at = args.iter().position(|a| a == "--inventory").unwrap();
    args.drain(at..at + 2);
    let (yaml, p) = valid_policy(&run(&args, &[]));
    let names: Vec<_> = p
        .spec
        .members
        .iter()
        .filter_map(|m| m.vm_name.as_ref()?.equals.clone())
        .collect();
    assert_eq!(names, ["orders-01", "orders-02", "orders-03"], "{yaml}");
    assert!(p.spec.members.iter().all(|m| m.vm_tag.is_none()), "{yaml}");
    assert!(
        yaml.contains("looks like a vCenter tag (Category:Tag, as vRNI reports them)"),
        "{yaml}"
    );
    assert!(yaml.contains("#   to-db-tcp-5432: 1 conversation with 1 peer address, first 2025-11-29T10:00:00Z, last 2025-11-29T10:00:00Z"), "{yaml}");
    // A list of ids (GET /entities/flows): refused, saying how to get the details.
    let out = run(
        &recommend_args(&file("flow-ids.json"), &["--app-ip", "10.10.2.0/24"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flow-ids.json: results[0]: a flow id without details"),
        "{err}"
    );
    assert!(
        err.contains("POST /api/ni/entities/fetch") && err.contains("--vrni-url"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_text_file_that_is_no_flow_export_is_refused() {
    let out = run(
        &recommend_args(&file("not-flows.txt"), &["--app-ip", "10.10.2.0/24"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "not-flows.txt: not a flow export: no DFW log line in it (3 lines do not parse; line 1:"
        ),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no policy is written");
}

/// The fixture's Flows, seen in the last days, plus one older than the time range and one of
/// another application.
fn sim_flows(now: i64) -> Vec<StoredFlow> {
    let text = std::fs::read_to_string(fixtures().join("vrni/fetch.json")).unwrap();
    let fetched: Value = serde_json::from_str(&text).unwrap();
    let mut flows: Vec<StoredFlow> = fetched["results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| StoredFlow {
            time: now - 3600 * (i as i64 + 1),
            flow: r["entity"].clone(),
        })
        .collect();
    let mut old = flows[0].flow.clone();
    old["entity_id"] = "18230:515:3317790".into();
    old["source_ip"]["ip_address"] = "203.0.113.50".into();
    flows.push(StoredFlow {
        time: now - 40 * 86_400,
        flow: old,
    });
    let mut other = flows[0].flow.clone();
    other["entity_id"] = "18230:515:3317791".into();
    other["destination_ip"]["ip_address"] = "10.10.9.9".into();
    flows.push(StoredFlow {
        time: now - 60,
        flow: other,
    });
    flows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrni_url_pulls_the_flows_through_auth_paging_fetch_a_429_and_an_expired_token() {
    let now = jiff::Timestamp::now().as_second();
    let sim = vrnisim::spawn(vrnisim::Config {
        tls: true,
        flows: sim_flows(now),
        faults: Faults {
            // Call 2 (the second search page) is throttled; before call 4 every token expires.
            throttle: [2].into(),
            expire_tokens: [4].into(),
            retry_after_secs: 0,
        },
        ..vrnisim::Config::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("microseg-vrni-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("creds")).unwrap();
    std::fs::write(dir.join("creds/username"), vrnisim::DEFAULT_USER).unwrap();
    std::fs::write(
        dir.join("creds/password"),
        format!("{}\n", vrnisim::DEFAULT_PASSWORD),
    )
    .unwrap();
    std::fs::write(dir.join("ca.pem"), sim.ca_pem.as_deref().unwrap()).unwrap();
    let pull = |extra: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut input = vec![
            "--vrni-url".to_string(),
            sim.url.clone(),
            "--since".into(),
            "30d".into(),
        ];
        input.extend(extra);
        let args = recommend_args(&input, &["--app-ip", "10.10.2.0/24"]);
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run(&args, &env)
        })
    };
    let verified = vec![
        "--vrni-ca-file".to_string(),
        dir.join("ca.pem").display().to_string(),
        "--vrni-credentials-dir".into(),
        dir.join("creds").display().to_string(),
        "--vrni-page-size".into(),
        "3".into(),
        "--vrni-min-interval-ms".into(),
        "40".into(),
    ];
    let out = pull(verified.clone(), vec![]).await.unwrap();
    let (yaml, p) = valid_policy(&out);
    assert!(
        yaml.contains(&format!("# Source: vRNI API {}.", sim.url)),
        "{yaml}"
    );
    assert_eq!(
        rule_names(&p),
        [
            "from-self-tcp-7000",
            "from-web-tcp-8443",
            "from-10-99-0-5-tcp-9100",
            "to-db-tcp-5432",
            "to-dns-udp-53"
        ],
        "{yaml}"
    );
    assert!(
        !yaml.contains("203.0.113.50"),
        "the 40-day-old flow is outside --since 30d: {yaml}"
    );
    assert!(
        yaml.contains("first 20"),
        "the search time of each flow is its first/last seen: {yaml}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("7 flows in the last 30d (3 search pages, 1 bulk fetches, 1 throttled calls waited out, 2 logins)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(vrnisim::DEFAULT_PASSWORD),
        "the password is never printed"
    );

    // What vRNI saw: a token, pages followed by cursor, the 429 retried, a new token after the
    // expiry, one bulk fetch, the token deleted; calls spaced by the minimum interval.
    let calls = sim.calls();
    let seq: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {} {}", c.method, c.path, c.status))
        .collect();
    assert_eq!(
        seq,
        [
            "POST /api/ni/auth/token 200",
            "POST /api/ni/search 200",
            "POST /api/ni/search 429",
            "POST /api/ni/search 200",
            "POST /api/ni/search 401",
            "POST /api/ni/auth/token 200",
            "POST /api/ni/search 200",
            "POST /api/ni/entities/fetch 200",
            "DELETE /api/ni/auth/token 204",
        ],
        "{calls:?}"
    );
    assert_eq!(calls[1].cursor, None);
    assert!(calls[2].cursor.is_some() && calls[3].cursor == calls[2].cursor);
    assert!(calls[6].cursor.is_some() && calls[6].cursor != calls[3].cursor);
    // Paced: from the first search to the end, at least 7 intervals of 40 ms. Measured over the
    // span, not per gap, and from the second call: the simulator logs a call when it answers,
    // and the first answer waits for the TLS handshake, which would shorten the first gap.
    let span = calls.last().unwrap().at_ms - calls[1].at_ms;
    assert!(
        span + 15 >= 7 * 40,
        "calls closer than the 40 ms interval: {calls:?}"
    );

    // TLS is verified: without the simulator's CA the pull fails, and nothing is written.
    let no_ca: Vec<String> = verified[2..].to_vec();
    let out = pull(no_ca.clone(), vec![]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("POST /api/ni/auth/token"), "{err}");
    assert!(
        err.contains("certificate"),
        "the cause is the certificate: {err}"
    );
    assert!(out.stdout.is_empty());
    // ... unless the flag that says insecure is given.
    let mut insecure = no_ca.clone();
    insecure.push("--vrni-insecure-skip-tls-verify".into());
    valid_policy(&pull(insecure, vec![]).await.unwrap());

    // Credentials from the environment; a wrong password is a clear error naming the user.
    let env_only: Vec<String> = vec![
        "--vrni-ca-file".into(),
        dir.join("ca.pem").display().to_string(),
        "--vrni-min-interval-ms".into(),
        "0".into(),
    ];
    sim.set_faults(Faults::default());
    let ok = pull(
        env_only.clone(),
        vec![
            ("VRNI_USERNAME", vrnisim::DEFAULT_USER.to_string()),
            ("VRNI_PASSWORD", vrnisim::DEFAULT_PASSWORD.to_string()),
        ],
    )
    .await
    .unwrap();
    valid_policy(&ok);
    let bad = pull(
        env_only.clone(),
        vec![
            ("VRNI_USERNAME", vrnisim::DEFAULT_USER.to_string()),
            ("VRNI_PASSWORD", "wrong-password".to_string()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("HTTP 401: user \"admin@local\" was refused"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    let none = pull(env_only, vec![]).await.unwrap();
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("no credentials: give --vrni-credentials-dir")
    );

    sim.shutdown().await;
}

/// The simulator refuses what the reference refuses, and the client logs in as an LDAP user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_as_the_reference_says_and_ldap_users_log_in() {
    use microseg::vrni;
    let now = jiff::Timestamp::now().as_second();
    let mut config = vrnisim::Config {
        flows: sim_flows(now),
        ..vrnisim::Config::default()
    };
    config.users.insert(
        "jdoe".into(),
        vrnisim::User {
            password: "Dir3ctory!".into(),
            ldap_domain: Some("corp.example.com".into()),
        },
    );
    let sim = vrnisim::spawn(config).await.unwrap();
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/ni{p}", sim.url);
    // No token: 401. A LOCAL login of the LDAP user: 401; with its domain: a token and expiry (ms).
    let r = http
        .post(api("/search"))
        .json(&serde_json::json!({"entity_type": "Flow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let login = |domain: Value| {
        http.post(api("/auth/token"))
            .json(&serde_json::json!({"username": "jdoe", "password": "Dir3ctory!", "domain": domain}))
            .send()
    };
    assert_eq!(
        login(serde_json::json!({"domain_type": "LOCAL"}))
            .await
            .unwrap()
            .status(),
        401
    );
    let ok: Value = login(serde_json::json!({"domain_type": "LDAP", "value": "corp.example.com"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = ok["token"].as_str().unwrap().to_string();
    assert!(ok["expiry"].as_i64().unwrap() > now * 1000, "{ok}");
    let auth = format!("NetworkInsight {token}");
    let post = |path: &str, body: Value| {
        http.post(api(path))
            .header("Authorization", auth.clone())
            .json(&body)
            .send()
    };
    // A filter outside the language, an unknown cursor, too many ids: 400 with a message.
    let r = post(
        "/search",
        serde_json::json!({"entity_type": "Flow", "filter": "source_ip.ip_address == 1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid filter"));
    let r = post(
        "/search",
        serde_json::json!({"entity_type": "Flow", "cursor": "bm9wZQ=="}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let ids: Vec<Value> = (0..1001)
        .map(|i| serde_json::json!({"entity_id": format!("x{i}"), "entity_type": "Flow"}))
        .collect();
    let r = post("/entities/fetch", serde_json::json!({"entity_ids": ids}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The list and the single Flow of the reference.
    let list: Value = http
        .get(api(&format!(
            "/entities/flows?size=2&start_time={}&end_time={now}",
            now - 86_400
        )))
        .header("Authorization", auth.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["results"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["total_count"], 8, "{list}");
    assert!(list["cursor"].is_string(), "{list}");
    let id = list["results"][0]["entity_id"].as_str().unwrap();
    let one: Value = http
        .get(api(&format!("/entities/flows/{id}")))
        .header("Authorization", auth.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["entity_id"], id);
    assert_eq!(one["entity_type"], "Flow");
    // The client as an LDAP user: the same flows as the binary pulls.
    let creds = vrni::Credentials {
        username: "jdoe".into(),
        password: "Dir3ctory!".into(),
        domain: vrni::Domain::Ldap("corp.example.com".into()),
    };
    assert!(
        !format!("{creds:?}").contains("Dir3ctory!"),
        "Debug hides the password"
    );
    let mut cfg = vrni::Config::new(&sim.url, creds);
    cfg.min_interval = std::time::Duration::ZERO;
    let app = microseg::recommend::Application {
        networks: vec!["10.10.2.0/24".parse().unwrap()],
        ..Default::default()
    };
    let (answer, stats) = vrni::pull(cfg, &app, now - 30 * 86_400, now).await.unwrap();
    let flows = microseg::recommend::input::vrni_json(&answer.to_string()).unwrap();
    assert_eq!(flows.len(), 7);
    assert_eq!((stats.pages, stats.fetches, stats.logins), (1, 1, 1));
    // Many selectors: searched in batches, a flow found by two batches fetched once.
    let mut networks: Vec<ipnet::IpNet> = (1..=24u8)
        .map(|i| format!("10.200.0.{i}/32").parse().unwrap())
        .collect();
    for ip in ["10.10.2.11/32", "10.10.2.12/32", "10.10.2.13/32"] {
        networks.push(ip.parse().unwrap());
    }
    let many = microseg::recommend::Application {
        networks,
        ..Default::default()
    };
    assert_eq!(vrni::filters_for(&many).unwrap().len(), 2);
    let creds = vrni::Credentials {
        username: "jdoe".into(),
        password: "Dir3ctory!".into(),
        domain: vrni::Domain::Ldap("corp.example.com".into()),
    };
    let mut cfg = vrni::Config::new(&sim.url, creds);
    cfg.min_interval = std::time::Duration::ZERO;
    let (answer, stats) = vrni::pull(cfg, &many, now - 30 * 86_400, now)
        .await
        .unwrap();
    let ids: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 7, "{ids:?}");
    assert_eq!((stats.pages, stats.fetches), (2, 1));
    sim.shutdown().await;
}
