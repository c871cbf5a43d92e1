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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::api::SegmentationPolicy;
use crate::monitor::aggregate::{Delta, Index, Observation, PolicyKey, hex12};
use crate::monitor::attribution::{self, LiveIndex};
use crate::monitor::loginsight::{self, Disposition, Entry};
use crate::monitor::recorder::Recorder;
use crate::monitor::{Arrival, parse_line_with};
use crate::nsx::naming::Identity;
use crate::web::secret::{SecretSlice, SecretString};

/// Header carrying the HMAC signature.
pub const SIGNATURE_HEADER: &str = "x-microseg-signature";
/// Header carrying the sender's batch key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest syslog message accepted (longer: the TCP connection is closed, the datagram dropped).
pub const SYSLOG_MAX: usize = 64 * 1024;
/// Line errors quoted in an answer.
const ERRORS_QUOTED: usize = 20;

/// Settings of ingestion (`Debug` shows no secret).
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Bearer token.
    pub token: Option<SecretString>,
    /// HMAC-SHA256 key.
    pub hmac_secret: Option<SecretSlice<u8>>,
    /// How far a signed batch's `X-Microseg-Timestamp` may be from now (a replay older than
    /// this is refused).
    pub hmac_max_age: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Bodies read at once (more wait up to `busy_wait`, then 503): memory for bodies stays
    /// under `max_in_flight * max_body_bytes`.
    pub max_in_flight: usize,
    /// How long a request waits for a body slot.
    pub busy_wait: Duration,
    /// How long a body may take to arrive (408 after).
    pub body_timeout: Duration,
    /// Lines per second accepted on average over HTTP.
    pub rate_lines_per_second: u32,
    /// Lines accepted at once over HTTP (the largest batch).
    pub burst_lines: u32,
    /// Lines per second accepted on average over syslog (a bucket of its own: unauthenticated
    /// syslog never takes the authenticated senders' budget).
    pub syslog_rate_lines_per_second: u32,
    /// Lines accepted at once over syslog.
    pub syslog_burst_lines: u32,
    /// Syslog TCP connections served at once (more are closed at once).
    pub syslog_tcp_max_connections: usize,
    /// A syslog TCP connection that sends nothing for this long is closed.
    pub syslog_tcp_idle_timeout: Duration,
    /// How long a request waits for its batch to be recorded.
    pub commit_timeout: Duration,
    /// Rebuild the attribution index from the policy store for every batch, as before the
    /// index followed the watch (`MICROSEG_INGEST_BASELINE=1`; the benchmark's baseline).
    pub index_per_batch: bool,
}

impl Default for IngestConfig {
    /// Off (no token, no key), with the controller's default limits.
    fn default() -> Self {
        IngestConfig {
            token: None,
            hmac_secret: None,
            hmac_max_age: Duration::from_secs(300),
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 8,
            busy_wait: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            rate_lines_per_second: 20_000,
            burst_lines: 50_000,
            syslog_rate_lines_per_second: 20_000,
            syslog_burst_lines: 50_000,
            syslog_tcp_max_connections: 1_024,
            syslog_tcp_idle_timeout: Duration::from_secs(300),
            commit_timeout: Duration::from_secs(30),
            index_per_batch: false,
        }
    }
}

impl IngestConfig {
    /// Whether HTTP ingestion is served (a token or an HMAC key is configured).
    pub fn http_enabled(&self) -> bool {
        self.token.is_some() || self.hmac_secret.is_some()
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

/// A token bucket over lines: it refills at `rate` lines a second up to `burst`.
struct Budget {
    rate: u32,
    burst: u32,
    /// Lines in the bucket, when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl Budget {
    /// A full bucket.
    fn new(rate: u32, burst: u32) -> Budget {
        Budget {
            rate,
            burst,
            bucket: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes `n` lines, or says after how many seconds they would fit.
    fn take(&self, n: u64) -> Result<(), u64> {
        let rate = f64::from(self.rate.max(1));
        let burst = f64::from(self.burst.max(1));
        let Ok(mut b) = self.bucket.lock() else {
            return Ok(());
        };
        let (tokens, at) = &mut *b;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        #[allow(clippy::cast_precision_loss)]
        let need = n as f64;
        if need <= *tokens {
            *tokens -= need;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let wait = ((need - *tokens) / rate).ceil().max(1.0) as u64;
            Err(wait)
        }
    }
}

/// What attributes lines to applications: the live index, or (baseline,
/// [`IngestConfig::index_per_batch`]) one rebuilt from every policy in the store.
struct Attribution {
    index: LiveIndex,
    policies: Store<SegmentationPolicy>,
    identity: Identity,
    per_batch: bool,
}

impl Attribution {
    /// The rule ids and monitor tags of every application now. `None` while the controller
    /// starts (the first list of the policies is not in the index yet): lines cannot be
    /// attributed then.
    fn index(&self) -> Option<Arc<Index>> {
        if !self.index.is_ready() {
            return None;
        }
        Some(self.index_now())
    }

    /// The index once the first list is in (syslog has nobody to answer: it waits).
    async fn index_when_ready(&self) -> Arc<Index> {
        self.index.wait_ready().await;
        self.index_now()
    }

    fn index_now(&self) -> Arc<Index> {
        if !self.per_batch {
            return self.index.snapshot();
        }
        let mut ix = Index::default();
        let policies = self.policies.state();
        attribution::add_all(&mut ix, &self.identity, policies.iter().map(AsRef::as_ref));
        Arc::new(ix)
    }
}

struct Inner {
    config: IngestConfig,
    recorder: Recorder,
    attribution: Attribution,
    metrics: IngestMetrics,
    /// The HTTP senders' budget.
    http_budget: Budget,
    /// Syslog's own budget.
    syslog_budget: Budget,
    /// Body slots (`max_in_flight`).
    bodies: tokio::sync::Semaphore,
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
        Ingest {
            inner: Arc::new(Inner {
                attribution: Attribution {
                    index,
                    policies,
                    identity,
                    per_batch: config.index_per_batch,
                },
                http_budget: Budget::new(config.rate_lines_per_second, config.burst_lines),
                syslog_budget: Budget::new(
                    config.syslog_rate_lines_per_second,
                    config.syslog_burst_lines,
                ),
                bodies: tokio::sync::Semaphore::new(config.max_in_flight.max(1)),
                config,
                recorder,
                metrics,
                last_warning: AtomicI64::new(0),
            }),
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

pub use crate::monitor::{QUOTE_MAX, quote};

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
                    format!("{e}: {}", quote(token))
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

fn too_large(max: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body: larger than {max} bytes (--ingest-max-body-bytes); send smaller batches"),
    )
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
    handle(&ingest, req, "lines", lines_batch).await
}

async fn loginsight_webhook(State(ingest): State<Ingest>, req: Request) -> Response {
    handle(&ingest, req, "loginsight", loginsight_batch).await
}

/// One ingestion request: read the batch, parse it with `parse`, record it, count the answer.
async fn handle(
    ingest: &Ingest,
    req: Request,
    endpoint: &str,
    parse: fn(&Ingest, Bytes) -> Result<Collector, Response>,
) -> Response {
    let response = match read_batch(ingest, req).await {
        Ok((body, key)) => match parse(ingest, body) {
            Ok(c) => finish(ingest, endpoint, c, key).await,
            Err(r) => r,
        },
        Err(r) => r,
    };
    ingest.inner.metrics.request(endpoint, response.status());
    response
}

/// The authorised body and its batch key.
async fn read_batch(ingest: &Ingest, req: Request) -> Result<(Bytes, String), Response> {
    let headers = req.headers().clone();
    let body = authorised_body(ingest, req).await?;
    let key = batch_key(&headers, &body)?;
    Ok((body, key))
}

/// Parses a line batch; the body is dropped here, before the batch waits for its recording.
fn lines_batch(ingest: &Ingest, body: Bytes) -> Result<Collector, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "body: empty; send one DFW log line per line",
        ));
    }
    let Some(index) = ingest.inner.attribution.index() else {
        return Err(starting());
    };
    let mut c = Collector::new(index);
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        c.line(|| format!("line {}", i + 1), raw);
    }
    Ok(c)
}

/// Parses a Log Insight payload; the body is dropped here, before the batch waits for its
/// recording.
fn loginsight_batch(ingest: &Ingest, body: Bytes) -> Result<Collector, Response> {
    let limit = usize::try_from(ingest.inner.config.burst_lines).unwrap_or(usize::MAX);
    let alert = match loginsight::parse_payload_limited(&body, limit) {
        Ok(a) => a,
        Err(e @ loginsight::Error::TooManyMessages { .. }) => {
            return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
        }
        Err(e) => return Err(refuse(StatusCode::BAD_REQUEST, e.to_string())),
    };
    drop(body);
    let Some(index) = ingest.inner.attribution.index() else {
        return Err(starting());
    };
    let mut c = Collector::new(index);
    // Each entry is folded as it is parsed: no list of 10,000 records per batch. Only an
    // unusable entry counts as unparsed, so the report says whether any was usable.
    for entry in alert.entries(c.now) {
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
    let usable = c.report.unparsed < c.report.lines;
    match alert.disposition_of(usable, alert.messages.len()) {
        Disposition::Acknowledge { note } => {
            info!(alert = ?alert.name.as_deref().map(quote), kind = alert.kind().as_str(), "{note}");
            let report = Report {
                note: Some(note),
                ..Report::default()
            };
            Err(answer(StatusCode::OK, &report))
        }
        // Counted and quoted like any unusable batch, answered 422 with this error.
        Disposition::Refuse { error } => {
            c.report.error = Some(error);
            Ok(c)
        }
        Disposition::Record => Ok(c),
    }
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
    if let Err(wait) = ingest.inner.http_budget.take(report.lines) {
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

mod auth;
mod syslog;

use auth::authorised_body;
pub use auth::{TIMESTAMP_HEADER, signed_message};
pub use syslog::{SYSLOG_BATCH_BYTES, serve_syslog_tcp, serve_syslog_udp};

#[cfg(test)]
mod tests;
