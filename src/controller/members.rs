//! Member counts checked ahead of `enforceAt` (issue #22), so that the flip to DROP is a pure
//! write: in the minute before enforcement a reconcile checks that the group has effective
//! members (one NSX call when a VM is one) and remembers a positive answer for the spec's
//! generation; the flip uses it when it is at most [`FRESH`] old and the generation is unchanged
//! (a new generation may have changed `spec.members`), and checks again otherwise. An empty
//! group is never taken ahead: the flip checks again, in case members appeared meanwhile. An
//! answer is kept (not consumed by the flip): a second reconcile of the flip on a copy the watch
//! has not updated yet finds it too.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long before `enforceAt` the members are checked.
pub const AHEAD: SignedDuration = SignedDuration::from_secs(60);
/// How old a count the flip takes.
pub const FRESH: SignedDuration = SignedDuration::from_secs(120);

#[derive(Clone, Copy, Debug)]
struct Check {
    generation: Option<i64>,
    at: Timestamp,
    present: bool,
}

/// Checks taken ahead, by group (`domain/id`).
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

    /// Remembers whether the group had members at `at`, for `generation`.
    pub fn remember(&self, group: &str, generation: Option<i64>, at: Timestamp, present: bool) {
        let mut checks = self.lock();
        // Bounded by the groups checked within the last [`FRESH`].
        checks.retain(|_, c| c.at.duration_until(at) <= FRESH);
        checks.insert(
            group.to_string(),
            Check {
                generation,
                at,
                present,
            },
        );
    }

    /// Whether members were found for this generation at most [`FRESH`] before `now` (an
    /// empty group is checked again).
    pub fn fresh(&self, group: &str, generation: Option<i64>, now: Timestamp) -> bool {
        self.lock().get(group).is_some_and(|c| {
            c.generation == generation
                && c.present
                && c.at <= now
                && c.at.duration_until(now) <= FRESH
        })
    }

    /// Forgets a group's check (it enforces now, or is gone).
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
    fn a_check_is_taken_only_for_its_generation_while_fresh_and_positive() {
        let m = MemberChecks::default();
        m.remember("d/g", Some(3), at(0), true);
        assert!(m.fresh("d/g", Some(3), at(60)));
        assert!(m.fresh("d/g", Some(3), at(120)));
        assert!(!m.fresh("d/g", Some(3), at(121)), "too old");
        assert!(!m.fresh("d/g", Some(4), at(60)), "spec changed");
        assert!(!m.fresh("d/other", Some(3), at(60)));
        m.remember("d/g", Some(3), at(0), false);
        assert!(
            !m.fresh("d/g", Some(3), at(60)),
            "an empty group is checked again"
        );
        m.remember("d/g", Some(3), at(0), true);
        m.forget("d/g");
        assert!(!m.fresh("d/g", Some(3), at(60)));
    }
}
