//! Table-style unit tests of the state machine, with explicit instants.

use super::*;

pub(crate) const MIN_NOTICE: i64 = 1_000;
pub(crate) const POST: i64 = 500;

pub(crate) fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// notify 0, monitor 100, enforce 1000, cleanup default (1500).
pub(crate) fn window() -> Window {
    Window {
        notify_at: at(0),
        monitor_from: at(100),
        enforce_at: at(MIN_NOTICE),
        cleanup_at: None,
        minimum_notice: SignedDuration::from_secs(MIN_NOTICE),
        post_enforcement: SignedDuration::from_secs(POST),
        quiet_period: None,
        max_open_alerts: None,
        require_approval: false,
        max_log_silence: None,
        waived: vec![],
        rollback: false,
        blackouts: vec![],
        suspend: false,
        canary: vec![],
    }
}

/// A policy's state carried from one evaluation to the next, as the controller does through
/// status.
#[derive(Clone, Debug)]
pub(crate) struct Sim {
    pub window: Window,
    pub suspend: bool,
    pub approved: bool,
    pub generation: i64,
    pub phase: Option<Phase>,
    pub schedule: Option<Schedule>,
    pub delivered: Option<Timestamp>,
    pub monitor: MonitorSummary,
    pub blocker: Option<Blocker>,
    pub widening: Option<String>,
}

impl Sim {
    pub fn new(window: Window) -> Sim {
        Sim {
            window,
            suspend: false,
            approved: false,
            generation: 1,
            phase: None,
            schedule: None,
            delivered: None,
            monitor: MonitorSummary::default(),
            blocker: None,
            widening: None,
        }
    }

    pub fn decide(&self, now: Timestamp) -> Decision {
        evaluate(
            &Inputs {
                window: &self.window,
                suspend: self.suspend,
                approved: self.approved,
                generation: self.generation,
                previous_phase: self.phase,
                previous: self.schedule.as_ref(),
                notice_delivered_at: self.delivered,
                monitor: &self.monitor,
                blocker: self.blocker.clone(),
                widening: self.widening.clone(),
            },
            now,
        )
    }

    /// Evaluates and records the decision, round-tripping the schedule through status JSON.
    pub fn step(&mut self, now: Timestamp) -> Decision {
        let d = self.decide(now);
        self.phase = Some(d.phase);
        let json = serde_json::to_string(&d.schedule.to_status()).unwrap();
        let back: EffectiveSchedule = serde_json::from_str(&json).unwrap();
        self.schedule = Some(Schedule::from_status(&back));
        d
    }

    /// Steps until the phase stops changing at this instant (the controller re-reconciles after
    /// every status write).
    pub fn settle(&mut self, now: Timestamp) -> Decision {
        let mut d = self.step(now);
        for _ in 0..6 {
            let before = d.phase;
            d = self.step(now);
            if d.phase == before {
                break;
            }
        }
        d
    }

    pub fn deliver(&mut self, t: Timestamp) {
        self.delivered = Some(t);
    }
}

#[test]
fn pending_before_monitor_from_and_nothing_in_nsx() {
    let mut sim = Sim::new(window());
    let d = sim.settle(at(-50));
    assert_eq!(d.phase, Phase::Pending);
    assert_eq!(d.next, Some((Phase::Monitoring, Some(at(100)))));
    assert_eq!(d.wake_at, Some(at(0)), "the notice is the first thing due");
    assert!(!d.notice_due);
}

#[test]
fn notice_is_due_at_notify_at_until_delivered() {
    let mut sim = Sim::new(window());
    assert!(sim.settle(at(0)).notice_due);
    sim.deliver(at(5));
    let d = sim.settle(at(6));
    assert!(!d.notice_due);
    assert_eq!(d.schedule.notice_delivered_at, Some(at(5)));
}

#[test]
fn monitoring_starts_at_monitor_from() {
    let mut sim = Sim::new(window());
    sim.deliver(at(0));
    assert_eq!(sim.settle(at(99)).phase, Phase::Pending);
    let d = sim.settle(at(100));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.next, Some((Phase::Enforcing, Some(at(1000)))));
    assert_eq!(d.wake_at, Some(at(1000)));
    assert!(d.gate.open, "{:?}", d.gate);
}

#[test]
fn enforcing_at_enforce_at_when_the_gates_are_open() {
    let mut sim = Sim::new(window());
    sim.deliver(at(0));
    sim.settle(at(100));
    assert_eq!(sim.settle(at(999)).phase, Phase::Monitoring);
    let d = sim.settle(at(1000));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(d.schedule.enforced_since, Some(at(1000)));
    assert_eq!(d.next, Some((Phase::Completed, Some(at(1500)))));
}

#[test]
fn completed_at_cleanup_and_stays_completed() {
    let mut sim = Sim::new(window());
    sim.deliver(at(0));
    sim.settle(at(100));
    sim.settle(at(1000));
    assert_eq!(sim.settle(at(1499)).phase, Phase::Enforcing);
    let d = sim.settle(at(1500));
    assert_eq!(d.phase, Phase::Completed);
    assert_eq!(d.wake_at, None);
    // Editing the window afterwards changes nothing.
    sim.window.enforce_at = at(5000);
    sim.window.cleanup_at = Some(at(9000));
    let d = sim.settle(at(1600));
    assert_eq!(d.phase, Phase::Completed);
    assert_eq!(d.schedule.cleanup_at, at(1500));
}

#[test]
fn enforcement_waits_for_minimum_notice_after_delivery() {
    let mut sim = Sim::new(window());
    sim.settle(at(100));
    // Delivered 300 s late: enforcement moves from 1000 to 1300, clean-up from 1500 to 1800.
    sim.deliver(at(300));
    let d = sim.settle(at(301));
    assert_eq!(d.schedule.enforce_at, at(1300));
    assert_eq!(d.schedule.cleanup_at, at(1800));
    assert_eq!(sim.settle(at(1000)).phase, Phase::Monitoring);
    assert_eq!(sim.settle(at(1299)).phase, Phase::Monitoring);
    assert_eq!(sim.settle(at(1300)).phase, Phase::Enforcing);
}

#[test]
fn held_when_the_notice_was_never_delivered() {
    let mut sim = Sim::new(window());
    sim.settle(at(100));
    let d = sim.settle(at(1000));
    assert_eq!(d.phase, Phase::Held);
    assert_eq!(d.reason, reason::NOTICE_NOT_DELIVERED);
    assert_eq!(d.next, Some((Phase::Enforcing, None)));
    // Delivered now: back to monitoring until delivery + minimum notice.
    sim.deliver(at(1010));
    let d = sim.settle(at(1010));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.reason, reason::NOTICE_LATE);
    assert_eq!(d.schedule.enforce_at, at(2010));
}

fn monitoring_sim(w: Window) -> Sim {
    let mut sim = Sim::new(w);
    sim.deliver(at(0));
    sim.settle(at(100));
    sim
}

#[test]
fn held_by_the_quiet_period_until_it_ends() {
    let mut w = window();
    w.quiet_period = Some(SignedDuration::from_secs(200));
    let mut sim = monitoring_sim(w);
    sim.monitor.last_unmatched_at = Some(at(900));
    let preview = sim.settle(at(950));
    assert_eq!(preview.phase, Phase::Monitoring);
    assert_eq!(preview.gate.reason, reason::QUIET_PERIOD);
    assert_eq!(preview.wake_at, Some(at(1000)));
    let d = sim.settle(at(1000));
    assert_eq!(d.phase, Phase::Held);
    assert_eq!(d.reason, reason::QUIET_PERIOD);
    assert_eq!(d.next, Some((Phase::Enforcing, Some(at(1100)))));
    assert_eq!(d.wake_at, Some(at(1100)));
    let d = sim.settle(at(1100));
    assert_eq!(d.phase, Phase::Enforcing);
    // 100 s late: beyond the tolerance, so clean-up keeps full post-enforcement monitoring.
    assert_eq!(d.schedule.enforce_at, at(1100));
    assert_eq!(d.schedule.cleanup_at, at(1600));
}

#[test]
fn held_by_too_many_open_alerts_until_they_are_handled() {
    let mut w = window();
    w.max_open_alerts = Some(2);
    let mut sim = monitoring_sim(w);
    sim.monitor.open_alerts = 3;
    let d = sim.settle(at(1000));
    assert_eq!(d.phase, Phase::Held);
    assert_eq!(d.reason, reason::TOO_MANY_OPEN_ALERTS);
    assert_eq!(d.wake_at, None, "only an event can open this gate");
    sim.monitor.open_alerts = 2;
    assert_eq!(sim.settle(at(1010)).phase, Phase::Enforcing);
}

#[test]
fn held_until_approved_when_approval_is_required() {
    let mut w = window();
    w.require_approval = true;
    let mut sim = monitoring_sim(w);
    let d = sim.settle(at(1000));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::APPROVAL_MISSING));
    sim.approved = true;
    assert_eq!(sim.settle(at(1001)).phase, Phase::Enforcing);
}

#[test]
fn held_while_monitoring_is_blind() {
    let mut w = window();
    w.max_log_silence = Some(SignedDuration::from_secs(300));
    let mut sim = monitoring_sim(w);
    sim.monitor.last_log_at = Some(at(500));
    let d = sim.settle(at(700));
    assert!(d.gate.open);
    assert_eq!(
        d.wake_at,
        Some(at(800)),
        "the gate closes when logs have been silent 300 s"
    );
    let d = sim.settle(at(1000));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::MONITORING_BLIND));
    sim.monitor.last_log_at = Some(at(1001));
    assert_eq!(sim.settle(at(1002)).phase, Phase::Enforcing);
}

#[test]
fn never_enforces_when_not_ready_and_falls_back_to_pass_when_readiness_is_lost() {
    let mut sim = monitoring_sim(window());
    sim.blocker = Some(Blocker {
        reason: reason::PEER_NOT_FOUND,
        message: "peer default/db not found".into(),
    });
    let d = sim.settle(at(1000));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::NOT_READY));
    sim.blocker = None;
    assert_eq!(sim.settle(at(1001)).phase, Phase::Enforcing);
    sim.blocker = Some(Blocker {
        reason: reason::NSX_ERROR,
        message: "NSX write failed".into(),
    });
    let d = sim.settle(at(1100));
    assert_eq!(d.phase, Phase::Held);
    assert_eq!(d.schedule.enforced_since, None);
}

#[test]
fn blackouts_delay_each_scheduled_transition_to_their_end() {
    let mut w = window();
    w.blackouts = vec![
        Blackout {
            start: at(90),
            end: at(150),
            name: "freeze-a".into(),
        },
        Blackout {
            start: at(990),
            end: at(1050),
            name: "freeze-b".into(),
        },
        // Chained: the end of this one falls in the next.
        Blackout {
            start: at(1540),
            end: at(1600),
            name: "freeze-c".into(),
        },
        Blackout {
            start: at(1590),
            end: at(1700),
            name: "freeze-d".into(),
        },
    ];
    let mut sim = Sim::new(w);
    sim.deliver(at(0));
    let d = sim.settle(at(100));
    assert_eq!(d.phase, Phase::Pending);
    assert_eq!(d.schedule.monitor_from, at(150));
    assert_eq!(sim.settle(at(150)).phase, Phase::Monitoring);
    let d = sim.settle(at(1000));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.schedule.enforce_at, at(1050));
    assert_eq!(sim.settle(at(1050)).phase, Phase::Enforcing);
    let d = sim.settle(at(1560));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(d.schedule.cleanup_at, at(1700));
    assert_eq!(sim.settle(at(1700)).phase, Phase::Completed);
}

#[test]
fn a_blackout_that_starts_after_a_missed_instant_still_holds_the_transition() {
    let mut w = window();
    w.blackouts = vec![Blackout {
        start: at(1005),
        end: at(1200),
        name: "freeze".into(),
    }];
    let mut sim = monitoring_sim(w);
    // The controller was late and wakes inside the blackout.
    let d = sim.settle(at(1010));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::BLACKOUT));
    assert_eq!(d.wake_at, Some(at(1200)));
    assert_eq!(sim.settle(at(1200)).phase, Phase::Enforcing);
}

#[test]
fn suspend_pins_to_monitor_mode_at_once_even_in_a_blackout() {
    let mut w = window();
    w.blackouts = vec![Blackout {
        start: at(1100),
        end: at(1200),
        name: "freeze".into(),
    }];
    let mut sim = monitoring_sim(w);
    sim.suspend = true;
    let d = sim.settle(at(500));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.gate.reason, reason::SUSPENDED);
    assert_eq!(sim.settle(at(1000)).phase, Phase::Held);
    sim.suspend = false;
    assert_eq!(sim.settle(at(1001)).phase, Phase::Enforcing);
    sim.suspend = true;
    let d = sim.settle(at(1150));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::SUSPENDED));
    // Releasing the brake inside the blackout waits for its end.
    sim.suspend = false;
    let d = sim.settle(at(1160));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::BLACKOUT));
    assert_eq!(sim.settle(at(1200)).phase, Phase::Enforcing);
}

#[test]
fn a_suspended_window_pins_every_policy_and_a_completed_one_too() {
    let mut sim = monitoring_sim(window());
    sim.settle(at(1000));
    sim.settle(at(1500));
    assert_eq!(sim.phase, Some(Phase::Completed));
    sim.window.suspend = true;
    assert_eq!(sim.settle(at(1600)).phase, Phase::Held);
    sim.window.suspend = false;
    let d = sim.settle(at(1700));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(
        d.schedule.cleanup_at,
        at(2200),
        "re-enforcement is monitored again"
    );
}

#[test]
fn rollback_lasts_until_the_spec_changes() {
    let mut w = window();
    w.rollback = true;
    let mut sim = monitoring_sim(w);
    sim.settle(at(1000));
    sim.monitor.rollback_triggered = true;
    let d = sim.settle(at(1010));
    assert_eq!(d.phase, Phase::RolledBack);
    assert_eq!(d.schedule.rolled_back_generation, Some(1));
    sim.monitor.rollback_triggered = false;
    assert_eq!(sim.settle(at(1100)).phase, Phase::RolledBack);
    sim.generation = 2;
    assert_eq!(sim.settle(at(1120)).phase, Phase::Enforcing);
}

#[test]
fn rollback_is_ignored_when_the_window_does_not_configure_it() {
    let mut sim = monitoring_sim(window());
    sim.settle(at(1000));
    sim.monitor.rollback_triggered = true;
    assert_eq!(sim.settle(at(1010)).phase, Phase::Enforcing);
}

#[test]
fn window_edits_move_the_schedule_later_but_never_earlier() {
    let mut sim = Sim::new(window());
    sim.settle(at(-10));
    sim.window.enforce_at = at(1400);
    assert_eq!(sim.settle(at(-5)).schedule.enforce_at, at(1400));
    sim.window.enforce_at = at(1200);
    sim.window.monitor_from = at(50);
    let d = sim.settle(at(-1));
    assert_eq!(d.schedule.enforce_at, at(1400));
    assert_eq!(d.schedule.monitor_from, at(100));
}

#[test]
fn a_window_moved_after_monitoring_began_does_not_undo_monitoring() {
    let mut sim = monitoring_sim(window());
    sim.window.monitor_from = at(400);
    sim.window.enforce_at = at(1400);
    let d = sim.settle(at(200));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.schedule.monitor_from, at(100));
    assert_eq!(d.schedule.enforce_at, at(1400));
}

#[test]
fn enforcement_after_a_long_outage_keeps_full_post_enforcement_monitoring() {
    let mut sim = monitoring_sim(window());
    // The controller was down from 900 to 1900, past the scheduled clean-up.
    let d = sim.settle(at(1900));
    assert_eq!(d.phase, Phase::Enforcing, "never straight to Completed");
    assert_eq!(d.schedule.cleanup_at, at(2400));
}

#[test]
fn an_on_time_enforcement_moves_nothing() {
    let mut sim = monitoring_sim(window());
    let d = sim.settle(at(1003));
    assert_eq!(d.schedule.enforce_at, at(1000));
    assert_eq!(d.schedule.cleanup_at, at(1500));
}

#[test]
fn a_policy_created_after_its_window_passed_gets_full_notice() {
    let mut sim = Sim::new(window());
    let d = sim.settle(at(3000));
    assert_eq!(
        d.phase,
        Phase::Held,
        "monitoring first, then held for the notice"
    );
    assert!(d.notice_due);
    sim.deliver(at(3001));
    let d = sim.settle(at(3002));
    assert_eq!(d.phase, Phase::Monitoring);
    assert_eq!(d.schedule.enforce_at, at(4001));
}

#[test]
fn sub_second_instants_round_up_so_status_round_trips_never_move_them_earlier() {
    let mut sim = Sim::new(window());
    sim.settle(at(100));
    sim.deliver(at(50) + SignedDuration::from_millis(300));
    let d = sim.settle(at(200));
    assert_eq!(d.schedule.enforce_at, at(1051));
    assert_eq!(sim.settle(at(201)).schedule.enforce_at, at(1051));
}

#[test]
fn a_late_enforcement_is_a_phase_of_its_own_never_skipped_to_completed() {
    let mut w = window();
    w.post_enforcement = SignedDuration::from_secs(20);
    let mut sim = monitoring_sim(w);
    sim.blocker = Some(Blocker {
        reason: reason::NO_MEMBERS,
        message: "no members".into(),
    });
    assert_eq!(sim.settle(at(1000)).phase, Phase::Held);
    sim.blocker = None;
    // The gate opens after the scheduled clean-up (1020), within the late tolerance.
    let d = sim.step(at(1030));
    assert_eq!(
        d.phase,
        Phase::Enforcing,
        "the DROP is written before clean-up"
    );
    let d = sim.step(at(1030));
    assert_eq!(d.phase, Phase::Completed, "{d:?}");
}

/// The example wave's window as a user writes it, with every default (the evidence gates on).
fn defaults_window() -> Window {
    let spec: crate::api::EnforcementWindowSpec = serde_yaml::from_str(&format!(
        "notifyAt: {}\nmonitorFrom: {}\nenforceAt: {}\nminimumNotice: {MIN_NOTICE}s\npostEnforcementMonitoring: {POST}s\n",
        at(0),
        at(100),
        at(ENFORCE_DEFAULT)
    ))
    .unwrap();
    Window::from_spec(&spec, SignedDuration::from_hours(1))
}

const ENFORCE_DEFAULT: i64 = MIN_NOTICE + 400_000;

#[test]
fn the_evidence_gates_are_on_by_default() {
    let w = defaults_window();
    assert_eq!(w.quiet_period, Some(SignedDuration::from_hours(72)));
    assert_eq!(w.max_open_alerts, Some(0));
    assert_eq!(w.max_log_silence, Some(SignedDuration::from_hours(1)));
    assert!(w.waived.is_empty());
}

#[test]
fn no_log_line_ever_is_blind_and_holds_enforcement() {
    let mut sim = monitoring_sim(defaults_window());
    let d = sim.settle(at(ENFORCE_DEFAULT));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::MONITORING_BLIND));
    assert!(
        d.gate.message.contains("no DFW log line"),
        "{}",
        d.gate.message
    );
    assert_eq!(d.next, Some((Phase::Enforcing, None)));
}

#[test]
fn log_lines_from_before_monitor_mode_are_no_evidence() {
    let mut sim = monitoring_sim(defaults_window());
    sim.monitor.last_log_at = Some(at(50));
    let d = sim.settle(at(ENFORCE_DEFAULT));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::MONITORING_BLIND));
}

#[test]
fn logs_stopped_longer_than_max_log_silence_hold_enforcement() {
    let mut sim = monitoring_sim(defaults_window());
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT - 3601));
    let d = sim.settle(at(ENFORCE_DEFAULT));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::MONITORING_BLIND));
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT + 5));
    assert_eq!(sim.settle(at(ENFORCE_DEFAULT + 6)).phase, Phase::Enforcing);
}

#[test]
fn logs_arriving_no_alerts_and_a_quiet_period_passed_enforce() {
    let mut sim = monitoring_sim(defaults_window());
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT - 10));
    sim.monitor.last_unmatched_at = Some(at(200));
    let d = sim.settle(at(ENFORCE_DEFAULT));
    assert_eq!(d.phase, Phase::Enforcing, "{d:?}");
    assert_eq!(d.gate.reason, reason::GATES_OPEN);
}

#[test]
fn one_open_alert_holds_by_default() {
    let mut sim = monitoring_sim(defaults_window());
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT - 10));
    sim.monitor.open_alerts = 1;
    let d = sim.settle(at(ENFORCE_DEFAULT));
    assert_eq!(
        (d.phase, d.reason),
        (Phase::Held, reason::TOO_MANY_OPEN_ALERTS)
    );
}

#[test]
fn the_quiet_period_counts_from_monitor_mode_when_no_flow_was_seen() {
    // monitorFrom 100, enforceAt 1000, quiet period 72h by default: enforcement waits until
    // monitorFrom + 72h although nothing unmatched was ever seen.
    let mut w = defaults_window();
    w.enforce_at = at(MIN_NOTICE);
    let mut sim = monitoring_sim(w);
    sim.monitor.last_log_at = Some(at(990));
    let d = sim.settle(at(1000));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::QUIET_PERIOD));
    let quiet_end = at(100 + 72 * 3600);
    assert_eq!(d.next, Some((Phase::Enforcing, Some(quiet_end))));
    sim.monitor.last_log_at = Some(at(100 + 72 * 3600 - 5));
    assert_eq!(sim.settle(quiet_end).phase, Phase::Enforcing);
}

#[test]
fn waived_gates_enforce_without_evidence_and_say_so() {
    let spec: crate::api::EnforcementWindowSpec = serde_yaml::from_str(&format!(
        "notifyAt: {}\nmonitorFrom: {}\nenforceAt: {}\nminimumNotice: {MIN_NOTICE}s\ngates: {{waive: [QuietPeriod, Blind]}}\n",
        at(0),
        at(100),
        at(MIN_NOTICE)
    ))
    .unwrap();
    let w = Window::from_spec(&spec, SignedDuration::from_hours(1));
    assert_eq!((w.quiet_period, w.max_log_silence), (None, None));
    assert_eq!(w.waived, vec![WaivedGate::Blind, WaivedGate::QuietPeriod]);
    let mut sim = monitoring_sim(w);
    let preview = sim.settle(at(500));
    assert!(
        preview.gate.message.contains("waived"),
        "{}",
        preview.gate.message
    );
    let d = sim.settle(at(MIN_NOTICE));
    assert_eq!(d.phase, Phase::Enforcing);
    assert!(
        d.gate
            .message
            .contains("gates waived by the window: Blind, QuietPeriod"),
        "{}",
        d.gate.message
    );
}

#[test]
fn after_a_rollback_a_new_generation_needs_the_gates_again_from_the_rollback() {
    let mut w = defaults_window();
    w.rollback = true;
    let mut sim = monitoring_sim(w);
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT - 1));
    assert_eq!(sim.settle(at(ENFORCE_DEFAULT)).phase, Phase::Enforcing);
    sim.monitor.rollback_triggered = true;
    let rb = at(ENFORCE_DEFAULT + 100);
    let d = sim.settle(rb);
    assert_eq!(d.phase, Phase::RolledBack);
    assert_eq!(d.schedule.evidence_from, Some(rb));
    sim.monitor.rollback_triggered = false;
    sim.generation = 2;
    // Logs arrive, no alert open: still the quiet period from the rollback.
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT + 200));
    let d = sim.settle(at(ENFORCE_DEFAULT + 201));
    assert_eq!((d.phase, d.reason), (Phase::Held, reason::QUIET_PERIOD));
    assert!(
        d.gate.message.contains("back in monitor mode"),
        "{}",
        d.gate.message
    );
    let quiet_end = at(ENFORCE_DEFAULT + 100 + 72 * 3600);
    assert_eq!(d.next, Some((Phase::Enforcing, Some(quiet_end))));
    sim.monitor.last_log_at = Some(at(ENFORCE_DEFAULT + 100 + 72 * 3600 - 1));
    assert_eq!(sim.settle(quiet_end).phase, Phase::Enforcing);
}

#[test]
fn a_widening_change_under_drop_goes_back_to_pass_unless_approved() {
    let mut sim = monitoring_sim(window());
    assert_eq!(sim.settle(at(1000)).phase, Phase::Enforcing);
    sim.generation = 2;
    sim.widening = Some("member added: address 10.9.9.9".into());
    sim.approved = true;
    assert_eq!(sim.settle(at(1010)).phase, Phase::Enforcing, "approved");
    sim.approved = false;
    let d = sim.step(at(1020));
    assert_eq!(
        (d.phase, d.reason),
        (Phase::Held, reason::CHANGE_UNDER_DROP)
    );
    assert!(d.message.contains("10.9.9.9"), "{}", d.message);
    assert_eq!(d.schedule.evidence_from, Some(at(1020)));
    assert_eq!(d.schedule.enforced_since, None);
    // The controller stops reporting the widening once the application is no longer under
    // DROP; the gates decide from here.
    sim.widening = None;
    assert_eq!(sim.settle(at(1030)).phase, Phase::Enforcing);
}

#[test]
fn a_widening_change_after_clean_up_goes_back_to_pass_too() {
    let mut sim = monitoring_sim(window());
    sim.settle(at(1000));
    assert_eq!(sim.settle(at(1500)).phase, Phase::Completed);
    sim.widening = Some("allow rule https removed".into());
    let d = sim.step(at(1600));
    assert_eq!(
        (d.phase, d.reason),
        (Phase::Held, reason::CHANGE_UNDER_DROP)
    );
    sim.widening = None;
    let d = sim.settle(at(1610));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(
        d.schedule.cleanup_at,
        at(2110),
        "monitored again after re-enforcement"
    );
}

fn canary_window() -> Window {
    Window {
        canary: vec![
            (StepSize::Members(1), SignedDuration::from_secs(100)),
            (StepSize::Percent(50), SignedDuration::from_secs(100)),
        ],
        max_open_alerts: Some(0),
        rollback: true,
        ..window()
    }
}

fn enforcing_canary() -> Sim {
    let mut sim = Sim::new(canary_window());
    sim.deliver(at(0));
    sim.settle(at(100));
    let d = sim.settle(at(MIN_NOTICE));
    assert_eq!(d.phase, Phase::Enforcing, "{d:?}");
    sim
}

#[test]
fn a_canary_starts_at_step_one_and_widens_step_by_step_when_the_gates_hold() {
    let mut sim = enforcing_canary();
    let d = sim.decide(at(MIN_NOTICE));
    assert_eq!(d.schedule.canary_step, Some(1));
    assert_eq!(d.reason, reason::CANARY);
    assert_eq!(d.wake_at, Some(at(MIN_NOTICE + 100)));
    assert_eq!(d.next, Some((Phase::Enforcing, Some(at(MIN_NOTICE + 100)))));
    let d = sim.settle(at(MIN_NOTICE + 100));
    assert_eq!(d.schedule.canary_step, Some(2));
    assert_eq!(d.schedule.canary_since, Some(at(MIN_NOTICE + 100)));
    let d = sim.settle(at(MIN_NOTICE + 200));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(
        d.schedule.canary_step, None,
        "every VM enforces after the last step"
    );
    // Clean-up keeps the full post-enforcement monitoring after the widening to every VM.
    assert_eq!(d.schedule.cleanup_at, at(MIN_NOTICE + 200 + POST));
    assert_eq!(
        sim.settle(at(MIN_NOTICE + 200 + POST)).phase,
        Phase::Completed
    );
}

#[test]
fn a_canary_step_does_not_widen_while_an_alert_is_open() {
    let mut sim = enforcing_canary();
    sim.monitor.open_alerts = 1;
    let d = sim.settle(at(MIN_NOTICE + 150));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(d.schedule.canary_step, Some(1));
    assert_eq!(d.reason, reason::CANARY_HELD);
    assert!(d.message.contains("1 open alerts"), "{}", d.message);
    // Cleared later: the next step starts then and lasts its full duration.
    sim.monitor.open_alerts = 0;
    let d = sim.settle(at(MIN_NOTICE + 400));
    assert_eq!(d.schedule.canary_step, Some(2));
    assert_eq!(d.schedule.canary_since, Some(at(MIN_NOTICE + 400)));
    assert_eq!(d.wake_at, Some(at(MIN_NOTICE + 500)));
}

#[test]
fn a_rollback_during_a_canary_step_returns_every_vm_to_pass() {
    let mut sim = enforcing_canary();
    sim.monitor.rollback_triggered = true;
    let d = sim.settle(at(MIN_NOTICE + 10));
    assert_eq!(d.phase, Phase::RolledBack);
    assert_eq!(d.schedule.canary_step, None);
    assert_eq!(d.schedule.enforced_since, None);
}

#[test]
fn suspending_during_a_canary_step_returns_every_vm_to_pass_and_the_canary_restarts() {
    let mut sim = enforcing_canary();
    sim.settle(at(MIN_NOTICE + 100));
    sim.suspend = true;
    let d = sim.settle(at(MIN_NOTICE + 110));
    assert_eq!(d.phase, Phase::Held);
    assert_eq!(d.schedule.canary_step, None);
    sim.suspend = false;
    let d = sim.settle(at(MIN_NOTICE + 120));
    assert_eq!(d.phase, Phase::Enforcing);
    assert_eq!(
        d.schedule.canary_step,
        Some(1),
        "back from PASS, the canary starts over"
    );
}
