//! NSX `error_code`s, in one place for the client (which classifies errors by them) and the
//! simulator (which sends them). Pure: no IO.
//!
//! Codes the reference confirms (§3, §4): 287 (unknown JSON property, module
//! `common-services`), 500127 (PUT-create of an existing object), 500030 (resource in use),
//! 500045 (pending delete), 98 (bad XSRF token on 403; manager cannot reach its backend on
//! 500), 403 (bad credentials), 607 (API transaction aborted). The reference gives no codes for
//! field validation, invalid references, 404s, 412s, 429s, 503s or the concurrent-transaction
//! refusal; for those the constants below are the simulator's choices.

/// Unknown JSON property or wrong JSON type (confirmed).
pub const JSON: i64 = 287;
/// PUT without `_revision` on an existing object (confirmed).
pub const EXISTS: i64 = 500127;
/// Creating an object whose deletion is still pending (confirmed: nsx-operator maps 400 with
/// this code to `NsxPendingDelete`, reference §3/§4).
pub const PENDING_DELETE: i64 = 500045;
/// Object still referenced: "cannot be deleted as either it has children or it is being
/// referenced by other objects" (confirmed as "resource in use").
pub const IN_USE: i64 = 500030;
/// Bad XSRF token on a 403; on a 500, the manager could not reach its backend (confirmed).
pub const XSRF: i64 = 98;
/// Bad credentials (confirmed).
pub const CREDENTIALS: i64 = 403;
/// API transaction aborted, on a 500 (confirmed; retry).
pub const TRANSACTION_ABORTED: i64 = 607;
/// A path that names no object (simulator's choice).
pub const INVALID_PATH: i64 = 500012;
/// A field value NSX refuses (simulator's choice).
pub const INVALID_VALUE: i64 = 255;
/// Stale `_revision` (simulator's choice; the manager API's 412 uses 206).
pub const REVISION: i64 = 206;
/// Modifying a read-only (system-owned) object (simulator's choice).
pub const READ_ONLY: i64 = 500071;
/// Rate or concurrency limit (simulator's choice).
pub const RATE: i64 = 102;
/// The pseudo-object a concurrent hierarchical transaction is refused on: 400 "The object
/// AtomicRequest/N is already present in the system" (reference §4). The reference gives the
/// message, not the code; it is worded as [`EXISTS`] is ("The object … is already present in
/// the system"), so the simulator sends [`EXISTS`], and the client tells this refusal (retry)
/// from a PUT-create conflict (no retry) by the object it names: the one case where the
/// message decides, because the code alone cannot.
pub const ATOMIC_REQUEST_OBJECT: &str = "AtomicRequest/";
/// Change to an object protected by another principal identity (simulator's choice; the
/// reference assumes 403).
pub const PROTECTED: i64 = 500_101;
/// Service unavailable (simulator's choice).
pub const UNAVAILABLE: i64 = 101;

/// NSX answers that mean "try the same call again" (reference §4): 409 (concurrent change),
/// 500 with [`TRANSACTION_ABORTED`] or [`XSRF`] (manager could not reach its backend), and 400
/// [`EXISTS`] on [`ATOMIC_REQUEST_OBJECT`] (concurrent hierarchical calls). Only idempotent
/// calls are retried on them.
pub fn is_transient(status: u16, code: i64, message: &str) -> bool {
    match status {
        409 => true,
        500 => matches!(code, TRANSACTION_ABORTED | XSRF),
        400 => code == EXISTS && message.contains(ATOMIC_REQUEST_OBJECT),
        _ => false,
    }
}

/// The message of a concurrent hierarchical transaction refused ([`ATOMIC_REQUEST_OBJECT`]).
pub fn atomic_request_message(n: u16) -> String {
    format!("The object {ATOMIC_REQUEST_OBJECT}{n} is already present in the system.")
}

/// A refused deletion of an object other objects still refer to (400 [`IN_USE`]).
pub fn is_in_use(status: u16, code: i64) -> bool {
    status == 400 && code == IN_USE
}

/// A write to a path whose deletion is still pending (400 [`PENDING_DELETE`]).
pub fn is_pending_delete(status: u16, code: i64) -> bool {
    status == 400 && code == PENDING_DELETE
}

/// Credentials or session refused: 401, or 403 with [`XSRF`], [`CREDENTIALS`] or no code.
pub fn is_auth_failure(status: u16, code: i64) -> bool {
    status == 401 || (status == 403 && matches!(code, XSRF | CREDENTIALS | 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_recognised_by_status_and_code() {
        assert!(is_transient(409, 0, ""));
        assert!(is_transient(500, TRANSACTION_ABORTED, ""));
        assert!(is_transient(500, XSRF, ""));
        assert!(is_transient(400, EXISTS, &atomic_request_message(12)));
        // The same code on a real object: a PUT-create conflict, which a retry cannot fix.
        assert!(!is_transient(
            400,
            EXISTS,
            "The object path=[/infra/domains/default/groups/web] is already present in the system."
        ));
        assert!(!is_transient(400, JSON, &atomic_request_message(12)));
        assert!(!is_transient(400, IN_USE, ""));
        assert!(!is_transient(500, 1, ""));
        assert!(!is_transient(403, XSRF, ""));
    }

    #[test]
    fn in_use_pending_delete_and_auth_failures_are_told_apart() {
        assert!(is_in_use(400, IN_USE));
        assert!(!is_in_use(400, PENDING_DELETE));
        assert!(!is_in_use(404, IN_USE));
        assert!(is_pending_delete(400, PENDING_DELETE));
        assert!(!is_pending_delete(400, IN_USE));
        assert!(is_auth_failure(401, 0));
        assert!(is_auth_failure(403, XSRF));
        assert!(is_auth_failure(403, CREDENTIALS));
        assert!(!is_auth_failure(403, PROTECTED));
        assert!(!is_auth_failure(500, XSRF));
    }
}
