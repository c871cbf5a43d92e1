//! Benchmark (not a timed test): writes 1,000 applications of 10 rules each to a simulator on
//! 127.0.0.1 through the NSX client, then resyncs all of them (reads only), twice, each on a
//! fresh simulator:
//! - **per application** (the baseline: the controller before issue #22, `--nsx-cache=false
//!   --nsx-batch-window=0s`): read, write once when live state differs, read the rule ids
//!   back, for each application;
//! - **microseg** (as the controller runs now): one `GET /infra` tree read for all, the writes
//!   of all applications coalesced by `controller::nsx_batch` into hierarchical PATCHes, rule ids
//!   read back with one listing per batch; the resync is one tree read.
//!
//! It prints NSX calls by kind, wall time, calls per application beside the target
//! (≤ 0.1 to create), and the achieved request rate.
//!
//! Run: `cargo bench --bench nsx` (or `scripts/bench-nsx.sh`); under `cargo test` it only
//! makes a 5-application smoke run. Environment: `NSX_BENCH_APPS` (default 1000),
//! `NSX_BENCH_RULES` (10), `NSX_BENCH_RATE` (client rate, default the client default 50/s),
//! `NSX_BENCH_CONCURRENCY` (client concurrency, default 10), `NSX_BENCH_PARALLEL` (reconciles
//! in flight, default 20).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use microseg::controller::nsx_batch::{BatchConfig, BatchMetrics, BatchingNsx};
use microseg::nsx::model::{
    DomainChild, Expression, Group, Infra, InfraChild, Meta, PolicyChild, Rule, SecurityPolicy,
    ServiceEntry, Tag,
};
use microseg::nsx::{AuthConfig, Client, ClientConfig, Credentials, Error, NsxApi, PacingConfig};
use microseg::nsxsim::{self, Counters};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn application(app: &str, rules: usize) -> Infra {
    let gpath = format!("/infra/domains/default/groups/{app}");
    let tags = vec![
        Tag::new("microseg.io/cluster", "bench"),
        Tag::new("microseg.io/namespace", "default"),
        Tag::new("microseg.io/name", app),
        Tag::new("microseg.io/managed-by", "microseg"),
    ];
    let rule = |i: usize| Rule {
        resource_type: "Rule".into(),
        id: format!("{app}-r{i}"),
        display_name: Some(format!("r{i}")),
        action: "ALLOW".into(),
        source_groups: vec![format!("10.{}.0.0/16", i % 250)],
        sources_excluded: false,
        destination_groups: vec![gpath.clone()],
        destinations_excluded: false,
        services: vec!["ANY".into()],
        profiles: vec![],
        service_entries: vec![ServiceEntry::L4PortSetServiceEntry {
            id: format!("tcp-{i}"),
            l4_protocol: "TCP".into(),
            source_ports: vec![],
            destination_ports: vec![format!("{}", 8000 + i)],
        }],
        scope: vec![],
        direction: "IN".into(),
        ip_protocol: Some("IPV4_IPV6".into()),
        logged: true,
        disabled: false,
        sequence_number: Some((i as i64 + 1) * 10),
        tag: Some(format!("{app}-r{i}")),
        notes: None,
        tags: vec![],
        rule_id: None,
        meta: Meta::default(),
    };
    Infra {
        resource_type: "Infra".into(),
        children: vec![InfraChild::ChildResourceReference {
            id: "default".into(),
            target_type: "Domain".into(),
            children: vec![
                DomainChild::ChildGroup {
                    id: app.into(),
                    marked_for_delete: false,
                    group: Group {
                        resource_type: "Group".into(),
                        id: app.into(),
                        display_name: Some(app.into()),
                        description: None,
                        tags: tags.clone(),
                        expression: vec![Expression::Condition {
                            member_type: "VirtualMachine".into(),
                            key: "Tag".into(),
                            operator: "EQUALS".into(),
                            value: format!("app|{app}"),
                            scope_operator: None,
                            exclude: None,
                        }],
                        meta: Meta::default(),
                    },
                },
                DomainChild::ChildSecurityPolicy {
                    id: app.into(),
                    marked_for_delete: false,
                    security_policy: SecurityPolicy {
                        resource_type: "SecurityPolicy".into(),
                        id: app.into(),
                        display_name: Some(app.into()),
                        description: None,
                        tags,
                        category: Some("Application".into()),
                        sequence_number: Some(100),
                        scope: vec![gpath.clone()],
                        stateful: Some(true),
                        tcp_strict: None,
                        rules: vec![],
                        children: (0..rules)
                            .map(|i| PolicyChild::ChildRule {
                                id: format!("{app}-r{i}"),
                                marked_for_delete: false,
                                rule: rule(i),
                            })
                            .collect(),
                        meta: Meta::default(),
                    },
                },
            ],
        }],
    }
}

async fn converge(client: &Client, app: &str, rules: usize) -> Result<bool, Error> {
    let desired: BTreeSet<String> = (0..rules).map(|i| format!("{app}-r{i}")).collect();
    if let Some(p) = client.get_policy("default", app).await?
        && p.rules
            .iter()
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>()
            == desired
    {
        return Ok(false);
    }
    client.patch_infra(&application(app, rules)).await?;
    let ids = client.rule_ids("default", app).await?;
    if ids.len() != rules {
        return Err(Error::Decode {
            path: app.into(),
            reason: format!("{} rule ids read back, {rules} expected", ids.len()),
        });
    }
    Ok(true)
}

/// One application the way the controller reconciles it now: compared with the tree read once
/// for all, written through the batcher, its rule ids from the batch's read-back.
async fn converge_batched(
    nsx: &BatchingNsx,
    tree: &std::collections::HashMap<String, BTreeSet<String>>,
    app: &str,
    rules: usize,
) -> Result<bool, Error> {
    let desired: BTreeSet<String> = (0..rules).map(|i| format!("{app}-r{i}")).collect();
    if tree.get(app) == Some(&desired) {
        return Ok(false);
    }
    nsx.patch_infra(&application(app, rules)).await?;
    let ids = nsx
        .get_policy("default", app)
        .await?
        .map(|p| p.rules.iter().filter(|r| r.rule_id.is_some()).count())
        .unwrap_or_default();
    if ids != rules {
        return Err(Error::Decode {
            path: app.into(),
            reason: format!("{ids} rule ids read back, {rules} expected"),
        });
    }
    Ok(true)
}

/// The rule ids of every policy NSX holds, in one read.
async fn tree(
    client: &Client,
) -> Result<std::collections::HashMap<String, BTreeSet<String>>, Error> {
    Ok(client
        .infra_tree()
        .await?
        .into_iter()
        .flat_map(|t| t.policies)
        .map(|p| (p.id.clone(), p.rules.iter().map(|r| r.id.clone()).collect()))
        .collect())
}

fn total(c: &Counters) -> u64 {
    c.values().map(|v| v.total).sum()
}

fn print_counters(c: &Counters) {
    for (kind, count) in c {
        let statuses: Vec<String> = count
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        println!("  {kind:<60} {:>6}  ({})", count.total, statuses.join(" "));
    }
}

/// What one phase measured.
struct Measured {
    calls: u64,
    wall: Duration,
    written: usize,
}

fn report(name: &str, apps: usize, c: &Counters, m: &Measured, rate: f64, target: Option<f64>) {
    let achieved = m.calls as f64 / m.wall.as_secs_f64();
    println!("== {name}: {apps} applications, {} written", m.written);
    print_counters(c);
    println!("  wall time            {:.2} s", m.wall.as_secs_f64());
    println!("  NSX calls            {}", m.calls);
    let per_app = m.calls as f64 / apps as f64;
    match target {
        Some(t) => println!("  calls per app        {per_app:.3} (target <= {t})"),
        None => println!("  calls per app        {per_app:.3}"),
    }
    println!(
        "  achieved rate        {achieved:.1} req/s = {:.0} % of the client limit ({rate} req/s), {:.0} % of NSX's 100 req/s",
        100.0 * achieved / rate,
        achieved
    );
}

async fn per_application(
    client: &Client,
    sim: &nsxsim::Running,
    apps: &[String],
    rules: usize,
    parallel: usize,
) -> Result<Measured, BoxError> {
    sim.reset_counters();
    let start = Instant::now();
    let results: Vec<Result<bool, Error>> = futures::stream::iter(apps.iter())
        .map(|app| converge(client, app, rules))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let wall = start.elapsed();
    let mut written = 0;
    for r in results {
        if r? {
            written += 1;
        }
    }
    Ok(Measured {
        calls: total(&sim.counters()),
        wall,
        written,
    })
}

async fn batched(
    client: &Client,
    nsx: &BatchingNsx,
    sim: &nsxsim::Running,
    apps: &[String],
    rules: usize,
) -> Result<Measured, BoxError> {
    sim.reset_counters();
    let start = Instant::now();
    let known = tree(client).await?;
    // Every reconcile at once, as the controller runs them (--reconcile-concurrency 256).
    let results: Vec<Result<bool, Error>> = futures::stream::iter(apps.iter())
        .map(|app| converge_batched(nsx, &known, app, rules))
        .buffer_unordered(256)
        .collect()
        .await;
    let wall = start.elapsed();
    let mut written = 0;
    for r in results {
        if r? {
            written += 1;
        }
    }
    Ok(Measured {
        calls: total(&sim.counters()),
        wall,
        written,
    })
}

async fn simulator_and_client(
    rate: f64,
    concurrency: usize,
    dir: &std::path::Path,
) -> Result<(nsxsim::Running, Client), BoxError> {
    let sim = nsxsim::spawn(nsxsim::Config::default()).await?;
    let mut cfg = ClientConfig::new(
        sim.url.clone(),
        AuthConfig::Session(Credentials::files(dir.join("user"), dir.join("password"))),
    );
    cfg.pacing.rate = rate;
    cfg.pacing.concurrency = concurrency;
    cfg.request_timeout = Duration::from_secs(30);
    let client = Client::new(cfg)?;
    Ok((sim, client))
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then a 5-application smoke run keeps the test suite fast.
    let full = std::env::args().any(|a| a == "--bench");
    let apps_n: usize = env("NSX_BENCH_APPS", if full { 1000 } else { 5 });
    let rules: usize = env("NSX_BENCH_RULES", 10);
    let rate: f64 = env("NSX_BENCH_RATE", PacingConfig::default().rate);
    let concurrency: usize = env("NSX_BENCH_CONCURRENCY", PacingConfig::default().concurrency);
    let parallel: usize = env("NSX_BENCH_PARALLEL", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("microseg-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("user"), "admin\n")?;
        std::fs::write(dir.join("password"), nsxsim::DEFAULT_PASSWORD)?;
        println!(
            "nsx bench: {apps_n} applications x {rules} rules; client pacing {rate} req/s, {concurrency} concurrent; simulator limits 100 req/s, 40 per client, 199 global"
        );
        let apps: Vec<String> = (0..apps_n).map(|i| format!("bench-app-{i:04}")).collect();

        // Baseline: per application, on a fresh simulator.
        let (sim, client) = simulator_and_client(rate, concurrency, &dir).await?;
        let base_write = per_application(&client, &sim, &apps, rules, parallel).await?;
        report(&format!("per application ({parallel} in flight): initial write"), apps_n, &sim.counters(), &base_write, rate, None);
        let base_resync = per_application(&client, &sim, &apps, rules, parallel).await?;
        report("per application: resync (in sync, reads only)", apps_n, &sim.counters(), &base_resync, rate, None);
        client.logout().await?;
        sim.shutdown().await;

        // microseg: tree read, batched writes, bulk read-back, on a fresh simulator.
        let (sim, client) = simulator_and_client(rate, concurrency, &dir).await?;
        let client = std::sync::Arc::new(client);
        let mut registry = prometheus_client::registry::Registry::default();
        let nsx = BatchingNsx::new(client.clone(), BatchConfig::default(), BatchMetrics::register(&mut registry));
        let write = batched(&client, &nsx, &sim, &apps, rules).await?;
        report("microseg (tree read, batched writes): initial write", apps_n, &sim.counters(), &write, rate, Some(0.1));
        let resync = batched(&client, &nsx, &sim, &apps, rules).await?;
        report("microseg: resync (in sync, one tree read)", apps_n, &sim.counters(), &resync, rate, None);
        println!("== side by side ({apps_n} applications)");
        println!("  {:<34} {:>14} {:>14}", "", "per application", "microseg");
        let per = |m: &Measured| m.calls as f64 / apps_n as f64;
        println!("  {:<34} {:>14.3} {:>14.3}   target <= 0.1", "calls per app, initial write", per(&base_write), per(&write));
        println!("  {:<34} {:>12.2} s {:>12.2} s", "wall time, initial write", base_write.wall.as_secs_f64(), write.wall.as_secs_f64());
        println!("  {:<34} {:>14} {:>14}   target <= 10", "NSX calls, resync", base_resync.calls, resync.calls);
        drop(nsx);
        if let Ok(client) = std::sync::Arc::try_unwrap(client) {
            client.logout().await?;
        }
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
        if !full {
            // Under `cargo test`: close with the plain summary line test runners understand.
            println!("smoke: 1 passed, 0 failed");
        }
        Ok::<(), BoxError>(())
    })
}
