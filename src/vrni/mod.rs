//! vRealize Network Insight (Aria Operations for Networks) API client for `microseg recommend
//! --vrni-url`: token authentication (`POST /api/ni/auth/token`, LOCAL or LDAP domain, header
//! `Authorization: NetworkInsight <token>`, a new token when one expires, the token deleted
//! after use), flow search for an application over a time range (`POST /api/ni/search`,
//! following `cursor` to the last page), bulk fetch of the flows' details (`POST
//! /api/ni/entities/fetch`, at most 1000 ids a call), calls paced by a minimum interval and a
//! 429 answered by waiting `Retry-After`. TLS is verified unless the configuration says
//! insecure. Credentials come from files or the environment and are never logged.
//!
//! It owns the wire and nothing else: the Flows it returns are read by
//! [`crate::recommend::input::vrni_json`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::recommend::Application;

/// Most ids one bulk fetch takes (the reference: "Max batch size is 1000").
pub const FETCH_BATCH: usize = 1000;
/// Most `field = 'value'` terms in one search filter: a large application is searched in
/// several batches so that no filter grows without bound.
pub const FILTER_TERMS: usize = 50;

/// Errors of the vRNI client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration (credentials, CA file) is wrong.
    #[error("vrni: {0}")]
    Config(String),
    /// The request did not get an answer.
    #[error("vrni {call}: {reason}")]
    Transport {
        /// Which call.
        call: String,
        /// Why.
        reason: String,
    },
    /// vRNI answered with an error.
    #[error("vrni {call}: HTTP {status}: {message}")]
    Status {
        /// Which call.
        call: String,
        /// HTTP status.
        status: u16,
        /// vRNI's message.
        message: String,
    },
    /// The answer is not what the reference describes.
    #[error("vrni {call}: {reason}")]
    Decode {
        /// Which call.
        call: String,
        /// Why.
        reason: String,
    },
}

/// The login domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A local user.
    Local,
    /// A directory user of this domain.
    Ldap(String),
}

/// Username and password (never printed).
#[derive(Clone)]
pub struct Credentials {
    /// User.
    pub username: String,
    /// Password.
    pub password: String,
    /// Domain.
    pub domain: Domain,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

fn read_secret(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

impl Credentials {
    /// From `dir/username` and `dir/password`, else `$VRNI_USERNAME` and `$VRNI_PASSWORD`.
    pub fn load(dir: Option<&Path>, domain: Domain) -> Result<Credentials, Error> {
        let (username, password) = match dir {
            Some(d) => (
                read_secret(&d.join("username"))?,
                read_secret(&d.join("password"))?,
            ),
            None => (
                std::env::var("VRNI_USERNAME").map_err(|_| {
                    Error::Config(
                        "no credentials: give --vrni-credentials-dir DIR (files username, password) or set VRNI_USERNAME and VRNI_PASSWORD".into(),
                    )
                })?,
                std::env::var("VRNI_PASSWORD").map_err(|_| {
                    Error::Config("VRNI_USERNAME is set but VRNI_PASSWORD is not".into())
                })?,
            ),
        };
        if username.is_empty() || password.is_empty() {
            return Err(Error::Config("username or password is empty".into()));
        }
        Ok(Credentials {
            username,
            password,
            domain,
        })
    }
}

/// How to reach vRNI.
#[derive(Clone, Debug)]
pub struct Config {
    /// `https://vrni.example.com` (the API is under `/api/ni`).
    pub url: String,
    /// Who.
    pub credentials: Credentials,
    /// PEM bundle of the CAs that sign vRNI's certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Do not verify vRNI's certificate.
    pub insecure_skip_tls_verify: bool,
    /// Ids per search page.
    pub page_size: usize,
    /// Least time between two calls.
    pub min_interval: Duration,
    /// 429 answers waited out per call before giving up.
    pub max_throttled: u32,
    /// Time limit of one call.
    pub timeout: Duration,
}

impl Config {
    /// Defaults for everything but where and who.
    pub fn new(url: &str, credentials: Credentials) -> Config {
        Config {
            url: url.trim_end_matches('/').to_string(),
            credentials,
            ca_file: None,
            insecure_skip_tls_verify: false,
            page_size: 100,
            min_interval: Duration::from_millis(200),
            max_throttled: 5,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One search hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Entity id.
    pub entity_id: String,
    /// Entity type.
    pub entity_type: String,
    /// Epoch seconds.
    pub time: Option<i64>,
}

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Search pages read.
    pub pages: usize,
    /// Bulk fetch calls.
    pub fetches: usize,
    /// 429 answers waited out.
    pub throttled: usize,
    /// Tokens created (more than one: one expired).
    pub logins: usize,
}

/// A vRNI API client.
pub struct Client {
    http: reqwest::Client,
    config: Config,
    token: tokio::sync::Mutex<Option<String>>,
    last: tokio::sync::Mutex<Option<Instant>>,
    stats: std::sync::Mutex<PullStats>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client; nothing is sent yet.
    pub fn new(config: Config) -> Result<Client, Error> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("microseg/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "{}: no certificate found",
                    path.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if config.insecure_skip_tls_verify {
            tracing::warn!(url = %config.url, "TLS verification of vRNI is OFF (insecure_skip_tls_verify)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(Client {
            http,
            config,
            token: tokio::sync::Mutex::new(None),
            last: tokio::sync::Mutex::new(None),
            stats: std::sync::Mutex::new(PullStats::default()),
        })
    }

    /// What the client did so far.
    pub fn stats(&self) -> PullStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut PullStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/ni{path}", self.config.url)
    }

    /// Waits until the minimum interval since the last call has passed.
    async fn pace(&self) {
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            let due = at + self.config.min_interval;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        *last = Some(Instant::now());
    }

    async fn login(&self) -> Result<String, Error> {
        let call = "POST /api/ni/auth/token";
        let c = &self.config.credentials;
        let domain = match &c.domain {
            Domain::Local => json!({"domain_type": "LOCAL"}),
            Domain::Ldap(v) => json!({"domain_type": "LDAP", "value": v}),
        };
        self.pace().await;
        let resp = self
            .http
            .post(self.url("/auth/token"))
            .json(&json!({"username": c.username, "password": c.password, "domain": domain}))
            .send()
            .await
            .map_err(|e| Error::Transport {
                call: call.into(),
                reason: crate::error_text::chain(&e),
            })?;
        let status = resp.status();
        if !status.is_success() {
            let message = match status.as_u16() {
                401 => format!(
                    "user {:?} was refused (check the credentials and domain)",
                    c.username
                ),
                _ => message(resp).await,
            };
            return Err(Error::Status {
                call: call.into(),
                status: status.as_u16(),
                message,
            });
        }
        let body: Value = resp.json().await.map_err(|e| Error::Decode {
            call: call.into(),
            reason: e.to_string(),
        })?;
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Decode {
                call: call.into(),
                reason: "no token in the answer".into(),
            })?;
        self.count(|s| s.logins += 1);
        Ok(token.to_string())
    }

    /// One API call: paced, authenticated (a new token once when vRNI says 401), 429 waited out.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let call = format!("{method} /api/ni{path}");
        let mut relogged = false;
        let mut throttled = 0;
        loop {
            let token = {
                let mut t = self.token.lock().await;
                match t.as_ref() {
                    Some(t) => t.clone(),
                    None => {
                        let new = self.login().await?;
                        *t = Some(new.clone());
                        new
                    }
                }
            };
            self.pace().await;
            let mut req = self
                .http
                .request(method.clone(), self.url(path))
                .header("Authorization", format!("NetworkInsight {token}"));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| Error::Transport {
                call: call.clone(),
                reason: crate::error_text::chain(&e),
            })?;
            let status = resp.status().as_u16();
            match status {
                200..=299 => {
                    if status == 204 {
                        return Ok(Value::Null);
                    }
                    return resp.json().await.map_err(|e| Error::Decode {
                        call: call.clone(),
                        reason: e.to_string(),
                    });
                }
                401 if !relogged => {
                    relogged = true;
                    *self.token.lock().await = None;
                }
                429 if throttled < self.config.max_throttled => {
                    throttled += 1;
                    self.count(|s| s.throttled += 1);
                    let wait = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(1 << throttled.min(5)));
                    tokio::time::sleep(wait.max(self.config.min_interval)).await;
                }
                _ => {
                    return Err(Error::Status {
                        call,
                        status,
                        message: message(resp).await,
                    });
                }
            }
        }
    }

    /// Every flow id the filter selects in `[start, end]` (epoch seconds), page by page.
    pub async fn search_flows(
        &self,
        filter: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<Hit>, Error> {
        let mut hits = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({
                "entity_type": "Flow",
                "filter": filter,
                "size": self.config.page_size,
                "time_range": {"start_time": start, "end_time": end},
            });
            if let (Some(c), Some(o)) = (&cursor, body.as_object_mut()) {
                o.insert("cursor".into(), json!(c));
            }
            let page = self
                .call(reqwest::Method::POST, "/search", Some(&body))
                .await?;
            self.count(|s| s.pages += 1);
            let results = page
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Decode {
                    call: "POST /api/ni/search".into(),
                    reason: "no results list".into(),
                })?;
            for r in results {
                let id =
                    r.get("entity_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::Decode {
                            call: "POST /api/ni/search".into(),
                            reason: "a result without entity_id".into(),
                        })?;
                hits.push(Hit {
                    entity_id: id.to_string(),
                    entity_type: r
                        .get("entity_type")
                        .and_then(Value::as_str)
                        .unwrap_or("Flow")
                        .to_string(),
                    time: r.get("time").and_then(Value::as_i64),
                });
            }
            cursor = page
                .get("cursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(String::from);
            if cursor.is_none() || results.is_empty() {
                break;
            }
        }
        Ok(hits)
    }

    /// The fetch answers (`{entity_id, entity_type, time, entity}`) of the hits.
    pub async fn fetch(&self, hits: &[Hit]) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        for chunk in hits.chunks(FETCH_BATCH) {
            let ids: Vec<Value> = chunk
                .iter()
                .map(|h| {
                    let mut v = json!({"entity_id": h.entity_id, "entity_type": h.entity_type});
                    if let (Some(t), Some(o)) = (h.time, v.as_object_mut()) {
                        o.insert("time".into(), json!(t));
                    }
                    v
                })
                .collect();
            let answer = self
                .call(
                    reqwest::Method::POST,
                    "/entities/fetch",
                    Some(&json!({"entity_ids": ids})),
                )
                .await?;
            self.count(|s| s.fetches += 1);
            let results = answer
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Decode {
                    call: "POST /api/ni/entities/fetch".into(),
                    reason: "no results list".into(),
                })?;
            out.extend(results.iter().cloned());
        }
        Ok(out)
    }

    /// Deletes the token (vRNI keeps at most 100 valid tokens per user).
    pub async fn logout(&self) {
        let token = self.token.lock().await.take();
        if let Some(t) = token {
            self.pace().await;
            let _ = self
                .http
                .delete(self.url("/auth/token"))
                .header("Authorization", format!("NetworkInsight {t}"))
                .send()
                .await;
        }
    }
}

async fn message(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

fn quote(s: &str) -> Result<String, String> {
    if s.contains('\'') {
        return Err(format!("{s:?} contains a quote"));
    }
    Ok(format!("'{s}'"))
}

/// The search filters that select the application's flows (either end): its addresses and
/// networks, VM names (exact) and VM tags, at most [`FILTER_TERMS`] terms each. Pure.
pub fn filters_for(app: &Application) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    for net in &app.networks {
        let v = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.to_string()
        };
        for end in ["source", "destination"] {
            terms.push(format!("{end}_ip.ip_address = {}", quote(&v)?));
        }
    }
    for n in &app.names {
        let Some(name) = &n.equals else {
            return Err(format!(
                "VM name prefix {:?}: vRNI search needs whole VM names; give --app-name NAME per VM or --app-ip",
                n.starts_with.as_deref().unwrap_or_default()
            ));
        };
        for end in ["source", "destination"] {
            terms.push(format!("{end}_vm.name = {}", quote(name)?));
        }
    }
    for t in &app.tags {
        let v = match &t.scope {
            Some(s) if !s.is_empty() => format!("{s}|{}", t.tag),
            _ => t.tag.clone(),
        };
        for end in ["source", "destination"] {
            terms.push(format!("{end}_vm_tags = {}", quote(&v)?));
        }
    }
    if terms.is_empty() {
        return Err("give --app-ip, --app-name or --app-tag: they select the flows in vRNI".into());
    }
    // The API guide's form: `(name = 'my_vm') OR (vendor_id = 'vm-101')`.
    Ok(terms
        .chunks(FILTER_TERMS)
        .map(|c| {
            c.iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        })
        .collect())
}

/// Reads a duration like `30d`, `12h`, `90m` (for `--since`).
pub fn parse_since(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30d, 12h, 90m"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("{s:?}: the unit is d, h, m or s")),
    };
    if n == 0 {
        return Err(format!("{s:?}: must be more than 0"));
    }
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Searches, fetches and logs out: the flows of the application in `[start, end]`, as the
/// fetch answer (`{"results": [...]}`), and what it took.
pub async fn pull(
    config: Config,
    app: &Application,
    start: i64,
    end: i64,
) -> Result<(Value, PullStats), Error> {
    let filters = filters_for(app).map_err(Error::Config)?;
    let client = Client::new(config)?;
    let result = async {
        let mut hits: Vec<Hit> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for filter in &filters {
            for h in client.search_flows(filter, start, end).await? {
                if seen.insert(h.entity_id.clone()) {
                    hits.push(h);
                }
            }
        }
        client.fetch(&hits).await
    }
    .await;
    client.logout().await;
    let results = result?;
    Ok((json!({"results": results}), client.stats()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{VmName, VmTag};

    #[test]
    fn the_filter_names_both_ends_of_every_selector() {
        let app = Application {
            networks: vec![
                "10.10.2.0/24".parse().unwrap(),
                "10.0.0.5/32".parse().unwrap(),
            ],
            names: vec![VmName {
                equals: Some("orders-01".into()),
                starts_with: None,
            }],
            tags: vec![VmTag {
                scope: None,
                tag: "Orders:app".into(),
            }],
        };
        assert_eq!(
            filters_for(&app).unwrap(),
            [
                "(source_ip.ip_address = '10.10.2.0/24') OR (destination_ip.ip_address = '10.10.2.0/24') OR \
                 (source_ip.ip_address = '10.0.0.5') OR (destination_ip.ip_address = '10.0.0.5') OR \
                 (source_vm.name = 'orders-01') OR (destination_vm.name = 'orders-01') OR \
                 (source_vm_tags = 'Orders:app') OR (destination_vm_tags = 'Orders:app')"
            ]
        );
        // A large application: several filters of at most FILTER_TERMS terms.
        let big = Application {
            networks: (0..60u8)
                .map(|i| format!("10.10.{i}.0/24").parse().unwrap())
                .collect(),
            ..Application::default()
        };
        let batches = filters_for(&big).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(
            batches
                .iter()
                .all(|f| f.matches(" OR ").count() < FILTER_TERMS)
        );
        assert!(batches[2].ends_with("(destination_ip.ip_address = '10.10.59.0/24')"));
        let prefix = Application {
            names: vec![VmName {
                equals: None,
                starts_with: Some("orders-".into()),
            }],
            ..Application::default()
        };
        assert!(filters_for(&prefix).unwrap_err().contains("whole VM names"));
        assert!(filters_for(&Application::default()).is_err());
    }

    #[test]
    fn since_reads_days_hours_minutes() {
        assert_eq!(
            parse_since("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_since("12h").unwrap(), Duration::from_secs(12 * 3_600));
        assert!(parse_since("0d").is_err());
        assert!(parse_since("3w").unwrap_err().contains("unit"));
        assert!(parse_since("d").is_err());
    }
}
