//! The NSX Policy API client over HTTPS (reqwest + rustls): authentication (basic, session with
//! XSRF renewed on expiry, client certificate), TLS verified against a named CA bundle, shared
//! pacing ([`super::pacing`]), retries (429/503 for every call, connection errors for idempotent
//! calls only), `_revision` handling with bounded re-read-and-retry on 412, paged reads that
//! follow the cursor, realization, and metrics. It implements [`NsxApi`].
//!
//! No credential is ever logged or put in an error: passwords, session cookies and XSRF tokens
//! are [`Secret`]s, request headers are never logged, and headers carrying them are marked
//! sensitive.

// `nsx::Error::Api` carries NSX's whole error body by design (its code and message reach the
// status condition), so results with it are large.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AuthConfig, Credentials, Login, Secret};
use super::codes;
use super::metrics::NsxMetrics;
use super::model::{ApiError, Group, Infra, ListResult, Rule, SecurityPolicy};
use super::pacing::{Pacer, PacingConfig};
use super::{DomainTree, Error, NsxApi, Realization};

/// Base path of the policy API.
pub const POLICY_API: &str = "/policy/api/v1";

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Manager URL, e.g. `https://nsx.example.com` (no path).
    pub url: String,
    /// Authentication.
    pub auth: AuthConfig,
    /// PEM bundle of the CAs that may sign the manager's certificate (replaces the built-in
    /// roots when given).
    pub ca_bundle: Option<PathBuf>,
    /// Accept any server certificate. Insecure: for labs only; logs a warning at start.
    pub insecure_skip_tls_verify: bool,
    /// Pacing and retries.
    pub pacing: PacingConfig,
    /// Timeout of one call.
    pub request_timeout: Duration,
    /// Re-read-and-retry rounds after a 412 before reporting a conflict.
    pub max_conflict_retries: u32,
    /// Page size of list calls (NSX's maximum is 1000).
    pub page_size: u32,
    /// Renew a session that has been idle this long (NSX's default idle timeout is 1800 s).
    pub session_max_idle: Duration,
    /// Send `X-Allow-Overwrite: true`: lets a superuser change objects a principal identity
    /// created (NSX protects them otherwise).
    pub allow_overwrite: bool,
}

impl ClientConfig {
    /// Defaults for a manager URL and authentication.
    pub fn new(url: impl Into<String>, auth: AuthConfig) -> Self {
        ClientConfig {
            url: url.into(),
            auth,
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            pacing: PacingConfig::default(),
            request_timeout: Duration::from_secs(30),
            max_conflict_retries: 3,
            page_size: 1000,
            session_max_idle: Duration::from_secs(25 * 60),
            allow_overwrite: false,
        }
    }
}

/// Environment variables [`ClientConfig::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "NSX_URL",
    "NSX_AUTH",
    "NSX_USERNAME_FILE",
    "NSX_PASSWORD_FILE",
    "NSX_CLIENT_CERT_FILE",
    "NSX_CLIENT_KEY_FILE",
    "NSX_CA_BUNDLE",
    "NSX_INSECURE_SKIP_TLS_VERIFY",
    "NSX_RATE_LIMIT",
    "NSX_CONCURRENCY",
];

impl ClientConfig {
    /// Reads the configuration from the environment (see [`ClientConfig::from_lookup`]).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `get`: `NSX_URL` (required); `NSX_AUTH` = `session`
    /// (default), `basic` or `certificate`; for session/basic the user name and password come
    /// from the files `NSX_USERNAME_FILE` / `NSX_PASSWORD_FILE` when set, else from the
    /// variables `NSX_USERNAME` / `NSX_PASSWORD` (read when the client is built, never
    /// printed); for certificate `NSX_CLIENT_CERT_FILE` and `NSX_CLIENT_KEY_FILE`;
    /// `NSX_CA_BUNDLE`, `NSX_INSECURE_SKIP_TLS_VERIFY=true`, `NSX_RATE_LIMIT` (req/s),
    /// `NSX_CONCURRENCY`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let url = get("NSX_URL").ok_or_else(|| Error::Config("NSX_URL is not set".into()))?;
        let credentials = || Credentials {
            username_file: get("NSX_USERNAME_FILE").map(PathBuf::from),
            username_env: Some("NSX_USERNAME".into()),
            password_file: get("NSX_PASSWORD_FILE").map(PathBuf::from),
            password_env: Some("NSX_PASSWORD".into()),
        };
        let auth = match get("NSX_AUTH").as_deref().unwrap_or("session") {
            "session" => AuthConfig::Session(credentials()),
            "basic" => AuthConfig::Basic(credentials()),
            "certificate" => AuthConfig::Certificate {
                cert_file: get("NSX_CLIENT_CERT_FILE")
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        Error::Config(
                            "NSX_CLIENT_CERT_FILE is required with NSX_AUTH=certificate".into(),
                        )
                    })?,
                key_file: get("NSX_CLIENT_KEY_FILE")
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        Error::Config(
                            "NSX_CLIENT_KEY_FILE is required with NSX_AUTH=certificate".into(),
                        )
                    })?,
            },
            other => {
                return Err(Error::Config(format!(
                    "NSX_AUTH: {other:?} is not one of session, basic, certificate"
                )));
            }
        };
        let mut cfg = ClientConfig::new(url, auth);
        cfg.ca_bundle = get("NSX_CA_BUNDLE").map(PathBuf::from);
        cfg.insecure_skip_tls_verify =
            get("NSX_INSECURE_SKIP_TLS_VERIFY").as_deref() == Some("true");
        if let Some(r) = get("NSX_RATE_LIMIT") {
            cfg.pacing.rate = r.parse::<f64>().ok().filter(|r| *r > 0.0).ok_or_else(|| {
                Error::Config(format!("NSX_RATE_LIMIT: {r:?} is not a positive number"))
            })?;
        }
        if let Some(c) = get("NSX_CONCURRENCY") {
            cfg.pacing.concurrency =
                c.parse::<usize>().ok().filter(|c| *c > 0).ok_or_else(|| {
                    Error::Config(format!("NSX_CONCURRENCY: {c:?} is not a positive integer"))
                })?;
        }
        Ok(cfg)
    }
}

struct SessionTokens {
    cookie: Secret,
    xsrf: Secret,
    last_used: Instant,
    generation: u64,
}

enum Auth {
    Basic(Login),
    Session {
        login: Login,
        tokens: tokio::sync::Mutex<Option<SessionTokens>>,
        generation: AtomicU64,
    },
    Certificate,
}

impl Auth {
    fn user(&self) -> String {
        match self {
            Auth::Basic(l) | Auth::Session { login: l, .. } => l.username.clone(),
            Auth::Certificate => "principal-identity".into(),
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    pacer: Pacer,
    metrics: NsxMetrics,
    config: ClientConfig,
}

/// The NSX client. Clones share the connection pool, the session and the pacing budget.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.base)
            .field("user", &self.inner.auth.user())
            .finish_non_exhaustive()
    }
}

/// A body to send.
enum Body {
    None,
    Json(Vec<u8>),
    Form(Vec<(&'static str, Secret)>),
}

/// A 2xx answer.
struct Answer {
    body: bytes::Bytes,
}

/// A single-object write: what `_revision` handling applies.
enum Write {
    Put,
    Patch,
}

fn read_file(path: &PathBuf, field: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{field} {}: {e}", path.display())))
}

/// Percent-encodes one path segment (ids may hold characters URLs reserve).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its causes ("error sending request: connection refused"); reqwest errors
/// carry no credentials, and the URL is stripped by the caller.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::Config("session token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Client {
    /// Builds a client: loads the credentials, sets up TLS. Logs a warning when TLS
    /// verification is off.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        Self::with_metrics(config, NsxMetrics::default())
    }

    /// Builds a client that counts its calls in `metrics`.
    pub fn with_metrics(config: ClientConfig, metrics: NsxMetrics) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(config.pacing.concurrency.max(1))
            .user_agent(concat!("microseg/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_bundle {
            let pem = read_file(path, "caBundle")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("caBundle {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "caBundle {}: no certificate found",
                    path.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if config.insecure_skip_tls_verify {
            tracing::warn!(
                url = %config.url,
                "TLS verification of the NSX Manager is OFF (insecure_skip_tls_verify): anyone on the path can impersonate it"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let auth = match &config.auth {
            AuthConfig::Basic(c) => Auth::Basic(c.load()?),
            AuthConfig::Session(c) => Auth::Session {
                login: c.load()?,
                tokens: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
            },
            AuthConfig::Certificate {
                cert_file,
                key_file,
            } => {
                let mut pem = read_file(cert_file, "certFile")?;
                pem.push(b'\n');
                pem.extend(read_file(key_file, "keyFile")?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| Error::Config(format!("client certificate: {e}")))?;
                builder = builder.identity(identity);
                Auth::Certificate
            }
        };
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        let base = config.url.trim_end_matches('/').to_string();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                pacer: Pacer::new(config.pacing.clone()),
                metrics,
                config,
            }),
        })
    }

    /// The metrics this client records into.
    pub fn metrics(&self) -> &NsxMetrics {
        &self.inner.metrics
    }

    /// The pacing budget (for inspection).
    pub fn pacer(&self) -> &Pacer {
        &self.inner.pacer
    }

    fn transport(&self, reason: String) -> Error {
        Error::Transport {
            url: self.inner.base.clone(),
            reason,
        }
    }

    /// Session cookie and XSRF token, logging in when there is no live session.
    async fn session_headers(&self) -> Result<Option<(HeaderMap, u64)>, Error> {
        let Auth::Session { login, tokens, .. } = &self.inner.auth else {
            return Ok(None);
        };
        let mut guard = tokens.lock().await;
        let stale = guard
            .as_ref()
            .is_none_or(|t| t.last_used.elapsed() >= self.inner.config.session_max_idle);
        if stale {
            *guard = Some(Box::pin(self.login(login)).await?);
        }
        let Some(t) = guard.as_ref() else {
            return Err(Error::Auth {
                user: login.username.clone(),
            });
        };
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::COOKIE,
            sensitive(&format!("JSESSIONID={}", t.cookie.expose()))?,
        );
        h.insert("X-XSRF-TOKEN", sensitive(t.xsrf.expose())?);
        Ok(Some((h, t.generation)))
    }

    async fn touch_session(&self) {
        if let Auth::Session { tokens, .. } = &self.inner.auth
            && let Some(t) = tokens.lock().await.as_mut()
        {
            t.last_used = Instant::now();
        }
    }

    async fn drop_session(&self, generation: u64) {
        if let Auth::Session { tokens, .. } = &self.inner.auth {
            let mut guard = tokens.lock().await;
            if guard.as_ref().is_some_and(|t| t.generation == generation) {
                *guard = None;
            }
        }
    }

    async fn login(&self, login: &Login) -> Result<SessionTokens, Error> {
        let Auth::Session { generation, .. } = &self.inner.auth else {
            return Err(Error::Config("login without session authentication".into()));
        };
        tracing::debug!(user = %login.username, "Creating NSX session");
        let form = Body::Form(vec![
            ("j_username", Secret::new(login.username.clone())),
            ("j_password", login.password.clone()),
        ]);
        let (headers, _) = self
            .execute(Method::POST, "/api/session/create", &[], &form, true, false)
            .await
            .map_err(|e| match e {
                Error::Api {
                    status: 401 | 403, ..
                } => Error::Auth {
                    user: login.username.clone(),
                },
                other => other,
            })?;
        let cookie = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "JSESSIONID")
            .map(|(_, v)| Secret::new(v));
        let xsrf = headers
            .get("x-xsrf-token")
            .and_then(|v| v.to_str().ok())
            .map(Secret::new);
        match (cookie, xsrf) {
            (Some(cookie), Some(xsrf)) => {
                let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(user = %login.username, "Created NSX session");
                Ok(SessionTokens {
                    cookie,
                    xsrf,
                    last_used: Instant::now(),
                    generation: g,
                })
            }
            _ => Err(Error::Decode {
                path: "/api/session/create".into(),
                reason: "session answer lacks the JSESSIONID cookie or the X-XSRF-TOKEN header"
                    .into(),
            }),
        }
    }

    /// Ends the session, if any.
    pub async fn logout(&self) -> Result<(), Error> {
        if let Auth::Session { tokens, .. } = &self.inner.auth {
            if tokens.lock().await.is_none() {
                return Ok(());
            }
            let result = self
                .call(Method::POST, "/api/session/destroy", &[], Body::None, false)
                .await;
            *tokens.lock().await = None;
            result?;
        }
        Ok(())
    }

    /// One call with retries; `authenticate` is false only for the login itself.
    /// Returns the answer's headers and body on 2xx.
    async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
        idempotent: bool,
        authenticate: bool,
    ) -> Result<(HeaderMap, bytes::Bytes), Error> {
        let inner = &self.inner;
        let url = format!("{}{}", inner.base, path);
        let mut busy = 0u32;
        let mut transport = 0u32;
        let mut transient = 0u32;
        let mut relogged = false;
        loop {
            let session = if authenticate {
                self.session_headers().await?
            } else {
                None
            };
            let mut req = inner.http.request(method.clone(), &url);
            if !query.is_empty() {
                req = req.query(query);
            }
            if authenticate && let Auth::Basic(l) = &inner.auth {
                req = req.basic_auth(&l.username, Some(l.password.expose()));
            }
            if let Some((h, _)) = &session {
                req = req.headers(h.clone());
            }
            if inner.config.allow_overwrite {
                req = req.header("X-Allow-Overwrite", "true");
            }
            req = match body {
                Body::None => req,
                Body::Json(b) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone()),
                Body::Form(fields) => {
                    let pairs: Vec<(&str, &str)> =
                        fields.iter().map(|(k, v)| (*k, v.expose())).collect();
                    req.form(&pairs)
                }
            };
            let permit = inner.pacer.acquire().await;
            let start = Instant::now();
            let sent = req.send().await;
            let result = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(b) => Ok((status, headers, b)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            drop(permit);
            let elapsed = start.elapsed().as_secs_f64();
            let (status, headers, bytes) = match result {
                Ok(r) => r,
                Err(e) => {
                    inner.metrics.record(method.as_str(), None, elapsed);
                    let reason = error_chain(&e.without_url());
                    if idempotent && transport < inner.config.pacing.max_transport_retries {
                        transport += 1;
                        let wait = inner.pacer.backoff(transport, None);
                        tracing::warn!(%method, path, attempt = transport, ?wait, %reason, "NSX connection failed, retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    tracing::warn!(%method, path, %reason, "NSX connection failed");
                    return Err(self.transport(format!("{method} {path}: {reason}")));
                }
            };
            inner.metrics.record(method.as_str(), Some(status), elapsed);
            tracing::debug!(%method, path, status, elapsed_ms = (elapsed * 1000.0) as u64, "NSX call");
            match status {
                200..=299 => {
                    inner.pacer.on_success();
                    if session.is_some() {
                        self.touch_session().await;
                    }
                    return Ok((headers, bytes));
                }
                429 | 503 => {
                    inner.pacer.on_throttle(status);
                    let after = retry_after(&headers);
                    if busy < inner.config.pacing.max_busy_retries {
                        busy += 1;
                        let wait = inner.pacer.backoff(busy, after);
                        tracing::debug!(%method, path, status, attempt = busy, ?wait, rate = inner.pacer.current_rate(), "NSX busy, backing off");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    tracing::warn!(%method, path, status, "NSX still busy after retries");
                    return Err(Error::Busy {
                        path: path.to_string(),
                        status,
                        retry_after: after,
                    });
                }
                _ => {}
            }
            let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
                error_message: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
                ..ApiError::default()
            });
            let auth_failure = codes::is_auth_failure(status, error.error_code);
            if authenticate && auth_failure {
                if let Some((_, generation)) = &session
                    && !relogged
                {
                    relogged = true;
                    tracing::info!(
                        path,
                        status,
                        code = error.error_code,
                        "NSX session refused, logging in again"
                    );
                    self.drop_session(*generation).await;
                    continue;
                }
                return Err(Error::Auth {
                    user: inner.auth.user(),
                });
            }
            if idempotent
                && codes::is_transient(status, error.error_code)
                && transient < inner.config.pacing.max_busy_retries
            {
                transient += 1;
                let wait = inner.pacer.backoff(transient, None);
                tracing::info!(%method, path, status, code = error.error_code, attempt = transient, ?wait, "NSX transient error, retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(Error::Api {
                method: method.to_string(),
                path: path.to_string(),
                status,
                error,
            });
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        idempotent: bool,
    ) -> Result<Answer, Error> {
        let (_, body) = self
            .execute(method, path, query, &body, idempotent, true)
            .await?;
        Ok(Answer { body })
    }

    fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    fn json<T: Serialize>(path: &str, body: &T) -> Result<Body, Error> {
        serde_json::to_vec(body)
            .map(Body::Json)
            .map_err(|e| Error::Decode {
                path: path.to_string(),
                reason: format!("encoding the body: {e}"),
            })
    }

    /// Any call under the policy API with a raw JSON body (for tools and contract tests);
    /// GET, PATCH and DELETE are retried on connection errors, PUT and POST are not.
    pub async fn send_json(
        &self,
        method: Method,
        policy_path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, Error> {
        let path = format!("{POLICY_API}{policy_path}");
        let idempotent = matches!(method, Method::GET | Method::PATCH | Method::DELETE);
        let body = match body {
            Some(b) => Self::json(policy_path, b)?,
            None => Body::None,
        };
        let a = self.call(method, &path, &[], body, idempotent).await?;
        if a.body.is_empty() {
            Ok(None)
        } else {
            Self::decode(policy_path, &a.body).map(Some)
        }
    }

    /// GET of one object under the policy API; `None` on 404.
    pub async fn get<T: DeserializeOwned>(&self, policy_path: &str) -> Result<Option<T>, Error> {
        let path = format!("{POLICY_API}{policy_path}");
        match self.call(Method::GET, &path, &[], Body::None, true).await {
            Ok(a) => Self::decode(policy_path, &a.body).map(Some),
            Err(Error::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following the cursor to the end. The last page may or may not
    /// carry a cursor; reading stops at an absent or empty cursor, at an empty page, or once
    /// `result_count` (from the first page) items are read.
    pub async fn list_values(&self, policy_path: &str) -> Result<Vec<Value>, Error> {
        let path = format!("{POLICY_API}{policy_path}");
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut total: Option<i64> = None;
        let mut seen = HashSet::new();
        loop {
            let mut query = vec![("page_size", self.inner.config.page_size.to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let a = self
                .call(Method::GET, &path, &query, Body::None, true)
                .await?;
            let page: ListResult<Value> = Self::decode(policy_path, &a.body)?;
            if total.is_none() {
                total = page.result_count;
            }
            let empty_page = page.results.is_empty();
            items.extend(page.results);
            let done_by_count =
                total.is_some_and(|t| i64::try_from(items.len()).unwrap_or(i64::MAX) >= t);
            match page.cursor.filter(|c| !c.is_empty()) {
                Some(c) if !empty_page && !done_by_count => {
                    if !seen.insert(c.clone()) {
                        return Err(Error::Decode {
                            path: policy_path.to_string(),
                            reason: format!("cursor {c} repeated"),
                        });
                    }
                    cursor = Some(c);
                }
                _ => break,
            }
        }
        Ok(items)
    }

    /// A typed list; items that do not decode (objects of kinds microseg does not model, e.g.
    /// groups with MAC or nested expressions) are skipped with a debug log, since microseg
    /// only acts on the objects it owns.
    pub async fn list<T: DeserializeOwned>(&self, policy_path: &str) -> Result<Vec<T>, Error> {
        let values = self.list_values(policy_path).await?;
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            match serde_json::from_value::<T>(v) {
                Ok(t) => out.push(t),
                Err(e) => {
                    tracing::debug!(path = policy_path, reason = %e, "Skipping an NSX object microseg does not model")
                }
            }
        }
        Ok(out)
    }

    /// Rules of a policy in order (paged).
    pub async fn list_rules(&self, domain: &str, policy: &str) -> Result<Vec<Rule>, Error> {
        self.list(&format!(
            "/infra/domains/{}/security-policies/{}/rules",
            segment(domain),
            segment(policy)
        ))
        .await
    }

    /// The NSX rule ids of a policy's rules, by rule id (name); empty when the policy is
    /// absent.
    pub async fn rule_ids(
        &self,
        domain: &str,
        policy: &str,
    ) -> Result<BTreeMap<String, i64>, Error> {
        Ok(self
            .get_policy(domain, policy)
            .await?
            .map(|p| {
                p.rules
                    .into_iter()
                    .filter_map(|r| r.rule_id.map(|n| (r.id, n)))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn write<T: Serialize + DeserializeOwned>(
        &self,
        kind: Write,
        policy_path: &str,
        body: &T,
    ) -> Result<Option<T>, Error> {
        let path = format!("{POLICY_API}{policy_path}");
        let (method, idempotent) = match kind {
            Write::Put => (Method::PUT, false),
            Write::Patch => (Method::PATCH, true),
        };
        let a = self
            .call(
                method,
                &path,
                &[],
                Self::json(policy_path, body)?,
                idempotent,
            )
            .await?;
        if a.body.is_empty() {
            Ok(None)
        } else {
            Self::decode(policy_path, &a.body).map(Some)
        }
    }

    /// PUT (create or replace) of a group; carry `meta.revision` from a read to update.
    pub async fn put_group(&self, domain: &str, group: &Group) -> Result<Group, Error> {
        let path = format!(
            "/infra/domains/{}/groups/{}",
            segment(domain),
            segment(&group.id)
        );
        self.write(Write::Put, &path, group)
            .await?
            .ok_or_else(|| Error::Decode {
                path,
                reason: "PUT answered without a body".into(),
            })
    }

    /// PUT (create or replace, rules included) of a security policy.
    pub async fn put_policy(
        &self,
        domain: &str,
        policy: &SecurityPolicy,
    ) -> Result<SecurityPolicy, Error> {
        let path = format!(
            "/infra/domains/{}/security-policies/{}",
            segment(domain),
            segment(&policy.id)
        );
        self.write(Write::Put, &path, policy)
            .await?
            .ok_or_else(|| Error::Decode {
                path,
                reason: "PUT answered without a body".into(),
            })
    }

    /// PATCH (create or update) of a group.
    pub async fn patch_group(&self, domain: &str, group: &Group) -> Result<(), Error> {
        let path = format!(
            "/infra/domains/{}/groups/{}",
            segment(domain),
            segment(&group.id)
        );
        self.write(Write::Patch, &path, group).await.map(|_| ())
    }

    /// Read-modify-write of a group with its `_revision`: on 412 the group is read again and
    /// `change` applied again, up to `max_conflict_retries` times, then `Error::Conflict`.
    /// Creates the group (from `change` applied to `None`) when absent.
    pub async fn update_group<F>(&self, domain: &str, id: &str, change: F) -> Result<Group, Error>
    where
        F: Fn(Option<Group>) -> Group + Send + Sync,
    {
        let path = format!("/infra/domains/{}/groups/{}", segment(domain), segment(id));
        let attempts = self.inner.config.max_conflict_retries + 1;
        for attempt in 1..=attempts {
            let current = self.get_group(domain, id).await?;
            let revision = current.as_ref().and_then(|g| g.meta.revision);
            let mut next = change(current);
            next.meta.revision = revision;
            match self.put_group(domain, &next).await {
                Err(Error::Api { status: 412, .. }) => {
                    tracing::info!(path, attempt, "NSX revision conflict, reading again");
                }
                other => return other,
            }
        }
        Err(Error::Conflict { path, attempts })
    }

    /// Read-modify-write of a security policy (rules included) with its `_revision`, like
    /// [`Client::update_group`].
    pub async fn update_policy<F>(
        &self,
        domain: &str,
        id: &str,
        change: F,
    ) -> Result<SecurityPolicy, Error>
    where
        F: Fn(Option<SecurityPolicy>) -> SecurityPolicy + Send + Sync,
    {
        let path = format!(
            "/infra/domains/{}/security-policies/{}",
            segment(domain),
            segment(id)
        );
        let attempts = self.inner.config.max_conflict_retries + 1;
        for attempt in 1..=attempts {
            let current = self.get_policy(domain, id).await?;
            let revision = current.as_ref().and_then(|p| p.meta.revision);
            let mut next = change(current);
            next.meta.revision = revision;
            match self.put_policy(domain, &next).await {
                Err(Error::Api { status: 412, .. }) => {
                    tracing::info!(path, attempt, "NSX revision conflict, reading again");
                }
                other => return other,
            }
        }
        Err(Error::Conflict { path, attempts })
    }

    /// DELETE of an object by policy path (absent objects are not an error).
    pub async fn delete(&self, policy_path: &str) -> Result<(), Error> {
        let path = format!("{POLICY_API}{policy_path}");
        match self
            .call(Method::DELETE, &path, &[], Body::None, true)
            .await
        {
            Ok(_) | Err(Error::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /infra` with the subtree of the types `filter` names, as domain trees.
    async fn tree(&self, filter: &str) -> Result<Vec<DomainTree>, Error> {
        let path = format!("{POLICY_API}/infra");
        let query = [("filter", filter.to_string())];
        let a = self
            .call(Method::GET, &path, &query, Body::None, true)
            .await?;
        domain_trees(&a.body).map_err(|e| Error::Decode {
            path: "/infra".into(),
            reason: e.to_string(),
        })
    }

    /// Hierarchical PATCH with `enforce_revision_check`; a 412 becomes `Error::Conflict` so
    /// the caller re-reads and re-plans.
    pub async fn patch_infra_checked(&self, body: &Infra) -> Result<(), Error> {
        let path = format!("{POLICY_API}/infra");
        match self
            .call(
                Method::PATCH,
                &path,
                &[("enforce_revision_check", "true".into())],
                Self::json("/infra", body)?,
                true,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Api { status: 412, .. }) => Err(Error::Conflict {
                path: "/infra".into(),
                attempts: 1,
            }),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl NsxApi for Client {
    async fn group_member_count(&self, domain: &str, id: &str) -> Result<u64, Error> {
        let base = format!(
            "/infra/domains/{}/groups/{}/members",
            segment(domain),
            segment(id)
        );
        let vms = self
            .list_values(&format!("{base}/virtual-machines"))
            .await?;
        let ips = self.list_values(&format!("{base}/ip-addresses")).await?;
        Ok((vms.len() + ips.len()) as u64)
    }

    async fn group_vm_names(&self, domain: &str, id: &str) -> Result<Vec<String>, Error> {
        let vms = self
            .list_values(&format!(
                "/infra/domains/{}/groups/{}/members/virtual-machines",
                segment(domain),
                segment(id)
            ))
            .await?;
        let mut names: Vec<String> = vms
            .iter()
            .filter_map(|v| v.get("display_name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn get_group(&self, domain: &str, id: &str) -> Result<Option<Group>, Error> {
        self.get(&format!(
            "/infra/domains/{}/groups/{}",
            segment(domain),
            segment(id)
        ))
        .await
    }

    async fn get_policy(&self, domain: &str, id: &str) -> Result<Option<SecurityPolicy>, Error> {
        self.get(&format!(
            "/infra/domains/{}/security-policies/{}",
            segment(domain),
            segment(id)
        ))
        .await
    }

    async fn list_groups(&self, domain: &str) -> Result<Vec<Group>, Error> {
        self.list(&format!("/infra/domains/{}/groups", segment(domain)))
            .await
    }

    async fn list_policies(&self, domain: &str) -> Result<Vec<SecurityPolicy>, Error> {
        self.list(&format!(
            "/infra/domains/{}/security-policies",
            segment(domain)
        ))
        .await
    }

    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error> {
        self.tree(INFRA_TREE_FILTER).await
    }

    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.tree(POLICY_TREE_FILTER).await
    }

    async fn patch_infra(&self, body: &Infra) -> Result<(), Error> {
        let path = format!("{POLICY_API}/infra");
        self.call(Method::PATCH, &path, &[], Self::json("/infra", body)?, true)
            .await
            .map(|_| ())
    }

    async fn realization(&self, intent_path: &str) -> Result<Realization, Error> {
        let path = format!("{POLICY_API}/infra/realized-state/realized-entities");
        let a = self
            .call(
                Method::GET,
                &path,
                &[("intent_path", intent_path.to_string())],
                Body::None,
                true,
            )
            .await?;
        let page: ListResult<Value> = Self::decode(intent_path, &a.body)?;
        Ok(realization_of(&page.results))
    }
}

/// Maps realized entities to one state: any `ERROR` fails (with NSX's message), all
/// `REALIZED` is realized, anything else (including no entity yet) is in progress.
pub fn realization_of(entities: &[Value]) -> Realization {
    let state = |e: &Value| {
        e.get("state")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string()
    };
    if let Some(e) = entities.iter().find(|e| state(e) == "ERROR") {
        let msg = [
            "runtime_error",
            "publish_status_error",
            "operational_status_error",
        ]
        .iter()
        .find_map(|k| e.get(*k).and_then(Value::as_str))
        .unwrap_or("realization failed");
        let id = e.get("id").and_then(Value::as_str).unwrap_or("");
        return Realization::Failed(format!("{id}: {msg}"));
    }
    if !entities.is_empty() && entities.iter().all(|e| state(e) == "REALIZED") {
        return Realization::Realized;
    }
    Realization::InProgress
}

/// The type filter of [`NsxApi::infra_tree`].
pub const INFRA_TREE_FILTER: &str = "Type-Domain|Group|SecurityPolicy|Rule";

/// The type filter of [`NsxApi::policy_trees`].
pub const POLICY_TREE_FILTER: &str = "Type-Domain|SecurityPolicy|Rule";

/// One node of a `GET /infra` subtree: its id and its `Child<Type>` wrappers, each object left
/// as the raw JSON text (decoded one at a time: a whole fleet is never held as a `Value`).
#[derive(serde::Deserialize)]
struct RawNode<'a> {
    #[serde(default)]
    id: String,
    #[serde(default, borrow)]
    children: Vec<RawChild<'a>>,
}

/// A `Child<Type>` wrapper with the object under its capitalised key (reference §2.6).
#[derive(serde::Deserialize)]
struct RawChild<'a> {
    #[serde(rename = "Domain", default, borrow)]
    domain: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "Group", default, borrow)]
    group: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "SecurityPolicy", default, borrow)]
    policy: Option<&'a serde_json::value::RawValue>,
}

/// Domains, groups and policies (rules moved from `children` into `rules`) of a `GET /infra`
/// subtree. A group or policy that does not decode is named in `undecoded`.
pub fn domain_trees(body: &[u8]) -> Result<Vec<DomainTree>, serde_json::Error> {
    let infra: RawNode<'_> = serde_json::from_slice(body)?;
    let id_of = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<RawNode<'_>>(raw.get())
            .map(|n| n.id)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for d in infra.children.iter().filter_map(|c| c.domain) {
        let domain: RawNode<'_> = serde_json::from_str(d.get())?;
        let mut tree = DomainTree {
            domain: domain.id,
            ..DomainTree::default()
        };
        for c in &domain.children {
            if let Some(g) = c.group {
                match serde_json::from_str::<Group>(g.get()) {
                    Ok(g) => tree.groups.push(g),
                    Err(_) => tree.undecoded.push(id_of(g)),
                }
            }
            if let Some(p) = c.policy {
                match serde_json::from_str::<SecurityPolicy>(p.get()) {
                    Ok(mut policy) => {
                        policy.rules.extend(
                            std::mem::take(&mut policy.children)
                                .into_iter()
                                .map(|crate::nsx::model::PolicyChild::ChildRule { rule, .. }| rule),
                        );
                        tree.policies.push(policy);
                    }
                    Err(_) => tree.undecoded.push(id_of(p)),
                }
            }
        }
        out.push(tree);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tree_is_read_object_by_object_and_what_does_not_decode_is_named() {
        // The shape of GET /infra?filter=Type-Domain|Group|SecurityPolicy|Rule (reference §7,
        // §11a): wrappers with the object under its capitalised key, rules in `children`.
        let body = json!({"resource_type": "Infra", "id": "infra", "children": [
            {"resource_type": "ChildDomain", "id": "default", "marked_for_delete": false,
             "Domain": {"resource_type": "Domain", "id": "default", "children": [
                {"resource_type": "ChildGroup", "id": "g1", "marked_for_delete": false,
                 "Group": {"resource_type": "Group", "id": "g1", "_revision": 0,
                           "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": ["10.0.0.1"]}]}},
                {"resource_type": "ChildGroup", "id": "g2", "marked_for_delete": false,
                 "Group": {"resource_type": "Group", "id": "g2", "expression": "not a list"}},
                {"resource_type": "ChildSecurityPolicy", "id": "p1", "marked_for_delete": false,
                 "SecurityPolicy": {"resource_type": "SecurityPolicy", "id": "p1", "children": [
                    {"resource_type": "ChildRule", "id": "r1", "marked_for_delete": false,
                     "Rule": {"resource_type": "Rule", "id": "r1", "rule_id": 1017, "action": "ALLOW",
                              "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"]}}]}}]}}]});
        let trees = domain_trees(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(trees.len(), 1);
        let t = &trees[0];
        assert_eq!(t.domain, "default");
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].id, "g1");
        assert_eq!(t.undecoded, ["g2"]);
        assert_eq!(t.policies.len(), 1);
        assert!(t.policies[0].children.is_empty());
        assert_eq!(t.policies[0].rules[0].rule_id, Some(1017));
        assert!(domain_trees(b"{\"children\": 3}").is_err());
    }

    #[test]
    fn realization_states_map() {
        assert_eq!(realization_of(&[]), Realization::InProgress);
        assert_eq!(
            realization_of(&[json!({"state": "REALIZED"}), json!({"state": "UNREALIZED"})]),
            Realization::InProgress
        );
        assert_eq!(
            realization_of(&[json!({"state": "REALIZED"})]),
            Realization::Realized
        );
        assert_eq!(
            realization_of(&[json!({"id": "x", "state": "ERROR", "runtime_error": "boom"})]),
            Realization::Failed("x: boom".into())
        );
    }

    #[test]
    fn config_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let cfg = ClientConfig::from_lookup(env(&[
            ("NSX_URL", "https://nsx.example.com"),
            ("NSX_PASSWORD_FILE", "/secrets/password"),
            ("NSX_CA_BUNDLE", "/secrets/ca.pem"),
            ("NSX_RATE_LIMIT", "30"),
        ]))
        .unwrap();
        assert_eq!(cfg.url, "https://nsx.example.com");
        assert!(matches!(&cfg.auth, AuthConfig::Session(c)
            if c.password_file.as_deref() == Some(std::path::Path::new("/secrets/password"))
                && c.username_env.as_deref() == Some("NSX_USERNAME")));
        assert_eq!(cfg.pacing.rate, 30.0);
        assert!(!cfg.insecure_skip_tls_verify);
        let err =
            ClientConfig::from_lookup(env(&[("NSX_URL", "x"), ("NSX_AUTH", "token")])).unwrap_err();
        assert!(err.to_string().contains("NSX_AUTH"), "{err}");
        assert!(ClientConfig::from_lookup(env(&[])).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("a b?c"), "a%20b%3Fc");
        assert_eq!(segment("web-vms_1.x"), "web-vms_1.x");
    }
}
