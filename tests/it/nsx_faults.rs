//! The NSX client under injected faults: with 20 % of calls answered 503 by a manager that
//! also enforces its default 100 req/s per-client limit, 200 applications converge with no
//! error surfaced and no write repeated after it succeeded (checked on the simulator's
//! counters).

use crate::nsx_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use microseg::nsx::{Client, Error, NsxApi};
use microseg::nsxsim::{self, Faults};
use nsx_support::*;

/// One reconcile of an application: read, write only when live state differs, read the rule
/// ids back.
async fn converge(client: &Client, domain: &str, app: &str, rules: usize) -> Result<usize, Error> {
    let desired: BTreeSet<String> = (0..rules).map(|i| format!("{app}-r{i}")).collect();
    let live = client.get_policy(domain, app).await?;
    let in_sync = live.is_some_and(|p| {
        p.rules
            .iter()
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>()
            == desired
            && p.rules.iter().all(|r| r.rule_id.is_some())
    });
    if in_sync {
        return Ok(0);
    }
    client.patch_infra(&application(domain, app, rules)).await?;
    let ids = client.rule_ids(domain, app).await?;
    assert_eq!(ids.keys().cloned().collect::<BTreeSet<_>>(), desired);
    Ok(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_applications_converge_under_503s_and_the_rate_limit() {
    let sim = nsxsim::spawn(nsxsim::Config {
        faults: Faults {
            error_503_fraction: 0.2,
            ..Faults::default()
        },
        ..nsxsim::Config::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.sim.limiter.config().rate, 100);
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let mut cfg = sim_client_config(&sim.url, &creds, true);
    cfg.pacing.rate = 90.0;
    cfg.pacing.concurrency = 10;
    cfg.pacing.backoff_base = Duration::from_millis(20);
    cfg.pacing.backoff_max = Duration::from_millis(500);
    cfg.pacing.max_busy_retries = 10;
    let client = Client::new(cfg).unwrap();

    let apps: Vec<String> = (0..200).map(|i| format!("app-{i:03}")).collect();
    let start = Instant::now();
    let results: Vec<Result<usize, Error>> = futures::stream::iter(apps.iter())
        .map(|app| converge(&client, "default", app, 3))
        .buffer_unordered(20)
        .collect()
        .await;
    let first_pass = start.elapsed();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(errors.is_empty(), "errors surfaced: {errors:?}");
    assert_eq!(
        results.iter().map(|r| *r.as_ref().unwrap()).sum::<usize>(),
        200
    );

    let c = sim.counters();
    let patch = &c["PATCH /infra"];
    // Exactly one successful write per application: nothing written twice.
    assert_eq!(patch.ok(), 200, "{patch:?}");
    let injected: u64 = c
        .values()
        .map(|cc| cc.by_status.get("503").copied().unwrap_or(0))
        .sum();
    assert!(injected > 50, "503s injected: {injected}");

    // A second pass finds everything in sync and writes nothing.
    let again: Vec<Result<usize, Error>> = futures::stream::iter(apps.iter())
        .map(|app| converge(&client, "default", app, 3))
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(again.iter().all(|r| matches!(r, Ok(0))), "{again:?}");
    assert_eq!(sim.counters()["PATCH /infra"].ok(), 200);
    let state = sim.state();
    assert_eq!(
        state.domains["default"]
            .policies
            .keys()
            .filter(|k| k.starts_with("app-"))
            .count(),
        200
    );
    eprintln!(
        "200 applications in {first_pass:?}; 503s injected: {injected}; 429s: {}; client rate now {:.1}/s",
        c.values()
            .map(|cc| cc.by_status.get("429").copied().unwrap_or(0))
            .sum::<u64>(),
        client.pacer().current_rate()
    );
    sim.shutdown().await;
}
