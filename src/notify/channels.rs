//! [`Channels`]: the [`Notifier`] the controller uses. It sends a notice on every contact the
//! owner has (e-mail and/or webhook), retries each channel with exponential backoff a bounded
//! number of times, and reports one [`Delivery`] per channel.
//!
//! A notice counts as delivered only when every channel accepted it; otherwise `send` returns
//! the first channel's error. [`Channels::send_each`] gives the per-channel results for callers
//! that record partial deliveries (the deterministic message id makes a resend on an already
//! served channel recognisable: Message-ID, Idempotency-Key). Logs name the policy, owner,
//! channel and message id, never an address's secret parts.

use async_trait::async_trait;

use super::config::{NotifyConfig, RetryPolicy};
use super::smtp::SmtpNotifier;
use super::webhook::WebhookNotifier;
use super::{Delivery, Error, Notice, Notifier};

/// Every channel, with retries.
#[derive(Debug)]
pub struct Channels {
    email: Option<SmtpNotifier>,
    webhook: WebhookNotifier,
    retry: RetryPolicy,
}

/// The result of one channel.
#[derive(Debug)]
pub struct ChannelResult {
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// The delivery, or the error after the last try.
    pub result: Result<Delivery, Error>,
    /// How many tries it took.
    pub attempts: u32,
}

impl Channels {
    /// Channels from parts.
    pub fn new(email: Option<SmtpNotifier>, webhook: WebhookNotifier, retry: RetryPolicy) -> Self {
        Channels {
            email,
            webhook,
            retry,
        }
    }

    /// Channels from configuration (see [`NotifyConfig::from_env_and_files`]).
    pub fn from_config(config: &NotifyConfig) -> Result<Self, Error> {
        let email = config
            .smtp
            .as_ref()
            .map(|smtp| SmtpNotifier::new(smtp, config.render.clone()))
            .transpose()?;
        let webhook = WebhookNotifier::new(&config.webhook, config.render.clone())?;
        Ok(Channels::new(email, webhook, config.retry))
    }

    /// Sends on every contact of the owner, each with retries; one result per contact.
    pub async fn send_each(&self, notice: &Notice) -> Vec<ChannelResult> {
        let mut runs = Vec::new();
        if notice.owner.email.is_some() {
            runs.push(("email", self.email.as_ref().map(|n| n as &dyn Notifier)));
        }
        if notice.owner.webhook.is_some() {
            runs.push(("webhook", Some(&self.webhook as &dyn Notifier)));
        }
        let futures = runs.into_iter().map(|(channel, notifier)| async move {
            match notifier {
                Some(n) => self.with_retry(channel, n, notice).await,
                None => ChannelResult {
                    channel,
                    result: Err(Error::NoChannel {
                        owner: notice.owner.name.clone(),
                        contact: channel,
                    }),
                    attempts: 0,
                },
            }
        });
        futures::future::join_all(futures).await
    }

    async fn with_retry(
        &self,
        channel: &'static str,
        notifier: &dyn Notifier,
        notice: &Notice,
    ) -> ChannelResult {
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = notifier.send(notice).await;
            let error = match result {
                Ok(mut deliveries) => match deliveries.pop() {
                    Some(delivery) => {
                        tracing::info!(
                            policy = %format!("{}/{}", notice.namespace, notice.name),
                            kind = notice.kind.as_str(),
                            owner = %notice.owner.name,
                            channel,
                            attempt,
                            message_id = %notice.message_id,
                            "Sent owner notice"
                        );
                        return ChannelResult {
                            channel,
                            result: Ok(delivery),
                            attempts: attempt,
                        };
                    }
                    None => Error::Config(format!("{channel} channel reported no delivery")),
                },
                Err(e) => e,
            };
            let retryable = matches!(error, Error::Smtp { .. } | Error::Webhook { .. });
            if !retryable || attempt >= attempts {
                tracing::warn!(
                    policy = %format!("{}/{}", notice.namespace, notice.name),
                    kind = notice.kind.as_str(),
                    owner = %notice.owner.name,
                    channel,
                    attempts = attempt,
                    category = error.category(),
                    error = %error,
                    "Owner notice not delivered"
                );
                return ChannelResult {
                    channel,
                    result: Err(gave_up(error, attempt)),
                    attempts: attempt,
                };
            }
            let wait = self.retry.backoff(attempt);
            tracing::warn!(
                policy = %format!("{}/{}", notice.namespace, notice.name),
                kind = notice.kind.as_str(),
                owner = %notice.owner.name,
                channel,
                attempt,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "Owner notice failed, retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Adds the number of tries to a channel error.
fn gave_up(error: Error, attempts: u32) -> Error {
    let note = |reason: String| format!("{reason} (gave up after {attempts} attempts)");
    match error {
        Error::Smtp { recipient, reason } if attempts > 1 => Error::Smtp {
            recipient,
            reason: note(reason),
        },
        Error::Webhook { owner, reason } if attempts > 1 => Error::Webhook {
            owner,
            reason: note(reason),
        },
        other => other,
    }
}

#[async_trait]
impl Notifier for Channels {
    /// Sends on every contact; all deliveries, or the first error.
    async fn send(&self, notice: &Notice) -> Result<Vec<Delivery>, Error> {
        if notice.owner.email.is_none() && notice.owner.webhook.is_none() {
            return Err(Error::NoChannel {
                owner: notice.owner.name.clone(),
                contact: "email or webhook",
            });
        }
        let mut deliveries = Vec::new();
        let mut first_error = None;
        for r in self.send_each(notice).await {
            match r.result {
                Ok(d) => deliveries.push(d),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(deliveries),
        }
    }
}
