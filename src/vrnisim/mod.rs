//! vrnisim: a small vRealize Network Insight (Aria Operations for Networks) API simulator for
//! tests and users' dry runs of `microseg recommend --vrni-url` (`microseg vrni-sim`), built from
//! the API reference (v1, `https://<vrni>/api/ni`), not from test data.
//!
//! It owns what the recommender uses: token authentication (`POST /auth/token` with a LOCAL or
//! LDAP domain, `Authorization: NetworkInsight <token>`, tokens that expire, `DELETE
//! /auth/token`), flow search (`POST /search` with `entity_type: Flow`, a filter of `field =
//! 'value'` terms joined by `and`/`or` with parentheses, `time_range`, `size`, `cursor` paging),
//! flow listing (`GET /entities/flows`), one flow (`GET /entities/flows/{id}`) and bulk fetch
//! (`POST /entities/fetch`, at most 1000 ids). Faults are injected by call number (a 429 with
//! `Retry-After`, every token expiring), and every call is logged with its time so tests can see
//! paging and pacing. The admin API (`/admin/flows`, `/admin/faults`, `/admin/calls`) needs no
//! token, and the listener binds loopback addresses only. Tests start one with [`spawn`] and stop
//! it with [`Running::shutdown`] or by dropping it.

pub mod filter;
pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nsxsim::server::net::{Stopper, bind_loopback};

/// Errors of the simulator's start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound or is not loopback.
    #[error("listen address {addr}: {reason}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// TLS set-up failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A user: password and the domain it logs in with (`LOCAL`, or `LDAP` and a domain value).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Password.
    pub password: String,
    /// `None`: LOCAL; `Some(value)`: LDAP with that domain.
    pub ldap_domain: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("ldap_domain", &self.ldap_domain)
            .finish_non_exhaustive()
    }
}

/// One stored flow: the Flow object and the time it was last seen (epoch seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFlow {
    /// Epoch seconds.
    pub time: i64,
    /// The Flow, as `GET /entities/flows/{id}` returns it (its `entity_id` is the key).
    pub flow: serde_json::Value,
}

/// Faults by API call number (1-based, counting every call except `POST /auth/token`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// These calls are answered 429 with `Retry-After: retry_after_secs`.
    #[serde(default)]
    pub throttle: BTreeSet<u64>,
    /// Before these calls, every token expires (the call gets 401).
    #[serde(default)]
    pub expire_tokens: BTreeSet<u64>,
    /// `Retry-After` of the 429s, in seconds.
    #[serde(default)]
    pub retry_after_secs: u64,
}

/// One logged call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Method.
    pub method: String,
    /// Path (without query).
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The request's cursor, for search and list calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// How a simulator starts.
#[derive(Clone, Debug)]
pub struct Config {
    /// Loopback address (port 0: any).
    pub listen: SocketAddr,
    /// Serve HTTPS with a fresh CA.
    pub tls: bool,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// Flows.
    pub flows: Vec<StoredFlow>,
    /// Faults.
    pub faults: Faults,
}

/// The user and password a default simulator accepts (LOCAL domain).
pub const DEFAULT_USER: &str = "admin@local";
/// Its password.
pub const DEFAULT_PASSWORD: &str = "VMware1!VMware1!";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            users: BTreeMap::from([(
                DEFAULT_USER.to_string(),
                User {
                    password: DEFAULT_PASSWORD.into(),
                    ldap_domain: None,
                },
            )]),
            token_ttl: Duration::from_secs(1800),
            flows: Vec::new(),
            faults: Faults::default(),
        }
    }
}

/// The simulator's state, shared by its handlers.
#[derive(Debug)]
pub struct Sim {
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) token_ttl: Duration,
    pub(crate) tokens: Mutex<BTreeMap<String, std::time::Instant>>,
    pub(crate) flows: Mutex<Vec<StoredFlow>>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) started: std::time::Instant,
}

/// A running simulator.
pub struct Running {
    /// Base URL (`http(s)://127.0.0.1:port`); the API is under `/api/ni`.
    pub url: String,
    /// The CA that signs its certificate (TLS only).
    pub ca_pem: Option<String>,
    /// State.
    pub sim: Arc<Sim>,
    server: Stopper,
}

impl Running {
    /// Stops the listener and waits for it.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.sim.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.sim.faults.lock() {
            *f = faults;
        }
    }
}

/// Starts a simulator.
pub async fn spawn(config: Config) -> Result<Running, Error> {
    let (listener, addr) = bind_loopback(config.listen)
        .await
        .map_err(|reason| Error::Listen {
            addr: config.listen,
            reason,
        })?;
    let (acceptor, ca_pem) = if config.tls {
        let (a, pem, _) = crate::nsxsim::tls_setup().map_err(|e| Error::Tls(e.to_string()))?;
        (Some(a), Some(pem))
    } else {
        (None, None)
    };
    let sim = Arc::new(Sim {
        users: config.users,
        token_ttl: config.token_ttl,
        tokens: Mutex::new(BTreeMap::new()),
        flows: Mutex::new(config.flows),
        faults: Mutex::new(config.faults),
        calls: Mutex::new(Vec::new()),
        started: std::time::Instant::now(),
    });
    let server = Stopper::spawn({
        let sim = sim.clone();
        |stop| server::serve(listener, acceptor, sim, stop)
    });
    let scheme = if config.tls { "https" } else { "http" };
    Ok(Running {
        url: format!("{scheme}://{addr}"),
        ca_pem,
        sim,
        server,
    })
}

/// Flags of `microseg vrni-sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub plain_http: bool,
    /// Write the CA certificate (PEM) here.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// The LOCAL user.
    #[arg(long, default_value = DEFAULT_USER)]
    pub user: String,
    /// File with the user's password (default: $VRNISIM_PASSWORD, else the built-in one).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Flows to serve: a `POST /entities/fetch` answer (`{"results": [{entity_id, entity_type,
    /// time, entity}]}`) or a JSON list of {time, flow}.
    #[arg(long)]
    pub flows: Option<PathBuf>,
    /// Move the flows' times so that the newest is now (keeps their spacing): a saved answer
    /// stays inside `--since`.
    #[arg(long)]
    pub recent: bool,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 1800)]
    pub token_ttl_secs: u64,
}

fn read(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// Reads flows from a fetch answer or a list of {time, flow}.
pub fn stored_flows(text: &str) -> Result<Vec<StoredFlow>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(results) = v.get("results").and_then(serde_json::Value::as_array) {
        return results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let time = r
                    .get("time")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| format!("results[{i}].time: missing"))?;
                let flow = r
                    .get("entity")
                    .filter(|e| e.is_object())
                    .cloned()
                    .ok_or_else(|| format!("results[{i}].entity: missing"))?;
                Ok(StoredFlow { time, flow })
            })
            .collect();
    }
    serde_json::from_value(v).map_err(|e| {
        format!("neither a fetch answer {{results: [...]}} nor a list of {{time, flow}}: {e}")
    })
}

impl Args {
    /// Runs until interrupted.
    pub async fn run(&self) -> Result<(), Error> {
        let password = match &self.password_file {
            Some(p) => read(p)?.trim_end_matches(['\r', '\n']).to_string(),
            None => std::env::var("VRNISIM_PASSWORD").unwrap_or_else(|_| DEFAULT_PASSWORD.into()),
        };
        let mut flows = match &self.flows {
            Some(p) => stored_flows(&read(p)?).map_err(|reason| Error::File {
                path: p.clone(),
                reason,
            })?,
            None => Vec::new(),
        };
        if self.recent
            && let Some(newest) = flows.iter().map(|f| f.time).max()
        {
            let shift = jiff::Timestamp::now().as_second() - newest;
            for f in &mut flows {
                f.time += shift;
            }
        }
        let config = Config {
            listen: self.listen,
            tls: !self.plain_http,
            users: BTreeMap::from([(
                self.user.clone(),
                User {
                    password,
                    ldap_domain: None,
                },
            )]),
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            flows,
            faults: Faults::default(),
        };
        let running = spawn(config).await?;
        if let (Some(path), Some(pem)) = (&self.ca_out, &running.ca_pem) {
            std::fs::write(path, pem).map_err(|e| Error::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        eprintln!("vrni-sim listening on {}/api/ni", running.url);
        let _ = tokio::signal::ctrl_c().await;
        running.shutdown().await;
        Ok(())
    }
}
