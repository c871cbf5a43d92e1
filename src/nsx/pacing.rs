//! Client-side pacing shared by every call of one `Client` (clones share it): a concurrency
//! limit and an evenly spaced request rate, both below NSX's defaults (100 req/s and 40
//! outstanding per client), adjusted AIMD-style: a 429 or 503 cuts the rate by 30 % (at most
//! once per second), each success wins back 1 % of the configured rate. Random, load-unrelated
//! 503s (a busy manager) therefore do not drive the rate to the floor, while sustained 429s
//! (the budget is shared with other clients of the same user) do. Retries wait with full jitter, or for
//! Retry-After when NSX sends one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Pacing settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PacingConfig {
    /// Highest request rate (requests per second).
    pub rate: f64,
    /// Lowest rate the back-off goes down to.
    pub min_rate: f64,
    /// Calls outstanding at once.
    pub concurrency: usize,
    /// Multiplier applied to the rate on a 429/503 (at most once per second).
    pub decrease_factor: f64,
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
            decrease_factor: 0.7,
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

    /// The current rate (requests per second).
    pub fn current_rate(&self) -> f64 {
        self.state
            .lock()
            .map(|s| s.rate)
            .unwrap_or(self.config.min_rate)
    }

    /// Waits for a concurrency slot and then for the next rate slot.
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.permits.acquire().await.ok()?;
        let wait = {
            let mut s = match self.state.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let now = Instant::now();
            let slot = s.next_slot.max(now);
            s.next_slot = slot + Duration::from_secs_f64(1.0 / s.rate);
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some(permit)
    }

    /// A call succeeded: win back a little rate.
    pub fn on_success(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.rate = (s.rate + self.config.rate * self.config.recovery_per_success)
                .min(self.config.rate);
        }
    }

    /// NSX answered 429 or 503: cut the rate (once per second at most).
    pub fn on_throttle(&self) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            if s.last_decrease
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                s.rate = (s.rate * self.config.decrease_factor).max(self.config.min_rate);
                s.last_decrease = Some(now);
            }
        }
    }

    /// How long to wait before retry `attempt` (1-based): Retry-After when given, else
    /// full jitter over an exponential step.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.config.backoff_max * 6);
        }
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.config.backoff_max);
        cap.mul_f64(rand::random::<f64>().max(0.05))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_cuts_once_per_second_and_success_recovers() {
        let p = Pacer::new(PacingConfig::default());
        p.on_throttle();
        p.on_throttle();
        assert!((p.current_rate() - 35.0).abs() < 1e-9);
        for _ in 0..100 {
            p.on_success();
        }
        assert_eq!(p.current_rate(), 50.0);
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
