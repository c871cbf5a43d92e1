//! Rate and concurrency limits as an NSX Manager with default settings applies them (reference
//! §6), injected faults, and the per-call counters the tests and benchmarks read.
//!
//! - `client-api-rate-limit` (default 100/s) per authenticated user (unauthenticated calls per
//!   source address): a sliding one-second window; past it → 429.
//! - `client-api-concurrency-limit` (default 40) outstanding calls per user → 429.
//! - `global-api-concurrency-limit` (default 199) outstanding calls in all → 503.
//!
//! A value of 0 disables a limit, as on NSX.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What an outage does to each call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// Answer 503.
    #[default]
    Unavailable,
    /// Close the connection without an answer.
    Reset,
}

/// Faults injected into the API calls (not the admin API). Settable at start and through
/// `PUT /admin/faults`, which replaces the whole set (fields left out are off).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added latency of every call, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0–1) of calls answered 503.
    pub error_503_fraction: f64,
    /// Fraction (0–1) of calls answered 429.
    pub error_429_fraction: f64,
    /// Fraction (0–1) of calls whose connection is closed without an answer.
    pub reset_fraction: f64,
    /// An outage of this many seconds starts when the faults are set (0: none).
    pub outage_seconds: f64,
    /// What the outage does.
    pub outage_mode: OutageMode,
    /// Objects become REALIZED this long after their last change.
    pub realization_delay_ms: u64,
    /// Intent paths whose realization fails, with NSX's error message.
    pub realization_errors: BTreeMap<String, String>,
    /// Version quirk: the last page of a list still carries a cursor (some managers do,
    /// reference §5); clients must then stop on `result_count`.
    pub cursor_on_last_page: bool,
    /// Send `Retry-After: N` with 429 and 503 answers (NSX does not document one).
    pub retry_after_seconds: Option<u64>,
    /// Fraction (0–1) of hierarchical `PATCH /infra` calls refused, before anything is
    /// applied, with NSX's concurrent-transaction error (400 "The object AtomicRequest/N is
    /// already present in the system.").
    pub atomic_conflict_fraction: f64,
}

/// Calls of one method and path pattern.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCount {
    /// All calls.
    pub total: u64,
    /// By HTTP status (`"200"`, `"429"`, ...) or `"reset"` for a closed connection.
    pub by_status: BTreeMap<String, u64>,
}

impl CallCount {
    /// Calls answered with a 2xx status.
    pub fn ok(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(k, _)| k.starts_with('2'))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Counters by `"METHOD /path/pattern"`.
pub type Counters = BTreeMap<String, CallCount>;

/// The limits.
#[derive(Clone, Copy, Debug)]
pub struct LimitConfig {
    /// Requests per second per client (0: off).
    pub rate: u32,
    /// Outstanding requests per client (0: off).
    pub client_concurrency: u32,
    /// Outstanding requests in all (0: off).
    pub global_concurrency: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            rate: 100,
            client_concurrency: 40,
            global_concurrency: 199,
        }
    }
}

#[derive(Default)]
struct ClientState {
    window: VecDeque<Instant>,
    in_flight: u32,
}

/// Limit state shared by all connections.
pub struct Limiter {
    config: std::sync::Mutex<LimitConfig>,
    clients: std::sync::Mutex<HashMap<String, ClientState>>,
    global: AtomicU32,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Per-client rate (429).
    Rate(u32),
    /// Per-client concurrency (429).
    Concurrency(u32),
    /// Global concurrency (503).
    Global(u32),
}

/// Holds a global slot; released on drop.
pub struct GlobalSlot(Arc<Limiter>);

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        self.0.global.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds a per-client slot; released on drop.
pub struct ClientSlot(Arc<Limiter>, String);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut clients) = self.0.clients.lock()
            && let Some(c) = clients.get_mut(&self.1)
        {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

impl Limiter {
    /// A limiter with these limits.
    pub fn new(config: LimitConfig) -> Arc<Self> {
        Arc::new(Limiter {
            config: std::sync::Mutex::new(config),
            clients: std::sync::Mutex::new(HashMap::new()),
            global: AtomicU32::new(0),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> LimitConfig {
        self.config.lock().map(|c| *c).unwrap_or_default()
    }

    /// Replaces the limits.
    pub fn set_config(&self, config: LimitConfig) {
        if let Ok(mut c) = self.config.lock() {
            *c = config;
        }
    }

    /// Takes a global slot, or refuses (503).
    pub fn enter_global(self: &Arc<Self>) -> Result<GlobalSlot, Refusal> {
        let limit = self.config().global_concurrency;
        let now = self.global.fetch_add(1, Ordering::SeqCst) + 1;
        let slot = GlobalSlot(self.clone());
        if limit > 0 && now > limit {
            return Err(Refusal::Global(limit));
        }
        Ok(slot)
    }

    /// Takes a slot of `client`, or refuses (429).
    pub fn enter_client(self: &Arc<Self>, client: &str) -> Result<ClientSlot, Refusal> {
        let cfg = self.config();
        let now = Instant::now();
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Refusal::Concurrency(cfg.client_concurrency))?;
        let c = clients.entry(client.to_string()).or_default();
        while c
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            c.window.pop_front();
        }
        if cfg.rate > 0 && c.window.len() >= cfg.rate as usize {
            return Err(Refusal::Rate(cfg.rate));
        }
        if cfg.client_concurrency > 0 && c.in_flight >= cfg.client_concurrency {
            return Err(Refusal::Concurrency(cfg.client_concurrency));
        }
        c.window.push_back(now);
        c.in_flight += 1;
        Ok(ClientSlot(self.clone(), client.to_string()))
    }
}
