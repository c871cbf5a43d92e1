//! Writes what ingestion aggregated into `status.monitor`, in group commits.
//!
//! Every ingestion request hands its per-application [`Delta`]s to the recorder and waits; the
//! recorder takes everything queued at that moment as one round, folds it per policy into the
//! policy's current `status.monitor` (read fresh) and writes each policy once, with the object's
//! `resourceVersion` as a precondition (a conflict is read again and retried). Only then are the
//! requests of the round answered, so an acknowledged batch is in the API server (a restart loses
//! nothing) and a retried batch finds its idempotency key there (nothing is counted twice).
//! Acknowledgements of alerts take the same path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
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
}

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
    },
    Ack {
        policy: PolicyKey,
        target: AckTarget,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<u64, AckError>>,
    },
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
}

/// Settings of the recorder.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Distinct flows kept per application (at most [`aggregate::FLOWS_MAX`]).
    pub max_flows: usize,
}

impl Recorder {
    /// Starts the recorder; it stops when every handle is dropped.
    pub fn spawn(
        client: Client,
        config: RecorderConfig,
        metrics: RecorderMetrics,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4_096);
        let task = tokio::spawn(run(client, config, metrics, rx));
        (Recorder { tx }, task)
    }

    /// Records a batch and waits until it is in the API server. `key` makes a retry harmless.
    pub async fn record(
        &self,
        deltas: Vec<(PolicyKey, Delta)>,
        key: Option<String>,
    ) -> Result<Recorded, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Record {
                deltas,
                key,
                reply: Some(reply),
            })
            .await
            .map_err(|_| "the recorder has stopped".to_string())?;
        rx.await
            .map_err(|_| "the recorder has stopped".to_string())?
    }

    /// Queues a batch without waiting (syslog: there is nobody to answer).
    pub async fn record_later(&self, deltas: Vec<(PolicyKey, Delta)>) -> Result<(), String> {
        self.tx
            .send(Job::Record {
                deltas,
                key: None,
                reply: None,
            })
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
    mut rx: mpsc::Receiver<Job>,
) {
    let config = Arc::new(config);
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < ROUND_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        #[allow(clippy::cast_precision_loss)]
        metrics.round_requests.observe(jobs.len() as f64);
        round(&client, &config, &metrics, jobs).await;
    }
}

async fn round(
    client: &Client,
    config: &RecorderConfig,
    metrics: &RecorderMetrics,
    jobs: Vec<Job>,
) {
    let mut per_policy: BTreeMap<PolicyKey, Vec<Op>> = BTreeMap::new();
    let mut replies_record = Vec::new();
    let mut replies_ack = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        match job {
            Job::Record { deltas, key, reply } => {
                replies_record.push((i, reply));
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
        .map(|(policy, ops)| write_policy(client, config, metrics, policy, ops))
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    let mut by_job: BTreeMap<usize, Vec<OpResult>> = BTreeMap::new();
    for (job, r) in results.into_iter().flatten() {
        by_job.entry(job).or_default().push(r);
    }
    for (i, reply) in replies_record {
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
    policy: PolicyKey,
    ops: Vec<Op>,
) -> Vec<(usize, OpResult)> {
    let api: Api<SegmentationPolicy> = Api::namespaced(client.clone(), &policy.namespace);
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        let current = match api.get_opt(&policy.name).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Deleted: its flows have nowhere to go, which is not the sender's fault.
                debug!(policy = %policy, "policy gone; dropping its monitor data");
                return ops
                    .iter()
                    .map(|op| match op {
                        Op::Delta { job, .. } => (*job, OpResult::Recorded { duplicate: false }),
                        Op::Ack { job, .. } => (
                            *job,
                            OpResult::AckRefused(AckError::PolicyNotFound(policy.to_string())),
                        ),
                    })
                    .collect();
            }
            Err(e) => {
                last_error = format!("reading {policy}: {e}");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        let resource_version = current.metadata.resource_version.clone();
        let before = current
            .status
            .as_ref()
            .and_then(|s| s.monitor.clone())
            .unwrap_or_default();
        let mut m: MonitorStatus = before.clone();
        let now = Timestamp::now();
        let results: Vec<(usize, OpResult)> = ops
            .iter()
            .map(|op| match op {
                Op::Delta { job, delta, key } => {
                    let a =
                        aggregate::apply(&mut m, &policy, delta, key.as_deref(), config.max_flows);
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
                } => match aggregate::acknowledge(&mut m, target, by, comment, now) {
                    Ok(n) => (*job, OpResult::Acked(n)),
                    Err(ids) => (
                        *job,
                        OpResult::AckRefused(AckError::UnknownFlows {
                            policy: policy.to_string(),
                            ids,
                        }),
                    ),
                },
            })
            .collect();
        if m == before {
            metrics.write("duplicate");
            return results;
        }
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": resource_version },
            "status": { "monitor": m },
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch_status(&policy.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                metrics.write("ok");
                return results;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                metrics.write("conflict");
                last_error = format!("{policy}: conflicting writers");
            }
            Err(e) => {
                metrics.write("error");
                last_error = format!("writing {policy}: {e}");
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    warn!(policy = %policy, error = %last_error, "status.monitor not written");
    ops.iter()
        .map(|op| {
            let job = match op {
                Op::Delta { job, .. } | Op::Ack { job, .. } => *job,
            };
            (job, OpResult::Failed(last_error.clone()))
        })
        .collect()
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)))
}
