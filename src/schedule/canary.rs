//! Canary steps: which step is in force and when the next one begins.

use super::*;

/// The canary step in force, if any, after advancing it when it has lasted its `for` and the
/// gates hold for it (open alerts within `maxOpenAlerts`, outside a blackout; a rollback is
/// decided before this). True while a step is in force (the decision is then complete): the
/// DROP catch-all applies to the step's VMs only. When the last step is over, every VM
/// enforces from then on and clean-up moves to keep the full post-enforcement monitoring.
pub(super) fn canary_step(
    d: &mut Decision,
    inp: &Inputs<'_>,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) -> bool {
    let w = inp.window;
    let Some(mut k) = d.schedule.canary_step else {
        return false;
    };
    let n = w.canary.len() as i64;
    if n == 0 {
        // The window dropped its canary: the whole application enforces, as without one.
        d.schedule.canary_step = None;
        d.schedule.canary_since = None;
        return false;
    }
    k = k.clamp(1, n);
    let mut since = d.schedule.canary_since.unwrap_or(now);
    loop {
        let (size, duration) = w.canary[(k - 1) as usize];
        let end = plus(since, duration);
        let describe = |k: i64| match size {
            StepSize::Members(1) => format!("step {k} of {n} (1 VM)"),
            StepSize::Members(m) => format!("step {k} of {n} ({m} VMs)"),
            StepSize::Percent(p) => format!("step {k} of {n} ({p}% of the VMs)"),
        };
        if now < end {
            let message = format!(
                "canary {}: catch-all DROP for the canary VMs, PASS and logged for the rest; widens at {end} if the gates hold",
                describe(k)
            );
            stay(d, (k, since), reason::CANARY, message);
            d.next = Some((Phase::Enforcing, Some(end)));
            wake.push(end);
            return true;
        }
        let mut held = Vec::new();
        if let Some(max) = w.max_open_alerts
            && inp.monitor.open_alerts > max
        {
            held.push(format!(
                "{} open alerts (at most {max})",
                inp.monitor.open_alerts
            ));
        }
        if w.blackout_at(now).is_some() {
            // The answer changes at the end of the blackouts that follow each other from now
            // (b1 until 08:11:45, then b0 until 08:12:53), only if nothing else holds the step;
            // the message names that end and the blackout it belongs to, the same all along
            // (naming the blackout in force would change it before anything else does).
            let until = w.after_blackouts(now);
            if held.is_empty() {
                wake.push(until);
            }
            let last = w
                .blackouts
                .iter()
                .find(|b| b.end == until)
                .map_or("", |b| b.name.as_str());
            held.push(format!(
                "inside a blackout until {until} (the end of blackout {last})"
            ));
        }
        if !held.is_empty() {
            let message = format!(
                "canary {} held: {}; DROP stays on the canary VMs only",
                describe(k),
                held.join("; ")
            );
            stay(d, (k, since), reason::CANARY_HELD, message);
            d.next = Some((Phase::Enforcing, None));
            return true;
        }
        // The step passed: the next one starts now (a held or late step never shortens the
        // next one).
        since = ceil_second(now);
        if k < n {
            k += 1;
            continue;
        }
        d.schedule.canary_step = None;
        d.schedule.canary_since = None;
        d.schedule.cleanup_at = w.after_blackouts(later(
            d.schedule.cleanup_at,
            plus(since, w.post_enforcement),
        ));
        return false;
    }
}

/// Enforcing on the canary step `k` that began at `since`.
fn stay(d: &mut Decision, (k, since): (i64, Timestamp), why: &'static str, message: String) {
    d.schedule.canary_step = Some(k);
    d.schedule.canary_since = Some(since);
    d.phase = Phase::Enforcing;
    d.reason = why;
    d.message = message;
}
