//! Which owner notices are due, decided from the schedule's answer and the records already in
//! `status.notifications`. Pure.
//!
//! Exactly once in effect: every notice has a deterministic message id (kind, policy, owner and
//! the occasion, e.g. the enforcement instant); a notice counts as sent only once a record with
//! that id is in status. A controller that crashes after sending but before recording sends the
//! same notice again with the same id (e-mail Message-ID, webhook Idempotency-Key), so receivers
//! can drop the duplicate; it never sends a notice whose record is already in status.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::time;
use crate::api::{NotificationRecord, Owner, Phase};
use crate::notify::{NoticeKind, message_id};
use crate::schedule::{Decision, LATE_TOLERANCE};

/// A notice due to one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Which notice.
    pub kind: NoticeKind,
    /// The owner.
    pub owner: Owner,
    /// Its deterministic id.
    pub message_id: String,
    /// What makes it unique besides kind and owner.
    pub occasion: String,
}

/// Inputs besides the decision.
pub struct Facts<'a> {
    /// Policy namespace.
    pub namespace: &'a str,
    /// Policy name.
    pub name: &'a str,
    /// Owners.
    pub owners: &'a [Owner],
    /// Existing records.
    pub records: &'a [NotificationRecord],
    /// Open alerts.
    pub open_alerts: i64,
    /// Reminder lead time.
    pub reminder_before: SignedDuration,
}

/// The enforcement date the owners were last told (latest Scheduled or Postponed record).
pub fn announced_enforce_at(records: &[NotificationRecord]) -> Option<Timestamp> {
    records
        .iter()
        .filter(|r| r.kind == "Scheduled" || r.kind == "Postponed")
        .filter_map(|r| r.enforce_at.as_ref().map(|t| t.0))
        .max_by_key(|t| t.as_second())
}

/// When every owner has a record of the Scheduled notice: the last of those deliveries.
pub fn scheduled_delivered_at(f: &Facts<'_>) -> Option<Timestamp> {
    let mut last: Option<Timestamp> = None;
    for owner in f.owners {
        let id = message_id(
            NoticeKind::Scheduled,
            f.namespace,
            f.name,
            &owner.name,
            "scheduled",
        );
        let t = f
            .records
            .iter()
            .filter(|r| r.message_id == id)
            .map(|r| r.sent_at.0)
            .max()?;
        last = Some(last.map_or(t, |l| l.max(t)));
    }
    last
}

/// Every notice due now that has no record yet.
pub fn due(d: &Decision, f: &Facts<'_>, now: Timestamp) -> Vec<Due> {
    let s = &d.schedule;
    let mut occasions: Vec<(NoticeKind, String)> = Vec::new();
    if d.notice_due {
        occasions.push((NoticeKind::Scheduled, "scheduled".into()));
    }
    let delivered = s.notice_delivered_at.is_some();
    if delivered && matches!(d.phase, Phase::Monitoring | Phase::Held) {
        if now >= time::minus(s.enforce_at, f.reminder_before) && now < s.enforce_at {
            occasions.push((NoticeKind::Reminder, s.enforce_at.to_string()));
        }
        if let Some(told) = announced_enforce_at(f.records)
            && s.enforce_at > time::plus(told, LATE_TOLERANCE)
        {
            occasions.push((NoticeKind::Postponed, s.enforce_at.to_string()));
        }
        if d.phase == Phase::Held {
            occasions.push((
                NoticeKind::Postponed,
                format!("held:{}:{}", d.reason, s.enforce_at),
            ));
        }
    }
    match d.phase {
        Phase::Enforcing => {
            if let Some(since) = s.enforced_since {
                occasions.push((NoticeKind::Enforced, since.to_string()));
            }
        }
        Phase::Completed => occasions.push((NoticeKind::Completed, "completed".into())),
        Phase::RolledBack => occasions.push((
            NoticeKind::RolledBack,
            s.rolled_back_generation.unwrap_or_default().to_string(),
        )),
        _ => {}
    }
    if f.open_alerts > 0 && matches!(d.phase, Phase::Monitoring | Phase::Held | Phase::Enforcing) {
        occasions.push((
            NoticeKind::AlertDigest,
            now.strftime("%Y-%m-%d").to_string(),
        ));
    }
    let mut out = Vec::new();
    for (kind, occasion) in occasions {
        for owner in f.owners {
            let id = message_id(kind, f.namespace, f.name, &owner.name, &occasion);
            if f.records.iter().any(|r| r.message_id == id) {
                continue;
            }
            out.push(Due {
                kind,
                owner: owner.clone(),
                message_id: id,
                occasion: occasion.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::k8s::Time;
    use crate::schedule::tests::{Sim, at, window};

    fn owners() -> Vec<Owner> {
        vec![
            Owner {
                name: "Web team".into(),
                email: Some("web@example.com".into()),
                webhook: None,
            },
            Owner {
                name: "Ops".into(),
                email: None,
                webhook: Some("https://hooks.example.com/x".into()),
            },
        ]
    }

    fn record(d: &Due, t: Timestamp, enforce_at: Option<Timestamp>) -> NotificationRecord {
        NotificationRecord {
            kind: d.kind.as_str().into(),
            owner: d.owner.name.clone(),
            channel: "email".into(),
            message_id: d.message_id.clone(),
            sent_at: Time(t),
            enforce_at: enforce_at.map(Time),
        }
    }

    /// The Scheduled notice of `shop/web` to `owner`, sent at `t` announcing `enforce_at`.
    fn scheduled_sent(owner: &Owner, t: Timestamp, enforce_at: Timestamp) -> NotificationRecord {
        NotificationRecord {
            kind: "Scheduled".into(),
            owner: owner.name.clone(),
            channel: "email".into(),
            message_id: message_id(
                NoticeKind::Scheduled,
                "shop",
                "web",
                &owner.name,
                "scheduled",
            ),
            sent_at: Time(t),
            enforce_at: Some(Time(enforce_at)),
        }
    }

    fn facts<'a>(owners: &'a [Owner], records: &'a [NotificationRecord]) -> Facts<'a> {
        Facts {
            namespace: "shop",
            name: "web",
            owners,
            records,
            open_alerts: 0,
            reminder_before: SignedDuration::from_secs(200),
        }
    }

    #[test]
    fn the_scheduled_notice_goes_to_every_owner_once() {
        let owners = owners();
        let mut sim = Sim::new(window());
        let d = sim.settle(at(0));
        let due = due(&d, &facts(&owners, &[]), at(0));
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|x| x.kind == NoticeKind::Scheduled));
        let records: Vec<_> = due
            .iter()
            .map(|x| record(x, at(1), Some(at(1000))))
            .collect();
        assert_eq!(
            scheduled_delivered_at(&facts(&owners, &records)),
            Some(at(1))
        );
        assert!(
            super::due(&d, &facts(&owners, &records), at(2)).is_empty(),
            "never twice"
        );
    }

    #[test]
    fn delivery_counts_only_when_every_owner_has_it() {
        let owners = owners();
        let mut sim = Sim::new(window());
        let d = sim.settle(at(0));
        let due = due(&d, &facts(&owners, &[]), at(0));
        let one = vec![record(&due[0], at(1), None)];
        assert_eq!(scheduled_delivered_at(&facts(&owners, &one)), None);
    }

    #[test]
    fn reminder_enforced_and_completed_follow_the_phases() {
        let owners = owners()[..1].to_vec();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let told = vec![scheduled_sent(&owners[0], at(0), at(1000))];
        sim.settle(at(100));
        let kinds = |sim: &Sim, now| {
            let d = sim.clone().settle(now);
            due(&d, &facts(&owners, &told), now)
                .into_iter()
                .map(|x| x.kind)
                .collect::<Vec<_>>()
        };
        assert!(kinds(&sim, at(700)).is_empty());
        assert_eq!(kinds(&sim, at(850)), vec![NoticeKind::Reminder]);
        assert_eq!(kinds(&sim, at(1000)), vec![NoticeKind::Enforced]);
        sim.settle(at(1000));
        assert_eq!(kinds(&sim, at(1500)), vec![NoticeKind::Completed]);
    }

    #[test]
    fn a_moved_enforcement_date_is_announced_once() {
        let owners = owners()[..1].to_vec();
        let mut sim = Sim::new(window());
        sim.settle(at(100));
        // Delivered late: enforcement moves from 1000 to 1400.
        sim.deliver(at(400));
        let told = vec![scheduled_sent(&owners[0], at(400), at(1000))];
        let d = sim.settle(at(401));
        let due = due(&d, &facts(&owners, &told), at(401));
        assert_eq!(
            due.iter().map(|x| x.kind).collect::<Vec<_>>(),
            vec![NoticeKind::Postponed]
        );
        assert_eq!(due[0].occasion, at(1400).to_string());
    }

    #[test]
    fn the_alert_digest_goes_at_most_daily_while_alerts_are_open() {
        let owners = owners()[..1].to_vec();
        let mut sim = Sim::new(window());
        sim.deliver(at(0));
        let d = sim.settle(at(200));
        let mut f = facts(&owners, &[]);
        f.open_alerts = 3;
        let due1 = due(&d, &f, at(200));
        let digest: Vec<_> = due1
            .iter()
            .filter(|x| x.kind == NoticeKind::AlertDigest)
            .collect();
        assert_eq!(digest.len(), 1);
        let records = vec![record(digest[0], at(200), None)];
        let f = Facts {
            records: &records,
            open_alerts: 3,
            ..facts(&owners, &[])
        };
        assert!(
            due(&d, &f, at(300))
                .iter()
                .all(|x| x.kind != NoticeKind::AlertDigest),
            "same day: not again"
        );
        let tomorrow = at(200) + SignedDuration::from_hours(24);
        assert!(
            due(&d, &f, tomorrow)
                .iter()
                .any(|x| x.kind == NoticeKind::AlertDigest),
            "next day: again"
        );
        let quiet = Facts {
            open_alerts: 0,
            ..facts(&owners, &[])
        };
        assert!(
            due(&d, &quiet, tomorrow)
                .iter()
                .all(|x| x.kind != NoticeKind::AlertDigest)
        );
    }
}
