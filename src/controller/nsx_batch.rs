//! Write coalescing (issue #22): the hierarchical writes that reconciles make close together go
//! to NSX as one `PATCH /infra`.
//!
//! [`BatchingNsx`] wraps the NSX client. A reconcile still calls `patch_infra` with its own
//! application's objects and waits for its own answer; a task collects the writes that arrive
//! less than [`BatchConfig::window`] apart (longer while writes trickle in: see `gap_allowed`;
//! at most [`BatchConfig::max_wait`] after the first; a batch of new applications in PASS only,
//! `patch_infra_relaxed`, waits out pauses of up to `relaxed_gap` for up to [`RELAXED_MAX_WAIT`]),
//! or that queued while the previous batch was being written, up to
//! [`BatchConfig::max_objects`] intent objects, merges them per domain (groups before
//! policies) and sends one atomic call.
//!
//! - **Atomic per application**: a batch either lands whole or not at all (NSX's transaction).
//!   When the manager refuses it (an HTTP 4xx: invalid path, pending delete, a validation
//!   error), the batch is split in halves and each half sent again, down to single
//!   applications, so one bad application never blocks the others and gets NSX's own error.
//!   A refused batch wrote nothing, so no application is written twice.
//! - **Transient failures** (429/503 after the client's backoff, transport, revision conflict)
//!   are not the content's fault: every waiter of that batch gets the error and its reconcile
//!   retries as before.
//! - The size limit stays below the manager's 5,000 intent objects per call (reference §7).
//! - **Rule ids read back in bulk**: the policies of a call that wrote two or more applications
//!   wait for a read-back; the first writer that asks for its policy (`get_policy`, for the
//!   `rule_id`s NSX assigned) makes one `GET /infra?filter=Type-Domain|SecurityPolicy|Rule`
//!   that serves every policy waiting, once each; listings begin at most every
//!   [`READ_BACK_EVERY`], so during a wave one listing serves several batches. A writer that does not ask (a flip to DROP
//!   creates no rule) costs nothing; a policy written alone is read alone.
//!
//! Other reads pass through untouched.

// The answers are the NSX client's own `Result<(), nsx::Error>`.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::nsx::model::{DomainChild, Group, Infra, InfraChild, SecurityPolicy};
use crate::nsx::{DomainTree, Error, NsxApi, Realization};

/// Intent objects per call a Local Manager accepts (reference §7).
pub const MANAGER_LIMIT: usize = 5_000;

/// How writes are coalesced.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// How long a batch waits for the next write (each one that joins starts the wait anew).
    pub window: Duration,
    /// How long the first write of a batch waits at most.
    pub max_wait: Duration,
    /// Most intent objects (groups, policies, rules) in one call; at most [`MANAGER_LIMIT`].
    pub max_objects: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            window: Duration::from_millis(100),
            max_wait: Duration::from_secs(3),
            max_objects: 2_000,
        }
    }
}

/// Metrics of the coalescing.
#[derive(Clone, Debug)]
pub struct BatchMetrics {
    /// Applications' writes per call sent.
    pub batch_size: Histogram,
    /// Calls split because the manager refused them.
    pub splits: Counter,
}

impl BatchMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> BatchMetrics {
        let m = BatchMetrics {
            batch_size: Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]),
            splits: Counter::default(),
        };
        registry.register(
            "microseg_nsx_batch_writes",
            "Applications' writes per hierarchical PATCH sent to NSX",
            m.batch_size.clone(),
        );
        registry.register(
            "microseg_nsx_batch_splits",
            "Batched writes NSX refused and that were split to find the application at fault",
            m.splits.clone(),
        );
        m
    }
}

struct Job {
    body: Infra,
    objects: usize,
    reply: oneshot::Sender<Result<(), Error>>,
    /// Nobody waits for it at an instant (`NsxApi::patch_infra_relaxed`).
    relaxed: bool,
}

/// How long a batch of relaxed writes only (new applications in PASS) may wait at most from
/// its first write: while a `kubectl apply` of 1,000 policies trickles in over a minute or two,
/// a batch then carries many applications instead of the few that arrive within `max_wait`.
const RELAXED_MAX_WAIT: Duration = Duration::from_secs(10);

/// Every (domain, child) of a write, in order.
fn children(body: &Infra) -> impl Iterator<Item = (&String, &DomainChild)> {
    body.children.iter().flat_map(
        |InfraChild::ChildResourceReference {
             id: domain,
             children,
             ..
         }| children.iter().map(move |c| (domain, c)),
    )
}

/// (domain, kind, id) of every object a write touches.
fn touched(body: &Infra) -> Vec<(String, bool, String)> {
    children(body)
        .map(|(domain, c)| match c {
            DomainChild::ChildGroup { id, .. } => (domain.clone(), true, id.clone()),
            DomainChild::ChildSecurityPolicy { id, .. } => (domain.clone(), false, id.clone()),
        })
        .collect()
}

/// The NSX client with writes coalesced.
pub struct BatchingNsx {
    inner: Arc<dyn NsxApi>,
    tx: mpsc::UnboundedSender<Job>,
    read_back: Arc<ReadBack>,
}

type PolicyKey = (String, String);

/// Read-back state: the policies written by batched calls and not read yet (with the number of
/// the batch that wrote them last), and those a listing read, each served once to its writer.
#[derive(Default)]
struct ReadBackState {
    pending: HashMap<PolicyKey, u64>,
    /// Read back and not yet asked for, since when.
    kept: HashMap<PolicyKey, (SecurityPolicy, std::time::Instant)>,
    batch: u64,
}

/// How long a policy read back waits for its writer to ask (a writer that never asks, e.g. one
/// whose reconcile ended in an error, leaves its entry for this long at most).
const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The read-back of batched writes: one listing, made when the first writer asks, serves every
/// policy pending then (a writer that does not ask, e.g. a flip that creates no rule, costs none).
#[derive(Default)]
struct ReadBack {
    state: std::sync::Mutex<ReadBackState>,
    /// Held by the one listing under way; holds when the last one began.
    gate: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Listings for read-back begin at most this often: while a wave of writes arrives, the
/// policies of the batches written meanwhile wait for the next listing and share it, instead of
/// one listing of the whole fleet per batch. A wave that trickles in over a minute (a `kubectl
/// apply` of 1,000 policies) costs a dozen listings, and the last policy of a wave waits at
/// most this long for its rule ids.
const READ_BACK_EVERY: Duration = Duration::from_secs(5);

impl ReadBack {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadBackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policies of an accepted batch wait for a read-back.
    fn written(&self, keys: impl IntoIterator<Item = PolicyKey>) {
        let mut s = self.lock();
        s.batch += 1;
        let batch = s.batch;
        for k in keys {
            s.kept.remove(&k);
            s.pending.insert(k, batch);
        }
    }

    /// A write of these policies is under way: what was read or pending is stale.
    fn forget(&self, keys: &[PolicyKey]) {
        let mut s = self.lock();
        for k in keys {
            s.kept.remove(k);
            s.pending.remove(k);
        }
    }

    fn take(&self, k: &PolicyKey) -> Option<SecurityPolicy> {
        self.lock().kept.remove(k).map(|(p, _)| p)
    }

    /// Reads back every pending policy with one listing when `k` is pending (unless a listing
    /// made meanwhile served it), then serves `k`.
    async fn read(&self, nsx: &dyn NsxApi, k: &PolicyKey) -> Option<SecurityPolicy> {
        if let Some(p) = self.take(k) {
            return Some(p);
        }
        if !self.lock().pending.contains_key(k) {
            return None;
        }
        let mut last = self.gate.lock().await;
        if let Some(p) = self.take(k) {
            return Some(p);
        }
        if let Some(at) = *last {
            tokio::time::sleep_until(at + READ_BACK_EVERY).await;
        }
        *last = Some(tokio::time::Instant::now());
        let want: HashMap<PolicyKey, u64> = {
            let s = self.lock();
            if !s.pending.contains_key(k) {
                return None;
            }
            s.pending.clone()
        };
        let listed = nsx.policy_trees().await;
        let mut s = self.lock();
        // What earlier listings kept stays for its writers (another batch's listing may come
        // between a write's reply and its writer asking); only entries nobody asked for go.
        let now = std::time::Instant::now();
        s.kept
            .retain(|_, (_, at)| now.duration_since(*at) < KEPT_FOR);
        match listed {
            Ok(trees) => {
                for t in trees {
                    for p in t.policies {
                        let key = (t.domain.clone(), p.id.clone());
                        // Written again since the listing began: the listing may predate it.
                        if want.contains_key(&key) && s.pending.get(&key) == want.get(&key) {
                            s.pending.remove(&key);
                            s.kept.insert(key, (p, now));
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "NSX read-back of batched writes failed"),
        }
        // What the listing did not settle is read alone.
        for key in want.keys() {
            if s.pending.get(key) == want.get(key) {
                s.pending.remove(key);
            }
        }
        s.kept.remove(k).map(|(p, _)| p)
    }
}

/// Intent objects of a write (each group, policy and rule; deletes count as one).
pub fn objects(body: &Infra) -> usize {
    body.children
        .iter()
        .map(|InfraChild::ChildResourceReference { children, .. }| {
            children
                .iter()
                .map(|c| match c {
                    DomainChild::ChildGroup { .. } => 1,
                    DomainChild::ChildSecurityPolicy {
                        security_policy, ..
                    } => 1 + security_policy.children.len() + security_policy.rules.len(),
                })
                .sum::<usize>()
        })
        .sum()
}

/// One body for many: per domain (in order of first appearance), every group, then every
/// policy, each in the order written.
pub fn merge<'a>(bodies: impl IntoIterator<Item = &'a Infra>) -> Infra {
    let mut order: Vec<String> = Vec::new();
    let mut domains: BTreeMap<String, (String, Vec<DomainChild>, Vec<DomainChild>)> =
        BTreeMap::new();
    for body in bodies {
        for InfraChild::ChildResourceReference {
            id,
            target_type,
            children,
        } in &body.children
        {
            let entry = domains.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                (target_type.clone(), Vec::new(), Vec::new())
            });
            for c in children {
                match c {
                    DomainChild::ChildGroup { .. } => entry.1.push(c.clone()),
                    DomainChild::ChildSecurityPolicy { .. } => entry.2.push(c.clone()),
                }
            }
        }
    }
    Infra {
        resource_type: "Infra".into(),
        children: order
            .into_iter()
            .filter_map(|id| {
                let (target_type, mut groups, policies) = domains.remove(&id)?;
                groups.extend(policies);
                Some(InfraChild::ChildResourceReference {
                    id,
                    target_type,
                    children: groups,
                })
            })
            .collect(),
    }
}

/// (domain, id) of the policies a write creates or updates.
fn written_policies(body: &Infra) -> Vec<(String, String)> {
    children(body)
        .filter_map(|(domain, c)| match c {
            DomainChild::ChildSecurityPolicy {
                id,
                marked_for_delete: false,
                ..
            } => Some((domain.clone(), id.clone())),
            _ => None,
        })
        .collect()
}

/// Whether the manager refused the content (split to find the application at fault) rather
/// than failing for a reason every application shares.
fn refused(e: &Error) -> bool {
    matches!(e, Error::Api { status, .. } if (400..500).contains(status))
}

impl BatchingNsx {
    /// Hands a write to the batching task and waits for its own result.
    async fn submit(&self, body: &Infra, relaxed: bool) -> Result<(), Error> {
        // What was read back or pending before this write is stale for its objects.
        self.read_back.forget(&written_policies(body));
        let (reply, rx) = oneshot::channel();
        let job = Job {
            body: body.clone(),
            objects: objects(body),
            reply,
            relaxed,
        };
        if self.tx.send(job).is_err() {
            return Err(Error::Config("the NSX write batcher has stopped".into()));
        }
        rx.await
            .map_err(|_| Error::Config("the NSX write batcher has stopped".into()))?
    }

    /// Wraps `inner`; the batching task stops when this is dropped.
    pub fn new(inner: Arc<dyn NsxApi>, config: BatchConfig, metrics: BatchMetrics) -> BatchingNsx {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = BatchConfig {
            window: config.window,
            max_wait: config.max_wait.max(config.window),
            max_objects: config.max_objects.clamp(1, MANAGER_LIMIT),
        };
        let read_back = Arc::new(ReadBack::default());
        tokio::spawn(run(inner.clone(), config, metrics, read_back.clone(), rx));
        BatchingNsx {
            inner,
            tx,
            read_back,
        }
    }
}

async fn run(
    nsx: Arc<dyn NsxApi>,
    config: BatchConfig,
    metrics: BatchMetrics,
    read_back: Arc<ReadBack>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut carried: Option<Job> = None;
    loop {
        // The first write of the batch: one left over from the last batch, one that queued
        // while the last batch was written, or the next to come.
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let (jobs, next) = collect(first, &mut rx, &config).await;
        carried = next;
        #[allow(clippy::cast_precision_loss)]
        metrics.batch_size.observe(jobs.len() as f64);
        let objects: usize = jobs.iter().map(|j| j.objects).sum();
        debug!(writes = jobs.len(), objects, "NSX batch");
        let bodies: Vec<Infra> = jobs.iter().map(|j| j.body.clone()).collect();
        let results = write(nsx.as_ref(), &metrics, &bodies).await;
        // The policies written (not deleted) by accepted writes: read back together, when
        // their writers ask (a policy written alone is read alone).
        let written: std::collections::HashSet<PolicyKey> = bodies
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .flat_map(|(b, _)| written_policies(b))
            .collect();
        if written.len() >= 2 {
            read_back.written(written);
        }
        for (job, r) in jobs.into_iter().zip(results) {
            let _ = job.reply.send(r);
        }
    }
}

/// The writes of one batch, from `first`: they keep joining while they come close enough
/// together, up to `max_objects`; a write that cannot join (too big, or it touches an object
/// of the batch) is handed back for the next.
///
/// - A batch with a prompt write (anything but a new application in PASS) waits `window` for
///   the next write, longer while writes trickle in (`gap_allowed`), at most `max_wait` from
///   its first prompt write: the 1,000 flips of a wave close 100 ms after the last one.
/// - A batch of relaxed writes only waits `relaxed_gap` for the next write, at most
///   [`RELAXED_MAX_WAIT`] from its first: the writes of a `kubectl apply` that hands policies over every few
///   hundred milliseconds, with pauses while the API server is busy, share calls.
async fn collect(
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    config: &BatchConfig,
) -> (Vec<Job>, Option<Job>) {
    let start = tokio::time::Instant::now();
    let mut objects = first.objects;
    let mut ids: std::collections::HashSet<_> = touched(&first.body).into_iter().collect();
    let mut prompt_since = (!first.relaxed).then_some(start);
    let mut jobs = vec![first];
    let relaxed_hard = start + RELAXED_MAX_WAIT.max(config.max_wait);
    let wait = |now: tokio::time::Instant,
                prompt_since: Option<tokio::time::Instant>,
                joined: usize| match prompt_since {
        Some(since) => {
            (now + gap_allowed(config.window, now - start, joined)).min(since + config.max_wait)
        }
        None => (now + relaxed_gap(config.window)).min(relaxed_hard),
    };
    let mut deadline = wait(start, prompt_since, 1);
    while objects < config.max_objects {
        let next = tokio::select! {
            biased;
            j = rx.recv() => j,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some(j) = next else { break };
        let its = touched(&j.body);
        // Two writes of one object never share a call: the later one waits for the next.
        if objects + j.objects > config.max_objects || its.iter().any(|k| ids.contains(k)) {
            return (jobs, Some(j));
        }
        let now = tokio::time::Instant::now();
        if !j.relaxed && prompt_since.is_none() {
            prompt_since = Some(now);
        }
        ids.extend(its);
        objects += j.objects;
        jobs.push(j);
        deadline = wait(now, prompt_since, jobs.len());
    }
    (jobs, None)
}

/// How long a batch waits for the next write: `window`, or four times the mean gap between the
/// writes that joined so far when that is longer, up to ten times `window`. Writes that arrive
/// together (a wave's flips in the same second) close after `window`; writes that trickle in
/// (a `kubectl apply` of 1,000 objects hands them over one by one, some 70 ms apart with pauses
/// of up to a second while the API server is busy) keep joining until `max_wait`, instead of
/// closing at the first pause: at 1,000 applications a cap of four windows left a third of the
/// calls with one or two applications.
fn gap_allowed(window: Duration, elapsed: Duration, joined: usize) -> Duration {
    let mean = elapsed / u32::try_from(joined.max(1)).unwrap_or(u32::MAX);
    (mean * 4).clamp(window, longest_gap(window))
}

/// The longest a batch with a prompt write waits for its next write: ten windows.
fn longest_gap(window: Duration) -> Duration {
    window * 10
}

/// How long a batch of relaxed writes only waits for its next write: twenty windows, two
/// seconds by default. A `kubectl apply` of 1,000 policies on a busy API server hands them over
/// some 90 ms apart with pauses of a second or two; when a batch closed at four times the
/// recent gap between writes, each pause closed one, and a slow apply (87 s) cost 77 calls
/// instead of a dozen. Nobody waits for these writes at an instant; the last application of an
/// apply is written at most this long after it arrived.
fn relaxed_gap(window: Duration) -> Duration {
    window * 20
}

/// Writes `bodies` as one call; a refused call is split in halves until the application at
/// fault is alone. One result per body.
fn write<'a>(
    nsx: &'a dyn NsxApi,
    metrics: &'a BatchMetrics,
    bodies: &'a [Infra],
) -> BoxFuture<'a, Vec<Result<(), Error>>> {
    Box::pin(async move {
        let result = if bodies.len() == 1 {
            nsx.patch_infra(&bodies[0]).await
        } else {
            nsx.patch_infra(&merge(bodies)).await
        };
        match result {
            Ok(()) => bodies.iter().map(|_| Ok(())).collect(),
            Err(e) if bodies.len() > 1 && refused(&e) => {
                metrics.splits.inc();
                warn!(writes = bodies.len(), error = %e, "NSX refused a batched write; splitting it to find the application at fault");
                let (a, b) = bodies.split_at(bodies.len() / 2);
                let mut out = write(nsx, metrics, a).await;
                out.extend(write(nsx, metrics, b).await);
                out
            }
            Err(e) => bodies.iter().map(|_| Err(e.clone())).collect(),
        }
    })
}

#[async_trait]
impl NsxApi for BatchingNsx {
    async fn get_group(&self, domain: &str, id: &str) -> Result<Option<Group>, Error> {
        self.inner.get_group(domain, id).await
    }

    async fn get_policy(&self, domain: &str, id: &str) -> Result<Option<SecurityPolicy>, Error> {
        let kept = self
            .read_back
            .read(self.inner.as_ref(), &(domain.to_string(), id.to_string()))
            .await;
        match kept {
            Some(p) => Ok(Some(p)),
            None => self.inner.get_policy(domain, id).await,
        }
    }

    async fn list_groups(&self, domain: &str) -> Result<Vec<Group>, Error> {
        self.inner.list_groups(domain).await
    }

    async fn list_policies(&self, domain: &str) -> Result<Vec<SecurityPolicy>, Error> {
        self.inner.list_policies(domain).await
    }

    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error> {
        self.inner.infra_tree().await
    }

    async fn infra_tree_known(
        &self,
        held: Arc<dyn crate::nsx::Held>,
    ) -> Result<Vec<DomainTree>, Error> {
        self.inner.infra_tree_known(held).await
    }

    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.inner.policy_trees().await
    }

    async fn patch_infra(&self, body: &Infra) -> Result<(), Error> {
        self.submit(body, false).await
    }

    async fn patch_infra_relaxed(&self, body: &Infra) -> Result<(), Error> {
        self.submit(body, true).await
    }

    async fn group_has_members(&self, domain: &str, id: &str) -> Result<bool, Error> {
        self.inner.group_has_members(domain, id).await
    }

    async fn group_vm_names(&self, domain: &str, id: &str) -> Result<Vec<String>, Error> {
        self.inner.group_vm_names(domain, id).await
    }

    async fn realization(&self, intent_path: &str) -> Result<Realization, Error> {
        self.inner.realization(intent_path).await
    }
}

#[cfg(test)]
mod tests;
