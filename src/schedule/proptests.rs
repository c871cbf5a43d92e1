//! Property tests over random windows, clocks and events: the invariants the rollout promises.

use proptest::prelude::*;

use super::tests::{Sim, at};
use super::*;

#[derive(Clone, Debug)]
struct WindowParams {
    notify: i64,
    to_monitor: i64,
    extra_notice: i64,
    min_notice: i64,
    post: i64,
    cleanup_extra: Option<i64>,
}

/// No effective timestamp of `next` is earlier than in `prev`.
fn never_earlier(prev: &Schedule, next: &Schedule) -> Result<(), TestCaseError> {
    prop_assert!(next.notify_at >= prev.notify_at);
    prop_assert!(next.monitor_from >= prev.monitor_from);
    prop_assert!(
        next.enforce_at >= prev.enforce_at,
        "{:?} -> {:?}",
        prev,
        next
    );
    prop_assert!(next.cleanup_at >= prev.cleanup_at);
    Ok(())
}

fn window_params() -> impl Strategy<Value = WindowParams> {
    (
        -200i64..600,
        0i64..400,
        0i64..400,
        10i64..600,
        10i64..600,
        proptest::option::of(0i64..800),
    )
        .prop_map(
            |(notify, to_monitor, extra_notice, min_notice, post, cleanup_extra)| WindowParams {
                notify,
                to_monitor,
                extra_notice,
                min_notice,
                post,
                cleanup_extra,
            },
        )
}

fn build(p: &WindowParams, template: &Window) -> Window {
    let notify = at(p.notify);
    let monitor = at(p.notify + p.to_monitor);
    let enforce = at(p.notify + p.to_monitor.max(p.min_notice) + p.extra_notice);
    Window {
        notify_at: notify,
        monitor_from: monitor,
        enforce_at: enforce,
        cleanup_at: p
            .cleanup_extra
            .map(|c| enforce + SignedDuration::from_secs(c)),
        minimum_notice: template.minimum_notice,
        post_enforcement: SignedDuration::from_secs(p.post),
        ..template.clone()
    }
}

#[derive(Clone, Debug)]
enum Event {
    Tick,
    Deliver,
    EditWindow(WindowParams),
    ToggleSuspend,
    ToggleWindowSuspend,
    Approve(bool),
    Alerts(i64),
    Unmatched,
    Log,
    Rollback(bool),
    NewGeneration,
    Blocker(bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Tick),
        2 => Just(Event::Deliver),
        1 => window_params().prop_map(Event::EditWindow),
        1 => Just(Event::ToggleSuspend),
        1 => Just(Event::ToggleWindowSuspend),
        1 => any::<bool>().prop_map(Event::Approve),
        1 => (0i64..5).prop_map(Event::Alerts),
        2 => Just(Event::Unmatched),
        2 => Just(Event::Log),
        1 => any::<bool>().prop_map(Event::Rollback),
        1 => Just(Event::NewGeneration),
        1 => any::<bool>().prop_map(Event::Blocker),
    ]
}

fn scenario() -> impl Strategy<Value = (Window, Vec<(i64, Event)>)> {
    (
        window_params(),
        10i64..600,
        proptest::collection::vec((0i64..200, 0i64..200), 0..3),
        proptest::option::of(0i64..300),
        proptest::option::of(0i64..5),
        any::<bool>(),
        proptest::option::of(50i64..400),
        any::<bool>(),
        proptest::collection::vec((1i64..150, event()), 1..60),
        proptest::option::of((1i64..200, 1i64..200)),
    )
        .prop_map(
            |(
                p,
                min_notice,
                blackouts,
                quiet,
                max_alerts,
                approval,
                silence,
                rollback,
                events,
                canary,
            )| {
                let template = Window {
                    canary: canary
                        .map(|(a, b)| {
                            vec![
                                (StepSize::Members(1), SignedDuration::from_secs(a)),
                                (StepSize::Percent(50), SignedDuration::from_secs(b)),
                            ]
                        })
                        .unwrap_or_default(),
                    minimum_notice: SignedDuration::from_secs(min_notice),
                    quiet_period: quiet.map(SignedDuration::from_secs),
                    max_open_alerts: max_alerts,
                    require_approval: approval,
                    max_log_silence: silence.map(SignedDuration::from_secs),
                    rollback,
                    blackouts: blackouts
                        .iter()
                        .enumerate()
                        .map(|(i, (start, len))| Blackout {
                            start: at(start * 5),
                            end: at(start * 5 + len + 1),
                            name: format!("b{i}"),
                        })
                        .collect(),
                    ..super::tests::window()
                };
                let p = WindowParams { min_notice, ..p };
                (build(&p, &template), events)
            },
        )
}

fn apply(sim: &mut Sim, ev: &Event, now: Timestamp) {
    match ev {
        Event::Tick => {}
        Event::Deliver => {
            if sim.delivered.is_none() {
                sim.deliver(now);
            }
        }
        Event::EditWindow(p) => {
            let p = WindowParams {
                min_notice: sim.window.minimum_notice.as_secs(),
                ..p.clone()
            };
            sim.window = build(&p, &sim.window);
        }
        Event::ToggleSuspend => sim.suspend = !sim.suspend,
        Event::ToggleWindowSuspend => sim.window.suspend = !sim.window.suspend,
        Event::Approve(a) => sim.approved = *a,
        Event::Alerts(n) => sim.monitor.open_alerts = *n,
        Event::Unmatched => sim.monitor.last_unmatched_at = Some(now),
        Event::Log => sim.monitor.last_log_at = Some(now),
        Event::Rollback(r) => sim.monitor.rollback_triggered = *r,
        Event::NewGeneration => sim.generation += 1,
        Event::Blocker(b) => {
            sim.blocker = b.then(|| Blocker {
                reason: reason::PEER_NOT_FOUND,
                message: "peer missing".into(),
            })
        }
    }
}

fn scheduled_transition(from: Phase, to: Phase) -> bool {
    from != to
        && matches!(to, Phase::Monitoring | Phase::Enforcing | Phase::Completed)
        && !(to == Phase::Monitoring && from != Phase::Pending)
}

/// The fields that say what happens, without the wake-up instant.
type Answer = (
    Phase,
    Option<(Phase, Option<Timestamp>)>,
    Gate,
    bool,
    Schedule,
);

fn answer(d: &Decision) -> Answer {
    (
        d.phase,
        d.next,
        d.gate.clone(),
        d.notice_due,
        d.schedule.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rollout_invariants_hold((window, events) in scenario()) {
        let mut sim = Sim::new(window);
        let mut now = at(-300);
        let mut last_schedule: Option<Schedule> = None;
        for (dt, ev) in events {
            now += SignedDuration::from_secs(dt);
            apply(&mut sim, &ev, now);
            let from = sim.phase.unwrap_or(Phase::Pending);
            let d = sim.settle(now);

            // Effective timestamps never move earlier.
            if let Some(prev) = &last_schedule {
                never_earlier(prev, &d.schedule)?;
            }
            last_schedule = Some(d.schedule.clone());

            // No enforcement before notice delivery + minimum notice.
            if d.phase == Phase::Enforcing {
                let delivered = d.schedule.notice_delivered_at;
                prop_assert!(delivered.is_some(), "enforcing without a delivered notice");
                if from != Phase::Enforcing {
                    prop_assert!(now >= delivered.unwrap() + sim.window.minimum_notice);
                }
            }

            // A canary step is only ever in force while enforcing, and only when the window
            // declares one: suspend, rollback, a blocker or a widening change return every VM
            // to PASS. Clean-up never happens during a canary step.
            if d.phase != Phase::Enforcing {
                prop_assert!(d.schedule.canary_step.is_none(), "{} with canary step {:?}", d.phase, d.schedule.canary_step);
            }
            if let Some(k) = d.schedule.canary_step {
                prop_assert!(k >= 1 && k as usize <= sim.window.canary.len());
                prop_assert!(d.schedule.canary_since.is_some());
            }
            if from == Phase::Enforcing && d.phase == Phase::Completed {
                prop_assert!(sim.schedule.as_ref().is_some_and(|s| s.canary_step.is_none()));
            }

            // No scheduled transition inside a blackout.
            if scheduled_transition(from, d.phase) {
                prop_assert!(sim.window.blackout_at(now).is_none(),
                    "{from} -> {} at {now} inside a blackout", d.phase);
            }

            // The wake-up instant is in the future and exact.
            let steady = sim.decide(now);
            if let Some(w) = steady.wake_at {
                prop_assert!(w > now);
                let before = sim.decide(w - SignedDuration::from_nanos(1));
                prop_assert_eq!(&before, &steady, "answer changed before the wake-up instant");
                let at_wake = sim.decide(w);
                prop_assert_ne!(answer(&at_wake), answer(&steady),
                    "nothing changed at the wake-up instant {}", w);
            }
        }
    }
}

/// Seconds of the last instant a window may name (the CRD bound; jiff's range ends a few hours
/// before 10000-01-01 because of time-zone offsets).
fn last_second() -> i64 {
    Timestamp::MAX.as_second()
}

/// Instants across the whole accepted range, weighted towards both ends.
fn extreme_instant() -> impl Strategy<Value = i64> {
    let last = last_second();
    prop_oneof![
        2 => 0i64..=last,
        1 => (last - 40 * 24 * 3600)..=last,
        1 => 0i64..(40 * 24 * 3600),
    ]
}

/// Durations up to the CRD bound (87600h), weighted towards the bound.
fn extreme_duration() -> impl Strategy<Value = SignedDuration> {
    let max = 87_600 * 3600i64;
    prop_oneof![
        1 => Just(SignedDuration::from_secs(max)),
        2 => (0i64..=max).prop_map(SignedDuration::from_secs),
        1 => (0i64..600).prop_map(SignedDuration::from_secs),
    ]
}

fn extreme_window() -> impl Strategy<Value = Window> {
    (
        proptest::collection::vec(extreme_instant(), 4),
        proptest::collection::vec(extreme_duration(), 4),
        proptest::option::of(0i64..3),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec((extreme_instant(), extreme_duration()), 0..3),
    )
        .prop_map(|(mut instants, durations, alerts, approval, rollback, blackouts)| {
            instants.sort();
            let ts = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::MAX);
            let spec: crate::api::EnforcementWindowSpec = serde_json::from_value(serde_json::json!({
                "notifyAt": ts(instants[0]).to_string(),
                "monitorFrom": ts(instants[1]).to_string(),
                "enforceAt": ts(instants[2]).to_string(),
                "cleanupAt": ts(instants[3]).to_string(),
                "minimumNotice": crate::api::duration::Duration::from(durations[0]).to_string(),
                "postEnforcementMonitoring": crate::api::duration::Duration::from(durations[1]).to_string(),
                "gates": {
                    "quietPeriod": crate::api::duration::Duration::from(durations[2]).to_string(),
                    "maxLogSilence": crate::api::duration::Duration::from(durations[3]).to_string(),
                    "maxOpenAlerts": alerts,
                    "requireApproval": approval,
                    "rollback": if rollback { serde_json::json!({"droppedFlows": 1, "period": "10m"}) } else { serde_json::Value::Null },
                },
                "blackouts": blackouts.iter().map(|(start, len)| serde_json::json!({
                    "start": ts(*start).to_string(),
                    "end": crate::api::time::plus(ts(*start), *len).max(crate::api::time::plus(ts(*start), SignedDuration::from_secs(1))).to_string(),
                })).collect::<Vec<_>>(),
            }))
            .unwrap();
            Window::from_spec(&spec, durations[3])
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Windows anywhere in years 1970–9999 with durations up to the bound: the machine never
    /// panics, never moves an effective instant earlier and always wakes after `now`.
    #[test]
    fn extreme_windows_never_panic_nor_pull_an_instant_earlier(
        window in extreme_window(),
        steps in proptest::collection::vec((extreme_instant(), event()), 1..40),
    ) {
        let mut sim = Sim::new(window);
        let mut times: Vec<i64> = steps.iter().map(|(t, _)| *t).collect();
        times.sort();
        let mut last_schedule: Option<Schedule> = None;
        for (t, (_, ev)) in times.into_iter().zip(steps.iter()) {
            let now = Timestamp::from_second(t).unwrap_or(Timestamp::MAX);
            if !matches!(ev, Event::EditWindow(_)) {
                apply(&mut sim, ev, now);
            }
            let d = sim.settle(now);
            if let Some(prev) = &last_schedule {
                never_earlier(prev, &d.schedule)?;
            }
            if let Some(w) = d.wake_at {
                prop_assert!(w > now);
            }
            // The status round trip of the schedule stays representable.
            let json = serde_json::to_string(&d.schedule.to_status()).unwrap();
            let back: EffectiveSchedule = serde_json::from_str(&json).unwrap();
            prop_assert!(Schedule::from_status(&back).enforce_at >= d.schedule.enforce_at - SignedDuration::from_secs(1));
            last_schedule = Some(d.schedule.clone());
        }
    }
}
