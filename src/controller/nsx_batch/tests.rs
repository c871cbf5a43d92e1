use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::nsx::model::ApiError;

/// A manager that records every write and refuses (400, 500012 as NSX does for a path that
/// does not exist) any call that holds a policy of a "bad" application, or answers every
/// write with `transient` when set.
#[derive(Default)]
struct Manager {
    calls: Mutex<Vec<Infra>>,
    transient: Option<Error>,
    /// Reads: (GET of one policy, listings).
    reads: Mutex<(usize, usize)>,
}

impl Manager {
    fn calls(&self) -> Vec<Infra> {
        self.calls.lock().unwrap().clone()
    }
}

fn not_found(path: &str) -> Error {
    Error::Api {
        method: "PATCH".into(),
        path: "/infra".into(),
        status: 400,
        error: ApiError {
            error_code: 500012,
            error_message: format!("The path={path} is invalid."),
            ..ApiError::default()
        },
    }
}

#[async_trait]
impl NsxApi for Manager {
    async fn get_group(&self, _: &str, _: &str) -> Result<Option<Group>, Error> {
        unreachable!("the batcher passes reads through")
    }
    async fn get_policy(&self, _: &str, id: &str) -> Result<Option<SecurityPolicy>, Error> {
        self.reads.lock().unwrap().0 += 1;
        Ok(Some(stored(id)))
    }
    async fn list_groups(&self, _: &str) -> Result<Vec<Group>, Error> {
        Ok(Vec::new())
    }
    async fn list_policies(&self, _: &str) -> Result<Vec<SecurityPolicy>, Error> {
        Ok(Vec::new())
    }
    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error> {
        unreachable!("the batcher reads policies only")
    }
    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.reads.lock().unwrap().1 += 1;
        let mut domains: BTreeMap<String, Vec<SecurityPolicy>> = BTreeMap::new();
        for call in self.calls() {
            for (d, group, id) in touched(&call) {
                if !group {
                    domains.entry(d).or_default().push(stored(&id));
                }
            }
        }
        Ok(domains
            .into_iter()
            .map(|(domain, policies)| DomainTree {
                domain,
                groups: Vec::new(),
                policies,
                ..DomainTree::default()
            })
            .collect())
    }
    async fn patch_infra(&self, body: &Infra) -> Result<(), Error> {
        self.calls.lock().unwrap().push(body.clone());
        if let Some(e) = &self.transient {
            return Err(e.clone());
        }
        match touched(body)
            .into_iter()
            .find(|(_, group, id)| !group && id.starts_with("bad"))
        {
            Some((_, _, id)) => Err(not_found(&format!("/infra/services/{id}-svc"))),
            None => Ok(()),
        }
    }
    async fn group_has_members(&self, _: &str, _: &str) -> Result<bool, Error> {
        Ok(true)
    }
    async fn group_vm_names(&self, _: &str, _: &str) -> Result<Vec<String>, Error> {
        Ok(vec!["vm-1".into()])
    }
    async fn realization(&self, _: &str) -> Result<Realization, Error> {
        Ok(Realization::Realized)
    }
}

/// A policy as the manager returns it, with a rule id.
fn stored(id: &str) -> SecurityPolicy {
    serde_json::from_value(json!({"resource_type": "SecurityPolicy", "id": id,
        "rules": [{"resource_type": "Rule", "id": "r0", "action": "ALLOW", "rule_id": 1001,
                   "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"]}]}))
    .unwrap()
}

/// One application's write: its group and its policy with `rules` rules, in `domain`.
fn app(domain: &str, id: &str, rules: usize) -> Infra {
    let rules: Vec<serde_json::Value> = (0..rules)
        .map(|i| {
            json!({"resource_type": "ChildRule", "id": format!("r{i}"), "Rule": {
                "resource_type": "Rule", "id": format!("r{i}"), "action": "ALLOW",
                "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"]}})
        })
        .collect();
    serde_json::from_value(json!({"resource_type": "Infra", "children": [
        {"resource_type": "ChildResourceReference", "id": domain, "target_type": "Domain",
         "children": [
            {"resource_type": "ChildGroup", "id": id, "Group": {"resource_type": "Group", "id": id}},
            {"resource_type": "ChildSecurityPolicy", "id": id, "SecurityPolicy": {
                "resource_type": "SecurityPolicy", "id": id, "children": rules}}]}]}))
    .unwrap()
}

fn batcher(manager: Arc<Manager>, max_objects: usize) -> Arc<BatchingNsx> {
    let mut registry = Registry::default();
    Arc::new(BatchingNsx::new(
        manager,
        BatchConfig {
            window: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            max_objects,
        },
        BatchMetrics::register(&mut registry),
    ))
}

/// Every write sent at once, each from its own task (as reconciles do); the answers in order.
async fn write_all(nsx: &Arc<BatchingNsx>, bodies: Vec<Infra>) -> Vec<Result<(), Error>> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let nsx = nsx.clone();
            tokio::spawn(async move { nsx.patch_infra(&b).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn ids_in(call: &Infra) -> Vec<String> {
    touched(call)
        .into_iter()
        .filter(|(_, group, _)| !group)
        .map(|(_, _, id)| id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn writes_that_come_together_are_one_call_with_groups_before_policies() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let bodies: Vec<Infra> = (0..20)
        .map(|i| app("default", &format!("app-{i:02}"), 10))
        .collect();
    let results = write_all(&nsx, bodies).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = manager.calls();
    assert_eq!(calls.len(), 1, "20 applications, one call");
    let InfraChild::ChildResourceReference { children, .. } = &calls[0].children[0];
    let first_policy = children
        .iter()
        .position(|c| matches!(c, DomainChild::ChildSecurityPolicy { .. }))
        .unwrap();
    assert_eq!(first_policy, 20, "the 20 groups come first");
    assert_eq!(objects(&calls[0]), 20 * 12);
}

#[tokio::test(start_paused = true)]
async fn one_refused_application_gets_its_own_error_and_the_others_land_once() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let mut bodies: Vec<Infra> = (0..15)
        .map(|i| app("default", &format!("app-{i:02}"), 3))
        .collect();
    bodies.insert(9, app("default", "bad-app", 3));
    let results = write_all(&nsx, bodies).await;
    for (i, r) in results.iter().enumerate() {
        if i == 9 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.nsx_code(), Some(500012), "NSX's own error: {e}");
            assert!(e.to_string().contains("bad-app-svc"), "{e}");
        } else {
            assert!(r.is_ok(), "application {i}: {r:?}");
        }
    }
    // Every good application is in exactly one call that NSX accepted (a refused call wrote
    // nothing), and the bisection took a handful of calls, not one per application.
    let calls = manager.calls();
    let accepted: Vec<&Infra> = calls
        .iter()
        .filter(|c| !ids_in(c).iter().any(|id| id.starts_with("bad")))
        .collect();
    for i in 0..15 {
        let id = format!("app-{i:02}");
        let n = accepted.iter().filter(|c| ids_in(c).contains(&id)).count();
        assert_eq!(n, 1, "{id} written {n} times");
    }
    assert!(
        calls.len() <= 9,
        "{} calls to isolate one of 16",
        calls.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_every_waiters_error_and_is_not_split() {
    let manager = Arc::new(Manager {
        transient: Some(Error::Busy {
            path: "/infra".into(),
            status: 503,
            retry_after: None,
        }),
        ..Manager::default()
    });
    let nsx = batcher(manager.clone(), 2_000);
    let bodies: Vec<Infra> = (0..8)
        .map(|i| app("default", &format!("app-{i}"), 2))
        .collect();
    let results = write_all(&nsx, bodies).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::Busy { status: 503, .. })))
    );
    assert_eq!(manager.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_stays_within_the_object_limit() {
    let manager = Arc::new(Manager::default());
    // 12 objects per application, at most 50 per call: 4 applications a call.
    let nsx = batcher(manager.clone(), 50);
    let bodies: Vec<Infra> = (0..10)
        .map(|i| app("default", &format!("app-{i}"), 10))
        .collect();
    let results = write_all(&nsx, bodies).await;
    assert!(results.iter().all(Result::is_ok));
    let calls = manager.calls();
    assert!(calls.iter().all(|c| objects(c) <= 50));
    assert_eq!(calls.iter().map(|c| ids_in(c).len()).sum::<usize>(), 10);
    assert_eq!(calls.len(), 3, "4 + 4 + 2");
}

#[tokio::test(start_paused = true)]
async fn two_writes_of_one_object_never_share_a_call() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let results = write_all(
        &nsx,
        vec![
            app("default", "app-a", 1),
            app("default", "app-a", 2),
            app("other", "app-a", 1),
        ],
    )
    .await;
    assert!(results.iter().all(Result::is_ok));
    let calls = manager.calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        let writes_of_a = touched(c)
            .iter()
            .filter(|(d, group, id)| d == "default" && !group && id == "app-a")
            .count();
        assert_eq!(writes_of_a, 1, "one write of default/app-a per call");
    }
    assert_eq!(
        calls.iter().map(objects).sum::<usize>(),
        3 + 4 + 3,
        "the same id in another domain is another object: it joined a call"
    );
}

#[test]
fn merge_keeps_domains_apart_in_order_of_first_appearance() {
    let merged = merge(&[app("b", "x", 0), app("a", "y", 0), app("b", "z", 1)]);
    let domains: Vec<&str> = merged
        .children
        .iter()
        .map(|InfraChild::ChildResourceReference { id, .. }| id.as_str())
        .collect();
    assert_eq!(domains, ["b", "a"]);
    assert_eq!(objects(&merged), 7);
}

#[tokio::test(start_paused = true)]
async fn the_policies_of_a_batch_are_read_back_with_one_listing() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let bodies: Vec<Infra> = (0..10)
        .map(|i| app("default", &format!("app-{i}"), 2))
        .collect();
    assert!(write_all(&nsx, bodies).await.iter().all(Result::is_ok));
    for i in 0..10 {
        let p = nsx
            .get_policy("default", &format!("app-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.rules[0].rule_id, Some(1001));
    }
    assert_eq!(
        *manager.reads.lock().unwrap(),
        (0, 1),
        "one listing, no GET"
    );
    // Served once: a later read asks NSX.
    nsx.get_policy("default", "app-0").await.unwrap();
    assert_eq!(*manager.reads.lock().unwrap(), (1, 1));
    // A policy written alone is read alone.
    assert!(write_all(&nsx, vec![app("default", "solo", 1)]).await[0].is_ok());
    nsx.get_policy("default", "solo").await.unwrap();
    assert_eq!(*manager.reads.lock().unwrap(), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn writes_that_trickle_in_join_until_a_gap_or_the_longest_wait() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    // 30 writes 50 ms apart (1.45 s in all): those of the first second (0–950 ms) go together,
    // the rest in the next batch.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let nsx = nsx.clone();
        tasks.push(tokio::spawn(async move {
            nsx.patch_infra(&app("default", &format!("app-{i:02}"), 1))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then, after a quiet moment, one more alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tasks.push(tokio::spawn({
        let nsx = nsx.clone();
        async move { nsx.patch_infra(&app("default", "late", 1)).await }
    }));
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    let sizes: Vec<usize> = manager.calls().iter().map(|c| ids_in(c).len()).collect();
    assert_eq!(sizes, [20, 10, 1]);
}

/// During a wave, the batches written between two listings share the next one: listings begin
/// at most every `READ_BACK_EVERY`.
#[tokio::test(start_paused = true)]
async fn batches_written_close_together_share_one_read_back_listing() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let batch = |b: usize| -> Vec<Infra> {
        (0..4)
            .map(|i| app("default", &format!("app-{b}-{i}"), 1))
            .collect()
    };
    let ask = |b: usize| {
        let nsx = nsx.clone();
        tokio::spawn(async move {
            for i in 0..4 {
                let p = nsx
                    .get_policy("default", &format!("app-{b}-{i}"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(p.rules[0].rule_id, Some(1001));
            }
        })
    };
    assert!(write_all(&nsx, batch(0)).await.iter().all(Result::is_ok));
    ask(0).await.unwrap();
    assert_eq!(*manager.reads.lock().unwrap(), (0, 1));
    // Two more batches, 300 ms apart, each writer asking at once: one more listing serves both.
    let mut readers = Vec::new();
    for b in 1..3 {
        assert!(write_all(&nsx, batch(b)).await.iter().all(Result::is_ok));
        readers.push(ask(b));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(manager.calls().len(), 3, "three batches written");
    assert_eq!(
        *manager.reads.lock().unwrap(),
        (0, 2),
        "the second and third batch share one listing, no GET"
    );
}

/// Writes that trickle in with pauses longer than the window (as a `kubectl apply` of many
/// objects hands them over) stay in one batch; a burst followed by a pause does not wait.
#[tokio::test(start_paused = true)]
async fn a_trickle_with_pauses_stays_in_one_batch_and_a_burst_closes_after_the_window() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let mut tasks = Vec::new();
    let send = |id: String| {
        let nsx = nsx.clone();
        tokio::spawn(async move { nsx.patch_infra(&app("default", &id, 1)).await })
    };
    // 10 writes 60 ms apart with a 150 ms pause after the fifth: one batch (0.7 s < max_wait).
    for i in 0..10 {
        tasks.push(send(format!("trickle-{i}")));
        let pause = if i == 4 { 150 } else { 60 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    for t in tasks.drain(..) {
        assert!(t.await.unwrap().is_ok());
    }
    // A burst of 10 at once, then one 150 ms later: the burst closes after the 100 ms window.
    for i in 0..10 {
        tasks.push(send(format!("burst-{i}")));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    tasks.push(send("straggler".into()));
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    let sizes: Vec<usize> = manager.calls().iter().map(|c| ids_in(c).len()).collect();
    assert_eq!(sizes, [10, 10, 1]);
}

#[test]
fn a_batch_waits_longer_for_writes_that_trickle_in_but_not_for_a_burst() {
    let window = Duration::from_millis(100);
    // A burst: 500 writes within 50 ms close `window` after the last.
    assert_eq!(gap_allowed(window, Duration::from_millis(50), 500), window);
    // A trickle 70 ms apart: four mean gaps.
    assert_eq!(
        gap_allowed(window, Duration::from_millis(700), 10),
        Duration::from_millis(280)
    );
    // Writes 300 ms apart (the API server busy): up to ten windows, a second.
    assert_eq!(
        gap_allowed(window, Duration::from_millis(3_000), 10),
        Duration::from_secs(1)
    );
}

/// Writes handed over one at a time, `gap` apart, each from its own task; the answers.
async fn trickle(
    nsx: &Arc<BatchingNsx>,
    bodies: Vec<(Infra, bool)>,
    gap: Duration,
) -> Vec<Result<(), Error>> {
    let mut tasks = Vec::new();
    for (b, relaxed) in bodies {
        let nsx = nsx.clone();
        tasks.push(tokio::spawn(async move {
            if relaxed {
                nsx.patch_infra_relaxed(&b).await
            } else {
                nsx.patch_infra(&b).await
            }
        }));
        tokio::time::sleep(gap).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// New applications handed over 300 ms apart (a `kubectl apply` on a busy API server) share
/// calls; the same pace of prompt writes (flips) is not held: each goes within `window` plus
/// the pace's allowance, never after `max_wait`.
#[tokio::test(start_paused = true)]
async fn new_applications_that_trickle_in_share_calls_but_prompt_writes_are_not_held() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    let new_apps: Vec<(Infra, bool)> = (0..30)
        .map(|i| (app("default", &format!("new-{i:02}"), 3), true))
        .collect();
    let results = trickle(&nsx, new_apps, Duration::from_millis(300)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let relaxed_calls = manager.calls().len();
    // 30 writes over 9 s, ten seconds at most per batch: one call, or two.
    assert!(
        relaxed_calls <= 3,
        "{relaxed_calls} calls for 30 new applications"
    );

    let before = manager.calls().len();
    let started = tokio::time::Instant::now();
    let flips: Vec<(Infra, bool)> = (0..10)
        .map(|i| (app("default", &format!("flip-{i:02}"), 1), false))
        .collect();
    let results = trickle(&nsx, flips, Duration::from_millis(300)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let prompt_calls = manager.calls().len() - before;
    assert!(
        prompt_calls >= 3,
        "prompt writes 300 ms apart are not held for seconds: {prompt_calls} calls"
    );
    // The last flip, handed over at 2.7 s, was written by 2.7 s + max_wait (1 s here).
    assert!(
        started.elapsed() <= Duration::from_millis(3_700),
        "{:?}",
        started.elapsed()
    );
}

/// New applications handed over 90 ms apart with pauses of 1.5 s (a `kubectl apply` of a
/// fleet while the API server is busy, as in the fleet benchmark) stay in one call while the
/// batch is younger than ten seconds; prompt writes at the same pace close at each pause.
#[tokio::test(start_paused = true)]
async fn new_applications_share_calls_across_the_pauses_of_a_busy_api_server() {
    async fn hand_over(nsx: &Arc<BatchingNsx>, prefix: &str, relaxed: bool) {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let nsx = nsx.clone();
            let body = app("default", &format!("{prefix}-{i:02}"), 2);
            tasks.push(tokio::spawn(async move {
                if relaxed {
                    nsx.patch_infra_relaxed(&body).await
                } else {
                    nsx.patch_infra(&body).await
                }
            }));
            let pause = if i % 8 == 7 { 1_500 } else { 90 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
    }
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    // 32 writes in 4 runs of 8, 1.5 s between runs: 7.6 s in all.
    hand_over(&nsx, "new", true).await;
    let relaxed_calls = manager.calls().len();
    assert_eq!(
        relaxed_calls, 1,
        "32 new applications in 7.6 s share one call"
    );
    hand_over(&nsx, "flip", false).await;
    let prompt_calls = manager.calls().len() - relaxed_calls;
    assert!(
        prompt_calls >= 4,
        "prompt writes close at each pause: {prompt_calls} calls"
    );
}

/// A prompt write that joins a batch of relaxed ones closes it soon: the new applications'
/// allowance never delays a flip.
#[tokio::test(start_paused = true)]
async fn a_prompt_write_is_not_held_by_the_relaxed_batch_it_joins() {
    let manager = Arc::new(Manager::default());
    let nsx = batcher(manager.clone(), 2_000);
    // Relaxed writes 300 ms apart keep their batch open for seconds.
    let slow = {
        let nsx = nsx.clone();
        tokio::spawn(async move {
            let bodies = (0..20)
                .map(|i| (app("default", &format!("new-{i:02}"), 3), true))
                .collect();
            trickle(&nsx, bodies, Duration::from_millis(300)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let flip = app("default", "flip", 1);
    let at = tokio::time::Instant::now();
    nsx.patch_infra(&flip).await.unwrap();
    let took = at.elapsed();
    assert!(
        took <= Duration::from_millis(1_000),
        "the flip waited {took:?}"
    );
    assert!(slow.await.unwrap().iter().all(Result::is_ok));
}
