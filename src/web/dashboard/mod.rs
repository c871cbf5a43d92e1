//! The monitor dashboard: pages under `/ui/...`, the JSON API behind them under `/api/v1/...`
//! and live updates as server-sent events at `/api/v1/events`.
//!
//! Pages are plain HTML, CSS and JavaScript embedded in the binary (no build step, no CDN): the
//! dashboard works offline. They read the reflector stores that every replica keeps warm; the one
//! write, acknowledging alerts, goes through the monitor [`Recorder`], the only writer of
//! `status.monitor`.
//!
//! Access: with neither a token nor a proxy user header configured the dashboard is not served at
//! all (404 with a message saying how to turn it on). Otherwise every page and API call needs
//! `Authorization: Bearer <token>` (compared in constant time), the session cookie set by the
//! login form (a random id held by this replica with an 8-hour expiry; HttpOnly,
//! SameSite=Strict, Secure unless `--dashboard-insecure-cookie`; failed sign-ins are limited per
//! address), or, when `user_header` is configured, that header as set by an authenticating proxy
//! that proves itself (shared secret and/or source network; its value is the user recorded on
//! acknowledgements). A proxy user acknowledges only where the API server allows the verb
//! `acknowledge` on `segmentationpolicies` (a LocalSubjectAccessReview). Nothing secret is ever
//! part of a page or an answer, and the token is never logged.

pub mod api;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use cookie::{Cookie, SameSite};
use kube::runtime::reflector::Store;
use serde::Deserialize;

use crate::api::{EnforcementWindow, SegmentationPolicy};
use crate::monitor::recorder::Recorder;
use crate::web::secret::{ExposeSecret, SecretString, constant_time_eq};

/// Name of the session cookie set by the login form.
pub const SESSION_COOKIE: &str = "microseg_dashboard";
/// Longest user name accepted from the proxy header (the CRD's bound on `acknowledged.by`).
const USER_MAX: usize = 253;
/// Most groups taken from the proxy's groups header.
const GROUPS_MAX: usize = 64;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Header carrying the proxy's shared secret (`--dashboard-proxy-secret-file`).
pub const PROXY_SECRET_HEADER: &str = "x-microseg-proxy-secret";
/// How long a sign-in session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
/// Sessions held at once (the oldest goes first).
const SESSIONS_MAX: usize = 10_000;
/// Failed sign-ins accepted per source address and minute.
const FAILED_LOGINS_PER_MINUTE: u32 = 10;

/// Who may read and acknowledge (`Debug` shows no secret).
#[derive(Clone, Default, Debug)]
pub struct DashboardConfig {
    /// The bearer token (from `--dashboard-token-file`).
    pub token: Option<SecretString>,
    /// A header set by an authenticating proxy that names the user (`--dashboard-user-header`).
    /// Trusted only with the proxy's proof: `proxy_secret` and/or `proxy_sources`.
    pub user_header: Option<String>,
    /// A header set by the same proxy that names the user's groups, comma-separated
    /// (`--dashboard-groups-header`); trusted like `user_header`.
    pub groups_header: Option<String>,
    /// The proxy sends this in `X-Microseg-Proxy-Secret` (`--dashboard-proxy-secret-file`).
    pub proxy_secret: Option<SecretString>,
    /// The proxy connects from these networks (`--dashboard-proxy-cidrs`).
    pub proxy_sources: Vec<ipnet::IpNet>,
    /// Session cookies without `Secure` (`--dashboard-insecure-cookie`: plain-http labs).
    pub insecure_cookie: bool,
}

impl DashboardConfig {
    /// The bearer token, when one is configured (an empty one counts as none).
    fn token(&self) -> Option<&str> {
        self.token
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|t| !t.is_empty())
    }

    /// Whether the dashboard is served.
    pub fn enabled(&self) -> bool {
        self.token().is_some() || self.user_header.as_deref().is_some_and(|h| !h.is_empty())
    }
}

/// What the dashboard reads and writes.
#[derive(Clone)]
pub struct DashboardState {
    /// Every SegmentationPolicy the controller watches.
    pub policies: Store<SegmentationPolicy>,
    /// Every EnforcementWindow the controller watches.
    pub windows: Store<EnforcementWindow>,
    /// A generation that moves whenever `policies` or `windows` took an event: the live updates
    /// wake on it.
    pub changes: tokio::sync::watch::Receiver<u64>,
    /// The monitor recorder (acknowledgements); `None` refuses acknowledgements with 503.
    pub recorder: Option<Recorder>,
    /// Asks the API server whether a proxy-named user may acknowledge (a
    /// LocalSubjectAccessReview); `None` refuses proxy users' acknowledgements with 503.
    pub client: Option<kube::Client>,
    /// Access.
    pub config: DashboardConfig,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The user named by the authenticating proxy; `None` for token and cookie sessions.
    pub name: Option<String>,
    /// The groups the proxy names (`--dashboard-groups-header`), for the access review.
    pub groups: Vec<String>,
}

/// State of the handlers.
pub struct Shared {
    state: DashboardState,
    /// Sign-in sessions (random id to expiry), held here only: a restart signs everyone out.
    sessions: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Failed sign-ins per source address: (count, start of the minute).
    failures:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

/// A new random session id (256 bits, hex).
pub fn new_session_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the cookie `name` the request carries.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The session cookie: HttpOnly, SameSite=Strict, for the whole site, `Secure` unless
/// `insecure`; `max_age` zero removes it.
fn session_cookie(
    value: &str,
    max_age: std::time::Duration,
    insecure: bool,
) -> Option<HeaderValue> {
    let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let c = Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(seconds))
        .secure(!insecure)
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

impl Shared {
    fn token_sign_in(&self) -> bool {
        self.state.config.token().is_some()
    }

    /// Whether the request comes through the authenticating proxy: every proof configured
    /// holds (the shared secret, the source network); with none configured, never.
    fn proxied(&self, headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> bool {
        let c = &self.state.config;
        let secret_ok = c.proxy_secret.as_ref().map(|secret| {
            headers
                .get(PROXY_SECRET_HEADER)
                .is_some_and(|v| constant_time_eq(v.as_bytes(), secret.expose_secret().as_bytes()))
        });
        let source_ok = (!c.proxy_sources.is_empty())
            .then(|| peer.is_some_and(|ip| c.proxy_sources.iter().any(|n| n.contains(&ip))));
        match (secret_ok, source_ok) {
            (None, None) => false,
            (a, b) => a.unwrap_or(true) && b.unwrap_or(true),
        }
    }

    /// Who the request comes from, if it may come in at all. A proxy's user header counts only
    /// with the proxy's proof; otherwise it is ignored and the token or session decides.
    fn identify(&self, headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> Option<User> {
        if let Some(h) = self
            .state
            .config
            .user_header
            .as_deref()
            .filter(|h| !h.is_empty())
            && let Some(v) = headers.get(h).and_then(|v| v.to_str().ok())
            && self.proxied(headers, peer)
        {
            let v = v.trim();
            if !v.is_empty() && v.chars().count() <= USER_MAX {
                let groups = self
                    .state
                    .config
                    .groups_header
                    .as_deref()
                    .and_then(|g| headers.get(g))
                    .and_then(|g| g.to_str().ok())
                    .map(|g| {
                        g.split(',')
                            .map(str::trim)
                            .filter(|g| !g.is_empty() && g.len() <= USER_MAX)
                            .take(GROUPS_MAX)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                return Some(User {
                    name: Some(v.to_string()),
                    groups,
                });
            }
        }
        if let Some(token) = self.state.config.token() {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), token.as_bytes())) {
                return Some(User::default());
            }
        }
        if let Some(c) = cookie(headers, SESSION_COOKIE)
            && self.session_valid(&c)
        {
            return Some(User::default());
        }
        None
    }

    fn session_valid(&self, id: &str) -> bool {
        let Ok(mut sessions) = self.sessions.lock() else {
            return false;
        };
        match sessions.get(id) {
            Some(expiry) if *expiry > std::time::Instant::now() => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    fn new_session(&self) -> Option<String> {
        let mut sessions = self.sessions.lock().ok()?;
        let now = std::time::Instant::now();
        sessions.retain(|_, expiry| *expiry > now);
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        let id = new_session_id();
        sessions.insert(id.clone(), now + SESSION_TTL);
        Some(id)
    }

    fn end_session(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }

    /// Counts a failed sign-in; `Err(seconds)` when the source must wait.
    fn failed_login(&self, peer: Option<std::net::IpAddr>) -> Result<(), u64> {
        let ip = peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let Ok(mut f) = self.failures.lock() else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        if f.len() >= SESSIONS_MAX {
            f.retain(|_, (_, start)| now.duration_since(*start) < minute);
        }
        let e = f.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= minute {
            *e = (0, now);
        }
        e.0 += 1;
        if e.0 > FAILED_LOGINS_PER_MINUTE {
            Err(minute
                .saturating_sub(now.duration_since(e.1))
                .as_secs()
                .max(1))
        } else {
            Ok(())
        }
    }

    fn login_blocked(&self, peer: Option<std::net::IpAddr>) -> Option<u64> {
        let ip = peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let f = self.failures.lock().ok()?;
        let (n, start) = f.get(&ip)?;
        let elapsed = std::time::Instant::now().duration_since(*start);
        (*n >= FAILED_LOGINS_PER_MINUTE && elapsed < std::time::Duration::from_secs(60))
            .then(|| (60 - elapsed.as_secs()).max(1))
    }
}

/// The peer's address when the server records it.
fn peer(req_extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    req_extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn authenticate(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    match s.identify(req.headers(), peer(req.extensions())) {
        Some(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None if req.uri().path().starts_with("/api/") => {
            let mut r = api::error(
                StatusCode::UNAUTHORIZED,
                "authorization: a dashboard token (Authorization: Bearer) or a signed-in session is required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"microseg\""),
            );
            r
        }
        None => {
            let next_path = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_string();
            Redirect::to(&format!("/ui/login?next={}", url_escape(&next_path))).into_response()
        }
    }
}

/// Security headers on every answer; API answers are never cached.
async fn headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only same-site dashboard paths are followed after login (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

async fn page_programme() -> Response {
    pages::shell("programme", "Programme")
}

async fn page_application() -> Response {
    pages::shell("application", "Application")
}

async fn page_alerts() -> Response {
    pages::shell("alerts", "Alerts")
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

fn login_page(s: &Shared, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let note = if s.token_sign_in() {
        "Enter the dashboard token (the content of the file given to --dashboard-token-file)."
    } else {
        "This dashboard accepts only users signed in by the authenticating proxy in front of it."
    };
    pages::login(note, error, next, !s.token_sign_in(), status)
}

async fn get_login(
    State(s): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_page(&s, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

async fn post_login(
    State(s): State<Arc<Shared>>,
    axum::extract::Extension(peer_info): axum::extract::Extension<PeerAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let Some(token) = s.state.config.token() else {
        return login_page(
            &s,
            &next,
            Some("token: sign-in with a token is not configured here"),
            StatusCode::FORBIDDEN,
        );
    };
    if let Some(wait) = s.login_blocked(peer_info.0) {
        let mut r = login_page(
            &s,
            &next,
            Some(&format!(
                "token: too many failed sign-ins from this address; try again in {wait} s"
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if !constant_time_eq(f.token.trim().as_bytes(), token.as_bytes()) {
        tracing::info!("dashboard sign-in refused: wrong token");
        let _ = s.failed_login(peer_info.0);
        return login_page(
            &s,
            &next,
            Some("token: not accepted"),
            StatusCode::UNAUTHORIZED,
        );
    }
    let Some(session) = s.new_session() else {
        return login_page(
            &s,
            &next,
            Some("session: could not be created"),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    };
    let mut r = Redirect::to(&next).into_response();
    if let Some(v) = session_cookie(&session, SESSION_TTL, s.state.config.insecure_cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn post_logout(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        s.end_session(&c);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    if let Some(v) = session_cookie(
        "",
        std::time::Duration::ZERO,
        s.state.config.insecure_cookie,
    ) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The peer's address (from the server's connection info), for the sign-in limit.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub Option<std::net::IpAddr>);

async fn with_peer(mut req: Request, next: Next) -> Response {
    let p = PeerAddr(peer(req.extensions()));
    req.extensions_mut().insert(p);
    next.run(req).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the dashboard is not enabled: start the controller with --dashboard-token-file PATH or --dashboard-user-header NAME\n",
    )
        .into_response()
}

/// The dashboard's routes: pages under `/ui/`, the API under `/api/v1/`.
pub fn router(state: DashboardState) -> Router {
    if !state.config.enabled() {
        return Router::new()
            .route("/ui", any(disabled))
            .route("/ui/", any(disabled))
            .route("/ui/{*rest}", any(disabled))
            .route("/api/v1", any(disabled))
            .route("/api/v1/{*rest}", any(disabled));
    }
    let shared = Arc::new(Shared {
        state,
        sessions: std::sync::Mutex::default(),
        failures: std::sync::Mutex::default(),
    });
    let protected = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(page_programme))
        .route("/ui/applications/{namespace}/{name}", get(page_application))
        .route("/ui/alerts", get(page_alerts))
        .route("/api/v1", get(api::index))
        .route("/api/v1/programme", get(api::get_programme))
        .route(
            "/api/v1/applications/{namespace}/{name}",
            get(api::get_application),
        )
        .route("/api/v1/alerts", get(api::get_alerts))
        .route("/api/v1/alerts/acknowledge", post(api::acknowledge))
        .route("/api/v1/events", get(api::events))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    let public = Router::new()
        .route("/ui/login", get(get_login).post(post_login))
        .route("/ui/logout", post(post_logout))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/ui/assets/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        );
    protected
        .merge(public)
        .with_state(shared)
        .layer(middleware::from_fn(with_peer))
        .layer(middleware::from_fn(headers))
}

#[cfg(test)]
mod tests;
