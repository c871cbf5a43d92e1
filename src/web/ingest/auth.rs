//! Who may send a batch: the bearer token, or an HMAC-SHA256 signature over the timestamp,
//! the idempotency key and the body (a replay older than `hmac_max_age` is refused). The body
//! is read only once the credentials hold, in one of `max_in_flight` slots and in time.

#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use super::*;
use crate::web::secret::{ExposeSecret, constant_time_eq};

/// Header carrying the signed batch's time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-microseg-timestamp";

/// What an HMAC signature covers: the timestamp, the idempotency key (empty when absent) and
/// the body, each of the first two followed by a newline.
pub fn signed_message(timestamp: &str, idempotency_key: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + idempotency_key.len() + body.len() + 2);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(idempotency_key.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m
}

/// Checks the credentials: the bearer token before the body is read; a request with neither a
/// bearer token nor a signature is refused before its body is read. A body is read only in one
/// of `max_in_flight` slots and within `body_timeout`. Returns the body.
pub(super) async fn authorised_body(ingest: &Ingest, req: Request) -> Result<Bytes, Response> {
    let headers = req.headers().clone();
    let signed = credentials(&ingest.inner.config, &headers)?;
    let body = read_body(ingest, req).await?;
    let Some((given, secret, ts)) = signed else {
        return Ok(body);
    };
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "HMAC key unusable"))?;
    mac.update(&signed_message(&ts, key, &body));
    mac.verify_slice(&given).map_err(|_| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "X-Microseg-Signature: the signature does not match <timestamp>\\n<idempotency key>\\n<body>",
        )
    })?;
    Ok(body)
}

/// A signed batch's signature, the key to check it with, and its timestamp.
type Signed<'a> = (Vec<u8>, &'a [u8], String);

/// The bearer token (checked here) or the signature, its key and its timestamp (checked
/// before the body is read: a stale replay costs nothing); `None` for a good token.
fn credentials<'a>(
    cfg: &'a IngestConfig,
    headers: &HeaderMap,
) -> Result<Option<Signed<'a>>, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token_ok = match (bearer, cfg.token.as_ref().map(ExposeSecret::expose_secret)) {
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
    let signature = match (
        headers.get(SIGNATURE_HEADER),
        cfg.hmac_secret.as_ref().map(ExposeSecret::expose_secret),
    ) {
        (Some(sig), Some(secret)) if !token_ok => Some((sig, secret)),
        _ => None,
    };
    if !token_ok && signature.is_none() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            match (cfg.token.is_some(), cfg.hmac_secret.is_some()) {
                (true, true) => {
                    "Authorization: send `Authorization: Bearer <token>` or an \
                     X-Microseg-Signature header"
                }
                (true, false) => "Authorization: send `Authorization: Bearer <token>`",
                _ => {
                    "X-Microseg-Signature: send sha256=<hex HMAC-SHA256 of the timestamp, key and body>"
                }
            },
        ));
    }
    let signed = match signature {
        None => None,
        Some((sig, secret)) => {
            let hex = sig
                .to_str()
                .ok()
                .and_then(|s| s.trim().strip_prefix("sha256="))
                .ok_or_else(|| {
                    refuse(
                        StatusCode::UNAUTHORIZED,
                        "X-Microseg-Signature: expected sha256=<hex HMAC-SHA256>",
                    )
                })?;
            let given = decode_hex(hex).ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "X-Microseg-Signature: the signature is not hexadecimal",
                )
            })?;
            let ts = signed_timestamp(headers, cfg.hmac_max_age)?;
            Some((given, secret, ts))
        }
    };
    Ok(signed)
}

/// Reads the body within the limits: its announced length, one of `max_in_flight` slots,
/// `body_timeout`.
async fn read_body(ingest: &Ingest, req: Request) -> Result<Bytes, Response> {
    let cfg = &ingest.inner.config;
    let headers = req.headers();
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > cfg.max_body_bytes
    {
        return Err(too_large(cfg.max_body_bytes));
    }
    let Ok(Ok(_slot)) = tokio::time::timeout(cfg.busy_wait, ingest.inner.bodies.acquire()).await
    else {
        let mut r = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {} batches are being read (--ingest-max-in-flight); retry the same batch",
                cfg.max_in_flight
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    };
    let body = match tokio::time::timeout(
        cfg.body_timeout,
        axum::body::to_bytes(req.into_body(), cfg.max_body_bytes),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(too_large(cfg.max_body_bytes)),
        Err(_) => {
            return Err(refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "body: not received within {} s; send the batch at once",
                    cfg.body_timeout.as_secs()
                ),
            ));
        }
    };
    Ok(body)
}

/// The signed batch's `X-Microseg-Timestamp`, if it is within `max_age` of now.
fn signed_timestamp(headers: &HeaderMap, max_age: Duration) -> Result<String, Response> {
    let Some(raw) = headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "X-Microseg-Timestamp: required with a signature (Unix seconds, signed with the \
             idempotency key and the body)",
        ));
    };
    let Ok(t) = raw.trim().parse::<i64>() else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!("X-Microseg-Timestamp: {} is not Unix seconds", quote(raw)),
        ));
    };
    let age = Timestamp::now()
        .as_second()
        .saturating_sub(t)
        .unsigned_abs();
    if age > max_age.as_secs() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "X-Microseg-Timestamp: {age} s away from now, more than the {} s accepted \
                 (--ingest-hmac-max-age); a replayed batch is refused, sign it again",
                max_age.as_secs()
            ),
        ));
    }
    Ok(raw.trim().to_string())
}

pub(super) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
