//! The controller: the leader's kube-runtime controllers on the process's shared watches
//! ([`shared`]) and leader election; `app` builds it beside the listeners. The reconcile logic is in `policy` (SegmentationPolicy) and `window` (EnforcementWindow status);
//! the status they write is built by the pure `status`, the notices they send are chosen by the
//! pure `notices`.
//!
//! No single object takes the brakes away: every watch goes through `invalid::guarded_watcher`
//! (an object that cannot be decoded is skipped and reported, the others are served) and every
//! reconcile through `guard` (a panic is caught, reported on its object and retried).

pub mod ahead;
pub mod canary;
pub mod context;
pub mod decide;
pub mod events;
pub mod guard;
pub mod invalid;
pub mod members;
pub mod metrics;
pub mod notices;
pub mod nsx_batch;
pub mod nsx_cache;
pub mod policy;
pub mod rbac;
pub mod shared;
pub mod status;
pub mod status_memo;
pub mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::Recorder;
use futures::StreamExt;
use kube::runtime::Predicate;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::predicates;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::SegmentationPolicy;
use crate::notify::Notifier;
use crate::nsx::NsxApi;
use crate::nsx::naming::Identity;
pub use context::{Clock, Context, Settings, SystemClock};
use invalid::LeaderEvents;
use shared::{ChangeFilter, Shared};

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "microseg";
/// Finalizer that removes a policy's NSX objects before it goes.
pub const NSX_CLEANUP_FINALIZER: &str = "microseg.io/nsx-cleanup";

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// NSX failed a call the reconcile cannot do without.
    #[error("{policy}: {source}")]
    Nsx {
        /// namespace/name.
        policy: String,
        /// Why.
        #[source]
        source: crate::nsx::Error,
    },
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A namespaced object without a namespace.
    #[error("metadata.namespace: missing")]
    MissingNamespace,
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
    /// The HTTP server could not start.
    #[error("http server on {addr}: {reason}")]
    Http {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The decide step kept asking for facts (a defect; the reconcile is retried later).
    #[error("{policy}: decide: {message}")]
    Decide {
        /// namespace/name.
        policy: String,
        /// What went wrong.
        message: String,
    },
    /// The reconcile of one object panicked (caught by `guard`; the others are still served).
    #[error("{object}: reconcile panicked: {message}")]
    ReconcilePanicked {
        /// namespace/name.
        object: String,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// PascalCase label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApi",
            Error::Nsx { source, .. } => source.category(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "Finalizer",
            },
            Error::MissingNamespace => crate::api::condition::reason::INVALID_OBJECT,
            Error::Lease(_) => "LeaderElection",
            Error::Http { .. } => "Http",
            Error::Decide { .. } => "Decide",
            Error::ReconcilePanicked { .. } => crate::api::condition::reason::RECONCILE_PANICKED,
        }
    }

    /// When to try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Nsx { source, .. } => source.retry_after().or(Some(Duration::from_secs(30))),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.retry_after(),
                _ => Some(Duration::from_secs(5)),
            },
            Error::MissingNamespace => None,
            Error::ReconcilePanicked { .. } => Some(guard::BACKOFF),
            _ => Some(Duration::from_secs(5)),
        }
    }
}

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub holder: String,
    /// Lease duration in seconds.
    pub duration_seconds: u64,
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_false(mut rx: watch::Receiver<bool>) {
    while *rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the writing controllers while this replica holds the lease; stops them when it is lost
/// and starts them again when it is regained (on the same stores: nothing is listed again).
async fn run_as_leader(
    leader: Leader,
    lease: LeaseSettings,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let manager =
        kube_lease_manager::LeaseManagerBuilder::new(leader.ctx.client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.holder)
            .with_duration(lease.duration_seconds)
            .with_grace(lease.duration_seconds.div_ceil(3).max(1))
            .with_field_manager("microseg-leader-election")
            .build()
            .await
            .map_err(|e| Error::Lease(e.to_string()))?;
    let (leading, task) = manager.watch().await;
    loop {
        tokio::select! {
            _ = wait_true(leading.clone()) => {},
            _ = shutdown.cancelled() => break,
        }
        if shutdown.is_cancelled() {
            break;
        }
        info!(holder = %lease.holder, "acquired the lease: this replica writes NSX and status");
        // The term ends when the lease is lost or the process stops.
        let term = shutdown.child_token();
        let lost = {
            let leading = leading.clone();
            let term = term.clone();
            async move {
                tokio::select! {
                    _ = wait_false(leading) => {},
                    _ = term.cancelled() => {},
                }
                term.cancel();
            }
        };
        tokio::join!(leader.run(term), lost);
        if shutdown.is_cancelled() {
            break;
        }
        warn!(holder = %lease.holder, "lost the lease: stopped writing");
    }
    drop(leading);
    match task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(error = %e, "releasing the lease"),
        Err(e) => warn!(error = %e, "lease task"),
    }
    Ok(())
}

/// The part of the monitor summary that can move a gate, so that a status write by the ingestion
/// path reconciles the policy only when it matters: open alerts (any phase), logs arriving while
/// the application is blind, dropped flows while enforcing (rollback).
pub fn monitor_gates(p: &SegmentationPolicy) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let s = p.status.as_ref()?;
    let m = s.monitor.as_ref()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.open_alerts.hash(&mut h);
    let healthy =
        crate::api::condition::find(&s.conditions, crate::api::condition::MONITORING_HEALTHY)
            .is_some_and(|c| c.status == crate::api::condition::TRUE);
    if !healthy {
        m.last_log_at.as_ref().map(|t| t.0.as_second()).hash(&mut h);
    }
    // Evidence since the last return to PASS (rollback, widening change) opens the blind gate.
    if let Some(from) = s.schedule.as_ref().and_then(|x| x.evidence_from.as_ref()) {
        m.last_log_at
            .as_ref()
            .is_some_and(|t| t.0 >= from.0)
            .hash(&mut h);
    }
    if s.phase == Some(crate::api::Phase::Enforcing) {
        m.series
            .iter()
            .fold(0i64, |n, b| n.saturating_add(b.dropped))
            .hash(&mut h);
    }
    Some(h.finish())
}

/// One refresh of the NSX cache; the policies whose NSX objects changed.
async fn refresh_cache(
    ctx: &Context,
    cache: &Arc<nsx_cache::NsxCache>,
) -> Vec<ObjectRef<SegmentationPolicy>> {
    match nsx_cache::refresh(cache, ctx.nsx.as_ref()).await {
        Ok(changed) if changed.is_empty() => Vec::new(),
        Ok(changed) => {
            let changed: std::collections::HashSet<_> = changed.into_iter().collect();
            ctx.policies
                .state()
                .into_iter()
                .filter(|p| {
                    let id = ctx
                        .identity
                        .object_id(&p.namespace().unwrap_or_default(), &p.name_any());
                    changed.contains(&(p.spec.nsx.domain.clone(), id))
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect()
        }
        Err(e) => {
            warn!(error = %e, "NSX cache refresh failed; reconciles read NSX until the next one");
            Vec::new()
        }
    }
}

/// Loads the NSX cache now, then every resync period until `stop`; sends the policies whose
/// NSX objects changed (drift by hand) to be reconciled. A reconcile before the first load
/// reads NSX itself.
async fn cache_refresher(
    ctx: Arc<Context>,
    cache: Arc<nsx_cache::NsxCache>,
    drift: futures::channel::mpsc::UnboundedSender<ObjectRef<SegmentationPolicy>>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        let changed = refresh_cache(&ctx, &cache).await;
        if !first {
            for r in changed {
                let _ = drift.unbounded_send(r);
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(ctx.settings.resync) => {},
            _ = stop.cancelled() => return,
        }
    }
}

/// What the controller is built from.
pub struct Parts {
    /// Kubernetes client.
    pub client: Client,
    /// NSX.
    pub nsx: Arc<dyn NsxApi>,
    /// Notices.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Cluster identity.
    pub identity: Identity,
    /// Tunables.
    pub settings: Settings,
    /// Metrics of this controller.
    pub metrics: Arc<metrics::Metrics>,
    /// The events recorder (one per process).
    pub recorder: Recorder,
    /// The InvalidObject events the shared watches leave to the leader.
    pub events: LeaderEvents,
    /// The process's stores and their events.
    pub shared: Shared,
}

/// What the leader runs, built once: its controllers subscribe to the shared watches for each
/// term.
pub struct Leader {
    ctx: Arc<Context>,
    cache: Option<Arc<nsx_cache::NsxCache>>,
    shared: Shared,
    events: LeaderEvents,
}

/// The recorder of this process's events (`holder`: the replica, when it elects a leader).
pub fn recorder(client: &Client, holder: Option<String>) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: holder,
        },
    )
}

impl Leader {
    /// Builds the context; NSX writes coalesced (when on), reads from the cache (when on), in
    /// that order, so the cache learns each application's own result of a batched write.
    pub fn new(parts: Parts, registry: &mut Registry) -> Leader {
        let nsx: Arc<dyn NsxApi> = match parts.settings.nsx_batch {
            Some(config) => Arc::new(nsx_batch::BatchingNsx::new(
                parts.nsx,
                config,
                nsx_batch::BatchMetrics::register(registry),
            )),
            None => parts.nsx,
        };
        let cache = parts
            .settings
            .nsx_cache
            .then(|| Arc::new(nsx_cache::NsxCache::new(parts.identity.clone())));
        let nsx: Arc<dyn NsxApi> = match &cache {
            Some(c) => Arc::new(nsx_cache::CachedNsx::new(nsx, c.clone())),
            None => nsx,
        };
        let ctx = Arc::new(Context {
            client: parts.client,
            nsx,
            notifier: parts.notifier,
            events: events::Events::spawn(parts.recorder),
            identity: parts.identity,
            policies: parts.shared.policies.clone(),
            windows: parts.shared.windows.clone(),
            metrics: parts.metrics,
            clock: Arc::new(SystemClock),
            settings: parts.settings,
            members: Default::default(),
            statuses: Default::default(),
            status_writes: Default::default(),
            notice_sends: Default::default(),
            ahead: Default::default(),
        });
        Leader {
            ctx,
            cache,
            shared: parts.shared,
            events: parts.events,
        }
    }

    /// The reconcilers' context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Writes until `shutdown`: while holding the lease, or all along without one.
    pub async fn run_until(
        self,
        lease: Option<LeaseSettings>,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        match lease {
            None => {
                self.run(shutdown).await;
                Ok(())
            }
            Some(lease) => run_as_leader(self, lease, shutdown).await,
        }
    }

    /// The policy and window controllers, until `stop` is cancelled.
    async fn run(&self, stop: CancellationToken) {
        let ctx = &self.ctx;
        // Subscribed before the stores are read, so that no change falls in between.
        let applied = self.shared.applied_policies.subscribe();
        let spec_changed = self.shared.window_spec_changed.subscribe();
        let applied_windows = self.shared.applied_windows.subscribe();
        let touched_windows = self.shared.touched_windows.subscribe();
        tokio::select! {
            _ = self.shared.ready() => {},
            _ = stop.cancelled() => return,
        }
        // This replica publishes the InvalidObject events for as long as the term lasts, and
        // the reconciles that wait for a scheduled instant write only within it.
        let _term = self.events.lead();
        ctx.ahead.begin_term(stop.clone());
        // Reconcile what is changed: a new generation, finalizers, annotations, or a monitor
        // summary that can move a gate (not every status write). The filter starts from the
        // store as it is, and every object is reconciled once at the start of the term.
        let mut filter = ChangeFilter::seeded(
            (predicates::generation as fn(&SegmentationPolicy) -> Option<u64>)
                .combine(predicates::finalizers as fn(&SegmentationPolicy) -> Option<u64>)
                .combine(predicates::annotations as fn(&SegmentationPolicy) -> Option<u64>)
                .combine(monitor_gates as fn(&SegmentationPolicy) -> Option<u64>),
            ctx.policies.clone(),
        );
        let applied = applied.filter(move |p| futures::future::ready(filter.changed(p)));
        // The NSX cache: reset (another replica may have written while this one did not
        // lead), loaded before the first reconciles, then refreshed every resync; the policies
        // whose NSX objects changed (drift by hand) are reconciled at once.
        let (drift_tx, drift_rx) = futures::channel::mpsc::unbounded();
        let cache_task = self.cache.clone().map(|cache| {
            cache.reset();
            tokio::spawn(cache_refresher(ctx.clone(), cache, drift_tx, stop.clone()))
        });
        let policy_controller = Controller::for_shared_stream(applied, ctx.policies.clone())
            .reconcile_all_on(futures::stream::once(futures::future::ready(())))
            .reconcile_on(drift_rx)
            // Only a window's spec matters to its policies (its status, phase counts, changes
            // with every policy and must not requeue all of them), and its deletion: the
            // policies then continue from their recorded schedule and say WindowNotFound.
            .reconcile_on(spec_changed)
            .with_config(
                controller::Config::default().concurrency(ctx.settings.reconcile_concurrency),
            )
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(guard::reconcile_policy, policy::error_policy, ctx.clone())
            .for_each(|res| {
                if let Err(e) = res {
                    match e {
                        controller::Error::ReconcilerFailed(..) => {}
                        other => error!(error = %other, "policy controller"),
                    }
                }
                futures::future::ready(())
            });
        let index = self.shared.index.clone();
        let window_controller = Controller::for_shared_stream(applied_windows, ctx.windows.clone())
            .reconcile_all_on(futures::stream::once(futures::future::ready(())))
            .reconcile_on(touched_windows)
            .graceful_shutdown_on(stop.cancelled_owned())
            .run(
                move |w, ctx| guard::reconcile_window(w, ctx, index.clone()),
                window::error_policy,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
        tokio::join!(policy_controller, window_controller);
        if let Some(t) = cache_task {
            t.abort();
        }
    }
}
