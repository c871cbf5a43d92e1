//! NSX error bodies as the simulator sends them (reference §4). The codes are
//! [`crate::nsx::codes`], shared with the client.

use hyper::StatusCode;

use crate::nsx::codes;
use crate::nsx::model::ApiError;

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

    /// 403 from the policy module.
    pub fn forbidden(code: i64, message: impl Into<String>) -> Self {
        Fail::new(StatusCode::FORBIDDEN, code, "Policy", message)
    }

    /// 412 from the policy module.
    pub fn precondition_failed(code: i64, message: impl Into<String>) -> Self {
        Fail::new(StatusCode::PRECONDITION_FAILED, code, "Policy", message)
    }

    /// 404 for a policy path.
    pub fn not_found(path: &str) -> Self {
        Fail::new(
            StatusCode::NOT_FOUND,
            codes::INVALID_PATH,
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

/// A 400 body from the policy module.
pub fn bad_request(code: i64, message: impl Into<String>) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, code, "Policy", message)
}

/// A 400 body for a field-level validation error.
pub fn invalid(message: impl Into<String>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        codes::INVALID_VALUE,
        "Policy",
        message,
    )
}

/// A 400 body for a JSON de-serialization error.
pub fn json_error(message: impl Into<String>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        codes::JSON,
        "common-services",
        format!("Json de-serialization error: {}", message.into()),
    )
}
