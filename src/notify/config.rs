//! Settings of the notification channels (SMTP server, webhook formats, retries, the contact
//! named in notices), read from the environment and from files such as a mounted Kubernetes
//! Secret. Never from custom resources or the command line: secrets must not show up in
//! `ps`, manifests or shell history.
//!
//! Every setting `NAME` (e.g. `MICROSEG_SMTP_HOST`) is looked up, first found wins, in
//! 1. the environment variable `NAME`;
//! 2. the file named by the environment variable `NAME_FILE`;
//! 3. the file `<MICROSEG_NOTIFY_CONFIG_DIR>/<name>`, where `<name>` is `NAME` without
//!    `MICROSEG_`, lower-cased, `_` turned into `-` (`smtp-host`, `smtp-password`): the keys of a
//!    Secret mounted as a directory.
//!
//! File contents lose one trailing newline. Errors name the setting and never echo a secret.
//!
//! | setting | meaning | default |
//! |---|---|---|
//! | `MICROSEG_SMTP_HOST` | SMTP server; unset: no e-mail channel | |
//! | `MICROSEG_SMTP_PORT` | port | 587 (starttls), 465 (tls), 25 (insecure-plaintext) |
//! | `MICROSEG_SMTP_TLS` | `starttls`, `tls` (implicit, SMTPS) or `insecure-plaintext` (loopback only) | `starttls` |
//! | `MICROSEG_SMTP_USERNAME`, `MICROSEG_SMTP_PASSWORD` | AUTH credentials, both or neither | none |
//! | `MICROSEG_SMTP_FROM` | From address, e.g. `microseg <microseg@example.com>` | required with a host |
//! | `MICROSEG_SMTP_CA_FILE` | PEM bundle; when set, the only trusted CAs | Mozilla roots (webpki-roots) |
//! | `MICROSEG_EMAIL_ALLOWED_DOMAINS` | `example.com,...`: the only domains (and their subdomains) owners' addresses may be in | any |
//! | `MICROSEG_SMTP_TIMEOUT` | whole SMTP transaction (connect to QUIT), e.g. `30s` | 30s |
//! | `MICROSEG_WEBHOOK_TIMEOUT` | whole webhook request | 10s |
//! | `MICROSEG_WEBHOOK_ALLOWED_HOSTS` | `host,*.suffix,...`: the only hosts webhooks may go to (owners write the URLs) | any host |
//! | `MICROSEG_WEBHOOK_ALLOWED_NETWORKS` | `cidr,...`: loopback, private or link-local networks webhooks may reach (refused after name resolution otherwise) | none |
//! | `MICROSEG_WEBHOOK_INSECURE_ALLOW_HTTP` | `true`: accept `http://` webhooks | https only |
//! | `MICROSEG_WEBHOOK_CA_FILE` | PEM bundle; when set, the only trusted CAs for https webhooks | Mozilla roots (webpki-roots) |
//! | `MICROSEG_WEBHOOK_FORMATS` | `host-pattern=format,...`, e.g. `chat.example.com=slack,*.teams.example.com=teams` | built-in rules |
//! | `MICROSEG_NOTIFY_RETRY_ATTEMPTS` | tries per channel and notice (1 = no retry) | 4 |
//! | `MICROSEG_NOTIFY_RETRY_BACKOFF` | wait after the first failure, doubled each time | 2s |
//! | `MICROSEG_NOTIFY_RETRY_MAX_BACKOFF` | longest wait | 30s |
//! | `MICROSEG_NOTIFY_CONTACT` | whom owners contact, shown in notices | the network security team |
//! | `MICROSEG_NOTIFY_DASHBOARD_URL` | link shown in notices | none |

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Error;
use super::render::{DEFAULT_CONTACT, RenderOptions};
use super::webhook::FormatRule;
use crate::backoff::Backoff;

/// The directory of a mounted Secret (or ConfigMap) holding settings as files.
pub const CONFIG_DIR_ENV: &str = "MICROSEG_NOTIFY_CONFIG_DIR";

/// A secret string, kept in a [`SecretString`] (zeroed when dropped; `Debug` prints
/// `[REDACTED]`); read it with [`Secret::expose`]. Two secrets compare in constant time.
#[derive(Clone, Debug)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        crate::secret::constant_time_eq(self.expose().as_bytes(), other.expose().as_bytes())
    }
}

impl Eq for Secret {}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connect, then STARTTLS, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Implicit,
    /// No TLS at all. Only to a loopback address (tests, a local relay sidecar).
    InsecurePlaintext,
}

impl SmtpTls {
    /// The port used when none is configured.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::InsecurePlaintext => 25,
        }
    }
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" | "implicit" | "smtps" => Ok(SmtpTls::Implicit),
            "insecure-plaintext" => Ok(SmtpTls::InsecurePlaintext),
            other => Err(format!(
                "{other:?} is not one of starttls, tls, insecure-plaintext"
            )),
        }
    }
}

/// SMTP AUTH credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpAuth {
    /// User name.
    pub username: String,
    /// Password (never printed).
    pub password: Secret,
}

/// The e-mail channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server host name or address (also the name its certificate must carry).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// Credentials, when the server wants AUTH.
    pub auth: Option<SmtpAuth>,
    /// From address (`Name <addr>` or `addr`).
    pub from: String,
    /// PEM CA bundle that replaces the built-in roots.
    pub ca_bundle: Option<PathBuf>,
    /// Deadline of one whole SMTP transaction, connecting included.
    pub timeout: Duration,
    /// Domains owners' addresses may be in (`example.com` also allows its subdomains); empty:
    /// any. Owners write the addresses in the CR spec.
    pub allowed_domains: Vec<String>,
}

impl SmtpConfig {
    /// An SMTP configuration with the defaults for `tls` (port, timeout), no AUTH, no CA bundle.
    pub fn new(host: impl Into<String>, tls: SmtpTls, from: impl Into<String>) -> Self {
        SmtpConfig {
            host: host.into(),
            port: tls.default_port(),
            tls,
            auth: None,
            from: from.into(),
            ca_bundle: None,
            timeout: Duration::from_secs(30),
            allowed_domains: Vec::new(),
        }
    }
}

/// The webhook channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Timeout of one request.
    pub timeout: Duration,
    /// Rules that pick a payload format by host, checked before the built-in ones.
    pub format_rules: Vec<FormatRule>,
    /// Host patterns (`host` or `*.suffix`) webhooks may go to; empty: any host. Owners write
    /// the URLs, so a site can keep the controller from posting to internal services.
    pub allowed_hosts: Vec<String>,
    /// Loopback, private and link-local networks webhooks may reach anyway (they are refused
    /// after name resolution otherwise).
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Accept `http://` webhooks (owners' notices travel in clear text).
    pub allow_http: bool,
    /// PEM CA bundle that replaces the built-in roots for https webhooks.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            format_rules: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed_networks: Vec::new(),
            allow_http: false,
            ca_bundle: None,
        }
    }
}

/// How often and how patiently each channel is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed try number `failed` (1-based).
    pub fn backoff(&self, failed: u32) -> Duration {
        Backoff::new(self.initial_backoff, self.max_backoff).step(failed)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// All notification settings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NotifyConfig {
    /// The e-mail channel; `None` when no SMTP host is configured.
    pub smtp: Option<SmtpConfig>,
    /// The webhook channel (always available: the URL comes from the owner).
    pub webhook: WebhookConfig,
    /// Retries per channel.
    pub retry: RetryPolicy,
    /// What notices say beyond the notice itself.
    pub render: RenderOptions,
}

fn setting_error(name: &str, reason: impl fmt::Display) -> Error {
    Error::Config(format!("{name}: {reason}"))
}

/// Where settings come from: a lookup of environment variables (the process environment, or a
/// map in tests) plus the files it points at.
struct Settings<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    dir: Option<PathBuf>,
}

impl Settings<'_> {
    fn read_file(name: &str, path: &Path) -> Result<String, Error> {
        let mut text = std::fs::read_to_string(path)
            .map_err(|e| setting_error(name, format!("cannot read {}: {e}", path.display())))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(text)
    }

    /// The value of a setting, or `None`; an empty value counts as unset.
    fn get(&self, name: &str) -> Result<Option<String>, Error> {
        let value = if let Some(v) = (self.env)(name) {
            Some(v)
        } else if let Some(path) = (self.env)(&format!("{name}_FILE")).filter(|p| !p.is_empty()) {
            Some(Self::read_file(&format!("{name}_FILE"), Path::new(&path))?)
        } else if let Some(dir) = &self.dir {
            let key = name
                .trim_start_matches("MICROSEG_")
                .to_ascii_lowercase()
                .replace('_', "-");
            let path = dir.join(key);
            if path.is_file() {
                Some(Self::read_file(name, &path)?)
            } else {
                None
            }
        } else {
            None
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }

    fn parse<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        match self.get(name)? {
            Some(v) => parse(v.trim())
                .map(Some)
                .map_err(|e| setting_error(name, e)),
            None => Ok(None),
        }
    }
}

/// Parses `30s`, `2m`, `1h30m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: k8s_openapi::jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    Duration::try_from(d).map_err(|_| format!("{text:?} must not be negative"))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl NotifyConfig {
    /// Reads the settings from the process environment and the files it names (see the module
    /// documentation).
    pub fn from_env_and_files() -> Result<Self, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the settings through `env` (an environment-variable lookup) and the files it
    /// names. Tests pass a map; [`NotifyConfig::from_env_and_files`] passes `std::env::var`.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let s = Settings {
            env,
            dir: env(CONFIG_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        };
        if let Some(dir) = &s.dir
            && !dir.is_dir()
        {
            return Err(setting_error(
                CONFIG_DIR_ENV,
                format!("{} is not a directory", dir.display()),
            ));
        }

        let smtp = match s.get("MICROSEG_SMTP_HOST")? {
            None => None,
            Some(host) => Some(Self::smtp(&s, host.trim().to_string())?),
        };

        let mut webhook = WebhookConfig::default();
        if let Some(t) = s.parse("MICROSEG_WEBHOOK_TIMEOUT", parse_duration)? {
            webhook.timeout = t;
        }
        if let Some(rules) = s.parse("MICROSEG_WEBHOOK_FORMATS", FormatRule::parse_list)? {
            webhook.format_rules = rules;
        }
        if let Some(hosts) = s.get("MICROSEG_WEBHOOK_ALLOWED_HOSTS")? {
            webhook.allowed_hosts = hosts
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
        }
        if let Some(nets) = s.get("MICROSEG_WEBHOOK_ALLOWED_NETWORKS")? {
            webhook.allowed_networks = nets
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    n.parse::<ipnet::IpNet>().map_err(|e| {
                        setting_error(
                            "MICROSEG_WEBHOOK_ALLOWED_NETWORKS",
                            format!("{n:?} is not a CIDR: {e}"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = s.get("MICROSEG_WEBHOOK_INSECURE_ALLOW_HTTP")? {
            webhook.allow_http = match v.trim() {
                "true" => true,
                "false" | "" => false,
                other => {
                    return Err(setting_error(
                        "MICROSEG_WEBHOOK_INSECURE_ALLOW_HTTP",
                        format!("{other:?} is not true or false"),
                    ));
                }
            };
        }
        webhook.ca_bundle = s.get("MICROSEG_WEBHOOK_CA_FILE")?.map(PathBuf::from);
        if let Some(path) = &webhook.ca_bundle
            && !path.is_file()
        {
            return Err(setting_error(
                "MICROSEG_WEBHOOK_CA_FILE",
                format!("{} is not a readable file", path.display()),
            ));
        }

        let mut retry = RetryPolicy::default();
        if let Some(n) = s.parse("MICROSEG_NOTIFY_RETRY_ATTEMPTS", |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=20).contains(n))
                .ok_or_else(|| format!("{v:?} is not a number from 1 to 20"))
        })? {
            retry.attempts = n;
        }
        if let Some(d) = s.parse("MICROSEG_NOTIFY_RETRY_BACKOFF", parse_duration)? {
            retry.initial_backoff = d;
        }
        if let Some(d) = s.parse("MICROSEG_NOTIFY_RETRY_MAX_BACKOFF", parse_duration)? {
            retry.max_backoff = d;
        }

        let render = RenderOptions {
            contact: s
                .get("MICROSEG_NOTIFY_CONTACT")?
                .unwrap_or_else(|| DEFAULT_CONTACT.to_string()),
            dashboard_url: s.get("MICROSEG_NOTIFY_DASHBOARD_URL")?,
        };

        Ok(NotifyConfig {
            smtp,
            webhook,
            retry,
            render,
        })
    }

    fn smtp(s: &Settings<'_>, host: String) -> Result<SmtpConfig, Error> {
        let tls = s
            .parse("MICROSEG_SMTP_TLS", |v| v.parse::<SmtpTls>())?
            .unwrap_or(SmtpTls::StartTls);
        if tls == SmtpTls::InsecurePlaintext && !is_loopback(&host) {
            return Err(setting_error(
                "MICROSEG_SMTP_TLS",
                format!(
                    "insecure-plaintext is only allowed to a loopback address, not {host:?}; use starttls or tls"
                ),
            ));
        }
        let port = s
            .parse("MICROSEG_SMTP_PORT", |v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{v:?} is not a port number (1-65535)"))
            })?
            .unwrap_or(tls.default_port());
        let from = s.get("MICROSEG_SMTP_FROM")?.ok_or_else(|| {
            setting_error(
                "MICROSEG_SMTP_FROM",
                "required when MICROSEG_SMTP_HOST is set",
            )
        })?;
        from.trim()
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| setting_error("MICROSEG_SMTP_FROM", format!("{from:?}: {e}")))?;
        let username = s.get("MICROSEG_SMTP_USERNAME")?;
        let password = s.get("MICROSEG_SMTP_PASSWORD")?;
        let auth = match (username, password) {
            (Some(username), Some(password)) => Some(SmtpAuth {
                username: username.trim().to_string(),
                password: Secret::new(password),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(setting_error(
                    "MICROSEG_SMTP_PASSWORD",
                    "required when MICROSEG_SMTP_USERNAME is set",
                ));
            }
            (None, Some(_)) => {
                return Err(setting_error(
                    "MICROSEG_SMTP_USERNAME",
                    "required when MICROSEG_SMTP_PASSWORD is set",
                ));
            }
        };
        let ca_bundle = s.get("MICROSEG_SMTP_CA_FILE")?.map(PathBuf::from);
        if let Some(path) = &ca_bundle
            && !path.is_file()
        {
            return Err(setting_error(
                "MICROSEG_SMTP_CA_FILE",
                format!("{} is not a readable file", path.display()),
            ));
        }
        let timeout = s
            .parse("MICROSEG_SMTP_TIMEOUT", parse_duration)?
            .unwrap_or(Duration::from_secs(30));
        let allowed_domains = s
            .get("MICROSEG_EMAIL_ALLOWED_DOMAINS")?
            .map(|d| {
                d.split(',')
                    .map(|x| x.trim().trim_start_matches('@').to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(SmtpConfig {
            host,
            port,
            tls,
            auth,
            from: from.trim().to_string(),
            ca_bundle,
            timeout,
            allowed_domains,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<NotifyConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        NotifyConfig::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn nothing_configured_means_webhooks_only_with_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.smtp, None);
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.render.contact, DEFAULT_CONTACT);
    }

    #[test]
    fn smtp_settings_from_env_with_tls_default_port() {
        let c = config(&[
            ("MICROSEG_SMTP_HOST", "smtp.example.com"),
            ("MICROSEG_SMTP_TLS", "tls"),
            ("MICROSEG_SMTP_FROM", "microseg <microseg@example.com>"),
            ("MICROSEG_SMTP_USERNAME", "bot"),
            ("MICROSEG_SMTP_PASSWORD", "hunter2"),
            ("MICROSEG_NOTIFY_RETRY_ATTEMPTS", "2"),
            ("MICROSEG_NOTIFY_RETRY_BACKOFF", "100ms"),
        ])
        .unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
        assert_eq!(smtp.auth.as_ref().unwrap().password.expose(), "hunter2");
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert_eq!(c.retry.attempts, 2);
        assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
    }

    #[test]
    fn secrets_come_from_a_mounted_directory_and_file_variables() {
        let dir = std::env::temp_dir().join(format!("microseg-notify-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("smtp-host"), "mail.example.com\n").unwrap();
        std::fs::write(dir.join("smtp-from"), "microseg@example.com\n").unwrap();
        std::fs::write(dir.join("smtp-username"), "bot\n").unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret pass\n").unwrap();
        let c = config(&[
            (CONFIG_DIR_ENV, dir.to_str().unwrap()),
            ("MICROSEG_SMTP_PASSWORD_FILE", pw.to_str().unwrap()),
        ])
        .unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.host, "mail.example.com");
        assert_eq!(smtp.port, 587);
        let auth = smtp.auth.unwrap();
        assert_eq!(auth.username, "bot");
        assert_eq!(auth.password.expose(), "s3cret pass");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_setting_and_never_the_password() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("MICROSEG_SMTP_HOST", "h.example.com")],
                "MICROSEG_SMTP_FROM: required",
            ),
            (
                &[
                    ("MICROSEG_SMTP_HOST", "h.example.com"),
                    ("MICROSEG_SMTP_FROM", "a@example.com"),
                    ("MICROSEG_SMTP_PORT", "99999"),
                ],
                "MICROSEG_SMTP_PORT: \"99999\" is not a port number",
            ),
            (
                &[
                    ("MICROSEG_SMTP_HOST", "h.example.com"),
                    ("MICROSEG_SMTP_FROM", "a@example.com"),
                    ("MICROSEG_SMTP_TLS", "insecure-plaintext"),
                ],
                "MICROSEG_SMTP_TLS: insecure-plaintext is only allowed to a loopback address",
            ),
            (
                &[
                    ("MICROSEG_SMTP_HOST", "h.example.com"),
                    ("MICROSEG_SMTP_FROM", "a@example.com"),
                    ("MICROSEG_SMTP_PASSWORD", "TOPSECRET"),
                ],
                "MICROSEG_SMTP_USERNAME: required when MICROSEG_SMTP_PASSWORD is set",
            ),
            (
                &[
                    ("MICROSEG_SMTP_HOST", "h.example.com"),
                    ("MICROSEG_SMTP_FROM", "a@example.com"),
                    ("MICROSEG_SMTP_USERNAME", "bot"),
                    ("MICROSEG_SMTP_PASSWORD_FILE", "/nonexistent/pw"),
                ],
                "MICROSEG_SMTP_PASSWORD_FILE: cannot read /nonexistent/pw",
            ),
            (
                &[("MICROSEG_WEBHOOK_TIMEOUT", "soon")],
                "MICROSEG_WEBHOOK_TIMEOUT: \"soon\" is not a duration",
            ),
            (
                &[("MICROSEG_WEBHOOK_FORMATS", "chat.example.com=irc")],
                "MICROSEG_WEBHOOK_FORMATS:",
            ),
            (
                &[("MICROSEG_NOTIFY_RETRY_ATTEMPTS", "0")],
                "MICROSEG_NOTIFY_RETRY_ATTEMPTS:",
            ),
        ];
        for (vars, want) in cases {
            match config(vars) {
                Ok(c) => panic!("{vars:?}: accepted: {c:?}"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains(want), "{vars:?}: {text}");
                    assert!(!text.contains("TOPSECRET"), "{text}");
                }
            }
        }
    }

    #[test]
    fn webhook_allow_list_and_format_rules_are_read() {
        let c = config(&[
            (
                "MICROSEG_WEBHOOK_ALLOWED_HOSTS",
                "hooks.slack.com, *.Example.com,",
            ),
            ("MICROSEG_WEBHOOK_FORMATS", "chat.example.com=slack"),
        ])
        .unwrap();
        assert_eq!(
            c.webhook.allowed_hosts,
            ["hooks.slack.com", "*.example.com"]
        );
        assert_eq!(c.webhook.format_rules.len(), 1);
        let e = config(&[("MICROSEG_WEBHOOK_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("MICROSEG_WEBHOOK_CA_FILE: /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn plaintext_is_allowed_on_loopback() {
        let c = config(&[
            ("MICROSEG_SMTP_HOST", "127.0.0.1"),
            ("MICROSEG_SMTP_TLS", "insecure-plaintext"),
            ("MICROSEG_SMTP_PORT", "2525"),
            ("MICROSEG_SMTP_FROM", "a@example.com"),
        ])
        .unwrap();
        assert_eq!(c.smtp.unwrap().port, 2525);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let r = RetryPolicy {
            attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        let waits: Vec<u64> = (1..=5).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }
}
