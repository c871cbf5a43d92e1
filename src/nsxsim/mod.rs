//! nsxsim: an NSX Manager simulator for tests, benchmarks, the demo and users' dry runs
//! (`microseg nsx-sim`), built from `reference/nsx-policy-api.md`.
//!
//! It owns the policy API under `/policy/api/v1` (groups, services, security policies, rules,
//! hierarchical `PATCH /infra`, lists with cursor paging, realization), session and basic
//! authentication with XSRF, principal identities by client certificate, NSX's rate and
//! concurrency limits, fault injection, per-call counters, and state dump/load. The admin API
//! (`/admin/faults`, `/admin/counters`, `/admin/state`, `/admin/vms`, `/admin/flow`) is on the
//! same listener, without authentication, and the listener only binds loopback addresses.
//!
//! Tests start one with [`spawn`] and stop it with [`Running::shutdown`] or by dropping it.
//!
//! From the command line:
//! ```text
//! microseg nsx-sim --listen 127.0.0.1:8443 --ca-out /tmp/nsxsim-ca.pem \
//!     --password-file pw.txt --error-503-fraction 0.1 --state snapshot.json
//! curl --cacert /tmp/nsxsim-ca.pem -u admin:... https://127.0.0.1:8443/policy/api/v1/infra/services
//! curl --cacert /tmp/nsxsim-ca.pem https://127.0.0.1:8443/admin/counters          # GET; DELETE resets
//! curl --cacert /tmp/nsxsim-ca.pem -X PUT -d '{"outage_seconds": 30}' .../admin/faults
//! curl --cacert /tmp/nsxsim-ca.pem .../admin/state > snapshot.json                 # PUT loads one
//! curl --cacert /tmp/nsxsim-ca.pem -X PUT -d '[{"name":"web-01","ips":["10.0.0.5"],
//!     "tags":[{"scope":"app","tag":"web"}]}]' .../admin/vms
//! curl --cacert /tmp/nsxsim-ca.pem -X POST -d '{"src_ip":"10.0.0.9","dst_ip":"10.0.0.5",
//!     "protocol":"TCP","dst_port":443}' .../admin/flow                              # DFW log lines
//! ```
//!
//! Submodules: [`store`] (intent objects and transactions), [`validate`] (NSX's field rules),
//! [`server`] (HTTP pipeline and routes), [`limits`] (rate limits, faults, counters),
//! [`inventory`] (VMs, effective membership, packet logs), [`errors`] (NSX error bodies).

pub mod errors;
pub mod inventory;
pub mod limits;
pub mod server;
pub mod store;
pub mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use server::net::{Stopper, bind_loopback};

pub use limits::{CallCount, Counters, Faults, LimitConfig, OutageMode};
pub use server::Sim;
pub use store::{Store, Vm};

/// Errors of the simulator's start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound or is not loopback.
    #[error("listen address {addr}: {reason}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// Certificate generation or TLS set-up failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A state or VM file does not parse.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How to start a simulator.
#[derive(Clone)]
pub struct Config {
    /// Listen address; must be loopback. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS with a certificate generated at start.
    pub tls: bool,
    /// Users and their passwords.
    pub users: BTreeMap<String, String>,
    /// Rate and concurrency limits.
    pub limits: LimitConfig,
    /// Session idle timeout.
    pub session_timeout: Duration,
    /// Faults at start.
    pub faults: Faults,
    /// State to start from (default: a fresh manager).
    pub state: Option<Store>,
    /// How long a deleted object stays pending (`marked_for_delete`, hidden from GET, its path
    /// refused with 400/500045 on re-create; reference §3). 0 purges at once.
    pub pending_delete: Duration,
}

/// Default pending time of a delete: about one realization cycle. A real manager purges a
/// group or policy without realized entities in a second or so once the delete is applied
/// (it keeps the intent only until the enforcement point confirms the removal); tests that
/// delete and re-create quickly set [`Config::pending_delete`] to zero.
pub const DEFAULT_PENDING_DELETE: Duration = Duration::from_millis(DEFAULT_PENDING_DELETE_MS);
/// [`DEFAULT_PENDING_DELETE`] in milliseconds (`microseg nsx-sim --pending-delete-ms`).
pub const DEFAULT_PENDING_DELETE_MS: u64 = 1000;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("session_timeout", &self.session_timeout)
            .field("pending_delete", &self.pending_delete)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// The password of the default `admin` user when none is configured (simulator only).
pub const DEFAULT_PASSWORD: &str = "VMware1!VMware1!";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            users: BTreeMap::from([("admin".to_string(), DEFAULT_PASSWORD.to_string())]),
            limits: LimitConfig::default(),
            session_timeout: Duration::from_secs(1800),
            faults: Faults::default(),
            state: None,
            pending_delete: DEFAULT_PENDING_DELETE,
        }
    }
}

/// A running simulator; stops when dropped.
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:41234` (no `/policy/api/v1`).
    pub url: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server certificate (TLS only).
    pub ca_pem: Option<String>,
    /// Shared state, for in-process inspection.
    pub sim: Arc<Sim>,
    ca: Option<(rcgen::Certificate, KeyPair)>,
    server: Stopper,
}

impl Running {
    /// Stops the server and waits for its accept loop to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Replaces the faults (a positive `outage_seconds` starts an outage now).
    pub fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    /// Replaces the rate and concurrency limits.
    pub fn set_limits(&self, limits: LimitConfig) {
        self.sim.limiter.set_config(limits);
    }

    /// Sets how long deleted objects stay pending (applies to later deletes).
    pub fn set_pending_delete(&self, pending: Duration) {
        if let Ok(mut p) = self.sim.pending_delete.lock() {
            *p = pending;
        }
    }

    /// Sets the session idle timeout.
    pub fn set_session_timeout(&self, timeout: Duration) {
        if let Ok(mut t) = self.sim.session_timeout.lock() {
            *t = timeout;
        }
    }

    /// The call counters.
    pub fn counters(&self) -> Counters {
        self.sim
            .counters
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Clears the call counters.
    pub fn reset_counters(&self) {
        if let Ok(mut c) = self.sim.counters.lock() {
            c.clear();
        }
    }

    /// A copy of the intent state.
    pub fn state(&self) -> Store {
        self.sim.store.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Replaces the intent state.
    pub fn load_state(&self, store: Store) {
        if let Ok(mut s) = self.sim.store.lock() {
            *s = store;
        }
    }

    /// Issues a client certificate signed by the simulator's CA and registers it as the
    /// principal identity `user`; returns `(certificate PEM, private key PEM)`. TLS only.
    pub fn issue_client_cert(&self, user: &str) -> Result<(String, String), Error> {
        let Some((ca, ca_key)) = &self.ca else {
            return Err(Error::Tls(
                "client certificates need a TLS simulator".into(),
            ));
        };
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Tls(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(|e| Error::Tls(e.to_string()))?;
        let cert = params
            .signed_by(&key, ca, ca_key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        if let Ok(mut p) = self.sim.principals.lock() {
            p.insert(cert.der().to_vec(), user.to_string());
        }
        Ok((cert.pem(), key.serialize_pem()))
    }
}

pub(crate) type TlsSetup = (
    tokio_rustls::TlsAcceptor,
    String,
    (rcgen::Certificate, KeyPair),
);

pub(crate) fn tls_setup() -> Result<TlsSetup, Error> {
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nsxsim CA");
    let ca_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let ca = ca_params.self_signed(&ca_key).map_err(|e| tls(&e))?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(|e| tls(&e))?;
    leaf.distinguished_name
        .push(DnType::CommonName, "nsxsim manager");
    let leaf_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca, &ca_key)
        .map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).map_err(|e| tls(&e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| tls(&e))?;
    let pem = ca.pem();
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        pem,
        (ca, ca_key),
    ))
}

/// Starts a simulator on `config.listen` (loopback only) and returns once it accepts calls.
pub async fn spawn(config: Config) -> Result<Running, Error> {
    let (listener, addr) = bind_loopback(config.listen)
        .await
        .map_err(|reason| Error::Listen {
            addr: config.listen,
            reason,
        })?;
    let (acceptor, ca_pem, ca) = if config.tls {
        let (a, pem, ca) = tls_setup()?;
        (Some(a), Some(pem), Some(ca))
    } else {
        (None, None, None)
    };
    let sim = Arc::new(Sim::new(
        config.state.unwrap_or_default(),
        config.faults,
        limits::Limiter::new(config.limits),
        config.users,
        config.session_timeout,
        config.pending_delete,
        config.tls,
    ));
    let server = Stopper::spawn({
        let sim = sim.clone();
        |stop| server::serve(listener, acceptor, sim, stop)
    });
    let scheme = if config.tls { "https" } else { "http" };
    Ok(Running {
        url: format!("{scheme}://{addr}"),
        addr,
        ca_pem,
        sim,
        ca,
        server,
    })
}

/// `microseg nsx-sim`: runs a simulator until interrupted.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub plain_http: bool,
    /// Write the PEM of the CA that signed the generated server certificate here.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// User name accepted by basic and session authentication.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// File holding the user's password (else $NSXSIM_PASSWORD, else the simulator default).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Requests per second per client before 429 (0: off).
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
    /// Outstanding requests per client before 429 (0: off).
    #[arg(long, default_value_t = 40)]
    pub client_concurrency: u32,
    /// Outstanding requests in all before 503 (0: off).
    #[arg(long, default_value_t = 199)]
    pub global_concurrency: u32,
    /// Session idle timeout in seconds.
    #[arg(long, default_value_t = 1800)]
    pub session_timeout_secs: u64,
    /// Added latency per call in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of calls answered 503.
    #[arg(long, default_value_t = 0.0)]
    pub error_503_fraction: f64,
    /// Fraction of calls answered 429.
    #[arg(long, default_value_t = 0.0)]
    pub error_429_fraction: f64,
    /// Fraction of calls whose connection is reset.
    #[arg(long, default_value_t = 0.0)]
    pub reset_fraction: f64,
    /// An outage of this many seconds from start.
    #[arg(long, default_value_t = 0.0)]
    pub outage_seconds: f64,
    /// Delay before objects are REALIZED, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub realization_delay_ms: u64,
    /// Start from this state dump (JSON, as `GET /admin/state` returns).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Load this VM inventory (JSON list of `{name, ips, tags}`).
    #[arg(long)]
    pub vms: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })
}

impl Args {
    /// The simulator configuration these flags describe.
    pub fn config(&self) -> Result<Config, Error> {
        let password = match &self.password_file {
            Some(p) => read(p)?.trim_end_matches(['\r', '\n']).to_string(),
            None => std::env::var("NSXSIM_PASSWORD").unwrap_or_else(|_| DEFAULT_PASSWORD.into()),
        };
        let mut state = match &self.state {
            Some(p) => {
                Some(
                    serde_json::from_str::<Store>(&read(p)?).map_err(|e| Error::Parse {
                        path: p.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        if let Some(p) = &self.vms {
            let vms: Vec<Vm> = serde_json::from_str(&read(p)?).map_err(|e| Error::Parse {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            state.get_or_insert_with(Store::new).vms = vms;
        }
        Ok(Config {
            listen: self.listen,
            tls: !self.plain_http,
            users: BTreeMap::from([(self.user.clone(), password)]),
            limits: LimitConfig {
                rate: self.rate_limit,
                client_concurrency: self.client_concurrency,
                global_concurrency: self.global_concurrency,
            },
            session_timeout: Duration::from_secs(self.session_timeout_secs),
            pending_delete: DEFAULT_PENDING_DELETE,
            faults: Faults {
                latency_ms: self.latency_ms,
                error_503_fraction: self.error_503_fraction,
                error_429_fraction: self.error_429_fraction,
                reset_fraction: self.reset_fraction,
                outage_seconds: self.outage_seconds,
                realization_delay_ms: self.realization_delay_ms,
                ..Faults::default()
            },
            state,
        })
    }
}

/// Runs the simulator of `args` until Ctrl-C.
pub async fn run(args: Args) -> Result<(), Error> {
    let config = args.config()?;
    run_config(&args, config).await
}

/// Runs a simulator with `config` (built from `args` and adjusted) until Ctrl-C; `args` gives
/// where to write the CA.
pub async fn run_config(args: &Args, config: Config) -> Result<(), Error> {
    let running = spawn(config).await?;
    if let (Some(path), Some(pem)) = (&args.ca_out, &running.ca_pem) {
        std::fs::write(path, pem).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        tracing::info!(path = %path.display(), "Wrote the simulator CA certificate");
    }
    tracing::info!(url = %running.url, "NSX Manager simulator listening");
    eprintln!("nsx-sim listening on {}", running.url);
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
    Ok(())
}
