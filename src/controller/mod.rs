//! The controller: kube-runtime wiring, leader election, health and metrics endpoints. The
//! reconcile logic is in `policy` (SegmentationPolicy) and `window` (EnforcementWindow status);
//! the status they write is built by the pure `status`, the notices they send are chosen by the
//! pure `notices`.
//!
//! No single object takes the brakes away: every watch goes through `invalid::guarded_watcher`
//! (an object that cannot be decoded is skipped and reported, the others are served) and every
//! reconcile through `guard` (a panic is caught, reported on its object and retried).

pub mod canary;
pub mod cli;
pub mod context;
pub mod decide;
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

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::Predicate;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::predicates;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{EnforcementWindow, SegmentationPolicy};
use crate::notify::Notifier;
use crate::nsx::NsxApi;
use crate::plan::Identity;
pub use context::{Clock, Context, Settings, SystemClock};
use invalid::{LeaderEvents, OnInvalid};
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

/// Everything `run` needs.
pub struct Runtime {
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
    /// Leader election; `None` runs as the only writer.
    pub lease: Option<LeaseSettings>,
    /// Only this namespace (namespace-scoped mode), or all.
    pub namespace: Option<String>,
    /// Health and metrics listener.
    pub http: SocketAddr,
    /// Ingestion listener (when HTTP ingestion is on).
    pub ingest_addr: SocketAddr,
    /// Dashboard listener (when the dashboard is on).
    pub dashboard_addr: SocketAddr,
    /// Metrics registry (other components may have registered into it).
    pub registry: Registry,
    /// Metrics of this controller, registered in `registry`.
    pub metrics: Arc<metrics::Metrics>,
    /// Monitor ingestion.
    pub monitor: MonitorSettings,
    /// Who may use the dashboard (neither token nor user header: not served).
    pub dashboard: crate::web::dashboard::DashboardConfig,
}

/// Monitor ingestion settings.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Ingestion limits; HTTP ingestion is on when a token or an HMAC key is set.
    pub ingest: crate::web::ingest::IngestConfig,
    /// Distinct flows kept per application.
    pub max_flows: usize,
    /// Syslog over UDP.
    pub syslog_udp: Option<SocketAddr>,
    /// Syslog over TCP.
    pub syslog_tcp: Option<SocketAddr>,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(rt: Runtime) -> Result<(), Error> {
    let policies: Api<SegmentationPolicy> = api(&rt.client, &rt.namespace);
    let windows: Api<EnforcementWindow> = api(&rt.client, &rt.namespace);

    // One watch per kind for the whole process: the stores every part reads (the dashboard and
    // ingestion too), and the events the leader's controllers subscribe to. It logs and counts
    // the objects that cannot be decoded in every replica, and publishes their events while
    // leading.
    let recorder = Recorder::new(
        rt.client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: rt.lease.as_ref().map(|l| l.holder.clone()),
        },
    );
    let leader_events = LeaderEvents::new(recorder.clone());
    let report = OnInvalid::skip()
        .warn_and_count(rt.metrics.invalid_objects.clone())
        .publish_while_leading(leader_events.clone());
    // Ingestion's attribution index follows the policy events.
    let attribution = crate::monitor::attribution::LiveIndex::new(rt.identity.clone());
    let shared = Shared::spawn(&policies, &windows, report, {
        let attribution = attribution.clone();
        move |event| attribution.observe(event)
    });
    let (policy_store, window_store) = (shared.policies.clone(), shared.windows.clone());

    let mut registry = rt.registry;
    // NSX: writes coalesced (when on), reads from the cache (when on), in that order, so the
    // cache learns each application's own result of a batched write.
    let nsx: Arc<dyn crate::nsx::NsxApi> = match rt.settings.nsx_batch {
        Some(config) => Arc::new(nsx_batch::BatchingNsx::new(
            rt.nsx,
            config,
            nsx_batch::BatchMetrics::register(&mut registry),
        )),
        None => rt.nsx,
    };
    let cache = rt
        .settings
        .nsx_cache
        .then(|| Arc::new(nsx_cache::NsxCache::new(rt.identity.clone())));
    let nsx: Arc<dyn crate::nsx::NsxApi> = match &cache {
        Some(c) => Arc::new(nsx_cache::CachedNsx::new(nsx, c.clone())),
        None => nsx,
    };
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        nsx,
        notifier: rt.notifier,
        recorder,
        identity: rt.identity,
        policies: policy_store.clone(),
        windows: window_store.clone(),
        metrics: rt.metrics,
        clock: Arc::new(SystemClock),
        settings: rt.settings,
        members: Default::default(),
        statuses: Default::default(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let ready = {
        let shared = shared.clone();
        async move { shared.ready().await }
    };
    let (recorder, recorder_task) = crate::monitor::recorder::Recorder::spawn(
        rt.client.clone(),
        crate::monitor::recorder::RecorderConfig {
            max_flows: rt.monitor.max_flows,
        },
        crate::monitor::recorder::RecorderMetrics::register(&mut registry),
        Some(policy_store.clone()),
    );
    let ingest_metrics = crate::web::ingest::IngestMetrics::register(&mut registry);
    let ingest = crate::web::ingest::Ingest::new(
        rt.monitor.ingest.clone(),
        recorder.clone(),
        policy_store.clone(),
        attribution,
        ctx.identity.clone(),
        ingest_metrics,
    );
    let mut syslog = Vec::new();
    for (addr, udp) in [
        (rt.monitor.syslog_udp, true),
        (rt.monitor.syslog_tcp, false),
    ] {
        let Some(addr) = addr else { continue };
        let started = if udp {
            crate::web::ingest::serve_syslog_udp(addr, ingest.clone(), shutdown_rx.clone()).await
        } else {
            crate::web::ingest::serve_syslog_tcp(addr, ingest.clone(), shutdown_rx.clone()).await
        };
        syslog.push(started.map_err(|reason| Error::Http { addr, reason })?);
        info!(%addr, protocol = if udp { "udp" } else { "tcp" }, "listening for syslog");
    }
    // Three listeners: a header or a body meant for one never reaches the others.
    let dashboard_on = rt.dashboard.enabled();
    let dashboard = crate::web::dashboard::router(crate::web::dashboard::DashboardState {
        policies: policy_store.clone(),
        windows: window_store.clone(),
        recorder: Some(recorder.clone()),
        client: Some(rt.client.clone()),
        config: rt.dashboard,
    });
    let mut servers = Vec::new();
    let mut listeners = vec![(
        rt.http,
        crate::web::health::router(registry, ready),
        "health and metrics",
    )];
    if rt.monitor.ingest.http_enabled() {
        listeners.push((
            rt.ingest_addr,
            crate::web::ingest::router(Some(ingest)),
            "ingestion",
        ));
    }
    if dashboard_on {
        listeners.push((rt.dashboard_addr, dashboard, "dashboard"));
    }
    for (addr, app, what) in listeners {
        servers.push(
            crate::web::serve(addr, app, shutdown_rx.clone())
                .await
                .map_err(|reason| Error::Http { addr, reason })?,
        );
        info!(%addr, "listening: {what}");
    }

    let phase_gauges = tokio::spawn(window::phase_gauges(ctx.clone(), shutdown_rx.clone()));

    let leader = Leader {
        ctx: ctx.clone(),
        cache,
        shared,
        events: leader_events,
    };
    match rt.lease {
        None => leader.run(shutdown_rx.clone()).await,
        Some(lease) => run_as_leader(leader, lease, shutdown_rx.clone()).await?,
    }
    phase_gauges.abort();
    for server in servers {
        let _ = server.await;
    }
    for s in syslog {
        let _ = s.await;
    }
    // Every request has been answered; let the recorder write what syslog queued, then stop.
    drop(recorder);
    let _ = tokio::time::timeout(Duration::from_secs(10), recorder_task).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
    shutdown: watch::Receiver<bool>,
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
            _ = wait_true(shutdown.clone()) => break,
        }
        if *shutdown.borrow() {
            break;
        }
        info!(holder = %lease.holder, "acquired the lease: this replica writes NSX and status");
        let (stop_tx, stop_rx) = watch::channel(false);
        let lost = {
            let leading = leading.clone();
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = wait_false(leading) => {},
                    _ = wait_true(shutdown) => {},
                }
                let _ = stop_tx.send(true);
            }
        };
        tokio::join!(leader.run(stop_rx), lost);
        if *shutdown.borrow() {
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
    cache: &nsx_cache::NsxCache,
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
    stop: watch::Receiver<bool>,
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
            _ = wait_true(stop.clone()) => return,
        }
    }
}

/// What the leader runs, built once: its controllers subscribe to the shared watches for each
/// term.
struct Leader {
    ctx: Arc<Context>,
    cache: Option<Arc<nsx_cache::NsxCache>>,
    shared: Shared,
    events: LeaderEvents,
}

impl Leader {
    /// The policy and window controllers, until `stop` turns true.
    async fn run(&self, stop: watch::Receiver<bool>) {
        let ctx = &self.ctx;
        // Subscribed before the stores are read, so that no change falls in between.
        let applied = self.shared.applied_policies.subscribe();
        let spec_changed = self.shared.window_spec_changed.subscribe();
        let applied_windows = self.shared.applied_windows.subscribe();
        let touched_windows = self.shared.touched_windows.subscribe();
        tokio::select! {
            _ = self.shared.ready() => {},
            _ = wait_true(stop.clone()) => return,
        }
        // This replica publishes the InvalidObject events for as long as the term lasts.
        let _term = self.events.lead();
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
            .graceful_shutdown_on(wait_true(stop.clone()))
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
            .graceful_shutdown_on(wait_true(stop))
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
