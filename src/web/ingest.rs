//! Monitor ingestion: DFW log lines in, `status.monitor` out.
//!
//! - `POST /ingest/lines`: a text body, one DFW packet-log line per line (syslog header or not).
//! - `POST /ingest/loginsight`: the Log Insight / Aria Operations for Logs alert webhook.
//! - syslog over UDP and TCP (RFC 3164 and RFC 5424; octet-counted or newline framing) on their
//!   own listeners ([`serve_syslog_udp`], [`serve_syslog_tcp`]).
//!
//! HTTP ingestion needs `Authorization: Bearer <token>` or `X-Microseg-Signature:
//! sha256=<hex HMAC-SHA256 of the body>`; without either configured it is off. A batch is answered
//! 200 only once what it contributed is in the policies' status (group commit by the
//! [`Recorder`]); the `Idempotency-Key` header (or, without it, the body's SHA-256) makes a retried
//! batch count once. Limits: body size (413), lines per second with a burst (429 with
//! Retry-After), and every refusal says what was wrong in a JSON `error`.

// Handlers return a ready `Response` as their error: it is what the client gets.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::SegmentationPolicy;
use crate::monitor::aggregate::{Delta, Index, Observation, PolicyKey, hex12};
use crate::monitor::attribution::{self, LiveIndex};
use crate::monitor::loginsight::{self, Disposition, Entry};
use crate::monitor::recorder::Recorder;
use crate::monitor::{Arrival, parse_line_with};
use crate::plan::Identity;

/// Header carrying the HMAC signature.
pub const SIGNATURE_HEADER: &str = "x-microseg-signature";
/// Header carrying the sender's batch key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest syslog message accepted (longer: the TCP connection is closed, the datagram dropped).
pub const SYSLOG_MAX: usize = 64 * 1024;
/// Line errors quoted in an answer.
const ERRORS_QUOTED: usize = 20;

/// Settings of ingestion.
#[derive(Clone)]
pub struct IngestConfig {
    /// Bearer token.
    pub token: Option<String>,
    /// HMAC-SHA256 key.
    pub hmac_secret: Option<Vec<u8>>,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Lines per second accepted on average (all sources together).
    pub rate_lines_per_second: u32,
    /// Lines accepted at once (the largest batch).
    pub burst_lines: u32,
    /// How long a request waits for its batch to be recorded.
    pub commit_timeout: Duration,
    /// Rebuild the attribution index from the policy store for every batch, as before the
    /// index followed the watch (`MICROSEG_INGEST_BASELINE=1`; the benchmark's baseline).
    pub index_per_batch: bool,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rate_lines_per_second", &self.rate_lines_per_second)
            .field("burst_lines", &self.burst_lines)
            .field("commit_timeout", &self.commit_timeout)
            .field("index_per_batch", &self.index_per_batch)
            .finish()
    }
}

/// Metrics of ingestion.
#[derive(Clone)]
pub struct IngestMetrics {
    lines: Family<[(String, String); 2], Counter>,
    requests: Family<[(String, String); 2], Counter>,
}

impl IngestMetrics {
    /// Registers the ingestion metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = IngestMetrics {
            lines: Family::default(),
            requests: Family::default(),
        };
        registry.register(
            "microseg_ingest_lines",
            "Log lines received, by source and outcome (unmatched, healthy, other, \
             unattributed, unparsed, rate_limited)",
            m.lines.clone(),
        );
        registry.register(
            "microseg_ingest_requests",
            "Ingestion HTTP requests by endpoint and status code",
            m.requests.clone(),
        );
        m
    }

    fn lines(&self, source: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.lines
                .get_or_create(&[
                    ("source".to_string(), source.to_string()),
                    ("outcome".to_string(), outcome.to_string()),
                ])
                .inc_by(n);
        }
    }

    fn request(&self, endpoint: &str, code: StatusCode) {
        self.requests
            .get_or_create(&[
                ("endpoint".to_string(), endpoint.to_string()),
                ("code".to_string(), code.as_u16().to_string()),
            ])
            .inc();
    }
}

/// Token bucket over lines.
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Inner {
    config: IngestConfig,
    recorder: Recorder,
    policies: Store<SegmentationPolicy>,
    index: LiveIndex,
    identity: Identity,
    metrics: IngestMetrics,
    bucket: Mutex<Bucket>,
    last_warning: AtomicI64,
}

/// The ingestion service: cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

/// What one batch yielded (the body of every answer).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Lines (or webhook messages) in the batch, blank ones excluded.
    pub lines: u64,
    /// Parsed and attributed to an application.
    pub accepted: u64,
    /// On a catch-all rule (`match` lines).
    pub unmatched: u64,
    /// On an explicit rule.
    pub healthy: u64,
    /// Parsed, but the rule belongs to no known application.
    pub unattributed: u64,
    /// Not parsed.
    pub unparsed: u64,
    /// The batch had been recorded before (a retry): nothing was added.
    pub duplicate: bool,
    /// The first errors, by line (1-based) or message path.
    pub errors: Vec<LineError>,
    /// Why the batch was refused, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why nothing was recorded though nothing was wrong (a Log Insight test alert or system
    /// notification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why one line was not used.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineError {
    /// Line number or message path.
    pub at: String,
    /// Why.
    pub error: String,
}

/// A refusal before anything was read or recorded.
fn refuse(code: StatusCode, error: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": error.into() });
    let mut r = (code, axum::Json(body)).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"microseg-ingest\""),
        );
    }
    r
}

fn answer(code: StatusCode, report: &Report) -> Response {
    (code, axum::Json(report)).into_response()
}

impl Ingest {
    /// Builds the service. `index` must follow the watch that fills `policies`.
    pub fn new(
        config: IngestConfig,
        recorder: Recorder,
        policies: Store<SegmentationPolicy>,
        index: LiveIndex,
        identity: Identity,
        metrics: IngestMetrics,
    ) -> Ingest {
        let burst = f64::from(config.burst_lines);
        Ingest {
            inner: Arc::new(Inner {
                config,
                recorder,
                policies,
                index,
                identity,
                metrics,
                bucket: Mutex::new(Bucket {
                    tokens: burst,
                    at: Instant::now(),
                }),
                last_warning: AtomicI64::new(0),
            }),
        }
    }

    /// The rule ids and monitor tags of every application now: the live index, or (baseline)
    /// one rebuilt from every policy in the store. `None` while the controller starts (the
    /// first list of the policies is not in the index yet): lines cannot be attributed then.
    fn index(&self) -> Option<Arc<Index>> {
        if !self.inner.index.is_ready() {
            return None;
        }
        Some(self.index_now())
    }

    /// The index once the first list is in (syslog has nobody to answer: it waits).
    async fn index_when_ready(&self) -> Arc<Index> {
        self.inner.index.wait_ready().await;
        self.index_now()
    }

    fn index_now(&self) -> Arc<Index> {
        if !self.inner.config.index_per_batch {
            return self.inner.index.snapshot();
        }
        let mut ix = Index::default();
        let policies = self.inner.policies.state();
        attribution::add_all(
            &mut ix,
            &self.inner.identity,
            policies.iter().map(AsRef::as_ref),
        );
        Arc::new(ix)
    }

    /// Takes `n` lines from the rate budget, or says after how many seconds they would fit.
    fn take(&self, n: u64) -> Result<(), u64> {
        let rate = f64::from(self.inner.config.rate_lines_per_second.max(1));
        let burst = f64::from(self.inner.config.burst_lines.max(1));
        let Ok(mut b) = self.inner.bucket.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        #[allow(clippy::cast_precision_loss)]
        let need = n as f64;
        if need <= b.tokens {
            b.tokens -= need;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let wait = ((need - b.tokens) / rate).ceil().max(1.0) as u64;
            Err(wait)
        }
    }

    /// Logs an unparsed sample at most every ten seconds (the counter has every one).
    fn sample_warning(&self, source: &str, error: &LineError) {
        let now = Timestamp::now().as_second();
        let last = self.inner.last_warning.load(Ordering::Relaxed);
        if now - last >= 10
            && self
                .inner
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(source, at = %error.at, error = %error.error, "ingestion: line not used (sampled)");
        }
    }
}

/// Folds records into per-application deltas and the report.
struct Collector {
    index: Arc<Index>,
    now: Timestamp,
    deltas: HashMap<Arc<PolicyKey>, Delta>,
    report: Report,
}

impl Collector {
    fn new(index: Arc<Index>) -> Self {
        Collector {
            index,
            now: Timestamp::now(),
            deltas: HashMap::new(),
            report: Report::default(),
        }
    }

    fn error(&mut self, at: String, error: String) {
        self.report.unparsed += 1;
        if self.report.errors.len() < ERRORS_QUOTED {
            self.report.errors.push(LineError { at, error });
        }
    }

    fn observe(&mut self, o: &Observation<'_>) {
        let Some(a) = self.index.attribute(o.rule_id, o.rule_tag) else {
            self.report.unattributed += 1;
            return;
        };
        self.report.accepted += 1;
        match (&a.role, o.is_match) {
            (crate::monitor::aggregate::RuleRole::CatchAll(_), true) => self.report.unmatched += 1,
            (crate::monitor::aggregate::RuleRole::Explicit(_), true) => self.report.healthy += 1,
            _ => {}
        }
        match self.deltas.get_mut(&a.policy) {
            Some(d) => d.add(o, &a.role, self.now),
            None => self
                .deltas
                .entry(a.policy.clone())
                .or_default()
                .add(o, &a.role, self.now),
        }
    }

    /// One line of text (syslog framing allowed; without a timestamp it takes the receipt time);
    /// blank lines are skipped.
    fn line(&mut self, at: impl FnOnce() -> String, raw: &[u8]) {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.report.lines += 1;
            self.error(at(), "line is not valid UTF-8".into());
            return;
        };
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return;
        }
        self.report.lines += 1;
        match parse_line_with(text, Arrival::received(self.now)) {
            Ok(r) => self.observe(&Observation::from(&r)),
            Err(e) => {
                let token = e.token(text);
                let error = if token.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}: {token:?}")
                };
                self.error(at(), error);
            }
        }
    }

    fn finish(self) -> (Vec<(PolicyKey, Delta)>, Report) {
        let mut deltas: Vec<(PolicyKey, Delta)> = self
            .deltas
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(k, d)| (Arc::unwrap_or_clone(k), d))
            .collect();
        deltas.sort_by(|a, b| a.0.cmp(&b.0));
        (deltas, self.report)
    }
}

/// The ingestion routes; without a token or an HMAC key they answer 404 with the reason.
pub fn router(ingest: Option<Ingest>) -> Router {
    let Some(ingest) = ingest else {
        let off = || async {
            refuse(
                StatusCode::NOT_FOUND,
                "ingestion is off: start the controller with --ingest-token-file or \
                 --ingest-hmac-secret-file",
            )
        };
        return Router::new()
            .route("/ingest/lines", post(off))
            .route("/ingest/loginsight", post(off));
    };
    Router::new()
        .route("/ingest/lines", post(lines))
        .route("/ingest/loginsight", post(loginsight_webhook))
        .with_state(ingest)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Checks the bearer token, or reads the body and checks its signature; returns the body.
async fn authorised_body(ingest: &Ingest, req: Request) -> Result<Bytes, Response> {
    let cfg = &ingest.inner.config;
    let headers = req.headers().clone();
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > cfg.max_body_bytes
    {
        return Err(too_large(cfg.max_body_bytes));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token_ok = match (bearer, cfg.token.as_deref()) {
        (Some(given), Some(expected)) => {
            if !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "Authorization: the bearer token is not the ingestion token",
                ));
            }
            true
        }
        _ => false,
    };
    let body = axum::body::to_bytes(req.into_body(), cfg.max_body_bytes)
        .await
        .map_err(|_| too_large(cfg.max_body_bytes))?;
    if token_ok {
        return Ok(body);
    }
    match (headers.get(SIGNATURE_HEADER), cfg.hmac_secret.as_deref()) {
        (Some(sig), Some(secret)) => {
            let hex = sig
                .to_str()
                .ok()
                .and_then(|s| s.trim().strip_prefix("sha256="))
                .ok_or_else(|| {
                    refuse(
                        StatusCode::UNAUTHORIZED,
                        "X-Microseg-Signature: expected sha256=<hex HMAC-SHA256 of the body>",
                    )
                })?;
            let given = decode_hex(hex).ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "X-Microseg-Signature: the signature is not hexadecimal",
                )
            })?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "HMAC key unusable"))?;
            mac.update(&body);
            mac.verify_slice(&given).map_err(|_| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "X-Microseg-Signature: the signature does not match the body",
                )
            })?;
            Ok(body)
        }
        _ => Err(refuse(
            StatusCode::UNAUTHORIZED,
            match (cfg.token.is_some(), cfg.hmac_secret.is_some()) {
                (true, true) => {
                    "Authorization: send `Authorization: Bearer <token>` or an \
                     X-Microseg-Signature header"
                }
                (true, false) => "Authorization: send `Authorization: Bearer <token>`",
                _ => "X-Microseg-Signature: send sha256=<hex HMAC-SHA256 of the body>",
            },
        )),
    }
}

fn too_large(max: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body: larger than {max} bytes (--ingest-max-body-bytes); send smaller batches"),
    )
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The sender's key, or the body's hash.
fn batch_key(headers: &HeaderMap, body: &[u8]) -> Result<String, Response> {
    match headers.get(IDEMPOTENCY_HEADER) {
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            if k.is_empty() || k.len() > 128 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "Idempotency-Key: 1 to 128 printable ASCII characters without spaces",
                ));
            }
            Ok(format!("key:{k}"))
        }
        None => Ok(format!("sha256:{}", hex12(&Sha256::digest(body)))),
    }
}

async fn lines(State(ingest): State<Ingest>, req: Request) -> Response {
    let response = match read_batch(&ingest, req).await {
        Ok((body, key)) => lines_batch(&ingest, &body, key).await,
        Err(r) => r,
    };
    ingest.inner.metrics.request("lines", response.status());
    response
}

async fn loginsight_webhook(State(ingest): State<Ingest>, req: Request) -> Response {
    let response = match read_batch(&ingest, req).await {
        Ok((body, key)) => loginsight_batch(&ingest, &body, key).await,
        Err(r) => r,
    };
    ingest
        .inner
        .metrics
        .request("loginsight", response.status());
    response
}

/// The authorised body and its batch key.
async fn read_batch(ingest: &Ingest, req: Request) -> Result<(Bytes, String), Response> {
    let headers = req.headers().clone();
    let body = authorised_body(ingest, req).await?;
    let key = batch_key(&headers, &body)?;
    Ok((body, key))
}

async fn lines_batch(ingest: &Ingest, body: &[u8], key: String) -> Response {
    if body.iter().all(u8::is_ascii_whitespace) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "body: empty; send one DFW log line per line",
        );
    }
    let Some(index) = ingest.index() else {
        return starting();
    };
    let mut c = Collector::new(index);
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        c.line(|| format!("line {}", i + 1), raw);
    }
    finish(ingest, "lines", c, key).await
}

async fn loginsight_batch(ingest: &Ingest, body: &[u8], key: String) -> Response {
    let alert = match loginsight::parse_payload(body) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(index) = ingest.index() else {
        return starting();
    };
    let mut c = Collector::new(index);
    let entries: Vec<Entry<'_>> = alert.entries(c.now).collect();
    match alert.disposition(&entries) {
        Disposition::Acknowledge { note } => {
            info!(alert = ?alert.name, kind = alert.kind().as_str(), "{note}");
            let report = Report {
                note: Some(note),
                ..Report::default()
            };
            return answer(StatusCode::OK, &report);
        }
        // Counted and quoted like any unusable batch, answered 422 with this error.
        Disposition::Refuse { error } => c.report.error = Some(error),
        Disposition::Record => {}
    }
    for entry in entries {
        c.report.lines += 1;
        match entry {
            Entry::Line { record, .. } => c.observe(&Observation::from(&record)),
            Entry::Fields { record, .. } => {
                let o = Observation::from_fields(&record, c.now);
                c.observe(&o);
            }
            Entry::Unusable { at, reason } => c.error(at.to_string(), reason),
        }
    }
    finish(ingest, "loginsight", c, key).await
}

/// Rate check, record, answer.
async fn finish(ingest: &Ingest, source: &str, c: Collector, key: String) -> Response {
    let (deltas, mut report) = c.finish();
    let m = &ingest.inner.metrics;
    if let Some(e) = report.errors.first() {
        ingest.sample_warning(source, e);
    }
    if report.lines > u64::from(ingest.inner.config.burst_lines) {
        report.error = Some(format!(
            "body: {} lines is more than the {} accepted at once (--ingest-burst-lines); \
             send smaller batches",
            report.lines, ingest.inner.config.burst_lines
        ));
        return answer(StatusCode::PAYLOAD_TOO_LARGE, &report);
    }
    if let Err(wait) = ingest.take(report.lines) {
        m.lines(source, "rate_limited", report.lines);
        report.error = Some(format!(
            "rate limit: more than {} lines per second (--ingest-rate); nothing of this batch \
             was recorded, retry it after {wait} s",
            ingest.inner.config.rate_lines_per_second
        ));
        let mut r = answer(StatusCode::TOO_MANY_REQUESTS, &report);
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    count(m, source, &report);
    if report.lines > 0 && report.unparsed == report.lines {
        report
            .error
            .get_or_insert_with(|| "no line could be used; see errors".into());
        return answer(StatusCode::UNPROCESSABLE_ENTITY, &report);
    }
    if deltas.is_empty() {
        return answer(StatusCode::OK, &report);
    }
    let recorded = tokio::time::timeout(
        ingest.inner.config.commit_timeout,
        ingest.inner.recorder.record(deltas, Some(key)),
    )
    .await;
    match recorded {
        Ok(Ok(r)) => {
            report.duplicate = r.duplicate;
            answer(StatusCode::OK, &report)
        }
        Ok(Err(e)) => unavailable(report, &e),
        Err(_) => unavailable(report, "timed out waiting for the status write"),
    }
}

/// The answer while the controller starts: nothing of the batch was looked at.
fn starting() -> Response {
    let report = Report {
        error: Some(
            "not recorded: the controller is starting and has not loaded the policies yet, so \
             no line could be attributed; retry the same batch (it will not be counted twice)"
                .into(),
        ),
        ..Report::default()
    };
    let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, &report);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unavailable(mut report: Report, why: &str) -> Response {
    report.error = Some(format!(
        "not recorded ({why}); retry the same batch (it will not be counted twice)"
    ));
    let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, &report);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn count(m: &IngestMetrics, source: &str, r: &Report) {
    m.lines(source, "unmatched", r.unmatched);
    m.lines(source, "healthy", r.healthy);
    m.lines(
        source,
        "other",
        r.accepted.saturating_sub(r.unmatched + r.healthy),
    );
    m.lines(source, "unattributed", r.unattributed);
    m.lines(source, "unparsed", r.unparsed);
}

/// Records syslog messages (no one to answer: rate-limited lines are counted and dropped).
async fn syslog_batch(ingest: &Ingest, source: &str, messages: &[Vec<u8>]) {
    if messages.is_empty() {
        return;
    }
    let mut c = Collector::new(ingest.index_when_ready().await);
    for (i, m) in messages.iter().enumerate() {
        for line in m.split(|b| *b == b'\n') {
            c.line(|| format!("{source} message {}", i + 1), line);
        }
    }
    let (deltas, report) = c.finish();
    if let Some(e) = report.errors.first() {
        ingest.sample_warning(source, e);
    }
    if ingest.take(report.lines).is_err() {
        ingest
            .inner
            .metrics
            .lines(source, "rate_limited", report.lines);
        return;
    }
    count(&ingest.inner.metrics, source, &report);
    if !deltas.is_empty()
        && let Err(e) = ingest.inner.recorder.record_later(deltas).await
    {
        warn!(error = %e, "syslog: not recorded");
    }
}

/// Serves syslog over UDP (one message per datagram) until `shutdown`.
pub async fn serve_syslog_udp(
    addr: SocketAddr,
    ingest: Ingest,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; SYSLOG_MAX];
        loop {
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, _)) = r else { continue };
                    let message = buf.get(..n).unwrap_or_default().to_vec();
                    syslog_batch(&ingest, "syslog_udp", &[message]).await;
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
    }))
}

/// Serves syslog over TCP (RFC 6587: octet-counted `<len> <msg>` or newline-terminated) until
/// `shutdown`.
pub async fn serve_syslog_tcp(
    addr: SocketAddr,
    ingest: Ingest,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((stream, peer)) = r else { continue };
                    let ingest = ingest.clone();
                    let stop = shutdown.clone();
                    connections.spawn(async move {
                        if let Err(e) = syslog_connection(stream, &ingest, stop).await {
                            warn!(%peer, error = %e, "syslog connection closed");
                        }
                    });
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
        connections.shutdown().await;
    }))
}

/// Messages read from one connection are recorded together while more are already buffered.
async fn syslog_connection(
    stream: tokio::net::TcpStream,
    ingest: &Ingest,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(SYSLOG_MAX, stream);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    loop {
        let message = tokio::select! {
            m = read_frame(&mut reader) => m?,
            _ = stop.changed() => None,
        };
        let Some(message) = message else {
            syslog_batch(ingest, "syslog_tcp", &batch).await;
            return Ok(());
        };
        batch.push(message);
        if reader.buffer().is_empty() || batch.len() >= 1_000 {
            syslog_batch(ingest, "syslog_tcp", &batch).await;
            batch.clear();
        }
    }
}

/// One RFC 6587 frame: octet-counted when it starts with a digit, else up to a newline.
async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, String> {
    let first = match r.fill_buf().await {
        Ok([]) => return Ok(None),
        Ok(b) => b[0],
        Err(e) => return Err(e.to_string()),
    };
    if first.is_ascii_digit() {
        let mut len = Vec::new();
        r.read_until(b' ', &mut len)
            .await
            .map_err(|e| e.to_string())?;
        let digits = std::str::from_utf8(&len).unwrap_or("").trim_end();
        let n: usize = digits
            .parse()
            .map_err(|_| format!("octet count {digits:?} is not a number"))?;
        if n > SYSLOG_MAX {
            return Err(format!("message of {n} octets is over {SYSLOG_MAX}"));
        }
        let mut msg = vec![0u8; n];
        r.read_exact(&mut msg)
            .await
            .map_err(|e| format!("truncated message: {e}"))?;
        Ok(Some(msg))
    } else {
        let mut msg = Vec::new();
        let mut limited = r.take(u64::try_from(SYSLOG_MAX).unwrap_or(u64::MAX) + 1);
        limited
            .read_until(b'\n', &mut msg)
            .await
            .map_err(|e| e.to_string())?;
        if msg.len() > SYSLOG_MAX {
            return Err(format!("line over {SYSLOG_MAX} bytes without a newline"));
        }
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests;
