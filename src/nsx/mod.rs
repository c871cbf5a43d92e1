//! NSX Policy API: the wire model shared by the plan, the client and the simulator, the
//! `NsxApi` trait the controller talks to, and its typed errors.
//!
//! Submodules: [`codes`] (NSX error codes, shared with the simulator), [`model`] (wire
//! types), [`client`] (the HTTP client implementing [`NsxApi`]),
//! [`auth`] (credentials and secrets), [`pacing`] (shared rate/concurrency budget with AIMD
//! back-off), [`metrics`] (Prometheus series of the client), [`predefined`] (NSX's predefined
//! services), [`naming`] (microseg's ids, paths and tags in NSX).

pub mod auth;
pub mod client;
pub mod codes;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod pacing;
pub mod predefined;

pub use auth::{AuthConfig, Credentials, Secret};
pub use client::{Client, ClientConfig};
pub use metrics::NsxMetrics;
pub use pacing::PacingConfig;

use std::time::Duration;

use async_trait::async_trait;

use model::{ApiError, Group, Infra, SecurityPolicy};

/// NSX's error code for a write to a path whose deletion is still pending
/// ([`codes::PENDING_DELETE`]). The deletion completes on its own within seconds.
pub const CODE_PENDING_DELETE: i64 = codes::PENDING_DELETE;
/// How long to wait before retrying a write refused because of a pending delete.
pub const PENDING_DELETE_BACKOFF: Duration = Duration::from_secs(2);

/// Realization of an intent path as NSX reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Realization {
    /// `REALIZED` (and runtime status fine).
    Realized,
    /// `UNREALIZED`, `UNKNOWN` or no entry yet: still in progress.
    InProgress,
    /// `ERROR`, with NSX's message.
    Failed(String),
}

/// One domain's groups and security policies, as `GET /infra` with a type filter returns them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DomainTree {
    /// Domain id.
    pub domain: String,
    /// Groups that decode.
    pub groups: Vec<Group>,
    /// Security policies that decode, with their rules in `rules` (never in `children`).
    pub policies: Vec<SecurityPolicy>,
    /// Ids of groups and policies present that do not decode (a reader must not take them as
    /// absent).
    pub undecoded: Vec<String>,
    /// Groups and policies left out because the reader holds them already (see [`Held`]):
    /// kind (`Group` or `SecurityPolicy`), id and the digest of their text.
    pub known: Vec<(&'static str, String, TextDigest)>,
    /// The digest of each group's and policy's text that was decoded: kind, id, digest.
    pub digests: Vec<(&'static str, String, TextDigest)>,
}

/// What the reader of [`NsxApi::infra_tree_known`] holds already: a group or policy it holds is
/// named in [`DomainTree::known`], not kept decoded beside the reader's own copy.
pub trait Held: Send + Sync {
    /// Whether the reader holds the object whose JSON text has this digest (not decoded).
    fn text(&self, digest: &TextDigest) -> bool;
    /// Whether the reader holds this group as it is (a text it has not seen, e.g. after its
    /// own write), up to NSX's bookkeeping (`_revision`, `_last_modified_time`), which the
    /// reader may then take from `g`.
    fn group(&self, g: &Group) -> bool;
    /// Whether the reader holds this policy (rules in `rules`) as it is, as for groups.
    fn policy(&self, p: &SecurityPolicy) -> bool;
}

/// A digest of one object's JSON text as NSX returned it (the first 16 bytes of its SHA-256):
/// two reads with the same digest returned the same object.
pub type TextDigest = [u8; 16];

/// The [`TextDigest`] of `text`.
pub fn text_digest(text: &[u8]) -> TextDigest {
    use sha2::Digest;
    let full = sha2::Sha256::digest(text);
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// What the controller needs from NSX. Implemented by `client::Client` (HTTP) and usable
/// against `nsxsim`.
#[async_trait]
pub trait NsxApi: Send + Sync {
    /// One group, or `None` when absent.
    async fn get_group(&self, domain: &str, id: &str) -> Result<Option<Group>, Error>;
    /// One security policy with its embedded rules (each with `rule_id`), or `None`.
    async fn get_policy(&self, domain: &str, id: &str) -> Result<Option<SecurityPolicy>, Error>;
    /// Every group of a domain (paged reads followed to the end).
    async fn list_groups(&self, domain: &str) -> Result<Vec<Group>, Error>;
    /// Every security policy of a domain, without rules (paged reads followed to the end).
    async fn list_policies(&self, domain: &str) -> Result<Vec<SecurityPolicy>, Error>;
    /// Groups and security policies (rules embedded) of every domain in one read:
    /// `GET /infra?filter=Type-Domain|Group|SecurityPolicy|Rule` (reference §1, §7).
    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error>;
    /// [`NsxApi::infra_tree`], with each group or policy the caller holds already named in
    /// [`DomainTree::known`] instead of kept decoded: a refresh of 1,000 unchanged applications
    /// then holds no second copy of them. By default nothing is left out.
    async fn infra_tree_known(
        &self,
        held: std::sync::Arc<dyn Held>,
    ) -> Result<Vec<DomainTree>, Error> {
        let _ = held;
        self.infra_tree().await
    }
    /// Security policies (rules embedded) of every domain in one read, without groups:
    /// `GET /infra?filter=Type-Domain|SecurityPolicy|Rule`. By default the whole tree.
    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.infra_tree().await
    }
    /// One hierarchical `PATCH /policy/api/v1/infra` call (atomic).
    async fn patch_infra(&self, body: &Infra) -> Result<(), Error>;
    /// As [`NsxApi::patch_infra`], for a write nobody waits for at a scheduled instant (a new
    /// application's objects, in PASS): a writer that coalesces may hold it longer so that more
    /// applications share the call. Anything that changes what traffic does now (a DROP, a
    /// return to PASS) goes through `patch_infra`.
    async fn patch_infra_relaxed(&self, body: &Infra) -> Result<(), Error> {
        self.patch_infra(body).await
    }
    /// Whether a group has any effective member now (a VM or an IP address).
    async fn group_has_members(&self, domain: &str, id: &str) -> Result<bool, Error>;
    /// The display names of a group's effective VM members (`GET .../members/virtual-machines`,
    /// paged), sorted; used to choose canary VMs.
    async fn group_vm_names(&self, domain: &str, id: &str) -> Result<Vec<String>, Error>;
    /// Realization state of an intent path (e.g. a security policy path).
    async fn realization(&self, intent_path: &str) -> Result<Realization, Error>;
}

/// Errors of the NSX client. NSX's own code and message survive to the status condition.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// NSX answered with an error body.
    #[error("NSX {method} {path}: HTTP {status}, error {}: {}", .error.error_code, .error.error_message)]
    Api {
        /// HTTP method.
        method: String,
        /// Policy path or URL path called.
        path: String,
        /// HTTP status.
        status: u16,
        /// NSX's error body.
        error: ApiError,
    },
    /// 412 (or another stale-revision signal) persisted after the bounded retries.
    #[error("NSX {path}: revision conflict persisted after {attempts} attempts")]
    Conflict {
        /// Path.
        path: String,
        /// Attempts made.
        attempts: u32,
    },
    /// 429 or 503 persisted after backing off.
    #[error("NSX busy (HTTP {status}) on {path}")]
    Busy {
        /// Path.
        path: String,
        /// 429 or 503.
        status: u16,
        /// Retry-After, if NSX sent one.
        retry_after: Option<Duration>,
    },
    /// Credentials refused (403 with error code 403 or 98 after re-login).
    #[error("NSX refused the credentials for {user}")]
    Auth {
        /// User name (never the password).
        user: String,
    },
    /// Connection, TLS or timeout.
    #[error("NSX unreachable at {url}: {reason}")]
    Transport {
        /// Manager URL.
        url: String,
        /// Why (no secrets).
        reason: String,
    },
    /// A response that does not parse.
    #[error("NSX {path}: unexpected response: {reason}")]
    Decode {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Bad client configuration (missing credential file, bad CA bundle).
    #[error("NSX client configuration: {0}")]
    Config(String),
}

impl Error {
    /// PascalCase label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api { status, error, .. }
                if codes::is_pending_delete(*status, error.error_code) =>
            {
                "NsxPendingDelete"
            }
            Error::Api { status: 400, .. } => "NsxInvalidRequest",
            Error::Api { status: 404, .. } => "NsxNotFound",
            Error::Api { .. } => "NsxApiError",
            Error::Conflict { .. } => "NsxConflict",
            Error::Busy { .. } => "NsxBusy",
            Error::Auth { .. } => "NsxAuth",
            Error::Transport { .. } => "NsxUnreachable",
            Error::Decode { .. } => "NsxDecode",
            Error::Config(_) => "NsxConfig",
        }
    }

    /// How long to wait before trying again, or `None` when retrying cannot help (invalid
    /// request, bad configuration).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Busy { retry_after, .. } => Some(retry_after.unwrap_or(Duration::from_secs(5))),
            Error::Api { status, error, .. }
                if codes::is_pending_delete(*status, error.error_code) =>
            {
                Some(PENDING_DELETE_BACKOFF)
            }
            Error::Transport { .. } | Error::Conflict { .. } => Some(Duration::from_secs(5)),
            Error::Api { status, .. } if *status >= 500 => Some(Duration::from_secs(5)),
            Error::Auth { .. } => Some(Duration::from_secs(60)),
            _ => None,
        }
    }

    /// NSX refused to delete an object other objects still refer to (400
    /// [`codes::IN_USE`]).
    pub fn is_in_use(&self) -> bool {
        matches!(self, Error::Api { status, error, .. } if codes::is_in_use(*status, error.error_code))
    }

    /// NSX answered that the same call may succeed if sent again ([`codes::is_transient`]:
    /// 409, 500 with transaction aborted or backend unreachable, 400 concurrent hierarchical
    /// call).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Api { status, error, .. } if codes::is_transient(*status, error.error_code, &error.error_message))
    }

    /// NSX's error code, when NSX gave one.
    pub fn nsx_code(&self) -> Option<i64> {
        match self {
            Error::Api { error, .. } => Some(error.error_code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64) -> Error {
        Error::Api {
            method: "PATCH".into(),
            path: "/infra".into(),
            status,
            error: ApiError {
                error_code: code,
                ..ApiError::default()
            },
        }
    }

    #[test]
    fn a_pending_delete_is_retried_after_a_short_back_off() {
        let e = api(400, CODE_PENDING_DELETE);
        assert_eq!(e.category(), "NsxPendingDelete");
        assert_eq!(e.retry_after(), Some(PENDING_DELETE_BACKOFF));
        // Other 400s stay invalid requests that retrying cannot fix.
        let other = api(400, 255);
        assert_eq!(other.category(), "NsxInvalidRequest");
        assert_eq!(other.retry_after(), None);
    }

    #[test]
    fn in_use_and_transient_errors_are_recognised_by_code_not_message() {
        let in_use = api(400, codes::IN_USE);
        assert!(in_use.is_in_use());
        assert!(!in_use.is_transient());
        // The message alone decides nothing.
        let mut worded = api(400, codes::INVALID_VALUE);
        if let Error::Api { error, .. } = &mut worded {
            error.error_message = "it is being referenced by other objects".into();
        }
        assert!(!worded.is_in_use());
        let mut atomic = api(400, codes::EXISTS);
        if let Error::Api { error, .. } = &mut atomic {
            error.error_message = codes::atomic_request_message(7);
        }
        assert!(atomic.is_transient());
        assert!(!api(400, codes::EXISTS).is_transient());
        assert!(api(500, codes::TRANSACTION_ABORTED).is_transient());
        assert!(api(409, 0).is_transient());
        assert!(!api(400, codes::JSON).is_transient());
        let busy = Error::Busy {
            path: "/infra".into(),
            status: 503,
            retry_after: None,
        };
        assert!(!busy.is_in_use() && !busy.is_transient());
    }
}
