//! Owner notices: what is sent (`Notice`), the `Notifier` channels (e-mail over SMTP, webhooks),
//! and deterministic message ids that make sending idempotent together with the records in
//! `status.notifications`.
//!
//! - [`render`]: subject, text and HTML of a notice from the templates (pure).
//! - [`smtp`], [`webhook`]: one channel each, one try per call.
//! - [`channels::Channels`]: every contact of an owner, with bounded retries; what the
//!   controller holds as its `Notifier`.
//! - [`config`]: channel settings from the environment and mounted Secret files.
//! - [`examples`]: one example notice per kind (docs/notices/, tests).

pub mod channels;
pub mod config;
pub mod examples;
pub mod render;
pub mod smtp;
pub mod webhook;

pub use channels::{ChannelResult, Channels};
pub use config::NotifyConfig;
pub use render::{Rendered, render};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::api::{FlowSummary, Owner, Phase};

/// The kinds of notice an owner receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeKind {
    /// At notifyAt: what will happen, when, what monitor mode is, whom to contact.
    Scheduled,
    /// Shortly before enforceAt.
    Reminder,
    /// The catch-all now drops.
    Enforced,
    /// Clean-up done: the application is finished.
    Completed,
    /// A gate or a late notice moved enforcement; with the reason and the new date.
    Postponed,
    /// Enforcement was rolled back to monitor mode.
    RolledBack,
    /// Open alerts: the top unmatched flows and the rule that would allow each.
    AlertDigest,
}

impl NoticeKind {
    /// The name written in `status.notifications[].kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Scheduled => "Scheduled",
            NoticeKind::Reminder => "Reminder",
            NoticeKind::Enforced => "Enforced",
            NoticeKind::Completed => "Completed",
            NoticeKind::Postponed => "Postponed",
            NoticeKind::RolledBack => "RolledBack",
            NoticeKind::AlertDigest => "AlertDigest",
        }
    }
}

/// One notice to one owner.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Which notice.
    pub kind: NoticeKind,
    /// Policy namespace.
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// Application display name.
    pub application: String,
    /// Who receives it.
    pub owner: Owner,
    /// Phase at sending.
    pub phase: Phase,
    /// Effective monitorFrom.
    pub monitor_from: Timestamp,
    /// Effective enforceAt (the new date for Postponed).
    pub enforce_at: Timestamp,
    /// Effective cleanupAt.
    pub cleanup_at: Timestamp,
    /// Why (Postponed, RolledBack), for people.
    pub reason: Option<String>,
    /// Top unmatched flows (AlertDigest).
    pub flows: Vec<FlowSummary>,
    /// Deterministic id (see [`message_id`]).
    pub message_id: String,
    /// Canary enforcement (Scheduled, Reminder, Enforced): which VMs DROP applies to first and
    /// when each step may widen.
    pub canary: Option<CanaryPlan>,
}

/// What an owner is told about canary enforcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryPlan {
    /// The canary VMs (known once enforcement started; empty before).
    pub vms: Vec<String>,
    /// The application's VMs (0 when not known yet).
    pub members: usize,
    /// The steps still to come, in order: what each covers and the earliest instant it widens
    /// to the next (or, for the last, to every VM), if the gates hold then.
    pub steps: Vec<CanaryStepPlan>,
}

/// One canary step in a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryStepPlan {
    /// `1 VM`, `50% of the VMs`.
    pub covers: String,
    /// Earliest end of the step.
    pub widens_at: Timestamp,
}

/// Deterministic id of a notice: the same notice (kind, policy, owner, occasion) always gets the
/// same id, so a resend after a crash is recognisable (e-mail Message-ID, webhook
/// Idempotency-Key).
pub fn message_id(
    kind: NoticeKind,
    namespace: &str,
    name: &str,
    owner: &str,
    occasion: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_str(), namespace, name, owner, occasion] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}@microseg.io")
}

/// A successful delivery on one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// When it was accepted by the receiving server.
    pub at: Timestamp,
}

/// Errors of the notification channels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SMTP server refused or could not be reached.
    #[error("e-mail to {recipient}: {reason}")]
    Smtp {
        /// Address.
        recipient: String,
        /// Why (no credentials).
        reason: String,
    },
    /// The webhook answered with an error or could not be reached.
    #[error("webhook for {owner}: {reason}")]
    Webhook {
        /// Owner name.
        owner: String,
        /// Why (no secret URL parts).
        reason: String,
    },
    /// No channel is configured for an owner's contact.
    #[error("owner {owner}: no channel configured for {contact}")]
    NoChannel {
        /// Owner name.
        owner: String,
        /// email or webhook.
        contact: &'static str,
    },
    /// Bad configuration.
    #[error("notification configuration: {0}")]
    Config(String),
}

impl Error {
    /// PascalCase label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Smtp { .. } => "SmtpFailed",
            Error::Webhook { .. } => "WebhookFailed",
            Error::NoChannel { .. } => "NoChannel",
            Error::Config(_) => "NotifyConfig",
        }
    }
}

/// Sends notices. A notice counts as delivered when every contact of the owner accepted it.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one notice on every channel the owner has; returns one delivery per channel.
    async fn send(&self, notice: &Notice) -> Result<Vec<Delivery>, Error>;
}
