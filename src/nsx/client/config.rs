//! The client's settings, with defaults and from the environment (`NSX_*` variables).

use std::path::PathBuf;
use std::time::Duration;

use crate::nsx::Error;
use crate::nsx::auth::{AuthConfig, Credentials};
use crate::nsx::pacing::PacingConfig;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
