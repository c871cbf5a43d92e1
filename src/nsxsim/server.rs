//! The simulator's HTTP side: the accept loop (plain HTTP or TLS, with connection resets as a
//! fault), the request pipeline (faults → global concurrency → authentication → per-client rate
//! and concurrency → dispatch → counters), the policy API routes and the admin API.
//!
//! It runs on hyper directly rather than through an axum `Router` because a connection reset —
//! closing the connection without any answer — needs the service to fail the connection, which
//! an axum handler cannot do.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::errors::{Fail, invalid};
use super::limits::{Counters, Faults, Limiter, OutageMode, Refusal};
use super::store::{self, Ctx, Mode, Op, RevCheck, Store};
use super::validate::{self as v, Obj};
use crate::nsx::codes;
use crate::nsx::model::ApiError;

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

/// Decodes `%XX` and `+` of a query component.
pub fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Decodes `%XX` of a path segment (`+` stays `+`).
pub fn percent_decode_path(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, val)) => (percent_decode(k), percent_decode(val)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// A parsed route: the counter pattern and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/infra`.
    Infra,
    /// `/infra/domains`.
    Domains,
    /// `/infra/domains/{d}`.
    Domain(String),
    /// `/infra/domains/{d}/groups`.
    Groups(String),
    /// `/infra/domains/{d}/groups/{id}`.
    Group(String, String),
    /// `/infra/domains/{d}/groups/{id}/members/virtual-machines`.
    GroupVms(String, String),
    /// `/infra/domains/{d}/groups/{id}/members/ip-addresses`.
    GroupIps(String, String),
    /// `/infra/domains/{d}/security-policies`.
    Policies(String),
    /// `/infra/domains/{d}/security-policies/{id}`.
    Policy(String, String),
    /// `.../rules`.
    Rules(String, String),
    /// `.../rules/{id}`.
    Rule(String, String, String),
    /// `/infra/services`.
    Services,
    /// `/infra/services/{id}`.
    Service(String),
    /// `/infra/services/{id}/service-entries`.
    Entries(String),
    /// `/infra/services/{id}/service-entries/{e}`.
    Entry(String, String),
    /// `/infra/realized-state/realized-entities`.
    Realized,
    /// `/infra/realized-state/status`.
    RealizedStatus,
    /// `POST /api/session/create`.
    SessionCreate,
    /// `POST /api/session/destroy`.
    SessionDestroy,
    /// `GET /api/v1/node/version`.
    Version,
    /// Anything else.
    Unknown,
}

/// `GET /infra`, with the subtree when `filter` is `Type-A|B|..` (reference §1: a Java regex
/// on the resource type; only this alternation form is understood). Domains, groups, security
/// policies and rules come back as `Child<Type>` wrappers, rules in their policy's `children`,
/// as a real manager answers.
fn infra_tree(st: &Store, filter: Option<&str>) -> Value {
    let types: std::collections::BTreeSet<&str> = filter
        .and_then(|f| f.strip_prefix("Type-"))
        .map(|f| f.split('|').map(str::trim).collect())
        .unwrap_or_default();
    let wrap = |kind: &str, id: &str, obj: Value| json!({"resource_type": format!("Child{kind}"), "id": id, "marked_for_delete": false, kind: obj});
    let mut children = Vec::new();
    if types.contains("Domain") {
        for (d, dom) in &st.domains {
            let mut sub = Vec::new();
            if types.contains("Group") {
                for (g, obj) in &dom.groups {
                    sub.push(wrap("Group", g, Value::Object(obj.clone())));
                }
            }
            if types.contains("SecurityPolicy") {
                for (p, ps) in &dom.policies {
                    let rules: Vec<Value> = if types.contains("Rule") {
                        Store::ordered_rules(ps)
                            .into_iter()
                            .map(|r| {
                                let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
                                wrap("Rule", id, Value::Object(Store::rule_view(r)))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let mut pol = ps.policy.clone();
                    pol.insert("children".into(), Value::Array(rules));
                    sub.push(wrap("SecurityPolicy", p, Value::Object(pol)));
                }
            }
            let mut o = dom.domain.clone();
            o.insert("children".into(), Value::Array(sub));
            children.push(wrap("Domain", d, Value::Object(o)));
        }
    }
    json!({"resource_type": "Infra", "id": "infra", "path": "/infra",
           "relative_path": "infra", "_revision": 0, "children": children,
           "marked_for_delete": false, "overridden": false})
}

/// Parses a request path into a route and its counter pattern (without the method).
pub fn route(path: &str) -> (Route, String) {
    if path == "/api/session/create" {
        return (Route::SessionCreate, path.into());
    }
    if path == "/api/session/destroy" {
        return (Route::SessionDestroy, path.into());
    }
    if path == "/api/v1/node/version" {
        return (Route::Version, path.into());
    }
    let Some(rest) = path.strip_prefix(POLICY_PREFIX) else {
        return (Route::Unknown, "unknown".into());
    };
    let segs: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(percent_decode_path)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let o = |x: &str| x.to_string();
    match s.as_slice() {
        ["infra"] => (Route::Infra, "/infra".into()),
        ["infra", "domains"] => (Route::Domains, "/infra/domains".into()),
        ["infra", "domains", d] => (Route::Domain(o(d)), "/infra/domains/{d}".into()),
        ["infra", "domains", d, "groups"] => {
            (Route::Groups(o(d)), "/infra/domains/{d}/groups".into())
        }
        ["infra", "domains", d, "groups", g] => (
            Route::Group(o(d), o(g)),
            "/infra/domains/{d}/groups/{id}".into(),
        ),
        [
            "infra",
            "domains",
            d,
            "groups",
            g,
            "members",
            "virtual-machines",
        ] => (
            Route::GroupVms(o(d), o(g)),
            "/infra/domains/{d}/groups/{id}/members/virtual-machines".into(),
        ),
        [
            "infra",
            "domains",
            d,
            "groups",
            g,
            "members",
            "ip-addresses",
        ] => (
            Route::GroupIps(o(d), o(g)),
            "/infra/domains/{d}/groups/{id}/members/ip-addresses".into(),
        ),
        ["infra", "domains", d, "security-policies"] => (
            Route::Policies(o(d)),
            "/infra/domains/{d}/security-policies".into(),
        ),
        ["infra", "domains", d, "security-policies", p] => (
            Route::Policy(o(d), o(p)),
            "/infra/domains/{d}/security-policies/{id}".into(),
        ),
        ["infra", "domains", d, "security-policies", p, "rules"] => (
            Route::Rules(o(d), o(p)),
            "/infra/domains/{d}/security-policies/{p}/rules".into(),
        ),
        ["infra", "domains", d, "security-policies", p, "rules", r] => (
            Route::Rule(o(d), o(p), o(r)),
            "/infra/domains/{d}/security-policies/{p}/rules/{id}".into(),
        ),
        ["infra", "services"] => (Route::Services, "/infra/services".into()),
        ["infra", "services", sv] => (Route::Service(o(sv)), "/infra/services/{id}".into()),
        ["infra", "services", sv, "service-entries"] => (
            Route::Entries(o(sv)),
            "/infra/services/{s}/service-entries".into(),
        ),
        ["infra", "services", sv, "service-entries", e] => (
            Route::Entry(o(sv), o(e)),
            "/infra/services/{s}/service-entries/{id}".into(),
        ),
        ["infra", "realized-state", "realized-entities"] => (
            Route::Realized,
            "/infra/realized-state/realized-entities".into(),
        ),
        ["infra", "realized-state", "status"] => {
            (Route::RealizedStatus, "/infra/realized-state/status".into())
        }
        _ => (Route::Unknown, "unknown".into()),
    }
}

/// Serves connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let sim = sim.clone();
                let tls = tls.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    connection(stream, peer, tls, sim, stop).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            let svc = service(sim, peer, cert);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        }
        None => {
            let svc = service(sim, peer, None);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn service(
    sim: Arc<Sim>,
    peer: SocketAddr,
    cert: Option<Vec<u8>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Resp,
    Error = Reset,
    Future = impl std::future::Future<Output = Result<Resp, Reset>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let sim = sim.clone();
        let cert = cert.clone();
        async move { sim.handle(req, peer, cert).await }
    })
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
                return fail_response(&Fail::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    codes::RATE,
                    "common-services",
                    format!("Client '{client}' exceeded request rate of {n} per second."),
                ));
            }
            Err(Refusal::Concurrency(n)) | Err(Refusal::Global(n)) => {
                return fail_response(&Fail::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    codes::RATE,
                    "common-services",
                    format!("Client '{client}' exceeded concurrency limit of {n}."),
                ));
            }
        };
        let Some(user) = user else {
            return fail_response(&bad_credentials());
        };
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        if rand::random::<f64>() < faults.error_503_fraction {
            return fail_response(&unavailable("Service unavailable (injected)."));
        }
        if rand::random::<f64>() < faults.error_429_fraction {
            return fail_response(&Fail::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE,
                "common-services",
                format!(
                    "Client '{user}' exceeded request rate of {} per second.",
                    self.limiter.config().rate
                ),
            ));
        }
        if route == Route::SessionDestroy && parts.method == Method::POST {
            if let Some(id) = cookie(&parts.headers, "JSESSIONID") {
                lock(&self.sessions).remove(&id);
            }
            return empty(StatusCode::OK);
        }
        let q = query(&parts.uri);
        let principal = cert
            .as_deref()
            .and_then(|der| lock(&self.principals).get(der).cloned())
            .is_some_and(|pi| pi == user);
        let allow_overwrite = parts
            .headers
            .get("x-allow-overwrite")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let pending = *lock(&self.pending_delete);
        let ctx = Ctx {
            user,
            now_ms: now_ms(),
            principal,
            allow_overwrite,
            pending_delete_ms: i64::try_from(pending.as_millis()).unwrap_or(i64::MAX),
        };
        let resp = match self.dispatch(&parts.method, route, &q, &body, &ctx, faults) {
            Ok(r) => r,
            Err(f) => fail_response(&f),
        };
        let protected = lock(&self.store).protected.clone();
        if parts.method != Method::GET || protected.is_empty() {
            return resp;
        }
        // `_protection` as this viewer sees objects created by a principal identity.
        let (head, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
            return Response::from_parts(head, Full::new(bytes));
        };
        mark_protection(&mut v, &protected, &ctx);
        let bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
        Response::from_parts(head, Full::new(Bytes::from(bytes)))
    }

    fn session_create(&self, body: &[u8]) -> Resp {
        let form: BTreeMap<String, String> = String::from_utf8_lossy(body)
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, val)| (percent_decode(k), percent_decode(val)))
            .collect();
        let user = form.get("j_username").cloned().unwrap_or_default();
        let pass = form.get("j_password").cloned().unwrap_or_default();
        if self.users.get(&user) != Some(&pass) {
            return fail_response(&bad_credentials());
        }
        let token = |n: usize| {
            (0..n)
                .map(|_| format!("{:02X}", rand::random::<u8>()))
                .collect::<String>()
        };
        let id = token(16);
        let xsrf = token(16);
        lock(&self.issued).push((id.clone(), xsrf.clone()));
        lock(&self.sessions).insert(
            id.clone(),
            Session {
                user,
                xsrf: xsrf.clone(),
                last_used: Instant::now(),
            },
        );
        let mut r = empty(StatusCode::OK);
        let secure = if self.tls { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "JSESSIONID={id}; Path=/{secure}; HttpOnly; SameSite=Lax"
        )) {
            r.headers_mut().insert(hyper::header::SET_COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&xsrf) {
            r.headers_mut().insert("x-xsrf-token", v);
        }
        r
    }

    /// The user of a request: `Ok(None)` when it carries no credentials at all (limits then
    /// apply per source address and the call is refused after them).
    fn authenticate(
        &self,
        headers: &hyper::HeaderMap,
        cert: Option<&[u8]>,
    ) -> Result<Option<String>, Fail> {
        if let Some(auth) = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
        {
            let decoded = auth
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(bad_credentials());
            };
            if self.users.get(user).map(String::as_str) == Some(pass) {
                return Ok(Some(user.to_string()));
            }
            return Err(bad_credentials());
        }
        if let Some(id) = cookie(headers, "JSESSIONID") {
            let timeout = *lock(&self.session_timeout);
            let mut sessions = lock(&self.sessions);
            let expired = sessions
                .get(&id)
                .is_none_or(|s| s.last_used.elapsed() > timeout);
            if expired {
                sessions.remove(&id);
                return Err(bad_credentials());
            }
            if let Some(s) = sessions.get_mut(&id) {
                let given = headers.get("x-xsrf-token").and_then(|h| h.to_str().ok());
                if given != Some(s.xsrf.as_str()) {
                    return Err(Fail::new(
                        StatusCode::FORBIDDEN,
                        codes::XSRF,
                        "common-services",
                        "Bad XSRF token",
                    ));
                }
                s.last_used = Instant::now();
                return Ok(Some(s.user.clone()));
            }
        }
        if let Some(der) = cert
            && let Some(user) = lock(&self.principals).get(der)
        {
            return Ok(Some(user.clone()));
        }
        Ok(None)
    }

    fn dispatch(
        &self,
        method: &Method,
        route: Route,
        q: &BTreeMap<String, String>,
        body: &[u8],
        ctx: &Ctx,
        faults: &Faults,
    ) -> Result<Resp, Fail> {
        let parse = || -> Result<Value, Fail> {
            serde_json::from_slice::<Value>(body).map_err(|e| {
                Fail::from_errors(vec![super::errors::json_error(format!("{e}"))])
                    .unwrap_or_else(|| Fail::bad(0, "bad json"))
            })
        };
        let mut st = lock(&self.store);
        let m = method.as_str();
        // Objects whose deletion is pending are hidden unless asked for (reference §1, §3).
        let with_pending =
            q.get("include_mark_for_delete_objects").map(String::as_str) == Some("true");
        let now = ctx.now_ms;
        let pending_one = |st: &Store, path: &str| -> Result<Resp, Fail> {
            st.pending_object(path, now)
                .filter(|_| with_pending)
                .map(|o| json_response(StatusCode::OK, o))
                .ok_or_else(|| Fail::not_found(path))
        };
        let pending_list = |st: &Store, parent: &str, kind: &str| -> Vec<Value> {
            if with_pending {
                st.pending_children(parent, kind, now)
            } else {
                Vec::new()
            }
        };
        match (m, route) {
            ("GET", Route::Version) => Ok(json_response(
                StatusCode::OK,
                &json!({"product_version": "4.1.2.0.0.0000000", "node_version": "4.1.2.0.0.0000000"}),
            )),
            ("GET", Route::Infra) => Ok(json_response(
                StatusCode::OK,
                &infra_tree(&st, q.get("filter").map(String::as_str)),
            )),
            ("PATCH", Route::Infra) => {
                if rand::random::<f64>() < faults.atomic_conflict_fraction {
                    return Err(Fail::bad(
                        codes::ATOMIC_REQUEST,
                        format!(
                            "The object AtomicRequest/{} is already present in the system.",
                            rand::random::<u16>()
                        ),
                    ));
                }
                let v = parse()?;
                let enforce = q.get("enforce_revision_check").map(String::as_str) == Some("true");
                let ops = st.hapi_ops(&v, enforce)?;
                st.transact(ops, ctx)?;
                Ok(empty(StatusCode::OK))
            }
            ("GET", Route::Domains) => {
                let items: Vec<Value> = st
                    .domains
                    .values()
                    .map(|d| Value::Object(d.domain.clone()))
                    .collect();
                page(items, q, faults.cursor_on_last_page)
            }
            ("GET", Route::Domain(d)) => st
                .domains
                .get(&d)
                .map(|dom| json_response(StatusCode::OK, &Value::Object(dom.domain.clone())))
                .ok_or_else(|| Fail::not_found(&format!("/infra/domains/{d}"))),
            ("GET", Route::Groups(d)) => {
                let dom = domain(&st, &d)?;
                let mut items: Vec<Value> = dom.groups.values().map(Store::group_view).collect();
                items.extend(pending_list(&st, &format!("/infra/domains/{d}"), "Group"));
                page(items, q, faults.cursor_on_last_page)
            }
            ("GET", Route::Group(d, g)) => match domain(&st, &d)?.groups.get(&g) {
                Some(o) => Ok(json_response(StatusCode::OK, &Store::group_view(o))),
                None => pending_one(&st, &store::group_path(&d, &g)),
            },
            ("PUT" | "PATCH", Route::Group(d, g)) => {
                let v = parse()?;
                let mut errs = Vec::new();
                let obj = v::as_obj(&v, "the request body", &mut errs).cloned();
                let obj = obj.unwrap_or_default();
                v::check_group(&obj, &g, &mut errs);
                let rev = v::revision(&obj, &mut errs);
                bail(errs)?;
                let put = m == "PUT";
                let rev = if put {
                    RevCheck::Put(rev)
                } else {
                    RevCheck::IfGiven(rev)
                };
                let mode = if put { Mode::Replace } else { Mode::Merge };
                st.transact(
                    vec![Op::Group {
                        domain: d.clone(),
                        id: g.clone(),
                        body: v::writable(&obj),
                        rev,
                        mode,
                    }],
                    ctx,
                )?;
                if put {
                    let o = domain(&st, &d)?.groups.get(&g).cloned().unwrap_or_default();
                    Ok(json_response(StatusCode::OK, &Store::group_view(&o)))
                } else {
                    Ok(empty(StatusCode::OK))
                }
            }
            ("DELETE", Route::Group(d, g)) => {
                st.transact(vec![Op::DeleteGroup { domain: d, id: g }], ctx)?;
                Ok(empty(StatusCode::OK))
            }
            ("GET", Route::GroupVms(d, g)) => {
                let group = domain(&st, &d)?
                    .groups
                    .get(&g)
                    .cloned()
                    .ok_or_else(|| Fail::not_found(&store::group_path(&d, &g)))?;
                let vms = super::inventory::members(&st, &group);
                page(
                    vms.into_iter()
                        .map(|vm| {
                            json!({"resource_type": "VirtualMachine", "display_name": vm.name,
                                   "external_id": vm.name, "tags": vm.tags})
                        })
                        .collect(),
                    q,
                    faults.cursor_on_last_page,
                )
            }
            ("GET", Route::GroupIps(d, g)) => {
                let group = domain(&st, &d)?
                    .groups
                    .get(&g)
                    .cloned()
                    .ok_or_else(|| Fail::not_found(&store::group_path(&d, &g)))?;
                let ips = super::inventory::member_ips(&st, &group);
                page(
                    ips.into_iter().map(Value::String).collect(),
                    q,
                    faults.cursor_on_last_page,
                )
            }
            ("GET", Route::Policies(d)) => {
                let dom = domain(&st, &d)?;
                let count = q.get("include_rule_count").map(String::as_str) == Some("true");
                let mut items: Vec<Value> = dom
                    .policies
                    .values()
                    .map(|ps| {
                        let mut p = Store::policy_view(ps, false);
                        if count && let Some(o) = p.as_object_mut() {
                            o.insert("rule_count".into(), json!(ps.rules.len()));
                        }
                        p
                    })
                    .collect();
                for mut p in pending_list(&st, &format!("/infra/domains/{d}"), "SecurityPolicy") {
                    if let Some(o) = p.as_object_mut() {
                        let rules = o.remove("rules");
                        if count {
                            let n = rules.as_ref().and_then(Value::as_array).map_or(0, Vec::len);
                            o.insert("rule_count".into(), json!(n));
                        }
                    }
                    items.push(p);
                }
                page(items, q, faults.cursor_on_last_page)
            }
            ("GET", Route::Policy(d, p)) => match domain(&st, &d)?.policies.get(&p) {
                Some(ps) => Ok(json_response(StatusCode::OK, &Store::policy_view(ps, true))),
                None => pending_one(&st, &store::policy_path(&d, &p)),
            },
            ("PUT" | "PATCH", Route::Policy(d, p)) => {
                let v = parse()?;
                let mut errs = Vec::new();
                let obj = v::as_obj(&v, "the request body", &mut errs)
                    .cloned()
                    .unwrap_or_default();
                v::check_policy(&obj, &p, &mut errs);
                let rev = v::revision(&obj, &mut errs);
                let mut rule_ops = Vec::new();
                let mut keep = std::collections::BTreeSet::new();
                if let Some(Value::Array(rules)) = obj.get("rules") {
                    for r in rules {
                        let Some(r) = v::as_obj(r, "a rule", &mut errs) else {
                            continue;
                        };
                        let rid = r
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        v::check_rule(r, &rid, &mut errs);
                        keep.insert(rid.clone());
                        rule_ops.push(Op::Rule {
                            domain: d.clone(),
                            policy: p.clone(),
                            id: rid,
                            body: v::writable(r),
                            rev: RevCheck::Ignore,
                        });
                    }
                }
                bail(errs)?;
                let put = m == "PUT";
                let mut body = v::writable(&obj);
                body.remove("rules");
                let mut ops = vec![Op::Policy {
                    domain: d.clone(),
                    id: p.clone(),
                    body,
                    rev: if put {
                        RevCheck::Put(rev)
                    } else {
                        RevCheck::IfGiven(rev)
                    },
                    mode: Mode::Replace,
                    replace_rules: put.then_some(keep),
                }];
                ops.extend(rule_ops);
                st.transact(ops, ctx)?;
                if put {
                    let view = domain(&st, &d)?
                        .policies
                        .get(&p)
                        .map(|ps| Store::policy_view(ps, true))
                        .unwrap_or(Value::Null);
                    Ok(json_response(StatusCode::OK, &view))
                } else {
                    Ok(empty(StatusCode::OK))
                }
            }
            ("DELETE", Route::Policy(d, p)) => {
                st.transact(vec![Op::DeletePolicy { domain: d, id: p }], ctx)?;
                Ok(empty(StatusCode::OK))
            }
            ("GET", Route::Rules(d, p)) => {
                let ps = domain(&st, &d)?
                    .policies
                    .get(&p)
                    .ok_or_else(|| Fail::not_found(&store::policy_path(&d, &p)))?;
                let mut items: Vec<Value> = Store::ordered_rules(ps)
                    .into_iter()
                    .map(|r| Value::Object(Store::rule_view(r)))
                    .collect();
                items.extend(pending_list(&st, &store::policy_path(&d, &p), "Rule"));
                page(items, q, faults.cursor_on_last_page)
            }
            ("GET", Route::Rule(d, p, r)) => match domain(&st, &d)?
                .policies
                .get(&p)
                .and_then(|ps| ps.rules.get(&r))
            {
                Some(o) => Ok(json_response(
                    StatusCode::OK,
                    &Value::Object(Store::rule_view(o)),
                )),
                None => pending_one(&st, &store::rule_path(&d, &p, &r)),
            },
            ("PUT" | "PATCH", Route::Rule(d, p, r)) => {
                let v = parse()?;
                let mut errs = Vec::new();
                let obj = v::as_obj(&v, "the request body", &mut errs)
                    .cloned()
                    .unwrap_or_default();
                v::check_rule(&obj, &r, &mut errs);
                let rev = v::revision(&obj, &mut errs);
                bail(errs)?;
                let put = m == "PUT";
                st.transact(
                    vec![Op::Rule {
                        domain: d.clone(),
                        policy: p.clone(),
                        id: r.clone(),
                        body: v::writable(&obj),
                        rev: if put {
                            RevCheck::Put(rev)
                        } else {
                            RevCheck::IfGiven(rev)
                        },
                    }],
                    ctx,
                )?;
                if put {
                    let o = domain(&st, &d)?
                        .policies
                        .get(&p)
                        .and_then(|ps| ps.rules.get(&r))
                        .map(|o| Value::Object(Store::rule_view(o)))
                        .unwrap_or(Value::Null);
                    Ok(json_response(StatusCode::OK, &o))
                } else {
                    Ok(empty(StatusCode::OK))
                }
            }
            ("DELETE", Route::Rule(d, p, r)) => {
                st.transact(
                    vec![Op::DeleteRule {
                        domain: d,
                        policy: p,
                        id: r,
                    }],
                    ctx,
                )?;
                Ok(empty(StatusCode::OK))
            }
            ("GET", Route::Services) => {
                let only_default = q.get("default_service").map(|s| s == "true");
                let mut items: Vec<Value> = st
                    .services
                    .values()
                    .filter(|s| {
                        only_default.is_none_or(|want| {
                            (s.service.get("is_default").and_then(Value::as_bool) == Some(true))
                                == want
                        })
                    })
                    .map(Store::service_view)
                    .collect();
                if only_default != Some(true) {
                    items.extend(pending_list(&st, "/infra", "Service"));
                }
                page(items, q, faults.cursor_on_last_page)
            }
            ("GET", Route::Service(s)) => match st.services.get(&s) {
                Some(ss) => Ok(json_response(StatusCode::OK, &Store::service_view(ss))),
                None => pending_one(&st, &store::service_path(&s)),
            },
            ("PUT" | "PATCH", Route::Service(s)) => {
                let v = parse()?;
                let mut errs = Vec::new();
                let obj = v::as_obj(&v, "the request body", &mut errs)
                    .cloned()
                    .unwrap_or_default();
                v::check_service(&obj, &s, &mut errs);
                let rev = v::revision(&obj, &mut errs);
                bail(errs)?;
                let put = m == "PUT";
                let entries = store::entries_of(&obj);
                let mut body = v::writable(&obj);
                body.remove("service_entries");
                st.transact(
                    vec![Op::Service {
                        id: s.clone(),
                        body,
                        entries,
                        rev: if put {
                            RevCheck::Put(rev)
                        } else {
                            RevCheck::IfGiven(rev)
                        },
                        mode: if put { Mode::Replace } else { Mode::Merge },
                    }],
                    ctx,
                )?;
                if put {
                    let view = st
                        .services
                        .get(&s)
                        .map(Store::service_view)
                        .unwrap_or(Value::Null);
                    Ok(json_response(StatusCode::OK, &view))
                } else {
                    Ok(empty(StatusCode::OK))
                }
            }
            ("DELETE", Route::Service(s)) => {
                st.transact(vec![Op::DeleteService { id: s }], ctx)?;
                Ok(empty(StatusCode::OK))
            }
            ("GET", Route::Entries(s)) => {
                let ss = st
                    .services
                    .get(&s)
                    .ok_or_else(|| Fail::not_found(&store::service_path(&s)))?;
                page(
                    ss.entries.values().cloned().map(Value::Object).collect(),
                    q,
                    faults.cursor_on_last_page,
                )
            }
            ("GET", Route::Entry(s, e)) => st
                .services
                .get(&s)
                .and_then(|ss| ss.entries.get(&e))
                .map(|o| json_response(StatusCode::OK, &Value::Object(o.clone())))
                .ok_or_else(|| {
                    Fail::not_found(&format!("{}/service-entries/{e}", store::service_path(&s)))
                }),
            ("GET", Route::Realized) => {
                let path = q.get("intent_path").cloned().ok_or_else(|| {
                    Fail::bad(
                        codes::INVALID_PATH,
                        "Required parameter intent_path is missing.",
                    )
                })?;
                let items = realized(&st, &path, ctx.now_ms, faults)?;
                let n = items.len();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"results": items, "result_count": n}),
                ))
            }
            ("GET", Route::RealizedStatus) => {
                let path = q.get("intent_path").cloned().ok_or_else(|| {
                    Fail::bad(
                        codes::INVALID_PATH,
                        "Required parameter intent_path is missing.",
                    )
                })?;
                let items = realized(&st, &path, ctx.now_ms, faults)?;
                let state = |s: &str| items.iter().any(|i| i["state"] == s);
                let (consolidated, publish) = if state("ERROR") {
                    ("ERROR", "ERROR")
                } else if state("UNREALIZED") {
                    ("IN_PROGRESS", "UNREALIZED")
                } else {
                    ("SUCCESS", "REALIZED")
                };
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"intent_path": path,
                            "consolidated_status": {"consolidated_status": consolidated},
                            "publish_status": publish}),
                ))
            }
            (_, Route::Unknown) => Err(Fail::new(
                StatusCode::NOT_FOUND,
                codes::INVALID_PATH,
                "common-services",
                "The requested URI could not be found.",
            )),
            (m, _) => Err(Fail::new(
                StatusCode::METHOD_NOT_ALLOWED,
                0,
                "common-services",
                format!("Method {m} is not supported on this resource."),
            )),
        }
    }

    fn admin(&self, method: &Method, path: &str, body: &[u8]) -> Resp {
        let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}));
        match (method.as_str(), path.trim_end_matches('/')) {
            ("GET", "/admin/faults") => {
                let f = lock(&self.faults).clone();
                let remaining = lock(&self.outage_until)
                    .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
                    .unwrap_or(0.0);
                let mut v = serde_json::to_value(&f).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("outage_remaining_seconds".into(), json!(remaining));
                }
                json_response(StatusCode::OK, &v)
            }
            ("PUT", "/admin/faults") => match serde_json::from_slice::<Faults>(body) {
                Ok(f) => {
                    self.set_faults(f.clone());
                    json_response(
                        StatusCode::OK,
                        &serde_json::to_value(&f).unwrap_or_default(),
                    )
                }
                Err(e) => bad(format!("faults: {e}")),
            },
            ("GET", "/admin/counters") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&*lock(&self.counters)).unwrap_or_default(),
            ),
            ("DELETE", "/admin/counters") | ("POST", "/admin/counters/reset") => {
                lock(&self.counters).clear();
                empty(StatusCode::OK)
            }
            ("GET", "/admin/state") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&*lock(&self.store)).unwrap_or_default(),
            ),
            ("PUT", "/admin/state") => match serde_json::from_slice::<Store>(body) {
                Ok(s) => {
                    *lock(&self.store) = s;
                    empty(StatusCode::OK)
                }
                Err(e) => bad(format!("state: {e}")),
            },
            ("GET", "/admin/vms") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&lock(&self.store).vms).unwrap_or_default(),
            ),
            ("PUT", "/admin/vms") => match serde_json::from_slice::<Vec<store::Vm>>(body) {
                Ok(vms) => {
                    lock(&self.store).vms = vms;
                    empty(StatusCode::OK)
                }
                Err(e) => bad(format!("vms: {e}")),
            },
            ("POST", "/admin/flow") => {
                match serde_json::from_slice::<super::inventory::Flow>(body) {
                    Ok(flow) => {
                        let lines = super::inventory::packet_log(&lock(&self.store), &flow);
                        json_response(StatusCode::OK, &json!({"lines": lines}))
                    }
                    Err(e) => bad(format!("flow: {e}")),
                }
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("no admin endpoint {method} {path}")}),
            ),
        }
    }
}

/// Sets `_protection` on every object of `v` a principal identity owns: `NOT_PROTECTED` for
/// the owner, `PROTECTED` for other principal identities, `REQUIRE_OVERRIDE` for users (all
/// simulator users are superusers).
fn mark_protection(v: &mut Value, protected: &BTreeMap<String, String>, ctx: &Ctx) {
    match v {
        Value::Object(o) => {
            let owner = o
                .get("path")
                .and_then(Value::as_str)
                .and_then(|p| protected.get(p))
                .cloned();
            if let Some(owner) = owner {
                let seen = if owner == ctx.user {
                    "NOT_PROTECTED"
                } else if ctx.principal {
                    "PROTECTED"
                } else {
                    "REQUIRE_OVERRIDE"
                };
                o.insert("_protection".into(), json!(seen));
            }
            for child in o.values_mut() {
                mark_protection(child, protected, ctx);
            }
        }
        Value::Array(items) => {
            for item in items {
                mark_protection(item, protected, ctx);
            }
        }
        _ => {}
    }
}

fn domain<'a>(st: &'a Store, d: &str) -> Result<&'a store::DomainState, Fail> {
    st.domains
        .get(d)
        .ok_or_else(|| Fail::not_found(&format!("/infra/domains/{d}")))
}

fn bail(errs: Vec<ApiError>) -> Result<(), Fail> {
    match Fail::from_errors(errs) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn unavailable(msg: &str) -> Fail {
    Fail::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::UNAVAILABLE,
        "common-services",
        msg,
    )
}

fn bad_credentials() -> Fail {
    Fail::new(
        StatusCode::FORBIDDEN,
        codes::CREDENTIALS,
        "common-services",
        "The credentials were incorrect or the account specified has been locked.",
    )
}

fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, val)| val.to_string())
}

/// One page of a list: `page_size` (default and maximum 1000), decimal `cursor`, `result_count`
/// always set, no `cursor` on the last page; `sort_by` (`id` or `display_name`) and
/// `sort_ascending` are honoured.
fn page(
    mut items: Vec<Value>,
    q: &BTreeMap<String, String>,
    last_cursor: bool,
) -> Result<Resp, Fail> {
    if let Some(key) = q.get("sort_by") {
        items.sort_by(|a, b| {
            let ka = a.get(key).map(|x| x.to_string()).unwrap_or_default();
            let kb = b.get(key).map(|x| x.to_string()).unwrap_or_default();
            ka.cmp(&kb)
        });
        if q.get("sort_ascending").map(String::as_str) == Some("false") {
            items.reverse();
        }
    }
    let size = match q.get("page_size") {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Fail::from_errors(vec![invalid(format!("Invalid page_size [{s}]."))]))
            .map_err(|f| f.unwrap_or_else(|| Fail::bad(0, "invalid page_size")))?
            .min(1000),
        None => 1000,
    };
    let start = match q.get("cursor") {
        Some(c) if !c.is_empty() => c
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| Fail::bad(codes::INVALID_PATH, format!("Invalid cursor [{c}].")))?,
        _ => 0,
    };
    let total = items.len();
    let end = (start + size).min(total);
    let results: Vec<Value> = items.drain(start..end).collect();
    let mut body = json!({"results": results, "result_count": total});
    if (end < total || last_cursor)
        && let Some(o) = body.as_object_mut()
    {
        o.insert("cursor".into(), json!(end.to_string()));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Realized entities of an intent path: a policy (its section and one entry per rule), a rule,
/// or a group.
fn realized(st: &Store, path: &str, now: i64, faults: &Faults) -> Result<Vec<Value>, Fail> {
    let segs: Vec<&str> = path.split('/').collect();
    let entry = |obj: &Obj, entity_type: &str, id: String, rpath: String| {
        let modified = obj
            .get("_last_modified_time")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let delay = i64::try_from(faults.realization_delay_ms).unwrap_or(i64::MAX);
        let error = faults.realization_errors.get(path);
        let state = if error.is_some() {
            "ERROR"
        } else if now.saturating_sub(modified) >= delay {
            "REALIZED"
        } else {
            "UNREALIZED"
        };
        let mut v = json!({
            "resource_type": "GenericPolicyRealizedResource",
            "entity_type": entity_type,
            "intent_paths": [path],
            "id": id, "display_name": id,
            "path": rpath,
            "relative_path": id,
            "state": state,
            "runtime_status": if state == "REALIZED" { "SUCCESS" } else { "UNKNOWN" },
            "realization_specific_identifier": obj.get("unique_id").cloned().unwrap_or(Value::Null),
            "publish_status": state,
            "extended_attributes": [],
        });
        if let (Some(msg), Some(o)) = (error, v.as_object_mut()) {
            o.insert("runtime_error".into(), json!(msg));
            o.insert("publish_status_error".into(), json!(msg));
            o.insert("publish_status_error_code".into(), json!(500100));
        }
        v
    };
    let ep = "/infra/realized-state/enforcement-points/default";
    match segs.as_slice() {
        ["", "infra", "domains", d, "security-policies", p] => {
            let ps = st
                .domains
                .get(*d)
                .and_then(|dom| dom.policies.get(*p))
                .ok_or_else(|| Fail::not_found(path))?;
            let section = format!("{d}.{p}");
            let mut out = vec![entry(
                &ps.policy,
                "RealizedFirewallSection",
                section.clone(),
                format!("{ep}/firewalls/firewall-sections/{section}"),
            )];
            for (rid, r) in &ps.rules {
                let id = format!("{section}.{rid}");
                out.push(entry(
                    r,
                    "RealizedFirewallRule",
                    id.clone(),
                    format!("{ep}/firewalls/firewall-sections/{section}/firewall-rules/{id}"),
                ));
            }
            Ok(out)
        }
        [
            "",
            "infra",
            "domains",
            d,
            "security-policies",
            p,
            "rules",
            r,
        ] => {
            let rule = st
                .domains
                .get(*d)
                .and_then(|dom| dom.policies.get(*p))
                .and_then(|ps| ps.rules.get(*r))
                .ok_or_else(|| Fail::not_found(path))?;
            let id = format!("{d}.{p}.{r}");
            Ok(vec![entry(
                rule,
                "RealizedFirewallRule",
                id.clone(),
                format!("{ep}/firewalls/firewall-sections/{d}.{p}/firewall-rules/{id}"),
            )])
        }
        ["", "infra", "domains", d, "groups", g] => {
            let group = st
                .domains
                .get(*d)
                .and_then(|dom| dom.groups.get(*g))
                .ok_or_else(|| Fail::not_found(path))?;
            let id = format!("{d}.{g}");
            Ok(vec![entry(
                group,
                "RealizedGroup",
                id.clone(),
                format!("{ep}/groups/securitygroups/{id}"),
            )])
        }
        _ => Err(Fail::not_found(path)),
    }
}
