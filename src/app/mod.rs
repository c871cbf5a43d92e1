//! The composition root of `microseg controller`: one watch per kind ([`controller::shared`]),
//! the controller (the leader's reconcilers), the monitor recorder, ingestion, syslog and the
//! dashboard are built here and each gets what it needs, so that `controller`, `web` and
//! `monitor` stand side by side and none wires the others. Everything stops on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{EnforcementWindow, SegmentationPolicy};
use crate::controller::invalid::{LeaderEvents, OnInvalid};
use crate::controller::shared::Shared;
use crate::controller::{self, Error, Leader, LeaseSettings, Parts, Settings};
use crate::monitor::attribution::LiveIndex;
use crate::monitor::recorder::{Recorder, RecorderConfig, RecorderMetrics};
use crate::notify::Notifier;
use crate::nsx::NsxApi;
use crate::nsx::naming::Identity;
use crate::web::dashboard::{DashboardConfig, DashboardState};
use crate::web::ingest::{Ingest, IngestConfig, IngestMetrics};

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
    /// Metrics of the controller, registered in `registry`.
    pub metrics: Arc<controller::metrics::Metrics>,
    /// Monitor ingestion.
    pub monitor: MonitorSettings,
    /// Who may use the dashboard (neither token nor user header: not served).
    pub dashboard: DashboardConfig,
}

/// Monitor ingestion settings.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Ingestion limits; HTTP ingestion is on when a token or an HMAC key is set.
    pub ingest: IngestConfig,
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

    // One watch per kind for the whole process: the stores every part reads, and the events the
    // leader's controllers subscribe to. It logs and counts the objects that cannot be decoded
    // in every replica, and publishes their events while leading.
    let recorder = controller::recorder(&rt.client, rt.lease.as_ref().map(|l| l.holder.clone()));
    let events = LeaderEvents::new(recorder.clone());
    let report = OnInvalid::skip()
        .warn_and_count(rt.metrics.invalid_objects.clone())
        .publish_while_leading(events.clone());
    // Ingestion's attribution index follows the policy events.
    let attribution = LiveIndex::new(rt.identity.clone());
    let shared = Shared::spawn(&policies, &windows, report, {
        let attribution = attribution.clone();
        move |event| attribution.observe(event)
    });

    let mut registry = rt.registry;
    let leader = Leader::new(
        Parts {
            client: rt.client.clone(),
            nsx: rt.nsx,
            notifier: rt.notifier,
            identity: rt.identity.clone(),
            settings: rt.settings,
            metrics: rt.metrics,
            recorder,
            events,
            shared: shared.clone(),
        },
        &mut registry,
    );

    // One token stops everything; the leader's terms are its children.
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            info!("shutting down");
            shutdown.cancel();
        }
    });

    let (recorder, recorder_task) = Recorder::spawn(
        rt.client.clone(),
        RecorderConfig {
            max_flows: rt.monitor.max_flows,
        },
        RecorderMetrics::register(&mut registry),
        Some(shared.policies.clone()),
    );
    let ingest = Ingest::new(
        rt.monitor.ingest.clone(),
        recorder.clone(),
        shared.policies.clone(),
        attribution,
        rt.identity,
        IngestMetrics::register(&mut registry),
    );
    let listeners = Listeners {
        http: rt.http,
        ingest_addr: rt.ingest_addr,
        dashboard_addr: rt.dashboard_addr,
        monitor: rt.monitor,
        dashboard: DashboardState {
            policies: shared.policies.clone(),
            windows: shared.windows.clone(),
            changes: shared.changes(),
            recorder: Some(recorder.clone()),
            client: Some(rt.client.clone()),
            config: rt.dashboard,
        },
    };
    let ready = async move { shared.ready().await };
    let servers = listeners
        .serve(registry, ready, ingest, shutdown.clone())
        .await?;

    let phase_gauges = tokio::spawn(controller::window::phase_gauges(
        leader.context().clone(),
        shutdown.clone(),
    ));
    leader.run_until(rt.lease, shutdown).await?;
    phase_gauges.abort();
    for server in servers {
        let _ = server.await;
    }
    // Every request has been answered; let the recorder write what syslog queued, then stop.
    drop(recorder);
    let _ = tokio::time::timeout(Duration::from_secs(10), recorder_task).await;
    Ok(())
}

/// The listeners: syslog, and three HTTP ones (a header or a body meant for one never reaches
/// the others).
struct Listeners {
    http: SocketAddr,
    ingest_addr: SocketAddr,
    dashboard_addr: SocketAddr,
    monitor: MonitorSettings,
    dashboard: DashboardState,
}

impl Listeners {
    /// Starts them; each stops on `shutdown`.
    async fn serve(
        self,
        registry: Registry,
        ready: impl std::future::Future<Output = ()> + Send + 'static,
        ingest: Ingest,
        shutdown: CancellationToken,
    ) -> Result<Vec<JoinHandle<()>>, Error> {
        let mut servers = Vec::new();
        for (addr, udp) in [
            (self.monitor.syslog_udp, true),
            (self.monitor.syslog_tcp, false),
        ] {
            let Some(addr) = addr else { continue };
            let started = if udp {
                crate::web::ingest::serve_syslog_udp(addr, ingest.clone(), shutdown.clone()).await
            } else {
                crate::web::ingest::serve_syslog_tcp(addr, ingest.clone(), shutdown.clone()).await
            };
            servers.push(started.map_err(|reason| Error::Http { addr, reason })?);
            info!(%addr, protocol = if udp { "udp" } else { "tcp" }, "listening for syslog");
        }
        let dashboard_on = self.dashboard.config.enabled();
        let mut listeners = vec![(
            self.http,
            crate::web::health::router(registry, ready),
            "health and metrics",
        )];
        if self.monitor.ingest.http_enabled() {
            listeners.push((
                self.ingest_addr,
                crate::web::ingest::router(Some(ingest)),
                "ingestion",
            ));
        }
        if dashboard_on {
            listeners.push((
                self.dashboard_addr,
                crate::web::dashboard::router(self.dashboard),
                "dashboard",
            ));
        }
        for (addr, app, what) in listeners {
            servers.push(
                crate::web::serve(addr, app, shutdown.clone())
                    .await
                    .map_err(|reason| Error::Http { addr, reason })?,
            );
            info!(%addr, "listening: {what}");
        }
        Ok(servers)
    }
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
