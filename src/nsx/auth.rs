//! NSX client credentials: where they come from (files or environment variables, never the
//! command line) and how they are kept (a [`Secret`]: a [`SecretString`], zeroed when dropped,
//! whose `Debug` is redacted and which has no `Display`, so a credential cannot reach a log
//! line or an error message by accident).

// `nsx::Error::Api` carries NSX's whole error body by design (its code and message reach the
// status condition), so results with it are large.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::Error;

/// A secret string (password, session cookie, XSRF token), held in a [`SecretString`]:
/// `Debug` prints `[REDACTED]`, and [`Secret::expose`] is the only way to read it.
#[derive(Clone, Debug)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Where a user name and password come from: each from a file (first line, trailing newline
/// dropped) or an environment variable; the file wins when both are given.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// File holding the user name.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// Environment variable holding the user name.
    #[serde(default)]
    pub username_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

impl Credentials {
    /// `username` and `password` files in `dir` (a mounted Secret), or else `$NSX_USERNAME` and
    /// `$NSX_PASSWORD`.
    pub fn from_dir_or_env(dir: Option<&std::path::Path>) -> Credentials {
        match dir {
            Some(dir) => Credentials {
                username_file: Some(dir.join("username")),
                password_file: Some(dir.join("password")),
                ..Default::default()
            },
            None => Credentials {
                username_env: Some("NSX_USERNAME".into()),
                password_env: Some("NSX_PASSWORD".into()),
                ..Default::default()
            },
        }
    }
}

/// A loaded user name and password.
#[derive(Clone, Debug)]
pub struct Login {
    /// User name (not secret; it appears in logs and errors).
    pub username: String,
    /// Password.
    pub password: Secret,
}

fn from_source(file: &Option<PathBuf>, env: &Option<String>, field: &str) -> Result<String, Error> {
    if let Some(path) = file {
        let s = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("credentials.{field}File {}: {e}", path.display()))
        })?;
        let s = s.lines().next().unwrap_or("").to_string();
        if s.is_empty() {
            return Err(Error::Config(format!(
                "credentials.{field}File {}: empty",
                path.display()
            )));
        }
        return Ok(s);
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(Error::Config(format!(
                "credentials.{field}Env: environment variable {var} is not set"
            ))),
        };
    }
    Err(Error::Config(format!(
        "credentials: neither {field}File nor {field}Env is set"
    )))
}

impl Credentials {
    /// Credentials read from two files.
    pub fn files(username: impl Into<PathBuf>, password: impl Into<PathBuf>) -> Self {
        Credentials {
            username_file: Some(username.into()),
            password_file: Some(password.into()),
            ..Credentials::default()
        }
    }

    /// Credentials read from two environment variables.
    pub fn env(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username_env: Some(username.into()),
            password_env: Some(password.into()),
            ..Credentials::default()
        }
    }

    /// Reads the user name and password.
    pub fn load(&self) -> Result<Login, Error> {
        Ok(Login {
            username: from_source(&self.username_file, &self.username_env, "username")?,
            password: Secret::new(from_source(
                &self.password_file,
                &self.password_env,
                "password",
            )?),
        })
    }
}

/// How the client authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// HTTP basic authentication on every call.
    Basic(Credentials),
    /// A session (`POST /api/session/create`): cookie plus XSRF token, renewed on expiry.
    Session(Credentials),
    /// A principal identity: a TLS client certificate and its key (PEM files).
    Certificate {
        /// PEM certificate (chain).
        cert_file: PathBuf,
        /// PEM private key.
        key_file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("REDACTED"), "{shown}");
        }
        let login = Login {
            username: "admin".into(),
            password: s.clone(),
        };
        let shown = format!("{login:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("admin"),
            "{shown}"
        );
    }

    #[test]
    fn missing_credentials_name_the_field() {
        let err = Credentials::default().load().unwrap_err();
        assert!(err.to_string().contains("usernameFile"), "{err}");
        let err = Credentials::env("MICROSEG_TEST_UNSET_USER", "X")
            .load()
            .unwrap_err();
        assert!(
            err.to_string().contains("MICROSEG_TEST_UNSET_USER"),
            "{err}"
        );
    }
}
