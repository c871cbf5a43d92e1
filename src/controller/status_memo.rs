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

/// How long a written status is remembered, both to skip writing it again and to recognise a
/// copy older than it (a bound: a copy that never matches is trusted after this).
pub const HOLD: Duration = Duration::from_secs(30);

/// How long a reconcile on such a copy waits for the watch before it reads the object itself.
pub const WATCH_WAIT: Duration = Duration::from_secs(2);

/// Last status written per object uid.
#[derive(Debug, Default)]
pub struct StatusMemo {
    written: Mutex<HashMap<String, Written>>,
}

/// One status write: a digest of the whole status but the monitor's part, a digest of what
/// only grows (phase, history, notices sent), and when.
#[derive(Clone, Copy, Debug)]
struct Written {
    whole: u64,
    record: u64,
    at: Instant,
}

/// The phase, the history and the notices sent: what a copy older than the controller's last
/// write lacks. Deciding on such a copy announces the phase change again and sends its notice
/// again.
fn record_digest(s: &SegmentationPolicyStatus) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&(&s.phase, &s.history, &s.notifications))
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

fn digest(s: &SegmentationPolicyStatus) -> u64 {
    let mut s = s.clone();
    s.monitor = None;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl StatusMemo {
    fn get(&self, uid: &str) -> Option<Written> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .copied()
    }

    /// Whether `status` is what was written last for `uid`, less than [`HOLD`] ago.
    pub fn is_last(&self, uid: &str, status: &SegmentationPolicyStatus) -> bool {
        self.is_last_at(uid, status, Instant::now())
    }

    /// Remembers `status` as written for `uid` now.
    pub fn wrote(&self, uid: &str, status: &SegmentationPolicyStatus) {
        self.wrote_at(uid, status, Instant::now())
    }

    /// How long ago this controller wrote the status that `status` (the copy a reconcile is
    /// about to decide on) lacks, if it lacks one written less than [`HOLD`] ago: the watch
    /// has not brought that write yet, and deciding on the copy would decide again.
    pub fn behind(&self, uid: &str, status: &SegmentationPolicyStatus) -> Option<Duration> {
        self.behind_at(uid, status, Instant::now())
    }

    fn behind_at(
        &self,
        uid: &str,
        status: &SegmentationPolicyStatus,
        now: Instant,
    ) -> Option<Duration> {
        let w = self.get(uid)?;
        let age = now.saturating_duration_since(w.at);
        (age < HOLD && w.record != record_digest(status)).then_some(age)
    }

    fn is_last_at(&self, uid: &str, status: &SegmentationPolicyStatus, now: Instant) -> bool {
        self.get(uid).is_some_and(|w| {
            now.saturating_duration_since(w.at) < HOLD && w.whole == digest(status)
        })
    }

    fn wrote_at(&self, uid: &str, status: &SegmentationPolicyStatus, now: Instant) {
        let w = Written {
            whole: digest(status),
            record: record_digest(status),
            at: now,
        };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.retain(|_, w| now.saturating_duration_since(w.at) < HOLD);
        written.insert(uid.to_string(), w);
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
        assert_eq!(m.written.lock().unwrap().len(), 1);
        assert!(m.is_last_at("u2", &status(Phase::Monitoring), t0 + HOLD * 2));
    }

    #[test]
    fn a_copy_without_the_last_write_is_behind_until_the_watch_brings_it() {
        let m = StatusMemo::default();
        let t0 = Instant::now();
        assert_eq!(
            m.behind_at("u1", &status(Phase::Monitoring), t0),
            None,
            "nothing written"
        );
        let mut written = status(Phase::Enforcing);
        written.history.push(crate::api::HistoryEntry {
            phase: Phase::Enforcing,
            at: crate::api::k8s::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            reason: "Scheduled".into(),
            message: String::new(),
        });
        m.wrote_at("u1", &written, t0);
        // The copy from before the write: the reconcile waits for the watch.
        assert_eq!(
            m.behind_at("u1", &status(Phase::Monitoring), t0 + HOLD / 2),
            Some(HOLD / 2)
        );
        // The copy with the write (and a new monitor summary, or new conditions): current.
        let mut caught_up = written.clone();
        caught_up.monitor = Some(Default::default());
        caught_up.observed_generation = Some(3);
        assert_eq!(m.behind_at("u1", &caught_up, t0 + HOLD / 2), None);
        // A copy that never matches is trusted after the bound; other objects are not affected.
        assert_eq!(
            m.behind_at("u1", &status(Phase::Monitoring), t0 + HOLD),
            None
        );
        assert_eq!(m.behind_at("u2", &status(Phase::Monitoring), t0), None);
    }
}
