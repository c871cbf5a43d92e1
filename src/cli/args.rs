//! Flags that more than one subcommand takes: how to reach NSX ([`NsxArgs`]) and the
//! Kubernetes API server ([`KubeArgs`]), each with the one function that builds its client.
//! Credentials come from files or the environment, never from flags.

// `nsx::Error` carries NSX's whole error body by design; clients are built once.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;

use crate::nsx::{AuthConfig, Client, ClientConfig, Credentials, NsxMetrics, PacingConfig};

/// How microseg authenticates to NSX.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsxAuth {
    /// HTTP basic on every call.
    Basic,
    /// A session with cookie and XSRF token.
    Session,
    /// A principal identity (TLS client certificate).
    Certificate,
}

/// How to authenticate to the NSX Manager and trust it (`controller` and `plan`; each names
/// its own `--nsx-url`).
#[derive(clap::Args, Debug, Clone)]
pub struct NsxArgs {
    /// basic, session or certificate.
    #[arg(long, value_enum, default_value = "session")]
    pub nsx_auth: NsxAuth,
    /// Directory with `username` and `password` files (e.g. a mounted Secret); else
    /// $NSX_USERNAME and $NSX_PASSWORD.
    #[arg(long)]
    pub nsx_credentials_dir: Option<PathBuf>,
    /// PEM client certificate (certificate auth).
    #[arg(long)]
    pub nsx_client_cert: Option<PathBuf>,
    /// PEM client key (certificate auth).
    #[arg(long)]
    pub nsx_client_key: Option<PathBuf>,
    /// PEM bundle of the CAs that sign the NSX Manager's certificate.
    #[arg(long)]
    pub nsx_ca_file: Option<PathBuf>,
    /// Do not verify the NSX Manager's certificate. Insecure: labs only.
    #[arg(long)]
    pub nsx_insecure_skip_tls_verify: bool,
    /// Accept an `http://` NSX URL (credentials travel in clear text). Insecure: labs and the
    /// simulator only.
    #[arg(long)]
    pub nsx_insecure_allow_http: bool,
}

/// Why no NSX client could be built.
#[derive(Debug, thiserror::Error)]
pub enum NsxClientError {
    /// A flag is wrong or missing.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// The client refused its configuration (CA bundle, client certificate).
    #[error(transparent)]
    Nsx(#[from] Box<crate::nsx::Error>),
}

impl NsxArgs {
    /// The NSX client for `url`: the URL checked ([`check_nsx_url`]), the authentication the
    /// flags choose, `pacing`, and calls counted in `metrics`.
    pub fn client(
        &self,
        url: &str,
        pacing: PacingConfig,
        metrics: NsxMetrics,
    ) -> Result<Client, NsxClientError> {
        check_nsx_url(url, self.nsx_insecure_allow_http).map_err(|reason| {
            NsxClientError::Flag {
                flag: "--nsx-url",
                reason,
            }
        })?;
        let required = |flag: &'static str| NsxClientError::Flag {
            flag,
            reason: "required with --nsx-auth certificate".into(),
        };
        let auth = match self.nsx_auth {
            NsxAuth::Certificate => AuthConfig::Certificate {
                cert_file: self
                    .nsx_client_cert
                    .clone()
                    .ok_or_else(|| required("--nsx-client-cert"))?,
                key_file: self
                    .nsx_client_key
                    .clone()
                    .ok_or_else(|| required("--nsx-client-key"))?,
            },
            mode => {
                let creds = Credentials::from_dir_or_env(self.nsx_credentials_dir.as_deref());
                if mode == NsxAuth::Basic {
                    AuthConfig::Basic(creds)
                } else {
                    AuthConfig::Session(creds)
                }
            }
        };
        let mut config = ClientConfig::new(url.to_string(), auth);
        config.ca_bundle = self.nsx_ca_file.clone();
        config.insecure_skip_tls_verify = self.nsx_insecure_skip_tls_verify;
        config.pacing = pacing;
        if self.nsx_insecure_skip_tls_verify {
            tracing::warn!(
                "--nsx-insecure-skip-tls-verify: the NSX Manager's certificate is NOT verified"
            );
        }
        Client::with_metrics(config, metrics).map_err(|e| NsxClientError::Nsx(Box::new(e)))
    }
}

/// Checks an NSX Manager URL: https, no user name or password in it; `http://` only when
/// `allow_http` (`--nsx-insecure-allow-http`, labs and the simulator). The reason names what is
/// wrong and never repeats the URL (it may hold a password).
pub fn check_nsx_url(url: &str, allow_http: bool) -> Result<(), String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("holds a user name or password; give credentials in \
                    --nsx-credentials-dir (or $NSX_USERNAME/$NSX_PASSWORD), never in the URL"
            .into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => {
            tracing::warn!(
                "--nsx-insecure-allow-http: NSX credentials travel in clear text (labs only)"
            );
            Ok(())
        }
        "http" => Err(
            "http:// sends the NSX credentials in clear text; use https:// \
                       (--nsx-insecure-allow-http for a lab or the simulator)"
                .into(),
        ),
        other => Err(format!("scheme {other:?} is not https")),
    }
}

/// Where the Kubernetes API server is (`controller`, and `plan`/`recommend --from-cluster`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

impl KubeArgs {
    /// The Kubernetes client: from `--kubeconfig` when given, else inferred. The error is a
    /// reason for the caller to put after its flag.
    pub async fn client(&self) -> Result<kube::Client, String> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| e.to_string())?
            }
            None => kube::Config::infer().await.map_err(|e| e.to_string())?,
        };
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::check_nsx_url;

    #[test]
    fn nsx_urls_are_https_without_credentials_unless_the_lab_flag_says_http() {
        assert!(check_nsx_url("https://nsx.example.com", false).is_ok());
        assert!(check_nsx_url("http://127.0.0.1:8080", true).is_ok());
        let e = check_nsx_url("http://nsx.example.com", false).unwrap_err();
        assert!(e.contains("--nsx-insecure-allow-http"), "{e}");
        for url in [
            "https://admin:S3CRET@nsx.example.com",
            "http://admin:S3CRET@nsx.example.com",
        ] {
            let e = check_nsx_url(url, true).unwrap_err();
            assert!(
                e.contains("user name or password") && !e.contains("S3CRET"),
                "{e}"
            );
        }
        assert!(check_nsx_url("ftp://nsx.example.com", true).is_err());
        assert!(check_nsx_url("nsx.example.com", true).is_err());
    }
}
