//! Client-side pacing shared by every call of one `Client` (clones share it): a concurrency
//! limit and an evenly spaced request rate, both below NSX's defaults (100 req/s and 40
//! outstanding per client), adjusted AIMD-style:
//!
//! - 429 (this user is over the manager's per-client limit): the rate is halved and a ceiling
//!   is set at 90 % of the rate that drew the 429; the ceiling then creeps up very slowly
//!   (0.05 % of the configured rate per success), so the client settles just under the
//!   manager's real limit instead of oscillating around it.
//! - 503 (the manager is busy for everyone): the rate is cut by 20 %, the ceiling stays.
//! - Cuts happen at most once per second, however many calls are refused at once.
//! - Each success wins back 1 % of the configured rate, up to the ceiling.
//!
//! So random, load-unrelated 503s do not drive the rate to the floor, while sustained 429s do
//! bring it down.
//!
//! The retry policy of one call is [`Retries`], the only one of the client: a budget per kind of
//! [`Failure`] (`max_busy_retries` for 429/503 and transient NSX errors,
//! `max_transport_retries` for connection errors) and one back-off, full jitter over an
//! exponential step, or Retry-After when NSX sends one.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::backoff::Backoff;

/// Longest gap between two rate slots: 0.001 requests per second, the floor of the starting rate
/// (a rate backed off further, or a configured 0, waits no longer than this).
const MAX_SLOT_GAP: Duration = Duration::from_secs(1000);

/// Pacing settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PacingConfig {
    /// Highest request rate (requests per second).
    pub rate: f64,
    /// Lowest rate the back-off goes down to.
    pub min_rate: f64,
    /// Calls outstanding at once.
    pub concurrency: usize,
    /// Multiplier applied to the rate on a 429 (at most once per second).
    pub decrease_factor: f64,
    /// Multiplier applied to the rate on a 503 (at most once per second).
    pub busy_decrease_factor: f64,
    /// After a 429 the ceiling is this fraction of the rate that drew it.
    pub ceiling_factor: f64,
    /// Fraction of `rate` the ceiling rises per success once the rate has reached it.
    pub probe_per_success: f64,
    /// Fraction of `rate` won back per successful call (0.01: a hundred successes recover
    /// the full rate from zero).
    pub recovery_per_success: f64,
    /// Retries of a call answered 429/503 before reporting `Busy`.
    pub max_busy_retries: u32,
    /// Retries of an idempotent call after a connection error.
    pub max_transport_retries: u32,
    /// First back-off step.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            rate: 50.0,
            min_rate: 1.0,
            concurrency: 10,
            decrease_factor: 0.5,
            busy_decrease_factor: 0.8,
            ceiling_factor: 0.9,
            probe_per_success: 0.0005,
            recovery_per_success: 0.01,
            max_busy_retries: 8,
            max_transport_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

struct State {
    rate: f64,
    ceiling: f64,
    next_slot: Instant,
    last_decrease: Option<Instant>,
}

/// The shared budget.
pub struct Pacer {
    config: PacingConfig,
    permits: Semaphore,
    state: Mutex<State>,
}

impl Pacer {
    /// A pacer at full rate.
    pub fn new(config: PacingConfig) -> Self {
        let concurrency = config.concurrency.max(1);
        let rate = config.rate.max(config.min_rate).max(0.001);
        Pacer {
            permits: Semaphore::new(concurrency),
            state: Mutex::new(State {
                rate,
                ceiling: rate,
                next_slot: Instant::now(),
                last_decrease: None,
            }),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PacingConfig {
        &self.config
    }

    /// The shared state. A panic elsewhere while it was held leaves consistent numbers, so a
    /// poisoned lock is used as is: one failed reconcile must not freeze pacing for all.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current rate (requests per second).
    pub fn current_rate(&self) -> f64 {
        self.state().rate
    }

    /// Waits for a concurrency slot and then for the next rate slot.
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.permits.acquire().await.ok()?;
        let wait = {
            let mut s = self.state();
            let now = Instant::now();
            let slot = s.next_slot.max(now);
            let gap = Duration::try_from_secs_f64(1.0 / s.rate)
                .unwrap_or(MAX_SLOT_GAP)
                .min(MAX_SLOT_GAP);
            s.next_slot = slot.checked_add(gap).unwrap_or(slot);
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some(permit)
    }

    /// The current ceiling (requests per second).
    pub fn current_ceiling(&self) -> f64 {
        self.state().ceiling
    }

    /// A call succeeded: win back a little rate, up to the ceiling; at the ceiling, raise it
    /// slowly.
    pub fn on_success(&self) {
        let c = &self.config;
        let mut s = self.state();
        if s.rate < s.ceiling {
            s.rate = (s.rate + c.rate * c.recovery_per_success).min(s.ceiling);
        } else {
            s.ceiling = (s.ceiling + c.rate * c.probe_per_success).min(c.rate);
            s.rate = s.ceiling;
        }
    }

    /// NSX answered 429 (per-client limit) or 503 (busy): cut the rate, at most once per
    /// second; a 429 also lowers the ceiling.
    pub fn on_throttle(&self, status: u16) {
        let c = &self.config;
        let mut s = self.state();
        let now = Instant::now();
        if s.last_decrease
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            if status == 429 {
                s.ceiling = (s.rate * c.ceiling_factor).max(c.min_rate);
                s.rate = (s.rate * c.decrease_factor).max(c.min_rate);
            } else {
                s.rate = (s.rate * c.busy_decrease_factor).max(c.min_rate);
            }
            s.last_decrease = Some(now);
        }
    }

    /// The retry policy of one call.
    pub fn retries(&self) -> Retries<'_> {
        Retries {
            pacer: self,
            met: [0; 3],
        }
    }

    /// How long to wait before retry `attempt` (1-based): Retry-After when given, else
    /// full jitter over an exponential step.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.config.backoff_max.saturating_mul(6));
        }
        Backoff::new(self.config.backoff_base, self.config.backoff_max).jittered(attempt)
    }
}

/// Why an attempt of a call failed in a way that trying again may fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429 or 503.
    Busy,
    /// No answer: connection, TLS or timeout.
    Transport,
    /// An NSX error that means "try again" ([`crate::nsx::codes::is_transient`]).
    Transient,
}

/// The retries of one call: how many of each [`Failure`] it has met, against the budgets of the
/// pacing settings.
pub struct Retries<'a> {
    pacer: &'a Pacer,
    /// Failures met, by kind (`Failure as usize`).
    met: [u32; 3],
}

impl Retries<'_> {
    /// After a failure: how long to wait before the next attempt, or `None` when the budget
    /// for that kind of failure is spent.
    pub fn next(&mut self, failure: Failure, retry_after: Option<Duration>) -> Option<Duration> {
        let c = &self.pacer.config;
        let budget = match failure {
            Failure::Busy | Failure::Transient => c.max_busy_retries,
            Failure::Transport => c.max_transport_retries,
        };
        let met = &mut self.met[failure as usize];
        if *met >= budget {
            return None;
        }
        *met += 1;
        Some(self.pacer.backoff(*met, retry_after))
    }

    /// How many retries after `failure` were granted so far.
    pub fn attempts(&self, failure: Failure) -> u32 {
        self.met[failure as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_cuts_once_per_second_and_success_recovers() {
        let p = Pacer::new(PacingConfig::default());
        p.on_throttle(503);
        p.on_throttle(503);
        assert!((p.current_rate() - 40.0).abs() < 1e-9);
        assert!((p.current_ceiling() - 50.0).abs() < 1e-9);
        for _ in 0..20 {
            p.on_success();
        }
        assert!((p.current_rate() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_429_lowers_the_ceiling_which_rises_slowly() {
        let p = Pacer::new(PacingConfig::default());
        p.on_throttle(429);
        assert!((p.current_rate() - 25.0).abs() < 1e-9);
        assert!((p.current_ceiling() - 45.0).abs() < 1e-9);
        for _ in 0..40 {
            p.on_success();
        }
        assert!((p.current_rate() - 45.0).abs() < 1e-9);
        // 100 more successes at the ceiling raise it by 100 × 0.025 req/s.
        for _ in 0..100 {
            p.on_success();
        }
        assert!((p.current_ceiling() - 47.5).abs() < 1e-6);
    }

    #[test]
    fn backoff_honours_retry_after_and_is_capped() {
        let p = Pacer::new(PacingConfig::default());
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        for attempt in 1..30 {
            assert!(p.backoff(attempt, None) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn each_kind_of_failure_has_its_own_retry_budget() {
        let p = Pacer::new(PacingConfig {
            max_busy_retries: 2,
            max_transport_retries: 1,
            ..PacingConfig::default()
        });
        let mut r = p.retries();
        assert!(r.next(Failure::Transport, None).is_some());
        assert!(r.next(Failure::Transport, None).is_none());
        assert_eq!(r.attempts(Failure::Transport), 1);
        // Busy answers draw on their own budget, and honour Retry-After.
        assert_eq!(
            r.next(Failure::Busy, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert!(r.next(Failure::Busy, None).is_some());
        assert!(r.next(Failure::Busy, None).is_none());
        assert!(r.next(Failure::Transient, None).is_some());
        assert_eq!(r.attempts(Failure::Transient), 1);
        assert_eq!(r.attempts(Failure::Busy), 2);
    }

    #[tokio::test]
    async fn rate_spaces_calls() {
        let p = Pacer::new(PacingConfig {
            rate: 100.0,
            ..PacingConfig::default()
        });
        let start = Instant::now();
        for _ in 0..21 {
            drop(p.acquire().await);
        }
        assert!(start.elapsed() >= Duration::from_millis(190));
    }
}
