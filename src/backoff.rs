//! Exponential back-off, the one rule every retry loop of microseg waits by: the wait after the
//! `n`-th failure in a row is the first step doubled `n - 1` times, at most a cap, and with full
//! jitter a random part of that (never less than 5 %, so retries do not collapse into a burst).

use std::time::Duration;

/// An exponential back-off: its first step and its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// A back-off from `first`, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait after failure number `failed` (1-based; 0 counts as 1): `first` doubled
    /// `failed - 1` times, at most `max`. Saturates instead of overflowing.
    pub fn step(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.max)
    }

    /// [`Backoff::step`] with full jitter: a random part of it, at least 5 %.
    pub fn jittered(&self, failed: u32) -> Duration {
        self.step(failed)
            .mul_f64(rand::random::<f64>().clamp(JITTER_FLOOR, 1.0))
    }
}

/// The least part of a step that a jittered wait keeps.
const JITTER_FLOOR: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_from_the_first_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_millis(1600));
        let waits: Vec<u128> = (0..=8).map(|n| b.step(n).as_millis()).collect();
        assert_eq!(waits, [50, 50, 100, 200, 400, 800, 1600, 1600, 1600]);
        assert_eq!(b.step(u32::MAX), Duration::from_millis(1600));
        let unbounded = Backoff::new(Duration::from_secs(1), Duration::MAX);
        assert_eq!(unbounded.step(40), Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn a_jittered_wait_is_between_the_floor_and_the_step() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for failed in 1..40 {
            let step = b.step(failed);
            for _ in 0..20 {
                let w = b.jittered(failed);
                assert!(w <= step, "{w:?} > {step:?}");
                assert!(
                    w >= step.mul_f64(JITTER_FLOOR),
                    "{w:?} below the floor of {step:?}"
                );
            }
        }
    }
}
