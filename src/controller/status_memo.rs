//! The status this controller wrote last for each policy, for a short while.
//!
//! Under load the watch delivers the controller's own status write seconds after it was made,
//! and a reconcile that runs in between sees the old status: it would write the same status
//! again and announce the same phase change again (a second event, a second line in
//! `kubectl get -w`). The reconciler asks [`StatusMemo::is_last`] first and skips both. An entry
//! counts for [`HOLD`] only: after that the object as the API server holds it is trusted again,
//! so a status changed by anyone else is still put right by the next reconcile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::SegmentationPolicyStatus;

/// How long a written status is remembered.
pub const HOLD: Duration = Duration::from_secs(30);

/// Last status written per object uid (a digest, without the monitor's part).
#[derive(Debug, Default)]
pub struct StatusMemo {
    last: Mutex<HashMap<String, (u64, Instant)>>,
}

fn digest(s: &SegmentationPolicyStatus) -> u64 {
    let mut s = s.clone();
    s.monitor = None;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl StatusMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `status` is what was written last for `uid`, less than [`HOLD`] ago.
    pub fn is_last(&self, uid: &str, status: &SegmentationPolicyStatus) -> bool {
        self.is_last_at(uid, status, Instant::now())
    }

    /// Remembers `status` as written for `uid` now.
    pub fn wrote(&self, uid: &str, status: &SegmentationPolicyStatus) {
        self.wrote_at(uid, status, Instant::now())
    }

    fn is_last_at(&self, uid: &str, status: &SegmentationPolicyStatus, now: Instant) -> bool {
        let Some((d, at)) = self.lock().get(uid).copied() else {
            return false;
        };
        now.saturating_duration_since(at) < HOLD && d == digest(status)
    }

    fn wrote_at(&self, uid: &str, status: &SegmentationPolicyStatus, now: Instant) {
        let d = digest(status);
        let mut last = self.lock();
        last.retain(|_, (_, at)| now.saturating_duration_since(*at) < HOLD);
        last.insert(uid.to_string(), (d, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    fn status(phase: Phase) -> SegmentationPolicyStatus {
        SegmentationPolicyStatus {
            phase: Some(phase),
            ..Default::default()
        }
    }

    #[test]
    fn the_last_written_status_is_known_by_uid_and_the_monitor_part_is_ignored() {
        let m = StatusMemo::default();
        assert!(!m.is_last("u1", &status(Phase::Enforcing)));
        m.wrote("u1", &status(Phase::Enforcing));
        assert!(m.is_last("u1", &status(Phase::Enforcing)));
        assert!(!m.is_last("u1", &status(Phase::Monitoring)));
        assert!(!m.is_last("u2", &status(Phase::Enforcing)));
        let mut with_monitor = status(Phase::Enforcing);
        with_monitor.monitor = Some(Default::default());
        assert!(m.is_last("u1", &with_monitor));
    }

    #[test]
    fn a_status_changed_by_anyone_else_is_trusted_again_after_the_hold() {
        // The controller wrote Enforcing; someone (or a rollback by the monitor's numbers) must
        // not be kept from a different status, and after HOLD even the same one is written
        // again (the API server's copy is trusted: a status edited by hand is put right).
        let m = StatusMemo::default();
        let t0 = Instant::now();
        m.wrote_at("u1", &status(Phase::Enforcing), t0);
        assert!(m.is_last_at("u1", &status(Phase::Enforcing), t0 + HOLD / 2));
        assert!(
            !m.is_last_at("u1", &status(Phase::RolledBack), t0 + HOLD / 2),
            "a different status is always written"
        );
        let mut synced_changed = status(Phase::Enforcing);
        synced_changed.observed_generation = Some(2);
        assert!(!m.is_last_at("u1", &synced_changed, t0 + HOLD / 2));
        assert!(
            !m.is_last_at("u1", &status(Phase::Enforcing), t0 + HOLD),
            "after the hold the object as the API server holds it is trusted"
        );
        // Old entries go when another status is written; other objects are not affected.
        m.wrote_at("u2", &status(Phase::Monitoring), t0 + HOLD * 2);
        assert_eq!(m.lock().len(), 1);
        assert!(m.is_last_at("u2", &status(Phase::Monitoring), t0 + HOLD * 2));
    }
}
