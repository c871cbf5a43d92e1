//! The NSX Policy API client over HTTPS (reqwest + rustls): authentication (basic, session with
//! XSRF renewed on expiry, client certificate), TLS verified against a named CA bundle, shared
//! pacing and the one retry policy ([`super::pacing`]: 429/503 for every call, connection
//! errors and transient NSX errors for idempotent calls only), paged reads that follow the
//! cursor, realization, and metrics. It implements [`NsxApi`] (in `api`).
//!
//! Submodules: `config` ([`ClientConfig`], from the environment), `session` (authentication
//! state and session login), `api` (the [`NsxApi`] calls), `tree` (pure decoding of `GET
//! /infra` subtrees and realized entities). Calls only tests make (single-object writes,
//! `_revision` read-modify-write, deletes) live in the tests' support module.
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
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AuthConfig, Secret};
use super::codes;
use super::metrics::NsxMetrics;
use super::model::{ApiError, ListResult};
use super::pacing::{Failure, Pacer};
use super::{Error, NsxApi};

mod api;
mod config;
mod session;
mod tree;

pub use config::{ClientConfig, ENV_VARS};
use session::Auth;
pub use tree::{INFRA_TREE_FILTER, POLICY_TREE_FILTER, domain_trees, realization_of};

/// Base path of the policy API.
pub const POLICY_API: &str = "/policy/api/v1";

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    pacer: Pacer,
    metrics: NsxMetrics,
    config: ClientConfig,
    /// One listing of the whole tree at a time: each answer holds every object of the domains
    /// (megabytes at fleet size), and a refresh of the cache that overlapped a read-back
    /// doubled the controller's peak memory.
    listings: tokio::sync::Semaphore,
}

/// The body of an answer, read chunk by chunk into one buffer of the announced length: a
/// whole-tree listing is megabytes at fleet size, and collecting the chunks before copying them
/// into one buffer (what `Response::bytes` does for a body of many chunks) held it twice.
async fn read_body(mut resp: reqwest::Response) -> Result<bytes::Bytes, reqwest::Error> {
    let announced = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    // The announced length bounds the first allocation only (a lying server costs a resize).
    let mut buf = Vec::with_capacity(announced.min(64 << 20));
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buf))
}

/// How a call is made: whether it may be retried after a transport failure or a transient
/// error (idempotent), and whether it carries credentials (all but the login).
#[derive(Clone, Copy, Debug)]
struct Mode {
    idempotent: bool,
    authenticate: bool,
}

/// How the body of a 2xx answer is read (any other answer's body is read whole: it is an
/// error body of a few hundred bytes).
trait Reader: Clone + Send + Sync {
    type Out: Send;
    /// The body, or why the transport failed while reading it.
    fn read(
        &self,
        resp: reqwest::Response,
    ) -> impl Future<Output = Result<Self::Out, String>> + Send;
}

/// The body whole.
#[derive(Clone)]
struct Whole;

impl Reader for Whole {
    type Out = bytes::Bytes;
    async fn read(&self, resp: reqwest::Response) -> Result<bytes::Bytes, String> {
        read_body(resp)
            .await
            .map_err(|e| crate::error_text::chain(&e.without_url()))
    }
}

/// A `GET /infra` subtree, decoded as it arrives (`Err`: the body is not a tree), what the
/// reader holds left out.
#[derive(Clone)]
struct Trees(Option<Arc<dyn super::Held>>);

impl Reader for Trees {
    type Out = Result<Vec<super::DomainTree>, serde_json::Error>;
    async fn read(&self, resp: reqwest::Response) -> Result<Self::Out, String> {
        read_trees(resp, self.0.clone()).await
    }
}

/// An answer as read: a success read by its [`Reader`], or any other status with its body.
enum Reply<T> {
    Success(HeaderMap, T),
    Failure(u16, HeaderMap, bytes::Bytes),
}

/// A `GET /infra` subtree decoded while it arrives (on a blocking thread, fed chunk by chunk):
/// at fleet size the answer is tens of megabytes, and reading it whole before decoding held
/// all of it beside the decoded objects. `Err`: the transport failed; `Ok(Err)`: the body is
/// not a tree.
async fn read_trees(
    mut resp: reqwest::Response,
    held: Option<Arc<dyn super::Held>>,
) -> Result<Result<Vec<super::DomainTree>, serde_json::Error>, String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let decoding =
        tokio::task::spawn_blocking(move || tree::domain_trees(tree::ChunkReader::new(rx), held));
    let mut failed = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                // The decoder stopped (the body is not a tree): the rest is not needed.
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let reason = crate::error_text::chain(&e.without_url());
                let _ = tx.send(Err(reason.clone())).await;
                failed = Some(reason);
                break;
            }
        }
    }
    drop(tx);
    let decoded = decoding.await.map_err(|e| e.to_string())?;
    match failed {
        Some(reason) => Err(reason),
        None => Ok(decoded),
    }
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

/// NSX's error body, or the start of whatever the answer held instead.
fn error_body(bytes: &[u8]) -> ApiError {
    serde_json::from_slice::<ApiError>(bytes).unwrap_or_else(|_| ApiError {
        error_message: String::from_utf8_lossy(bytes).chars().take(512).collect(),
        ..ApiError::default()
    })
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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
                listings: tokio::sync::Semaphore::new(1),
            }),
        })
    }

    /// The metrics this client records into.
    pub fn metrics(&self) -> &NsxMetrics {
        &self.inner.metrics
    }

    /// The settings the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
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
    /// One call with retries ([`Retries`]: 429/503 for every call, connection errors and
    /// transient NSX errors for idempotent calls only, one re-login when a session is refused);
    /// `authenticate` is false only for the login itself. Returns the answer's headers and
    /// body on 2xx.
    async fn execute<R: Reader>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
        mode: Mode,
        reader: R,
    ) -> Result<(HeaderMap, R::Out), Error> {
        let Mode {
            idempotent,
            authenticate,
        } = mode;
        let inner = &self.inner;
        let url = format!("{}{}", inner.base, path);
        let mut retries = inner.pacer.retries();
        let mut relogged = false;
        loop {
            let session = if authenticate {
                self.session_headers().await?
            } else {
                None
            };
            let req = self.request(&method, &url, query, body, authenticate, session.as_ref());
            let (status, headers, read) = match self.send(&method, path, req, &reader).await {
                Ok(Reply::Success(headers, out)) => {
                    inner.pacer.on_success();
                    if session.is_some() {
                        self.touch_session().await;
                    }
                    return Ok((headers, out));
                }
                Ok(Reply::Failure(status, headers, read)) => (status, headers, read),
                Err(reason) => {
                    if idempotent && let Some(wait) = retries.next(Failure::Transport, None) {
                        tracing::warn!(%method, path, attempt = retries.attempts(Failure::Transport), ?wait, %reason, "NSX connection failed, retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    tracing::warn!(%method, path, %reason, "NSX connection failed");
                    return Err(self.transport(format!("{method} {path}: {reason}")));
                }
            };
            if let 429 | 503 = status {
                inner.pacer.on_throttle(status);
                let after = retry_after(&headers);
                if let Some(wait) = retries.next(Failure::Busy, after) {
                    tracing::debug!(%method, path, status, attempt = retries.attempts(Failure::Busy), ?wait, rate = inner.pacer.current_rate(), "NSX busy, backing off");
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
            let error = error_body(&read);
            if authenticate && codes::is_auth_failure(status, error.error_code) {
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
                && codes::is_transient(status, error.error_code, &error.error_message)
                && let Some(wait) = retries.next(Failure::Transient, None)
            {
                tracing::info!(%method, path, status, code = error.error_code, attempt = retries.attempts(Failure::Transient), ?wait, "NSX transient error, retrying");
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

    /// One request: credentials (basic, or the session's cookie and XSRF token), the
    /// overwrite header when configured, and the body.
    fn request(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, String)],
        body: &Body,
        authenticate: bool,
        session: Option<&(HeaderMap, u64)>,
    ) -> reqwest::RequestBuilder {
        let inner = &self.inner;
        let mut req = inner.http.request(method.clone(), url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if authenticate && let Auth::Basic(l) = &inner.auth {
            req = req.basic_auth(&l.username, Some(l.password.expose()));
        }
        if let Some((h, _)) = session {
            req = req.headers(h.clone());
        }
        if inner.config.allow_overwrite {
            req = req.header("X-Allow-Overwrite", "true");
        }
        match body {
            Body::None => req,
            Body::Json(b) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(fields) => {
                let pairs: Vec<(&str, &str)> =
                    fields.iter().map(|(k, v)| (*k, v.expose())).collect();
                req.form(&pairs)
            }
        }
    }

    /// Sends a request within the pacing budget and records it in the metrics: the status,
    /// headers and body, or why there is no answer (without the URL).
    async fn send<R: Reader>(
        &self,
        method: &Method,
        path: &str,
        req: reqwest::RequestBuilder,
        reader: &R,
    ) -> Result<Reply<R::Out>, String> {
        let inner = &self.inner;
        let permit = inner.pacer.acquire().await;
        let start = Instant::now();
        let transport = |e: reqwest::Error| crate::error_text::chain(&e.without_url());
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                if resp.status().is_success() {
                    reader
                        .read(resp)
                        .await
                        .map(|out| (status, Reply::Success(headers, out)))
                } else {
                    read_body(resp)
                        .await
                        .map(|b| (status, Reply::Failure(status, headers, b)))
                        .map_err(transport)
                }
            }
            Err(e) => Err(transport(e)),
        };
        drop(permit);
        let elapsed = start.elapsed().as_secs_f64();
        match result {
            Ok((status, reply)) => {
                inner.metrics.record(method.as_str(), Some(status), elapsed);
                tracing::debug!(%method, path, status, elapsed_ms = (elapsed * 1000.0) as u64, "NSX call");
                Ok(reply)
            }
            Err(reason) => {
                inner.metrics.record(method.as_str(), None, elapsed);
                Err(reason)
            }
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
            .execute(
                method,
                path,
                query,
                &body,
                Mode {
                    idempotent,
                    authenticate: true,
                },
                Whole,
            )
            .await?;
        Ok(Answer { body })
    }

    /// `GET` of a `/infra` subtree (`query`: its filter), decoded as it arrives, what `held`
    /// holds left out.
    async fn get_trees(
        &self,
        path: &str,
        query: &[(&str, String)],
        held: Option<Arc<dyn super::Held>>,
    ) -> Result<Vec<super::DomainTree>, Error> {
        let (_, trees) = self
            .execute(
                Method::GET,
                path,
                query,
                &Body::None,
                Mode {
                    idempotent: true,
                    authenticate: true,
                },
                Trees(held),
            )
            .await?;
        trees.map_err(|e| Error::Decode {
            path: "/infra".into(),
            reason: e.to_string(),
        })
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

    /// Whether a list has any item: one call for the first item only.
    pub async fn has_any(&self, policy_path: &str) -> Result<bool, Error> {
        let path = format!("{POLICY_API}{policy_path}");
        let a = self
            .call(
                Method::GET,
                &path,
                &[("page_size", "1".to_string())],
                Body::None,
                true,
            )
            .await?;
        let page: ListResult<Value> = Self::decode(policy_path, &a.body)?;
        Ok(!page.results.is_empty() || page.result_count.is_some_and(|n| n > 0))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("a b?c"), "a%20b%3Fc");
        assert_eq!(segment("web-vms_1.x"), "web-vms_1.x");
    }
}
