//! Member counts checked ahead of `enforceAt` (issue #22), so that the flip to DROP is a pure
//! write: in the minute before enforcement a reconcile counts the group's effective members and
//! remembers a positive count for the spec's generation; the flip uses it when it is at most
//! [`FRESH`] old and the generation is unchanged (a new generation may have changed
//! `spec.members`), and counts again otherwise. A count of zero is never taken ahead: the flip
//! counts again, in case members appeared meanwhile. A count is kept (not consumed by the flip):
//! a second reconcile of the flip on a copy the watch has not updated yet finds it too.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long before `enforceAt` the members are counted.
pub const AHEAD: SignedDuration = SignedDuration::from_secs(60);
/// How old a count the flip takes.
pub const FRESH: SignedDuration = SignedDuration::from_secs(120);

#[derive(Clone, Copy, Debug)]
struct Check {
    generation: Option<i64>,
    at: Timestamp,
    count: u64,
}

/// Counts taken ahead, by group (`domain/id`).
#[derive(Debug, Default)]
pub struct MemberChecks {
    checks: Mutex<HashMap<String, Check>>,
}

/// Whether `now` is in the minute before `enforce_at`.
pub fn due(enforce_at: Timestamp, now: Timestamp) -> bool {
    enforce_at > now && now.duration_until(enforce_at) <= AHEAD
}

impl MemberChecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Check>> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a count taken at `at` for `generation`.
    pub fn remember(&self, group: &str, generation: Option<i64>, at: Timestamp, count: u64) {
        let mut checks = self.lock();
        // Bounded by the groups counted within the last [`FRESH`].
        checks.retain(|_, c| c.at.duration_until(at) <= FRESH);
        checks.insert(
            group.to_string(),
            Check {
                generation,
                at,
                count,
            },
        );
    }

    /// A positive count for this generation taken at most [`FRESH`] before `now`.
    pub fn fresh(&self, group: &str, generation: Option<i64>, now: Timestamp) -> Option<u64> {
        let c = *self.lock().get(group)?;
        (c.generation == generation
            && c.count > 0
            && c.at <= now
            && c.at.duration_until(now) <= FRESH)
            .then_some(c.count)
    }

    /// Whether a fresh positive count is at hand (the pre-check need not run again).
    pub fn has_fresh(&self, group: &str, generation: Option<i64>, now: Timestamp) -> bool {
        self.fresh(group, generation, now).is_some()
    }

    /// Forgets a group's count (it enforces now, or is gone).
    pub fn forget(&self, group: &str) {
        self.lock().remove(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn due_in_the_minute_before_enforcement_only() {
        assert!(!due(at(100), at(39)));
        assert!(due(at(100), at(40)));
        assert!(due(at(100), at(99)));
        assert!(
            !due(at(100), at(100)),
            "at enforceAt the flip counts itself"
        );
    }

    #[test]
    fn a_count_is_taken_only_for_its_generation_while_fresh_and_positive() {
        let m = MemberChecks::default();
        m.remember("d/g", Some(3), at(0), 12);
        assert_eq!(m.fresh("d/g", Some(3), at(60)), Some(12));
        assert_eq!(m.fresh("d/g", Some(3), at(120)), Some(12));
        assert_eq!(m.fresh("d/g", Some(3), at(121)), None, "too old");
        assert_eq!(m.fresh("d/g", Some(4), at(60)), None, "spec changed");
        assert_eq!(m.fresh("d/other", Some(3), at(60)), None);
        m.remember("d/g", Some(3), at(0), 0);
        assert_eq!(
            m.fresh("d/g", Some(3), at(60)),
            None,
            "zero is counted again"
        );
        m.remember("d/g", Some(3), at(0), 5);
        m.forget("d/g");
        assert_eq!(m.fresh("d/g", Some(3), at(60)), None);
    }
}
