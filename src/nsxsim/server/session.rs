//! Authentication as NSX does it: session create (form login answering a `JSESSIONID` cookie
//! and an XSRF token), session cookies with the XSRF header, HTTP basic, and client
//! certificates registered as principal identities.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine;
use hyper::StatusCode;
use hyper::header::HeaderValue;

use super::route::form;
use super::{Resp, Session, Sim, empty, fail_response, lock};
use crate::nsx::codes;
use crate::nsxsim::errors::Fail;

impl Sim {
    pub(super) fn session_create(&self, body: &[u8]) -> Resp {
        let form: BTreeMap<String, String> = form(body);
        let user = form.get("j_username").cloned().unwrap_or_default();
        let pass = form.get("j_password").cloned().unwrap_or_default();
        if self.users.get(&user) != Some(&pass) {
            return fail_response(&bad_credentials());
        }
        let token = |n: usize| {
            (0..n)
                .map(|_| format!("{:02X}", rand::random::<u8>()))
                .collect::<String>()
        };
        let id = token(16);
        let xsrf = token(16);
        lock(&self.issued).push((id.clone(), xsrf.clone()));
        lock(&self.sessions).insert(
            id.clone(),
            Session {
                user,
                xsrf: xsrf.clone(),
                last_used: Instant::now(),
            },
        );
        let mut r = empty(StatusCode::OK);
        let secure = if self.tls { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "JSESSIONID={id}; Path=/{secure}; HttpOnly; SameSite=Lax"
        )) {
            r.headers_mut().insert(hyper::header::SET_COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&xsrf) {
            r.headers_mut().insert("x-xsrf-token", v);
        }
        r
    }

    /// The user of a request: `Ok(None)` when it carries no credentials at all (limits then
    /// apply per source address and the call is refused after them).
    pub(super) fn authenticate(
        &self,
        headers: &hyper::HeaderMap,
        cert: Option<&[u8]>,
    ) -> Result<Option<String>, Fail> {
        if let Some(auth) = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
        {
            let decoded = auth
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(bad_credentials());
            };
            if self.users.get(user).map(String::as_str) == Some(pass) {
                return Ok(Some(user.to_string()));
            }
            return Err(bad_credentials());
        }
        if let Some(id) = cookie(headers, "JSESSIONID") {
            let timeout = *lock(&self.session_timeout);
            let mut sessions = lock(&self.sessions);
            let expired = sessions
                .get(&id)
                .is_none_or(|s| s.last_used.elapsed() > timeout);
            if expired {
                sessions.remove(&id);
                return Err(bad_credentials());
            }
            if let Some(s) = sessions.get_mut(&id) {
                let given = headers.get("x-xsrf-token").and_then(|h| h.to_str().ok());
                if given != Some(s.xsrf.as_str()) {
                    return Err(Fail::new(
                        StatusCode::FORBIDDEN,
                        codes::XSRF,
                        "common-services",
                        "Bad XSRF token",
                    ));
                }
                s.last_used = Instant::now();
                return Ok(Some(s.user.clone()));
            }
        }
        if let Some(der) = cert
            && let Some(user) = lock(&self.principals).get(der)
        {
            return Ok(Some(user.clone()));
        }
        Ok(None)
    }
}

pub(super) fn bad_credentials() -> Fail {
    Fail::new(
        StatusCode::FORBIDDEN,
        codes::CREDENTIALS,
        "common-services",
        "The credentials were incorrect or the account specified has been locked.",
    )
}

pub(super) fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, val)| val.to_string())
}
