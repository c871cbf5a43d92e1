//! NSX error bodies as the simulator sends them (reference §4), and the error codes it uses.
//!
//! Codes the reference confirms: 287 (unknown JSON property, module `common-services`),
//! 500127 (PUT-create of an existing object), 500030 (resource in use), 500045 (pending
//! delete), 98 (bad XSRF token), 403 (bad credentials). The reference does not give the codes NSX uses for field validation,
//! invalid references, 404s, 412s, 429s or 503s; the simulator's choices are the constants
//! below, and clients must not depend on them (they key on the HTTP status).

use hyper::StatusCode;

use crate::nsx::model::ApiError;

/// Unknown JSON property or wrong JSON type (confirmed).
pub const CODE_JSON: i64 = 287;
/// PUT without `_revision` on an existing object (confirmed).
pub const CODE_EXISTS: i64 = 500127;
/// Creating an object whose deletion is still pending (confirmed: nsx-operator maps 400 with
/// this code to `NsxPendingDelete`, reference §3/§4; the message text is the simulator's).
pub const CODE_PENDING_DELETE: i64 = crate::nsx::CODE_PENDING_DELETE;
/// Object still referenced (confirmed as "resource in use").
pub const CODE_IN_USE: i64 = 500030;
/// Bad XSRF token (confirmed).
pub const CODE_XSRF: i64 = 98;
/// Bad credentials (confirmed).
pub const CODE_CREDENTIALS: i64 = 403;
/// A path that names no object (simulator's choice).
pub const CODE_INVALID_PATH: i64 = 500012;
/// A field value NSX refuses (simulator's choice).
pub const CODE_INVALID_VALUE: i64 = 255;
/// Stale `_revision` (simulator's choice; the manager API's 412 uses 206).
pub const CODE_REVISION: i64 = 206;
/// Modifying a read-only (system-owned) object (simulator's choice).
pub const CODE_READ_ONLY: i64 = 500071;
/// Rate or concurrency limit (simulator's choice).
pub const CODE_RATE: i64 = 102;
/// Concurrent hierarchical transaction ("AtomicRequest ... already present"; simulator's
/// choice).
pub const CODE_ATOMIC_REQUEST: i64 = 500_100;
/// Change to an object protected by another principal identity (simulator's choice; the
/// reference assumes 403).
pub const CODE_PROTECTED: i64 = 500_101;
/// Service unavailable (simulator's choice).
pub const CODE_UNAVAILABLE: i64 = 101;

/// An error answer: HTTP status plus NSX's JSON body.
#[derive(Debug, Clone)]
pub struct Fail {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Box<ApiError>,
}

/// Java `HttpStatus` name of a status, as NSX puts in `httpStatus`.
pub fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        412 => "PRECONDITION_FAILED",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    }
}

/// One error body (no related errors).
pub fn api_error(
    status: StatusCode,
    code: i64,
    module: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        http_status: Some(status_name(status).to_string()),
        error_code: code,
        module_name: Some(module.to_string()),
        error_message: message.into(),
        details: None,
        related_errors: Vec::new(),
    }
}

impl Fail {
    /// Any status and code.
    pub fn new(status: StatusCode, code: i64, module: &str, message: impl Into<String>) -> Self {
        Fail {
            status,
            body: Box::new(api_error(status, code, module, message)),
        }
    }

    /// 400 from the policy module.
    pub fn bad(code: i64, message: impl Into<String>) -> Self {
        Fail::new(StatusCode::BAD_REQUEST, code, "Policy", message)
    }

    /// 404 for a policy path.
    pub fn not_found(path: &str) -> Self {
        Fail::new(
            StatusCode::NOT_FOUND,
            CODE_INVALID_PATH,
            "Policy",
            format!("The path=[{path}] is invalid"),
        )
    }

    /// Bundles validation errors (all 400) into one answer: the first error on top, and all of
    /// them in `related_errors` when there are several (as H-API failures do).
    pub fn from_errors(mut errors: Vec<ApiError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        let mut top = errors[0].clone();
        if errors.len() > 1 {
            top.related_errors = std::mem::take(&mut errors);
        }
        Some(Fail {
            status: StatusCode::BAD_REQUEST,
            body: Box::new(top),
        })
    }
}

/// A 400 body for a field-level validation error.
pub fn invalid(message: impl Into<String>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        CODE_INVALID_VALUE,
        "Policy",
        message,
    )
}

/// A 400 body for a JSON de-serialization error.
pub fn json_error(message: impl Into<String>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        CODE_JSON,
        "common-services",
        format!("Json de-serialization error: {}", message.into()),
    )
}
