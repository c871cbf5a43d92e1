//! Benchmark (not a timed test): writes 1,000 applications of 10 rules each to a simulator on
//! 127.0.0.1 through the NSX client, the way the controller reconciles them (read, write once
//! when live state differs, read the rule ids back), then resyncs all of them (reads only),
//! and prints NSX calls by kind, wall time, calls per application, and the achieved request
//! rate against the client's configured limit and the manager's 100 req/s limit.
//!
//! Run: `cargo bench --bench nsx` (or `scripts/bench-nsx.sh`); under `cargo test` it only
//! makes a 5-application smoke run. Environment: `NSX_BENCH_APPS` (default 1000),
//! `NSX_BENCH_RULES` (10), `NSX_BENCH_RATE` (client rate, default the client default 50/s),
//! `NSX_BENCH_CONCURRENCY` (client concurrency, default 10), `NSX_BENCH_PARALLEL` (reconciles
//! in flight, default 20).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
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

async fn phase(
    name: &str,
    client: &Client,
    sim: &nsxsim::Running,
    apps: &[String],
    rules: usize,
    parallel: usize,
    rate: f64,
) -> Result<(), BoxError> {
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
    let c = sim.counters();
    let calls = total(&c);
    let achieved = calls as f64 / wall.as_secs_f64();
    println!("== {name}: {} applications, {written} written", apps.len());
    print_counters(&c);
    println!("  wall time            {:.2} s", wall.as_secs_f64());
    println!("  NSX calls            {calls}");
    println!(
        "  calls per app        {:.2}",
        calls as f64 / apps.len() as f64
    );
    println!(
        "  achieved rate        {achieved:.1} req/s = {:.0} % of the client limit ({rate} req/s), {:.0} % of NSX's 100 req/s",
        100.0 * achieved / rate,
        achieved
    );
    Ok(())
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
        let sim = nsxsim::spawn(nsxsim::Config::default()).await?;
        let dir = std::env::temp_dir().join(format!("microseg-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("user"), "admin\n")?;
        std::fs::write(dir.join("password"), nsxsim::DEFAULT_PASSWORD)?;
        let mut cfg = ClientConfig::new(
            sim.url.clone(),
            AuthConfig::Session(Credentials::files(dir.join("user"), dir.join("password"))),
        );
        cfg.pacing.rate = rate;
        cfg.pacing.concurrency = concurrency;
        cfg.request_timeout = Duration::from_secs(30);
        let client = Client::new(cfg)?;
        println!(
            "nsx bench: {apps_n} applications x {rules} rules; client pacing {rate} req/s, {concurrency} concurrent; {parallel} reconciles in flight; simulator limits 100 req/s, 40 per client, 199 global"
        );
        let apps: Vec<String> = (0..apps_n).map(|i| format!("bench-app-{i:04}")).collect();
        phase("initial write", &client, &sim, &apps, rules, parallel, rate).await?;
        phase("resync (in sync, reads only)", &client, &sim, &apps, rules, parallel, rate).await?;
        client.logout().await?;
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
        if !full {
            // Under `cargo test`: close with the plain summary line test runners understand.
            println!("smoke: 1 passed, 0 failed");
        }
        Ok::<(), BoxError>(())
    })
}
