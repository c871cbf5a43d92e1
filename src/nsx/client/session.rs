//! Authentication state of a client: basic credentials, a session (cookie and XSRF token,
//! created on first use, renewed when idle too long or refused), or a client certificate.
//! Tokens are [`Secret`]s and the headers carrying them are marked sensitive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{Body, Client};
use crate::nsx::Error;
use crate::nsx::auth::{Login, Secret};

pub(super) struct SessionTokens {
    cookie: Secret,
    xsrf: Secret,
    last_used: Instant,
    generation: u64,
}

pub(super) enum Auth {
    Basic(Login),
    Session {
        login: Login,
        tokens: tokio::sync::Mutex<Option<SessionTokens>>,
        generation: AtomicU64,
    },
    Certificate,
}

impl Auth {
    pub(super) fn user(&self) -> String {
        match self {
            Auth::Basic(l) | Auth::Session { login: l, .. } => l.username.clone(),
            Auth::Certificate => "principal-identity".into(),
        }
    }
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::Config("session token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Client {
    /// Session cookie and XSRF token, logging in when there is no live session.
    pub(super) async fn session_headers(&self) -> Result<Option<(HeaderMap, u64)>, Error> {
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

    pub(super) async fn touch_session(&self) {
        if let Auth::Session { tokens, .. } = &self.inner.auth
            && let Some(t) = tokens.lock().await.as_mut()
        {
            t.last_used = Instant::now();
        }
    }

    pub(super) async fn drop_session(&self, generation: u64) {
        if let Auth::Session { tokens, .. } = &self.inner.auth {
            let mut guard = tokens.lock().await;
            if guard.as_ref().is_some_and(|t| t.generation == generation) {
                *guard = None;
            }
        }
    }

    pub(super) async fn login(&self, login: &Login) -> Result<SessionTokens, Error> {
        let Auth::Session { generation, .. } = &self.inner.auth else {
            return Err(Error::Config("login without session authentication".into()));
        };
        tracing::debug!(user = %login.username, "Creating NSX session");
        let form = Body::Form(vec![
            ("j_username", Secret::new(login.username.clone())),
            ("j_password", login.password.clone()),
        ]);
        let (headers, _) = self
            .execute(
                Method::POST,
                "/api/session/create",
                &[],
                &form,
                super::Mode {
                    idempotent: true,
                    authenticate: false,
                },
                super::Whole,
            )
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
}
