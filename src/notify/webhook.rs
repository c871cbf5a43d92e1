//! The webhook channel: one HTTP POST per notice to the owner's webhook URL, as generic JSON,
//! as a Slack incoming-webhook message or as a Microsoft Teams Adaptive Card message, with the
//! header `Idempotency-Key: <message id>` so a receiver can drop a resend.
//!
//! Webhook URLs carry secret tokens in their path (Slack, Teams), so this module never puts a
//! whole URL in a log line, an error or `Debug` output: [`redact_url`] keeps scheme, host and
//! port. Redirects are not followed (they would carry the token elsewhere). One try per call;
//! retries belong to [`super::channels::Channels`].
//!
//! # Choosing the format
//! First match wins:
//! 1. the URL fragment `#microseg-format=generic|slack|teams` (fragments never leave this
//!    process, so an owner can pick a format in the manifest);
//! 2. the configured rules ([`super::config::WebhookConfig::format_rules`],
//!    `MICROSEG_WEBHOOK_FORMATS`);
//! 3. built-in rules: `hooks.slack.com` → Slack; `*.webhook.office.com`, `outlook.office.com`,
//!    `outlook.office365.com`, `*.logic.azure.com`, `*.powerplatform.com` → Teams;
//! 4. otherwise generic.
//!
//! # Generic payload (`microseg.io/notice/v1`)
//! ```json
//! { "schema": "microseg.io/notice/v1", "kind": "AlertDigest", "messageId": "…@microseg.io",
//!   "application": "Shop web frontend", "namespace": "wave-1", "name": "shop-web",
//!   "owner": "Web Team", "phase": "Monitoring",
//!   "monitorFrom": "2027-02-01T09:00:00Z", "enforceAt": "…", "cleanupAt": "…",
//!   "reason": null, "subject": "[microseg] …", "summary": "…", "text": "<plain-text body>",
//!   "flows": [ { "source": "10.20.30.40", "destination": "10.1.0.11", "protocol": "TCP",
//!                "port": 8443, "direction": "Inbound", "action": "PASS", "count": 1284,
//!                "firstSeen": "…", "lastSeen": "…", "rule": "- name: allow-in-tcp-8443-…" } ] }
//! ```
//! Examples of all three formats are under `docs/notices/`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use reqwest::Url;
use serde_json::{Value, json};

use super::config::WebhookConfig;
use super::render::{self, RenderOptions, Rendered};
use super::{Delivery, Error, Notice, Notifier};

/// The schema name of the generic payload.
pub const GENERIC_SCHEMA: &str = "microseg.io/notice/v1";

/// The URL fragment key that picks a format for one webhook.
pub const FORMAT_FRAGMENT: &str = "microseg-format";

/// Most flows listed in a chat message (Slack allows 50 blocks; the rest is in the e-mail).
pub const MAX_CHAT_FLOWS: usize = 10;

/// The payload format a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The documented microseg JSON.
    Generic,
    /// Slack incoming webhook (`text` plus Block Kit `blocks`).
    Slack,
    /// Microsoft Teams incoming webhook or Workflows (a message with an Adaptive Card).
    Teams,
}

impl WebhookFormat {
    /// Lower-case name, as in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Teams => "teams",
        }
    }
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "generic" | "json" => Ok(WebhookFormat::Generic),
            "slack" => Ok(WebhookFormat::Slack),
            "teams" | "msteams" => Ok(WebhookFormat::Teams),
            other => Err(format!(
                "{other:?} is not a webhook format (generic, slack, teams)"
            )),
        }
    }
}

/// Picks a format by host: `pattern` is a host name (`chat.example.com`) or a suffix pattern
/// (`*.example.com`, which matches subdomains only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatRule {
    /// Host or `*.suffix`.
    pub pattern: String,
    /// The format for matching hosts.
    pub format: WebhookFormat,
}

impl FormatRule {
    /// A rule.
    pub fn new(pattern: &str, format: WebhookFormat) -> Self {
        FormatRule {
            pattern: pattern.trim().to_ascii_lowercase(),
            format,
        }
    }

    /// Does the rule match this host?
    pub fn matches(&self, host: &str) -> bool {
        host_matches(&self.pattern, host)
    }

    /// Parses `host=format,*.suffix=format,...`.
    pub fn parse_list(text: &str) -> Result<Vec<FormatRule>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (pattern, format) = item
                    .split_once('=')
                    .ok_or_else(|| format!("{item:?} is not host=format"))?;
                if pattern.trim().is_empty() {
                    return Err(format!("{item:?} has no host"));
                }
                Ok(FormatRule::new(pattern, format.parse()?))
            })
            .collect()
    }
}

/// The built-in format rules.
pub fn builtin_rules() -> Vec<FormatRule> {
    vec![
        FormatRule::new("hooks.slack.com", WebhookFormat::Slack),
        FormatRule::new("*.webhook.office.com", WebhookFormat::Teams),
        FormatRule::new("outlook.office.com", WebhookFormat::Teams),
        FormatRule::new("outlook.office365.com", WebhookFormat::Teams),
        FormatRule::new("*.logic.azure.com", WebhookFormat::Teams),
        FormatRule::new("*.powerplatform.com", WebhookFormat::Teams),
    ]
}

/// The format for a webhook URL (see the module documentation for the order of the rules).
pub fn detect_format(url: &Url, rules: &[FormatRule]) -> Result<WebhookFormat, String> {
    if let Some(fragment) = url.fragment() {
        for pair in fragment.split('&') {
            if let Some(value) = pair
                .strip_prefix(FORMAT_FRAGMENT)
                .and_then(|v| v.strip_prefix('='))
            {
                return value.parse();
            }
        }
    }
    let host = url.host_str().unwrap_or_default();
    Ok(rules
        .iter()
        .chain(builtin_rules().iter())
        .find(|r| r.matches(host))
        .map_or(WebhookFormat::Generic, |r| r.format))
}

/// `scheme://host[:port]/…`: a URL without its path, query and fragment (which may hold
/// tokens), for logs and errors. Unparseable input becomes `<invalid url>`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(p) => format!("{}://{host}:{p}/…", u.scheme()),
                None => format!("{}://{host}/…", u.scheme()),
            }
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// The generic JSON payload.
pub fn generic_payload(notice: &Notice, rendered: &Rendered, options: &RenderOptions) -> Value {
    let flows: Vec<Value> = notice
        .flows
        .iter()
        .map(|f| {
            json!({
                "source": f.source,
                "destination": f.destination,
                "protocol": f.protocol,
                "port": f.port,
                "direction": f.direction,
                "action": f.action,
                "count": f.count,
                "firstSeen": rfc3339(f.first_seen.0),
                "lastSeen": rfc3339(f.last_seen.0),
                "rule": render::rule_entry(f),
            })
        })
        .collect();
    json!({
        "schema": GENERIC_SCHEMA,
        "kind": notice.kind.as_str(),
        "messageId": notice.message_id,
        "application": notice.application,
        "namespace": notice.namespace,
        "name": notice.name,
        "owner": notice.owner.name,
        "phase": notice.phase,
        "monitorFrom": rfc3339(notice.monitor_from),
        "enforceAt": rfc3339(notice.enforce_at),
        "cleanupAt": rfc3339(notice.cleanup_at),
        "reason": notice.reason,
        "subject": rendered.subject,
        "summary": render::summary(notice, options),
        "text": rendered.text,
        "flows": flows,
    })
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn dates(notice: &Notice) -> [(&'static str, String); 3] {
    [
        ("Monitor mode", render::format_time(notice.monitor_from)),
        ("Enforcement", render::format_time(notice.enforce_at)),
        ("Clean-up", render::format_time(notice.cleanup_at)),
    ]
}

/// The Slack incoming-webhook payload: `text` (the notification fallback) and Block Kit
/// `blocks`.
pub fn slack_payload(notice: &Notice, rendered: &Rendered, options: &RenderOptions) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&rendered.subject, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&slack_escape(&render::summary(notice, options)), 3000)}}),
    ];
    let mut fields: Vec<Value> = dates(notice)
        .iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
        .collect();
    fields.push(json!({"type": "mrkdwn", "text": format!("*Policy*\n`{}/{}`", slack_escape(&notice.namespace), slack_escape(&notice.name))}));
    blocks.push(json!({"type": "section", "fields": fields}));
    for (i, f) in notice.flows.iter().take(MAX_CHAT_FLOWS).enumerate() {
        let text = format!(
            "*{}.* `{}` → `{}` {} ({:?}), {} times, first {}, last {}\n```{}```",
            i + 1,
            slack_escape(&f.source),
            slack_escape(&f.destination),
            slack_escape(&render::service(f)),
            f.direction,
            f.count,
            render::format_time(f.first_seen.0),
            render::format_time(f.last_seen.0),
            slack_escape(&render::rule_entry(f)),
        );
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}}),
        );
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&format!("microseg · {} · message id {}", slack_escape(notice.kind.as_str()), notice.message_id), 3000)}]}));
    json!({"text": slack_escape(&rendered.subject), "blocks": blocks})
}

/// The Microsoft Teams payload: a message with one Adaptive Card (accepted by Teams incoming
/// webhooks and by Workflows "post to a channel when a webhook request is received").
pub fn teams_payload(notice: &Notice, rendered: &Rendered, options: &RenderOptions) -> Value {
    let mut facts: Vec<Value> = dates(notice)
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    facts
        .push(json!({"title": "Policy", "value": format!("{}/{}", notice.namespace, notice.name)}));
    facts.push(json!({"title": "Phase", "value": notice.phase}));
    if let Some(reason) = &notice.reason {
        facts.push(json!({"title": "Reason", "value": reason}));
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": rendered.subject, "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": render::summary(notice, options), "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    for (i, f) in notice.flows.iter().take(MAX_CHAT_FLOWS).enumerate() {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": format!(
            "{}. {} → {} {} ({:?}), {} times, first {}, last {}",
            i + 1, f.source, f.destination, render::service(f), f.direction, f.count,
            render::format_time(f.first_seen.0), render::format_time(f.last_seen.0))}));
        body.push(json!({"type": "TextBlock", "wrap": true, "fontType": "Monospace", "text": render::rule_entry(f)}));
    }
    body.push(json!({"type": "TextBlock", "text": format!("microseg · message id {}", notice.message_id), "size": "Small", "isSubtle": true, "wrap": true}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            }
        }]
    })
}

/// The payload of a notice in a format.
pub fn payload(
    format: WebhookFormat,
    notice: &Notice,
    rendered: &Rendered,
    options: &RenderOptions,
) -> Value {
    match format {
        WebhookFormat::Generic => generic_payload(notice, rendered, options),
        WebhookFormat::Slack => slack_payload(notice, rendered, options),
        WebhookFormat::Teams => teams_payload(notice, rendered, options),
    }
}

/// Does `host` match a pattern (`host` or `*.suffix`, subdomains only)?
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        None => host == pattern,
    }
}

/// Keeps a receiver's error text only when it looks like an error code (Slack answers
/// `invalid_token`, `no_service`): a short line of letters, digits and `_-.: `. Anything else
/// is dropped, so an owner-written URL cannot make the controller copy an internal service's
/// response into status or events.
fn error_code(body: &str) -> Option<String> {
    let body = body.trim();
    let looks_like_code = !body.is_empty()
        && body.len() <= 100
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.:".contains(c));
    looks_like_code.then(|| body.to_string())
}

/// Whether a webhook may reach `ip`: public addresses always; loopback, private, link-local,
/// shared (100.64/10), unique-local, multicast and unspecified ones only inside `allowed`.
pub fn target_allowed(ip: std::net::IpAddr, allowed: &[ipnet::IpNet]) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let internal = match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
                || a.octets()[0] == 0
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    !internal || allowed.iter().any(|n| n.contains(&ip))
}

/// Resolves webhook hosts and keeps only the addresses [`target_allowed`] lets through, so the
/// address checked is the address connected to.
struct GuardedResolver {
    allowed: Vec<ipnet::IpNet>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| target_allowed(a.ip(), &allowed))
                .collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves only to loopback, private or link-local addresses; \
                     refused (MICROSEG_WEBHOOK_ALLOWED_NETWORKS)"
                )
                .into();
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends notices to owners' webhooks.
pub struct WebhookNotifier {
    client: reqwest::Client,
    allowed_networks: Vec<ipnet::IpNet>,
    allow_http: bool,
    allowed_hosts: Vec<String>,
    rules: Vec<FormatRule>,
    options: RenderOptions,
    timeout: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("rules", &self.rules)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A webhook channel with these settings.
    pub fn new(config: &WebhookConfig, options: RenderOptions) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: config.allowed_networks.clone(),
            }))
            .user_agent(concat!("microseg/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_bundle {
            let bad = |e: &dyn fmt::Display| {
                Error::Config(format!("webhook CA bundle {}: {e}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(&e))?;
            if certs.is_empty() {
                return Err(bad(&"no certificate in the file"));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("webhook client: {}", e.without_url())))?;
        Ok(WebhookNotifier {
            client,
            allowed_networks: config.allowed_networks.clone(),
            allow_http: config.allow_http,
            allowed_hosts: config.allowed_hosts.clone(),
            rules: config.format_rules.clone(),
            options,
            timeout: config.timeout,
        })
    }

    /// The format this channel uses for a URL.
    pub fn format_for(&self, url: &str) -> Result<WebhookFormat, String> {
        let url = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        detect_format(&url, &self.rules)
    }
}

/// The text of an error and its sources, with anything that looks like the URL's secret parts
/// removed.
fn describe(err: &(dyn std::error::Error + 'static), url: &Url) -> String {
    scrub(&crate::error_text::chain(err), url)
}

/// Removes the URL, its path and its query from a text.
fn scrub(text: &str, url: &Url) -> String {
    let mut out = text.replace(url.as_str(), &redact_url(url.as_str()));
    for secret in [url.path(), url.query().unwrap_or_default()] {
        if secret.len() > 1 {
            out = out.replace(secret, "/…");
        }
    }
    out
}

#[async_trait]
impl Notifier for WebhookNotifier {
    /// One POST to `notice.owner.webhook`; one delivery on success.
    async fn send(&self, notice: &Notice) -> Result<Vec<Delivery>, Error> {
        let owner = &notice.owner.name;
        let fail = |reason: String| Error::Webhook {
            owner: owner.clone(),
            reason,
        };
        let Some(raw) = notice.owner.webhook.as_deref() else {
            return Err(Error::NoChannel {
                owner: owner.clone(),
                contact: "webhook",
            });
        };
        let mut url = Url::parse(raw).map_err(|e| fail(format!("webhook is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!(
                "{}: only http and https webhooks are supported",
                redact_url(raw)
            )));
        }
        let host = url.host_str().unwrap_or_default();
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|p| host_matches(p, host))
        {
            return Err(Error::Config(format!(
                "webhook of owner {owner}: host {host:?} is not in MICROSEG_WEBHOOK_ALLOWED_HOSTS"
            )));
        }
        if url.scheme() == "http" && !self.allow_http {
            return Err(Error::Config(format!(
                "webhook of owner {owner}: {} is http; only https webhooks are sent \
                 (MICROSEG_WEBHOOK_INSECURE_ALLOW_HTTP for a lab)",
                redact_url(raw)
            )));
        }
        let literal = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        if let Some(ip) = literal
            && !target_allowed(ip, &self.allowed_networks)
        {
            return Err(Error::Config(format!(
                "webhook of owner {owner}: {ip} is a loopback, private or link-local address; \
                 refused (MICROSEG_WEBHOOK_ALLOWED_NETWORKS)"
            )));
        }
        let format = detect_format(&url, &self.rules)
            .map_err(|e| fail(format!("{}: {e}", redact_url(raw))))?;
        url.set_fragment(None);
        let shown = redact_url(url.as_str());
        let rendered =
            render::render_with(notice, &self.options).map_err(|e| Error::Config(e.to_string()))?;
        let body = payload(format, notice, &rendered, &self.options);
        tracing::debug!(
            url = %shown,
            format = format.as_str(),
            message_id = %notice.message_id,
            "Posting owner notice to webhook"
        );
        let response = self
            .client
            .post(url.clone())
            .header("Idempotency-Key", &notice.message_id)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    format!("timed out after {:?}", self.timeout)
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    "request failed".to_string()
                };
                let e = e.without_url();
                fail(format!(
                    "POST {shown} ({}): {kind}: {}",
                    format.as_str(),
                    describe(&e, &url)
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(vec![Delivery {
                channel: "webhook",
                at: Timestamp::now(),
            }]);
        }
        let code = error_code(&response.text().await.unwrap_or_default())
            .map(|c| format!(": {}", scrub(&c, &url)))
            .unwrap_or_default();
        Err(fail(format!(
            "POST {shown} ({}): HTTP {status}{code}",
            format.as_str()
        )))
    }
}

#[cfg(test)]
mod tests;
