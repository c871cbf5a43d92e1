//! `microseg controller`: flags and environment, turned into a running controller.
//! Credentials come from files or the environment, never from flags.

// `nsx::Error` carries NSX's whole error body by design; start-up errors happen once.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::api::duration::Duration;
use crate::app::{MonitorSettings, Runtime};
use crate::cli::args::{KubeArgs, NsxArgs, NsxClientError};
use crate::controller::metrics::Metrics;
use crate::controller::{LeaseSettings, Settings};
use crate::notify::Notifier;
use crate::notify::channels::Channels;
use crate::notify::config::{CONFIG_DIR_ENV, NotifyConfig};
use crate::nsx::client::Client;
use crate::nsx::metrics::NsxMetrics;
use crate::nsx::naming::Identity;
use crate::nsx::pacing::PacingConfig;
use crate::web::dashboard::DashboardConfig;
use crate::web::ingest::IngestConfig;
use crate::web::secret::{ExposeSecret, SecretSlice, SecretString};

/// Flags of `microseg controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Where the API server is.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Cluster identity written into NSX ids and ownership tags (a-z, 0-9, '-', at most 32).
    #[arg(long, env = "MICROSEG_CLUSTER")]
    pub cluster: String,
    /// Watch only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// NSX Manager URL, e.g. https://nsx.example.com.
    #[arg(long, env = "NSX_URL")]
    pub nsx_url: String,
    /// How to authenticate to NSX and trust it.
    #[command(flatten)]
    pub nsx: NsxArgs,
    /// Requests per second to NSX (NSX's own limit is 100).
    #[arg(long, default_value_t = 50)]
    pub nsx_rate_limit: u32,
    /// Concurrent NSX calls (NSX's own limit is 40).
    #[arg(long, default_value_t = 10)]
    pub nsx_concurrency: usize,
    /// Directory with notification settings (a mounted Secret; see src/notify/config.rs).
    #[arg(long, env = "MICROSEG_NOTIFY_CONFIG_DIR")]
    pub notify_config_dir: Option<PathBuf>,
    /// Reminder notice this long before enforcement.
    #[arg(long, default_value = "48h")]
    pub reminder_before: Duration,
    /// Retry an undelivered owner notice after this long.
    #[arg(long, default_value = "60s")]
    pub notice_retry: Duration,
    /// MonitoringHealthy turns False after this long without a DFW log line.
    #[arg(long, default_value = "24h")]
    pub log_silence: Duration,
    /// Compare NSX with the desired state at least this often.
    #[arg(long, default_value = "5m")]
    pub resync: Duration,
    /// Compute and report NSX changes (events, status, log) without writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep what NSX holds in memory (one read of the whole tree per resync) instead of reading
    /// each application's objects at every reconcile; `false` is the per-object behaviour.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub nsx_cache: bool,
    /// Coalesce the NSX writes of reconciles that come within this long of each other into one
    /// hierarchical PATCH (a refused batch is split to find the application at fault); 0s
    /// writes each application alone.
    #[arg(long, default_value = "100ms")]
    pub nsx_batch_window: Duration,
    /// The longest a write waits for others to join its batch.
    #[arg(long, default_value = "3s")]
    pub nsx_batch_max_wait: Duration,
    /// Most intent objects (groups, policies, rules) in one batched write (the manager takes
    /// at most 5000).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub nsx_batch_max_objects: u32,
    /// Reconciles run at once. NSX sees their writes coalesced, so this bounds how many
    /// applications one batched write can carry (a wave whose applications all reach
    /// `enforceAt` in the same second flips in one write when it fits); the API server sees at
    /// most 64 of their status writes at a time.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// Decide a scheduled transition (a flip at `enforceAt`, a rollback's end) this long ahead
    /// of its instant and write it at the instant, if nothing it read changed meanwhile; 0s
    /// decides when the instant has come.
    #[arg(long, default_value = "10s")]
    pub transition_lead: Duration,
    /// Elect a leader through a Lease; only the leader writes NSX and status.
    #[arg(long)]
    pub leader_elect: bool,
    /// Lease name.
    #[arg(long, default_value = "microseg-controller")]
    pub lease_name: String,
    /// Lease namespace (default: $POD_NAMESPACE, else default).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity (default: $POD_NAME, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub lease_holder: Option<String>,
    /// Lease duration.
    #[arg(long, default_value = "15s")]
    pub lease_duration: Duration,
    /// Health, readiness and metrics listener (nothing else is served on it).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Ingestion listener (/ingest/lines, /ingest/loginsight); bound only when ingestion is on.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub ingest_addr: SocketAddr,
    /// Dashboard listener (/ui/, /api/v1/); bound only when the dashboard is on. The only
    /// listener where a proxy's user header means anything.
    #[arg(long, default_value = "0.0.0.0:8082")]
    pub dashboard_addr: SocketAddr,
    /// File holding the bearer token of the ingestion endpoints (/ingest/lines,
    /// /ingest/loginsight). Without it and without --ingest-hmac-secret-file ingestion is off.
    #[arg(long, env = "MICROSEG_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,
    /// File holding the HMAC-SHA256 key: a request signed in `X-Microseg-Signature:
    /// sha256=<hex>` is accepted without the token.
    #[arg(long, env = "MICROSEG_INGEST_HMAC_SECRET_FILE")]
    pub ingest_hmac_secret_file: Option<PathBuf>,
    /// Largest ingestion body accepted.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub ingest_max_body_bytes: usize,
    /// Log lines per second accepted on average over HTTP (syslog has its own --syslog-rate).
    #[arg(long, default_value_t = 20_000)]
    pub ingest_rate: u32,
    /// Log lines accepted at once over HTTP (the largest batch).
    #[arg(long, default_value_t = 50_000)]
    pub ingest_burst_lines: u32,
    /// Ingestion bodies read at once; more wait a few seconds, then get 503 with Retry-After.
    /// Memory for bodies stays under this times --ingest-max-body-bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ingest_max_in_flight: u16,
    /// A signed batch whose X-Microseg-Timestamp is further than this from now is refused (a
    /// replay).
    #[arg(long, default_value = "5m")]
    pub ingest_hmac_max_age: Duration,
    /// Log lines per second accepted on average over syslog (UDP and TCP together; a budget
    /// apart from the authenticated HTTP senders').
    #[arg(long, default_value_t = 20_000)]
    pub syslog_rate: u32,
    /// Log lines accepted at once over syslog.
    #[arg(long, default_value_t = 50_000)]
    pub syslog_burst_lines: u32,
    /// Syslog TCP connections served at once; one more is closed at once.
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub syslog_tcp_max_connections: u32,
    /// A syslog TCP connection that sends nothing for this long is closed.
    #[arg(long, default_value = "5m")]
    pub syslog_tcp_idle_timeout: Duration,
    /// Listen for syslog over UDP here (e.g. 0.0.0.0:5514). Syslog has no authentication:
    /// restrict who can reach it (the chart's NetworkPolicy).
    #[arg(long)]
    pub syslog_udp_addr: Option<SocketAddr>,
    /// Listen for syslog over TCP here (octet-counted or newline framing).
    #[arg(long)]
    pub syslog_tcp_addr: Option<SocketAddr>,
    /// Distinct unmatched flows kept per application in status (1 to 500); more are counted
    /// in status.monitor.overflow.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub monitor_max_flows: u16,
    /// File holding the dashboard's bearer token (also accepted by its sign-in form). Without
    /// it and without --dashboard-user-header the dashboard (/ui/, /api/v1/) is not served.
    #[arg(long, env = "MICROSEG_DASHBOARD_TOKEN_FILE")]
    pub dashboard_token_file: Option<PathBuf>,
    /// Header set by an authenticating proxy in front of the dashboard that names the user
    /// (e.g. X-Forwarded-User); a request carrying it is let in and the name is recorded on
    /// acknowledgements. Only use it when every request passes through that proxy.
    #[arg(long, env = "MICROSEG_DASHBOARD_USER_HEADER")]
    pub dashboard_user_header: Option<String>,
    /// Header set by the same proxy that names the user's groups (comma-separated), e.g.
    /// X-Forwarded-Groups; passed to the access review of acknowledgements.
    #[arg(long, env = "MICROSEG_DASHBOARD_GROUPS_HEADER")]
    pub dashboard_groups_header: Option<String>,
    /// File holding a secret the authenticating proxy sends in X-Microseg-Proxy-Secret; the user
    /// header counts only with it (and/or from --dashboard-proxy-cidrs).
    #[arg(long, env = "MICROSEG_DASHBOARD_PROXY_SECRET_FILE")]
    pub dashboard_proxy_secret_file: Option<PathBuf>,
    /// Networks the authenticating proxy connects from (comma-separated CIDRs); the user header
    /// counts only from them (and/or with --dashboard-proxy-secret-file).
    #[arg(long, value_delimiter = ',')]
    pub dashboard_proxy_cidrs: Vec<ipnet::IpNet>,
    /// Session cookies without `Secure`, for a dashboard reached over plain http. Insecure: labs.
    #[arg(long)]
    pub dashboard_insecure_cookie: bool,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag or setting is wrong.
    #[error("{0}")]
    Config(String),
    /// Kubernetes client configuration.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// NSX client configuration.
    #[error(transparent)]
    Nsx(#[from] crate::nsx::Error),
    /// Notification settings.
    #[error(transparent)]
    Notify(#[from] crate::notify::Error),
    /// The controller stopped with an error.
    #[error(transparent)]
    Run(#[from] crate::controller::Error),
}

/// The secret in the file a flag names (trimmed); at least 16 characters long.
fn read_secret(flag: &str, path: &Path, what: &str) -> Result<SecretString, StartError> {
    let raw = std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|e| StartError::Config(format!("{flag}: {}: {e}", path.display())))?;
    let text = SecretString::from(raw.expose_secret().trim());
    if text.expose_secret().len() < 16 {
        return Err(StartError::Config(format!(
            "{flag}: {}: shorter than 16 characters; use a long random {what}",
            path.display()
        )));
    }
    Ok(text)
}

fn std_duration(d: Duration) -> std::time::Duration {
    d.get().unsigned_abs()
}

impl ControllerArgs {
    fn nsx_client(&self, registry: &mut Registry) -> Result<Client, StartError> {
        let pacing = PacingConfig {
            rate: f64::from(self.nsx_rate_limit),
            concurrency: self.nsx_concurrency,
            ..PacingConfig::default()
        };
        let metrics = NsxMetrics::default();
        metrics.register(registry);
        self.nsx
            .client(&self.nsx_url, pacing, metrics)
            .map_err(|e| match e {
                NsxClientError::Nsx(e) => StartError::Nsx(*e),
                flag => StartError::Config(flag.to_string()),
            })
    }

    fn ingest(&self) -> Result<IngestConfig, StartError> {
        let token = self
            .ingest_token_file
            .as_ref()
            .map(|p| read_secret("--ingest-token-file", p, "secret"))
            .transpose()?;
        let hmac_secret = self
            .ingest_hmac_secret_file
            .as_ref()
            .map(|p| {
                read_secret("--ingest-hmac-secret-file", p, "secret")
                    .map(|s| SecretSlice::from(s.expose_secret().as_bytes().to_vec()))
            })
            .transpose()?;
        Ok(IngestConfig {
            token,
            hmac_secret,
            hmac_max_age: std_duration(self.ingest_hmac_max_age),
            max_body_bytes: self.ingest_max_body_bytes,
            max_in_flight: usize::from(self.ingest_max_in_flight),
            rate_lines_per_second: self.ingest_rate,
            burst_lines: self.ingest_burst_lines,
            syslog_rate_lines_per_second: self.syslog_rate,
            syslog_burst_lines: self.syslog_burst_lines,
            syslog_tcp_max_connections: usize::try_from(self.syslog_tcp_max_connections)
                .unwrap_or(1_024),
            syslog_tcp_idle_timeout: std_duration(self.syslog_tcp_idle_timeout),
            // Benchmarks only (scripts/bench-ingest.sh): the baseline of the attribution index.
            index_per_batch: std::env::var_os("MICROSEG_INGEST_BASELINE").is_some_and(|v| v == "1"),
            ..IngestConfig::default()
        })
    }

    fn dashboard(&self) -> Result<DashboardConfig, StartError> {
        let token = self
            .dashboard_token_file
            .as_ref()
            .map(|p| read_secret("--dashboard-token-file", p, "token"))
            .transpose()?;
        let user_header = match self.dashboard_user_header.as_deref().map(str::trim) {
            None => None,
            Some(h) if axum::http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                Some(h.to_string())
            }
            Some(h) => {
                return Err(StartError::Config(format!(
                    "--dashboard-user-header: {h:?} is not a valid HTTP header name"
                )));
            }
        };
        if token.is_none() && user_header.is_none() {
            tracing::info!(
                "dashboard off: no --dashboard-token-file and no --dashboard-user-header"
            );
        }
        let proxy_secret = self
            .dashboard_proxy_secret_file
            .as_ref()
            .map(|p| read_secret("--dashboard-proxy-secret-file", p, "secret"))
            .transpose()?;
        if user_header.is_some() && proxy_secret.is_none() && self.dashboard_proxy_cidrs.is_empty()
        {
            return Err(StartError::Config(
                "--dashboard-user-header: anyone could send it; give \
                 --dashboard-proxy-secret-file and/or --dashboard-proxy-cidrs so that only the \
                 authenticating proxy is believed"
                    .into(),
            ));
        }
        let groups_header = match self.dashboard_groups_header.as_deref().map(str::trim) {
            None => None,
            Some(h) if axum::http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                if user_header.is_none() {
                    return Err(StartError::Config(
                        "--dashboard-groups-header: needs --dashboard-user-header".into(),
                    ));
                }
                Some(h.to_string())
            }
            Some(h) => {
                return Err(StartError::Config(format!(
                    "--dashboard-groups-header: {h:?} is not a valid HTTP header name"
                )));
            }
        };
        Ok(DashboardConfig {
            token,
            user_header,
            groups_header,
            proxy_secret,
            proxy_sources: self.dashboard_proxy_cidrs.clone(),
            insecure_cookie: self.dashboard_insecure_cookie,
        })
    }

    fn notifier(&self) -> Result<Option<Arc<dyn Notifier>>, StartError> {
        let dir = self.notify_config_dir.clone();
        let lookup = move |name: &str| {
            if name == CONFIG_DIR_ENV
                && let Some(d) = &dir
            {
                return Some(d.display().to_string());
            }
            std::env::var(name).ok()
        };
        let config = NotifyConfig::from_lookup(&lookup)?;
        let channels = Channels::from_config(&config)?;
        Ok(Some(Arc::new(channels)))
    }

    /// Builds everything and runs until SIGTERM/SIGINT.
    pub async fn run(self) -> Result<(), StartError> {
        let identity = Identity::new(&self.cluster)
            .map_err(|e| StartError::Config(format!("--cluster: {e}")))?;
        let client = self.kube.client().await.map_err(StartError::Kube)?;
        let mut registry = Registry::default();
        for (a, b, x, y) in [
            (
                "--http-addr",
                "--ingest-addr",
                self.http_addr,
                self.ingest_addr,
            ),
            (
                "--http-addr",
                "--dashboard-addr",
                self.http_addr,
                self.dashboard_addr,
            ),
            (
                "--ingest-addr",
                "--dashboard-addr",
                self.ingest_addr,
                self.dashboard_addr,
            ),
        ] {
            if x == y {
                return Err(StartError::Config(format!(
                    "{b}: {y} is also {a}; health and metrics, ingestion and the dashboard each \
                     need a listener of their own"
                )));
            }
        }
        let nsx = self.nsx_client(&mut registry)?;
        let notifier = self.notifier()?;
        let ingest = self.ingest()?;
        let dashboard = self.dashboard()?;
        let metrics = Arc::new(Metrics::register(&mut registry));
        let lease = self.leader_elect.then(|| LeaseSettings {
            namespace: self
                .lease_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: self.lease_name.clone(),
            holder: self.lease_holder.clone().unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    std::fs::read_to_string("/etc/hostname")
                        .unwrap_or_default()
                        .trim(),
                    std::process::id()
                )
            }),
            // A Lease holds int32 seconds.
            duration_seconds: self
                .lease_duration
                .get()
                .as_secs()
                .clamp(2, i64::from(i32::MAX))
                .unsigned_abs(),
        });
        if self.dry_run {
            tracing::warn!("--dry-run: NSX changes are computed and reported, never written");
        }
        tracing::info!(cluster = %self.cluster, nsx = %crate::notify::webhook::redact_url(&self.nsx_url), "starting the microseg controller");
        crate::app::run(Runtime {
            client,
            nsx: Arc::new(nsx),
            notifier,
            identity,
            settings: Settings {
                dry_run: self.dry_run,
                resync: std_duration(self.resync),
                reminder_before: self.reminder_before.get(),
                log_silence: self.log_silence.get(),
                notice_retry: std_duration(self.notice_retry),
                nsx_cache: self.nsx_cache,
                reconcile_concurrency: self.reconcile_concurrency,
                lead: std_duration(self.transition_lead),
                nsx_batch: (!std_duration(self.nsx_batch_window).is_zero()).then(|| {
                    crate::controller::nsx_batch::BatchConfig {
                        window: std_duration(self.nsx_batch_window),
                        max_wait: std_duration(self.nsx_batch_max_wait),
                        max_objects: self.nsx_batch_max_objects as usize,
                    }
                }),
            },
            lease,
            namespace: self.namespace.clone(),
            http: self.http_addr,
            ingest_addr: self.ingest_addr,
            dashboard_addr: self.dashboard_addr,
            registry,
            metrics,
            monitor: MonitorSettings {
                ingest,
                max_flows: usize::from(self.monitor_max_flows),
                syslog_udp: self.syslog_udp_addr,
                syslog_tcp: self.syslog_tcp_addr,
            },
            dashboard,
        })
        .await?;
        Ok(())
    }
}
