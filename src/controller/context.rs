//! What every reconcile shares: clients, stores, the recorder, metrics, the clock and settings.
//! Built once in `controller::Leader::new`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::runtime::reflector::Store;

use super::metrics::Metrics;
use crate::api::{EnforcementWindow, SegmentationPolicy};
use crate::notify::Notifier;
use crate::nsx::NsxApi;
use crate::nsx::naming::Identity;

/// The source of `now`.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Compute and report NSX changes without writing them.
    pub dry_run: bool,
    /// Resync period: NSX is compared at least this often (drift by hand).
    pub resync: Duration,
    /// Reminder notice this long before enforceAt.
    pub reminder_before: SignedDuration,
    /// MonitoringHealthy turns False after this long without a DFW log line.
    pub log_silence: SignedDuration,
    /// Wait before retrying a failed notice.
    pub notice_retry: Duration,
    /// Serve NSX reads from the NSX cache (`nsx_cache`), refreshed every resync.
    pub nsx_cache: bool,
    /// Coalesce NSX writes (`nsx_batch`); `None` writes each application alone.
    pub nsx_batch: Option<super::nsx_batch::BatchConfig>,
    /// Reconciles run at once (a batched write holds as many applications as reconcile
    /// together).
    pub reconcile_concurrency: u16,
    /// A scheduled transition is decided this long before its instant and written at it
    /// (`controller::ahead`); zero decides at the instant.
    pub lead: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dry_run: false,
            resync: Duration::from_secs(300),
            reminder_before: SignedDuration::from_hours(48),
            log_silence: SignedDuration::from_hours(24),
            notice_retry: Duration::from_secs(60),
            nsx_cache: true,
            nsx_batch: Some(super::nsx_batch::BatchConfig::default()),
            reconcile_concurrency: 1024,
            lead: Duration::from_secs(10),
        }
    }
}

/// Shared state of the reconcilers.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// NSX.
    pub nsx: Arc<dyn NsxApi>,
    /// Owner notices; `None` when no channel is configured (notices cannot be delivered, so
    /// enforcement is held).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Events, published off the reconcile path (one recorder, shared).
    pub events: super::events::Events,
    /// This cluster's identity in NSX.
    pub identity: Identity,
    /// All policies (warm in every replica).
    pub policies: Store<SegmentationPolicy>,
    /// All windows.
    pub windows: Store<EnforcementWindow>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: Settings,
    /// Member counts taken ahead of enforcement.
    pub members: Arc<super::members::MemberChecks>,
    /// The status written last per policy (a reconcile on a stale copy skips writing it again).
    pub statuses: Arc<super::status_memo::StatusMemo>,
    /// Bounds the status writes in flight, and the reads of a policy the watch lags behind.
    pub status_writes: Arc<Limit<STATUS_WRITES>>,
    /// Bounds the owner notices being delivered at once.
    pub notice_sends: Arc<Limit<NOTICE_SENDS>>,
    /// Transitions decided ahead of their instant.
    pub ahead: Arc<super::ahead::Ahead>,
}

/// Status writes in flight at most: each holds a connection to the API server (and its
/// buffers), and a wave of 1,000 reconciles must not open 1,000 of them.
pub const STATUS_WRITES: usize = 64;

/// Owner notices delivered at once at most: each holds an SMTP session or a webhook call, and
/// the notices of a whole wave (1,000 Reminders or Enforced in the same second) must not open
/// 1,000 of them (memory; the mail relay).
pub const NOTICE_SENDS: usize = 16;

/// At most `N` of something at once.
#[derive(Debug)]
pub struct Limit<const N: usize>(tokio::sync::Semaphore);

impl<const N: usize> Default for Limit<N> {
    fn default() -> Self {
        Limit(tokio::sync::Semaphore::new(N))
    }
}

impl<const N: usize> Limit<N> {
    /// Waits for a permit; the work runs while it is held.
    pub async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }

    /// As [`Limit::permit`], waiting no later than `until`: `None` when no permit came by then.
    pub async fn permit_until(
        &self,
        until: tokio::time::Instant,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::time::timeout_at(until, self.0.acquire())
            .await
            .ok()?
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_permit_waited_for_until_an_instant_comes_by_then_or_not_at_all() {
        let limit = Limit::<1>::default();
        let now = tokio::time::Instant::now();
        let held = limit.permit_until(now).await;
        assert!(
            held.is_some(),
            "a free permit is taken even at the deadline"
        );
        assert!(
            limit
                .permit_until(now + std::time::Duration::from_secs(5))
                .await
                .is_none(),
            "none came by the deadline"
        );
        assert!(tokio::time::Instant::now() >= now + std::time::Duration::from_secs(5));
        drop(held);
        assert!(
            limit
                .permit_until(tokio::time::Instant::now() + std::time::Duration::from_secs(5))
                .await
                .is_some()
        );
    }
}
