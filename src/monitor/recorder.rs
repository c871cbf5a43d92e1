//! Writes what ingestion aggregated into `status.monitor`, in group commits.
//!
//! Every ingestion request hands its per-application [`Delta`]s to the recorder and waits; the
//! recorder takes everything queued at that moment as one round, folds it per policy into the
//! policy's current `status.monitor` (read fresh) and writes each policy once, with the object's
//! `resourceVersion` as a precondition (a conflict is read again and retried). Only then are the
//! requests of the round answered, so an acknowledged batch is in the API server (a restart loses
//! nothing) and a retried batch finds its idempotency key there (nothing is counted twice).
//! Acknowledgements of alerts take the same path.
//!
//! Syslog batches have nobody waiting for them: they are merged per policy while they wait
//! ([`Recorder::record_later`]), so a burst costs memory in distinct flows, not in lines, and
//! a round writes each policy once for all of them. A round nobody waits for leaves a policy
//! whose lines are still coming (a sender's burst read in chunks) for a later round, until they
//! pause for [`SETTLE`] or have waited [`HOLD_MAX`]: a burst is one write, not two.
//!
//! "Read fresh" skips the GET when the watch's copy of the policy is the version this recorder
//! wrote last (or when it wrote none yet): the `resourceVersion` precondition makes a stale copy
//! a conflict, which is then read again, so the result is the same with half the requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use hyper::header::{ACCEPT, HeaderValue};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::aggregate::{self, AckTarget, Delta, PolicyKey};
use crate::api::{MonitorStatus, SegmentationPolicy};

/// Field manager of the `status.monitor` writes.
pub const FIELD_MANAGER: &str = "microseg-monitor";

/// Attempts of one policy's write against conflicting writers.
const ATTEMPTS: usize = 8;
/// Most requests folded into one round.
const ROUND_MAX: usize = 2_000;
/// Policies written at once within a round.
const PARALLEL_WRITES: usize = 8;
/// Most entries (distinct flows, plus one per application) that answered batches waiting for
/// the recorder may hold: what waits stays bounded in memory (about 250 bytes an entry) however
/// fast lines arrive; a request over it waits (until its commit timeout).
pub const QUEUED_ENTRIES_MAX: usize = 100_000;
/// Most entries of the merged syslog batches waiting for the recorder. A syslog connection over
/// it stops being read until the next round takes them. Lines of flows already waiting add no
/// entry, so this is about distinct flows within one round (a round is longer at fleet size:
/// each policy is written once per round).
pub const UNANSWERED_ENTRIES_MAX: usize = 250_000;

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No such policy.
    #[error("segmentationpolicy {0} not found")]
    PolicyNotFound(String),
    /// Flow ids that the policy does not have.
    #[error("flow ids not found in {policy}: {}", ids.join(", "))]
    UnknownFlows {
        /// namespace/name.
        policy: String,
        /// The ids.
        ids: Vec<String>,
    },
    /// The status could not be written.
    #[error("status could not be written: {0}")]
    Write(String),
    /// The acknowledgement would make `status.monitor` larger than its budget.
    #[error(
        "comment: acknowledging with this comment would make status.monitor of {policy} \
         {bytes} bytes, over its budget of {budget}; use a shorter comment or acknowledge \
         with all: true"
    )]
    TooLarge {
        /// namespace/name.
        policy: String,
        /// The size it would have.
        bytes: usize,
        /// [`MONITOR_BYTES_MAX`].
        budget: usize,
    },
}

/// Most bytes `status.monitor` may take as JSON: far under etcd's 1.5 MiB per object, so that
/// the reconciler's writes of the same policy always fit.
pub const MONITOR_BYTES_MAX: usize = 512 * 1024;

/// Metrics of the recorder.
#[derive(Clone)]
pub struct RecorderMetrics {
    writes: Family<[(String, String); 1], Counter>,
    round_requests: Histogram,
}

impl RecorderMetrics {
    /// Registers the recorder's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RecorderMetrics {
            writes: Family::default(),
            round_requests: Histogram::new([1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 2000.0]),
        };
        registry.register(
            "microseg_monitor_status_writes",
            "status.monitor writes by result (ok, conflict, error, duplicate)",
            m.writes.clone(),
        );
        registry.register(
            "microseg_monitor_round_requests",
            "Ingestion requests folded into one group commit",
            m.round_requests.clone(),
        );
        m
    }

    fn write(&self, result: &str) {
        self.writes
            .get_or_create(&[("result".to_string(), result.to_string())])
            .inc();
    }
}

enum Job {
    Record {
        deltas: Vec<(PolicyKey, Delta)>,
        key: Option<String>,
        reply: Option<oneshot::Sender<Result<Recorded, String>>>,
        /// Its share of [`QUEUED_ENTRIES_MAX`], given back once it is written.
        queued: OwnedSemaphorePermit,
    },
    Ack {
        policy: PolicyKey,
        target: AckTarget,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<u64, AckError>>,
    },
    /// Syslog batches are waiting in [`Unanswered`].
    Wake,
}

/// Syslog batches waiting for the next round, merged per policy.
#[derive(Default)]
struct Unanswered {
    deltas: HashMap<PolicyKey, Waiting>,
    entries: usize,
}

/// One policy's merged syslog lines and when they came.
struct Waiting {
    delta: Delta,
    /// The first line's batch.
    first: Instant,
    /// The last line's batch.
    last: Instant,
}

/// A sender's burst of one application's lines is read in many 64 KiB chunks: a round nobody
/// waits for writes a policy once its lines have paused this long (the burst is over), so that
/// a burst is one status write and not two split by a round that began in its middle...
pub const SETTLE: Duration = Duration::from_millis(50);
/// ... or once its first line has waited this long (a stream that never pauses: its policy is
/// written every two seconds, not at every round). A burst of 10,000 lines on one of eight
/// connections takes about a second to read at 100,000 lines/s.
pub const HOLD_MAX: Duration = Duration::from_secs(2);

impl Unanswered {
    /// Takes the policies ready at `now` (all of them when `all`): settled, or held for
    /// [`HOLD_MAX`]. Returns them and when the first of the others will be ready.
    fn take_ready(
        &mut self,
        now: Instant,
        all: bool,
    ) -> (HashMap<PolicyKey, Delta>, Option<Instant>) {
        let ready_at = |w: &Waiting| (w.last + SETTLE).min(w.first + HOLD_MAX);
        if all || self.deltas.values().all(|w| ready_at(w) <= now) {
            self.entries = 0;
            let taken = std::mem::take(&mut self.deltas);
            return (taken.into_iter().map(|(k, w)| (k, w.delta)).collect(), None);
        }
        let keys: Vec<PolicyKey> = self
            .deltas
            .iter()
            .filter(|(_, w)| ready_at(w) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut taken = HashMap::with_capacity(keys.len());
        for k in keys {
            if let Some(w) = self.deltas.remove(&k) {
                self.entries = self.entries.saturating_sub(w.delta.flows.len() + 1);
                taken.insert(k, w.delta);
            }
        }
        let next = self.deltas.values().map(ready_at).min();
        (taken, next)
    }
}

/// What the handles share with the recorder task besides the queue.
#[derive(Default)]
struct Shared {
    unanswered: Mutex<Unanswered>,
    /// A round took the unanswered batches.
    taken: tokio::sync::Notify,
}

impl Shared {
    /// The syslog deltas ready for a round (every one when `all`), and when the next of the
    /// others is.
    fn take(&self, all: bool) -> (HashMap<PolicyKey, Delta>, Option<Instant>) {
        let taken = self
            .unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_ready(Instant::now(), all);
        self.taken.notify_waiters();
        taken
    }
}

/// What a recorded batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Every application had the batch's key already: nothing was added.
    pub duplicate: bool,
}

/// Handle to the recorder task; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Job>,
    queue: Arc<Semaphore>,
    shared: Arc<Shared>,
}

/// Settings of the recorder.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Distinct flows kept per application (at most [`aggregate::FLOWS_MAX`]).
    pub max_flows: usize,
}

impl Recorder {
    /// Starts the recorder; it stops when every handle is dropped. `policies`, the watch's
    /// copies, saves reading a policy before writing it when the copy is current.
    pub fn spawn(
        client: Client,
        config: RecorderConfig,
        metrics: RecorderMetrics,
        policies: Option<Store<SegmentationPolicy>>,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4_096);
        let copies = Copies {
            store: policies,
            written: Mutex::default(),
        };
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(client, config, metrics, copies, shared.clone(), rx));
        let queue = Arc::new(Semaphore::new(QUEUED_ENTRIES_MAX));
        (Recorder { tx, queue, shared }, task)
    }

    /// Records a batch and waits until it is in the API server. `key` makes a retry harmless.
    pub async fn record(
        &self,
        deltas: Vec<(PolicyKey, Delta)>,
        key: Option<String>,
    ) -> Result<Recorded, String> {
        let (reply, rx) = oneshot::channel();
        let queued = self.queue_space(&deltas).await?;
        self.tx
            .send(Job::Record {
                deltas,
                key,
                reply: Some(reply),
                queued,
            })
            .await
            .map_err(|_| "the recorder has stopped".to_string())?;
        rx.await
            .map_err(|_| "the recorder has stopped".to_string())?
    }

    /// Queues a batch without waiting for its write (syslog: there is nobody to answer). It is
    /// merged with the other batches waiting; while they hold [`UNANSWERED_ENTRIES_MAX`]
    /// entries, this waits for the next round to take them.
    pub async fn record_later(&self, mut deltas: Vec<(PolicyKey, Delta)>) -> Result<(), String> {
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            let wake = {
                let mut u = self
                    .shared
                    .unanswered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if u.entries >= UNANSWERED_ENTRIES_MAX && !u.deltas.is_empty() {
                    // Registered before the lock is released: a take in between is not missed.
                    taken.as_mut().enable();
                    None
                } else {
                    let wake = u.deltas.is_empty();
                    let Unanswered {
                        deltas: pending,
                        entries,
                    } = &mut *u;
                    let now = Instant::now();
                    for (policy, delta) in std::mem::take(&mut deltas) {
                        match pending.get_mut(&policy) {
                            Some(w) => {
                                let before = w.delta.flows.len();
                                w.delta.absorb(delta);
                                w.last = now;
                                *entries += w.delta.flows.len() - before;
                            }
                            None => {
                                *entries += delta.flows.len() + 1;
                                pending.insert(
                                    policy,
                                    Waiting {
                                        delta,
                                        first: now,
                                        last: now,
                                    },
                                );
                            }
                        }
                    }
                    Some(wake)
                }
            };
            match wake {
                None => {
                    tokio::select! {
                        _ = &mut taken => {}
                        _ = self.tx.closed() => return Err("the recorder has stopped".to_string()),
                    }
                }
                Some(false) => return Ok(()),
                Some(true) => {
                    return self
                        .tx
                        .send(Job::Wake)
                        .await
                        .map_err(|_| "the recorder has stopped".to_string());
                }
            }
        }
    }

    /// Waits until the queue has room for `deltas` (a batch larger than the whole queue waits
    /// for it to empty).
    async fn queue_space(
        &self,
        deltas: &[(PolicyKey, Delta)],
    ) -> Result<OwnedSemaphorePermit, String> {
        let entries: usize = deltas.iter().map(|(_, d)| d.flows.len() + 1).sum();
        let n = u32::try_from(entries.min(QUEUED_ENTRIES_MAX)).unwrap_or(u32::MAX);
        self.queue
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| "the recorder has stopped".to_string())
    }

    /// Acknowledges alerts of one policy; returns how many open alerts were acknowledged.
    pub async fn acknowledge(
        &self,
        policy: PolicyKey,
        target: AckTarget,
        by: String,
        comment: String,
    ) -> Result<u64, AckError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Ack {
                policy,
                target,
                by,
                comment,
                reply,
            })
            .await
            .map_err(|_| AckError::Write("the recorder has stopped".into()))?;
        rx.await
            .map_err(|_| AckError::Write("the recorder has stopped".into()))?
    }
}

/// One change to a policy's monitor status within a round.
enum Op {
    Delta {
        job: usize,
        delta: Delta,
        key: Option<String>,
    },
    Ack {
        job: usize,
        target: AckTarget,
        by: String,
        comment: String,
    },
}

impl Op {
    /// The job the op came from.
    fn job(&self) -> usize {
        match self {
            Op::Delta { job, .. } | Op::Ack { job, .. } => *job,
        }
    }
}

/// The watch's copies of the policies, and the version of each that this recorder wrote last.
struct Copies {
    store: Option<Store<SegmentationPolicy>>,
    written: Mutex<HashMap<PolicyKey, String>>,
}

impl Copies {
    /// The watch's copy of `policy` when it is the version written last (or none was written).
    fn current(&self, policy: &PolicyKey) -> Option<Arc<SegmentationPolicy>> {
        let store = self.store.as_ref()?;
        let copy = store.get(&ObjectRef::new(&policy.name).within(&policy.namespace))?;
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        match written.get(policy) {
            Some(rv) if copy.metadata.resource_version.as_ref() != Some(rv) => None,
            _ => Some(copy),
        }
    }

    /// Remembers the version written (`None`: unknown, read it next time).
    fn wrote(&self, policy: &PolicyKey, resource_version: Option<String>) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        match resource_version {
            Some(rv) => {
                written.insert(policy.clone(), rv);
            }
            None => {
                written.remove(policy);
            }
        }
        // Bounded by the policies that exist: forget deleted ones now and then.
        if let Some(store) = &self.store
            && written.len() > 2 * store.len().max(512)
        {
            written.retain(|k, _| {
                store
                    .get(&ObjectRef::new(&k.name).within(&k.namespace))
                    .is_some()
            });
        }
    }
}

enum OpResult {
    Recorded { duplicate: bool },
    Acked(u64),
    Failed(String),
    AckRefused(AckError),
}

async fn run(
    client: Client,
    config: RecorderConfig,
    metrics: RecorderMetrics,
    copies: Copies,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Job>,
) {
    let config = Arc::new(config);
    // When syslog lines left waiting (not settled yet) are ready.
    let mut next_ready: Option<Instant> = None;
    loop {
        let first = match next_ready {
            Some(at) => tokio::select! {
                j = rx.recv() => j,
                () = tokio::time::sleep_until(at) => Some(Job::Wake),
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < ROUND_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // A round somebody waits for takes every syslog line read before it: a batch
        // acknowledged after them is recorded after them.
        let waited_for = jobs.iter().any(|j| !matches!(j, Job::Wake));
        let (unanswered, next) = shared.take(waited_for);
        next_ready = next;
        if !waited_for && unanswered.is_empty() {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        metrics.round_requests.observe(jobs.len() as f64);
        round(&client, &config, &metrics, &copies, jobs, unanswered).await;
    }
    // Every handle is gone; what syslog merged after the last wake-up is written too.
    let (rest, _) = shared.take(true);
    if !rest.is_empty() {
        round(&client, &config, &metrics, &copies, Vec::new(), rest).await;
    }
}

async fn round(
    client: &Client,
    config: &RecorderConfig,
    metrics: &RecorderMetrics,
    copies: &Copies,
    jobs: Vec<Job>,
    unanswered: HashMap<PolicyKey, Delta>,
) {
    let mut per_policy: BTreeMap<PolicyKey, Vec<Op>> = BTreeMap::new();
    let mut replies_record = Vec::new();
    let mut replies_ack = Vec::new();
    // The merged syslog batches are one job, after the others.
    let syslog_job = jobs.len();
    if !unanswered.is_empty() {
        replies_record.push((syslog_job, None, None));
        for (policy, delta) in unanswered {
            per_policy.entry(policy).or_default().push(Op::Delta {
                job: syslog_job,
                delta,
                key: None,
            });
        }
    }
    for (i, job) in jobs.into_iter().enumerate() {
        match job {
            Job::Wake => {}
            Job::Record {
                deltas,
                key,
                reply,
                queued,
            } => {
                replies_record.push((i, reply, Some(queued)));
                for (policy, delta) in deltas {
                    per_policy.entry(policy).or_default().push(Op::Delta {
                        job: i,
                        delta,
                        key: key.clone(),
                    });
                }
            }
            Job::Ack {
                policy,
                target,
                by,
                comment,
                reply,
            } => {
                replies_ack.push((i, policy.clone(), reply));
                per_policy.entry(policy).or_default().push(Op::Ack {
                    job: i,
                    target,
                    by,
                    comment,
                });
            }
        }
    }
    let results: Vec<Vec<(usize, OpResult)>> = futures::stream::iter(per_policy)
        .map(|(policy, ops)| write_policy(client, config, metrics, copies, policy, ops))
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    let mut by_job: BTreeMap<usize, Vec<OpResult>> = BTreeMap::new();
    for (job, r) in results.into_iter().flatten() {
        by_job.entry(job).or_default().push(r);
    }
    for (i, reply, queued) in replies_record {
        drop(queued);
        let results = by_job.remove(&i).unwrap_or_default();
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| match r {
                OpResult::Failed(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        let outcome = if failed.is_empty() {
            Ok(Recorded {
                duplicate: !results.is_empty()
                    && results
                        .iter()
                        .all(|r| matches!(r, OpResult::Recorded { duplicate: true })),
            })
        } else {
            Err(failed.join("; "))
        };
        match reply {
            Some(reply) => {
                let _ = reply.send(outcome);
            }
            None => {
                if let Err(e) = outcome {
                    warn!(error = %e, "syslog batch could not be recorded");
                }
            }
        }
    }
    for (i, policy, reply) in replies_ack {
        let outcome = match by_job.remove(&i).unwrap_or_default().pop() {
            Some(OpResult::Acked(n)) => Ok(n),
            Some(OpResult::AckRefused(e)) => Err(e),
            Some(OpResult::Failed(e)) => Err(AckError::Write(e)),
            _ => Err(AckError::PolicyNotFound(policy.to_string())),
        };
        let _ = reply.send(outcome);
    }
}

/// Reads the policy, applies the round's ops to its monitor status and writes it once.
async fn write_policy(
    client: &Client,
    config: &RecorderConfig,
    metrics: &RecorderMetrics,
    copies: &Copies,
    policy: PolicyKey,
    ops: Vec<Op>,
) -> Vec<(usize, OpResult)> {
    let api: Api<SegmentationPolicy> = Api::namespaced(client.clone(), &policy.namespace);
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        // The watch's copy first; a retry reads afresh.
        let copy = if attempt == 0 {
            copies.current(&policy)
        } else {
            None
        };
        let from_copy = copy.is_some();
        let read = match copy {
            Some(p) => Ok(Some(p)),
            None => api.get_opt(&policy.name).await.map(|p| {
                p.map(crate::controller::shared::without_managed_fields)
                    .map(Arc::new)
            }),
        };
        let current = match read {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Deleted: its flows have nowhere to go, which is not the sender's fault.
                debug!(policy = %policy, "policy gone; dropping its monitor data");
                copies.wrote(&policy, None);
                return gone(&policy, &ops);
            }
            Err(e) => {
                last_error = format!("reading {policy}: {e}");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        let resource_version = current.metadata.resource_version.clone();
        let before = current.status.as_ref().and_then(|s| s.monitor.as_ref());
        let mut m: MonitorStatus = before.cloned().unwrap_or_default();
        let results = apply_ops(&mut m, &policy, &ops, config, Timestamp::now());
        let unchanged = before.map_or_else(|| m == MonitorStatus::default(), |b| m == *b);
        drop(current);
        // Only a write proves the copy current (the precondition): an outcome without one is
        // decided on a fresh read.
        let refused = results
            .iter()
            .any(|(_, r)| matches!(r, OpResult::AckRefused(_)));
        if from_copy && (unchanged || refused) {
            continue;
        }
        if unchanged {
            metrics.write("duplicate");
            return results;
        }
        match patch_monitor(client, &policy, resource_version.as_deref(), &m).await {
            Ok(written) => {
                metrics.write("ok");
                copies.wrote(&policy, written.metadata.resource_version);
                return results;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                metrics.write("conflict");
                copies.wrote(&policy, None);
                last_error = format!("{policy}: conflicting writers");
            }
            Err(e) => {
                metrics.write("error");
                copies.wrote(&policy, None);
                last_error = format!("writing {policy}: {e}");
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    warn!(policy = %policy, error = %last_error, "status.monitor not written");
    ops.iter()
        .map(|op| (op.job(), OpResult::Failed(last_error.clone())))
        .collect()
}

/// The outcomes for a policy that is gone: its deltas count as recorded, its acks are refused.
fn gone(policy: &PolicyKey, ops: &[Op]) -> Vec<(usize, OpResult)> {
    ops.iter()
        .map(|op| match op {
            Op::Delta { job, .. } => (*job, OpResult::Recorded { duplicate: false }),
            Op::Ack { job, .. } => (
                *job,
                OpResult::AckRefused(AckError::PolicyNotFound(policy.to_string())),
            ),
        })
        .collect()
}

/// Applies the ops to the monitor status in order, with each op's outcome.
fn apply_ops(
    m: &mut MonitorStatus,
    policy: &PolicyKey,
    ops: &[Op],
    config: &RecorderConfig,
    now: Timestamp,
) -> Vec<(usize, OpResult)> {
    ops.iter()
        .map(|op| match op {
            Op::Delta { job, delta, key } => {
                let a = aggregate::apply(m, policy, delta, key.as_deref(), config.max_flows);
                (
                    *job,
                    OpResult::Recorded {
                        duplicate: a.duplicate,
                    },
                )
            }
            Op::Ack {
                job,
                target,
                by,
                comment,
            } => (
                *job,
                acknowledge_within_budget(m, policy, target, by, comment, now),
            ),
        })
        .collect()
}

/// One acknowledgement, refused (and undone) when it would grow the status past its budget.
fn acknowledge_within_budget(
    m: &mut MonitorStatus,
    policy: &PolicyKey,
    target: &AckTarget,
    by: &str,
    comment: &str,
    now: Timestamp,
) -> OpResult {
    let kept = m.clone();
    match aggregate::acknowledge(m, target, by, comment, now) {
        Ok(n) => {
            let bytes = serde_json::to_vec(&*m).map_or(usize::MAX, |v| v.len());
            if bytes > MONITOR_BYTES_MAX && bytes > serde_json::to_vec(&kept).map_or(0, |v| v.len())
            {
                *m = kept;
                OpResult::AckRefused(AckError::TooLarge {
                    policy: policy.to_string(),
                    bytes,
                    budget: MONITOR_BYTES_MAX,
                })
            } else {
                OpResult::Acked(n)
            }
        }
        Err(ids) => OpResult::AckRefused(AckError::UnknownFlows {
            policy: policy.to_string(),
            ids,
        }),
    }
}

/// The body of a `status.monitor` write: the version read as precondition (`null` when none
/// was read) and the monitor status, serialised straight from the struct.
#[derive(serde::Serialize, Debug)]
struct MonitorPatch<'a> {
    metadata: VersionPrecondition<'a>,
    status: MonitorOnly<'a>,
}

#[derive(serde::Serialize, Debug)]
struct VersionPrecondition<'a> {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<&'a str>,
}

#[derive(serde::Serialize, Debug)]
struct MonitorOnly<'a> {
    monitor: &'a MonitorStatus,
}

/// What the API server answers a status write with: the object's metadata only (the
/// `as=PartialObjectMetadata` media type), so neither side encodes or decodes the whole
/// policy for the new `resourceVersion`.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Writes `status.monitor` with the version read as precondition (a merge patch); returns the
/// written object's metadata.
async fn patch_monitor(
    client: &Client,
    policy: &PolicyKey,
    resource_version: Option<&str>,
    m: &MonitorStatus,
) -> Result<PartialObjectMeta<SegmentationPolicy>, kube::Error> {
    let body = MonitorPatch {
        metadata: VersionPrecondition { resource_version },
        status: MonitorOnly { monitor: m },
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    patch_status(
        client,
        &policy.namespace,
        &policy.name,
        &params,
        &Patch::Merge(&body),
    )
    .await
}

/// Patches a policy's status; the answer is the object's metadata only.
pub(crate) async fn patch_status<P: serde::Serialize + std::fmt::Debug>(
    client: &Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<PartialObjectMeta<SegmentationPolicy>, kube::Error> {
    let mut req = kube::core::Request::new(SegmentationPolicy::url_path(&(), Some(namespace)))
        .patch_subresource("status", name, params, patch)
        .map_err(kube::Error::BuildRequest)?;
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(METADATA_ONLY));
    client.request(req).await
}

/// The wait after failed try `attempt` (0-based): 50 ms doubling up to 1.6 s.
fn backoff(attempt: usize) -> Duration {
    const RETRY: crate::backoff::Backoff =
        crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_millis(1600));
    RETRY.step(u32::try_from(attempt).unwrap_or(u32::MAX).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PolicyKey {
        PolicyKey {
            namespace: "apps".into(),
            name: name.into(),
        }
    }

    fn waiting(first: Instant, last: Instant) -> Waiting {
        Waiting {
            delta: Delta {
                unmatched: 1,
                ..Delta::default()
            },
            first,
            last,
        }
    }

    #[test]
    fn a_round_nobody_waits_for_takes_the_policies_whose_lines_settled_or_waited_long() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut u = Unanswered::default();
        u.deltas.insert(key("done"), waiting(ms(0), ms(0)));
        u.deltas.insert(key("mid-burst"), waiting(ms(20), ms(40)));
        u.deltas.insert(key("endless"), waiting(ms(0), ms(990)));
        u.entries = 3;
        let (taken, next) = u.take_ready(ms(60), false);
        assert_eq!(taken.keys().collect::<Vec<_>>(), [&key("done")]);
        assert_eq!(u.entries, 2);
        assert_eq!(
            next,
            Some(ms(90)),
            "mid-burst settles 50 ms after its last line"
        );
        let (taken, next) = u.take_ready(ms(90), false);
        assert_eq!(taken.keys().collect::<Vec<_>>(), [&key("mid-burst")]);
        assert_eq!(next, Some(ms(1_040)), "endless: 50 ms after its last line");
        u.deltas.get_mut(&key("endless")).unwrap().last = ms(1_990);
        let (taken, next) = u.take_ready(ms(1_100), false);
        assert!(taken.is_empty());
        assert_eq!(next, Some(ms(2_000)));
        let (taken, next) = u.take_ready(ms(2_000), false);
        assert_eq!(
            taken.keys().collect::<Vec<_>>(),
            [&key("endless")],
            "a stream that never pauses is written once it has waited two seconds"
        );
        assert_eq!((next, u.entries), (None, 0));
        assert!(u.deltas.is_empty());
    }

    #[test]
    fn a_round_somebody_waits_for_takes_every_line_read_before_it() {
        let t0 = Instant::now();
        let mut u = Unanswered::default();
        u.deltas.insert(key("a"), waiting(t0, t0));
        u.deltas
            .insert(key("b"), waiting(t0, t0 + Duration::from_millis(30)));
        u.entries = 2;
        let (taken, next) = u.take_ready(t0 + Duration::from_millis(31), true);
        assert_eq!((taken.len(), next, u.entries), (2, None, 0));
        assert_eq!(taken[&key("b")].unmatched, 1);
    }

    #[test]
    fn the_patch_body_carries_the_precondition_and_the_monitor_status_only() {
        let m = MonitorStatus {
            unmatched_total: 7,
            batches: vec!["key:a".into()],
            ..MonitorStatus::default()
        };
        let body = |rv| {
            serde_json::to_value(MonitorPatch {
                metadata: VersionPrecondition {
                    resource_version: rv,
                },
                status: MonitorOnly { monitor: &m },
            })
            .unwrap()
        };
        assert_eq!(
            body(Some("42")),
            serde_json::json!({
                "metadata": { "resourceVersion": "42" },
                "status": { "monitor": serde_json::to_value(&m).unwrap() },
            })
        );
        // Without a version read there is no precondition: null removes it from the patch.
        assert_eq!(
            body(None)["metadata"]["resourceVersion"],
            serde_json::Value::Null
        );
        assert_eq!(body(None)["status"]["monitor"]["unmatchedTotal"], 7);
    }
}
