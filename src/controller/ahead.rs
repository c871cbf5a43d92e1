//! Scheduled transitions on time (issue #22). When 1,000 applications reach `enforceAt` in the
//! same second, deciding them all in that second is a queue on two cores (API server, simulator
//! and controller share them): the last decision comes seconds late, and its DROP with it.
//!
//! So a policy whose next scheduled instant is within [`Settings::lead`] is reconciled that long
//! ahead: the decision is made *as of the instant*, the reconcile waits for the instant, and
//! writes only if nothing it read has changed meanwhile — the policy and its window are still
//! the versions it decided on, and this replica still leads. Anything else (a new monitor
//! summary, a suspend, a spec change, a lost lease) discards the decision and the policy is
//! decided again, at or after the instant, from what holds then. The flip at `enforceAt` is then
//! a pure write: the writes of the whole wave reach the batcher within milliseconds of each
//! other and go to NSX as one call.
//!
//! [`Settings::lead`]: super::context::Settings::lead

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

/// How long an instant nobody came for is remembered (a policy deleted before it).
const FORGET_AFTER: SignedDuration = SignedDuration::from_hours(1);

/// The instants the next reconciles are ahead of, and the leader's term.
#[derive(Debug, Default)]
pub struct Ahead {
    instants: Mutex<HashMap<String, Timestamp>>,
    term: Mutex<Option<CancellationToken>>,
}

impl Ahead {
    fn instants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        self.instants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next reconcile of policy `uid` comes ahead of `at`.
    pub fn expect(&self, uid: &str, at: Timestamp) {
        let mut m = self.instants();
        let horizon = at.checked_sub(FORGET_AFTER).unwrap_or(at);
        m.retain(|_, t| *t > horizon);
        m.insert(uid.to_string(), at);
    }

    /// The instant a reconcile at `now` decides for: `Some(at)` when `at` is expected and
    /// `now` is within `lead` before it (the instant is then forgotten: one reconcile goes
    /// ahead of it); `None` to decide as of `now`.
    pub fn take(&self, uid: &str, now: Timestamp, lead: Duration) -> Option<Timestamp> {
        let mut m = self.instants();
        let at = *m.get(uid)?;
        if now >= at {
            m.remove(uid);
            return None;
        }
        if now.duration_until(at).unsigned_abs() > lead {
            return None;
        }
        m.remove(uid);
        Some(at)
    }

    /// A term of leadership begins: waits end when `term` is cancelled.
    pub fn begin_term(&self, term: CancellationToken) {
        *self.term.lock().unwrap_or_else(|e| e.into_inner()) = Some(term);
    }

    /// The current term (a token never cancelled before the first term).
    pub fn term(&self) -> CancellationToken {
        self.term
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// The requeue of a reconcile that decided at `now`: `requeue` as decided, or earlier by `lead`
/// when what it waits for is the schedule's next instant `wake_at` (not a resync, a Reminder,
/// the member check or a retry, which come first and decide again). Returns the requeue and
/// the instant the next reconcile goes ahead of.
pub fn early(
    requeue: Duration,
    now: Timestamp,
    wake_at: Option<Timestamp>,
    lead: Duration,
) -> (Duration, Option<Timestamp>) {
    let Some((at, until)) = next_instant(wake_at, now, lead) else {
        return (requeue, None);
    };
    if requeue < until {
        return (requeue, None);
    }
    (until.saturating_sub(lead), Some(at))
}

/// How long a reconcile at `now` may wait for something besides the decision (a notice's send
/// permit) before the decision ahead of the schedule's next instant `wake_at` is due: `None`
/// when there is no such instant (or no lead), zero when the lead has already begun.
pub fn give_way(wake_at: Option<Timestamp>, now: Timestamp, lead: Duration) -> Option<Duration> {
    next_instant(wake_at, now, lead).map(|(_, until)| until.saturating_sub(lead))
}

/// The schedule's next instant after `now` and how far away it is; `None` when there is none
/// or the lead is zero (nothing is decided ahead).
fn next_instant(
    wake_at: Option<Timestamp>,
    now: Timestamp,
    lead: Duration,
) -> Option<(Timestamp, Duration)> {
    let at = wake_at.filter(|at| *at > now && !lead.is_zero())?;
    Some((at, now.duration_until(at).unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const LEAD: Duration = Duration::from_secs(5);

    #[test]
    fn the_reconcile_before_an_instant_comes_lead_early() {
        // Waiting for the instant at +60 s (the decided requeue is just after it).
        let (d, ahead) = early(Duration::from_millis(60_005), at(0), Some(at(60)), LEAD);
        assert_eq!(d, Duration::from_secs(55));
        assert_eq!(ahead, Some(at(60)));
        // Already within the lead: at once.
        let (d, ahead) = early(Duration::from_millis(3_005), at(57), Some(at(60)), LEAD);
        assert_eq!(d, Duration::ZERO);
        assert_eq!(ahead, Some(at(60)));
    }

    #[test]
    fn other_reasons_to_look_again_keep_their_time() {
        // A resync, the member check or a retry before the instant: decided again then.
        let (d, ahead) = early(Duration::from_secs(30), at(0), Some(at(60)), LEAD);
        assert_eq!((d, ahead), (Duration::from_secs(30), None));
        // No instant ahead, an instant past, or no lead: as decided.
        assert_eq!(
            early(Duration::from_secs(300), at(0), None, LEAD),
            (Duration::from_secs(300), None)
        );
        assert_eq!(
            early(Duration::from_secs(300), at(0), Some(at(0)), LEAD),
            (Duration::from_secs(300), None)
        );
        assert_eq!(
            early(
                Duration::from_millis(60_005),
                at(0),
                Some(at(60)),
                Duration::ZERO
            ),
            (Duration::from_millis(60_005), None)
        );
    }

    #[test]
    fn one_reconcile_goes_ahead_of_an_expected_instant_and_only_within_the_lead() {
        let a = Ahead::default();
        assert_eq!(a.take("u", at(55), LEAD), None, "nothing expected");
        a.expect("u", at(60));
        assert_eq!(
            a.take("u", at(50), LEAD),
            None,
            "too early: an event's reconcile"
        );
        assert_eq!(a.take("u", at(55), LEAD), Some(at(60)));
        assert_eq!(a.take("u", at(56), LEAD), None, "taken once");
        a.expect("u", at(60));
        assert_eq!(
            a.take("u", at(60), LEAD),
            None,
            "at the instant: decided as of now"
        );
        assert_eq!(a.take("u", at(58), LEAD), None, "and forgotten");
    }

    #[test]
    fn other_work_gives_way_at_the_lead_before_the_next_instant() {
        assert_eq!(
            give_way(Some(at(60)), at(15), LEAD),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            give_way(Some(at(60)), at(57), LEAD),
            Some(Duration::ZERO),
            "within the lead: no waiting"
        );
        assert_eq!(give_way(None, at(0), LEAD), None, "no instant ahead");
        assert_eq!(give_way(Some(at(0)), at(0), LEAD), None, "instant past");
        assert_eq!(
            give_way(Some(at(60)), at(0), Duration::ZERO),
            None,
            "no lead: nothing is decided ahead"
        );
    }

    #[test]
    fn instants_nobody_came_for_are_forgotten() {
        let a = Ahead::default();
        a.expect("deleted", at(0));
        a.expect("u", at(7_200));
        assert_eq!(a.instants().len(), 1);
    }

    #[test]
    fn a_wait_ends_with_the_term() {
        let a = Ahead::default();
        assert!(!a.term().is_cancelled());
        let t = CancellationToken::new();
        a.begin_term(t.clone());
        t.cancel();
        assert!(a.term().is_cancelled());
    }
}
