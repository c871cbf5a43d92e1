//! The simulator's HTTP side: the request pipeline (faults → global concurrency →
//! authentication → per-client rate and concurrency → dispatch → counters).
//!
//! Submodules: `net` (the hyper accept loop, plain HTTP or TLS, with connection resets as a
//! fault), `route` (path templates to routes), `session` (authentication), `api` (a handler
//! per policy-API resource), `views` (read-only answers built from the store), `admin` (the
//! simulator's own admin API).
//!
//! It runs on hyper directly rather than through an axum `Router` because a connection reset —
//! closing the connection without any answer — needs the service to fail the connection, which
//! an axum handler cannot do.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use super::errors::Fail;
use super::limits::{Counters, Faults, Limiter, OutageMode, Refusal};
use super::store::{Ctx, Store};
use crate::nsx::codes;

mod admin;
mod api;
pub(crate) mod net;
mod route;
mod session;
mod views;

pub use net::serve;
pub use route::{Route, route};

/// Base of the policy API.
pub const POLICY_PREFIX: &str = "/policy/api/v1";

/// A session created by `POST /api/session/create`.
struct Session {
    user: String,
    xsrf: String,
    last_used: Instant,
}

/// The shared simulator state behind every connection.
pub struct Sim {
    /// Intent objects.
    pub store: Mutex<Store>,
    /// Faults.
    pub faults: Mutex<Faults>,
    /// When the current outage ends.
    pub outage_until: Mutex<Option<Instant>>,
    /// Call counters.
    pub counters: Mutex<Counters>,
    /// Limits.
    pub limiter: Arc<Limiter>,
    /// Users and passwords.
    pub users: BTreeMap<String, String>,
    /// Client certificates (DER) registered as principal identities, by user name.
    pub principals: Mutex<HashMap<Vec<u8>, String>>,
    /// Session idle timeout.
    pub session_timeout: Mutex<Duration>,
    /// How long a deleted object stays pending (reference §3).
    pub pending_delete: Mutex<Duration>,
    sessions: Mutex<HashMap<String, Session>>,
    issued: Mutex<Vec<(String, String)>>,
    /// Whether the listener speaks TLS (for the cookie's `Secure`).
    pub tls: bool,
}

/// The connection was closed on purpose (a fault).
#[derive(Debug)]
pub struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for Reset {}

type Resp = Response<Full<Bytes>>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn fail_response(f: &Fail) -> Resp {
    json_response(
        f.status,
        &serde_json::to_value(&f.body).unwrap_or(Value::Null),
    )
}

/// When an outage of `seconds` starting now ends; `None` for no outage (0, negative or NaN).
/// A length beyond what `Instant` can hold lasts about a century.
fn outage_until(seconds: f64) -> Option<Instant> {
    if seconds.is_nan() || seconds <= 0.0 {
        return None;
    }
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let length = Duration::try_from_secs_f64(seconds)
        .unwrap_or(century)
        .min(century);
    let now = Instant::now();
    Some(now.checked_add(length).unwrap_or(now))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Sim {
    /// A simulator over `store`.
    pub fn new(
        store: Store,
        faults: Faults,
        limiter: Arc<Limiter>,
        users: BTreeMap<String, String>,
        session_timeout: Duration,
        pending_delete: Duration,
        tls: bool,
    ) -> Self {
        let outage = outage_until(faults.outage_seconds);
        Sim {
            store: Mutex::new(store),
            faults: Mutex::new(faults),
            outage_until: Mutex::new(outage),
            counters: Mutex::new(Counters::new()),
            limiter,
            users,
            principals: Mutex::new(HashMap::new()),
            session_timeout: Mutex::new(session_timeout),
            pending_delete: Mutex::new(pending_delete),
            sessions: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            tls,
        }
    }

    /// Replaces the faults; a positive `outage_seconds` starts an outage now.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.outage_until) = outage_until(faults.outage_seconds);
        *lock(&self.faults) = faults;
    }

    /// Every session cookie and XSRF token handed out since start (for tests that check
    /// they never leak into logs).
    pub fn issued_session_tokens(&self) -> Vec<(String, String)> {
        lock(&self.issued).clone()
    }

    fn count(&self, key: &str, status: &str) {
        let mut c = lock(&self.counters);
        let e = c.entry(key.to_string()).or_default();
        e.total += 1;
        *e.by_status.entry(status.to_string()).or_insert(0) += 1;
    }

    /// Handles one request; `Err` closes the connection without an answer.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        cert: Option<Vec<u8>>,
    ) -> Result<Resp, Reset> {
        let path = req.uri().path().to_string();
        if path.starts_with("/admin/") || path == "/admin" {
            let method = req.method().clone();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.unwrap_or_default();
            return Ok(self.admin(&method, &path, &body));
        }
        let (route, pattern) = route(&path);
        let key = format!("{} {}", req.method(), pattern);
        let faults = lock(&self.faults).clone();
        let outage = lock(&self.outage_until).is_some_and(|t| Instant::now() < t);
        if outage && faults.outage_mode == OutageMode::Reset
            || rand::random::<f64>() < faults.reset_fraction
        {
            self.count(&key, "reset");
            return Err(Reset);
        }
        let mut resp = self.pipeline(req, peer, cert, route, &faults, outage).await;
        if let Some(secs) = faults.retry_after_seconds
            && matches!(resp.status().as_u16(), 429 | 503)
        {
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        self.count(&key, resp.status().as_str());
        Ok(resp)
    }

    async fn pipeline(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        cert: Option<Vec<u8>>,
        route: Route,
        faults: &Faults,
        outage: bool,
    ) -> Resp {
        if outage {
            return fail_response(&unavailable(
                "NSX Manager is unavailable (simulated outage).",
            ));
        }
        let _global = match self.limiter.enter_global() {
            Ok(slot) => slot,
            Err(Refusal::Global(n)) | Err(Refusal::Rate(n)) | Err(Refusal::Concurrency(n)) => {
                return fail_response(&unavailable(&format!(
                    "The server is busy: global API concurrency limit of {n} reached."
                )));
            }
        };
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        if route == Route::SessionCreate && parts.method == Method::POST {
            return self.session_create(&body);
        }
        let user = match self.authenticate(&parts.headers, cert.as_deref()) {
            Ok(u) => u,
            Err(f) => return fail_response(&f),
        };
        let client = user.clone().unwrap_or_else(|| peer.ip().to_string());
        let _slot = match self.limiter.enter_client(&client) {
            Ok(slot) => slot,
            Err(Refusal::Rate(n)) => {
                return fail_response(&too_many(format!(
                    "Client '{client}' exceeded request rate of {n} per second."
                )));
            }
            Err(Refusal::Concurrency(n)) | Err(Refusal::Global(n)) => {
                return fail_response(&too_many(format!(
                    "Client '{client}' exceeded concurrency limit of {n}."
                )));
            }
        };
        let Some(user) = user else {
            return fail_response(&session::bad_credentials());
        };
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        if rand::random::<f64>() < faults.error_503_fraction {
            return fail_response(&unavailable("Service unavailable (injected)."));
        }
        if rand::random::<f64>() < faults.error_429_fraction {
            return fail_response(&too_many(format!(
                "Client '{user}' exceeded request rate of {} per second.",
                self.limiter.config().rate
            )));
        }
        if route == Route::SessionDestroy && parts.method == Method::POST {
            if let Some(id) = session::cookie(&parts.headers, "JSESSIONID") {
                lock(&self.sessions).remove(&id);
            }
            return empty(StatusCode::OK);
        }
        let query = route::query(&parts.uri);
        let ctx = self.writer(user, cert.as_deref(), &parts.headers);
        let call = api::Call {
            method: &parts.method,
            query: &query,
            body: &body,
            ctx: &ctx,
            faults,
        };
        let resp = match self.dispatch(&call, route) {
            Ok(r) => r,
            Err(f) => fail_response(&f),
        };
        if parts.method != Method::GET {
            return resp;
        }
        self.with_protection(resp, &ctx).await
    }

    /// Who writes: the user, whether it is a principal identity (its client certificate is
    /// registered to it), whether it asks to overwrite protected objects, and the clock.
    fn writer(&self, user: String, cert: Option<&[u8]>, headers: &hyper::HeaderMap) -> Ctx {
        let principal = cert
            .and_then(|der| lock(&self.principals).get(der).cloned())
            .is_some_and(|pi| pi == user);
        let allow_overwrite = headers
            .get("x-allow-overwrite")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let pending = *lock(&self.pending_delete);
        Ctx {
            user,
            now_ms: now_ms(),
            principal,
            allow_overwrite,
            pending_delete_ms: i64::try_from(pending.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// A GET answer with `_protection` as this viewer sees objects created by a principal
    /// identity.
    async fn with_protection(&self, resp: Resp, ctx: &Ctx) -> Resp {
        let protected = lock(&self.store).protected.clone();
        if protected.is_empty() {
            return resp;
        }
        let (head, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
            return Response::from_parts(head, Full::new(bytes));
        };
        views::mark_protection(&mut v, &protected, ctx);
        let bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
        Response::from_parts(head, Full::new(Bytes::from(bytes)))
    }
}

/// 429 for a client over its rate or concurrency limit.
fn too_many(message: String) -> Fail {
    Fail::new(
        StatusCode::TOO_MANY_REQUESTS,
        codes::RATE,
        "common-services",
        message,
    )
}

fn unavailable(msg: &str) -> Fail {
    Fail::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::UNAVAILABLE,
        "common-services",
        msg,
    )
}
