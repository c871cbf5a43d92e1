//! The gates: what blocks enforcement at an instant, what a waived gate says, and the gate
//! previewed before enforcement is due.

use super::*;

/// Every gate that blocks enforcement at `now`. `at_enforcement` includes the blackout gate
/// (only relevant once enforcement is due).
///
/// Instants at which the list changes by time alone (a blackout or the blindness starting) are
/// pushed to `wake`; those at which a blocker clears are in its `clears_at`.
pub(super) fn blockers(
    inp: &Inputs<'_>,
    s: &Schedule,
    now: Timestamp,
    at_enforcement: bool,
    wake: &mut Vec<Timestamp>,
) -> Vec<Blocking> {
    let w = inp.window;
    let mut out = Vec::new();
    if at_enforcement {
        wake.extend(w.blackout_changes_after(now));
    }
    if inp.suspend || w.suspend {
        out.push(Blocking {
            reason: reason::SUSPENDED,
            message: "suspended by spec.suspend or the window's suspend".into(),
            clears_at: None,
        });
    }
    if at_enforcement && let Some(b) = w.blackout_at(now) {
        out.push(Blocking {
            reason: reason::BLACKOUT,
            message: format!(
                "inside blackout {} until {}",
                b.name,
                w.after_blackouts(now)
            ),
            clears_at: Some(w.after_blackouts(now)),
        });
    }
    if s.notice_delivered_at.is_none() {
        out.push(Blocking {
            reason: reason::NOTICE_NOT_DELIVERED,
            message: "the owner notice has not been delivered".into(),
            clears_at: None,
        });
    }
    if let Some(b) = &inp.blocker {
        out.push(Blocking {
            reason: reason::NOT_READY,
            message: b.message.clone(),
            clears_at: None,
        });
    }
    if w.require_approval && !inp.approved {
        out.push(Blocking {
            reason: reason::APPROVAL_MISSING,
            message: format!(
                "approval required: annotate the policy with {}=\"{}\" (its current generation)",
                crate::api::APPROVAL_ANNOTATION,
                inp.generation
            ),
            clears_at: None,
        });
    }
    // Evidence counts from the start of monitor mode, or from the last return to PASS.
    let evidence_from = later(s.monitor_from, s.evidence_from.unwrap_or(s.monitor_from));
    out.extend(blind(inp, evidence_from, now, wake));
    if let Some(max) = w.max_open_alerts
        && inp.monitor.open_alerts > max
    {
        out.push(Blocking {
            reason: reason::TOO_MANY_OPEN_ALERTS,
            message: format!(
                "{} open alerts, at most {max} allowed",
                inp.monitor.open_alerts
            ),
            clears_at: None,
        });
    }
    out.extend(quiet_period(inp, s, evidence_from, now));
    out
}

/// The blind-monitoring gate: no DFW log line of the application since the evidence began, or
/// none for `maxLogSilence` (the instant it turns blind is pushed to `wake`).
fn blind(
    inp: &Inputs<'_>,
    evidence_from: Timestamp,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) -> Option<Blocking> {
    let silence = inp.window.max_log_silence?;
    match inp.monitor.last_log_at.filter(|t| *t >= evidence_from) {
        None => Some(Blocking {
            reason: reason::MONITORING_BLIND,
            message: format!(
                "monitoring is blind: no DFW log line of this application has arrived since \
                 {evidence_from} (send its DFW logs to microseg, or waive the Blind gate)"
            ),
            clears_at: None,
        }),
        Some(last) => {
            let blind_at = plus(last, silence);
            wake.push(blind_at);
            (now >= blind_at).then(|| Blocking {
                reason: reason::MONITORING_BLIND,
                message: format!(
                    "monitoring is blind: no DFW log line since {last} (maxLogSilence {})",
                    crate::api::duration::Duration::from(silence)
                ),
                clears_at: None,
            })
        }
    }
}

/// The quiet-period gate: counted from the latest of the last unmatched flow and the start of
/// the evidence.
fn quiet_period(
    inp: &Inputs<'_>,
    s: &Schedule,
    evidence_from: Timestamp,
    now: Timestamp,
) -> Option<Blocking> {
    let quiet = inp.window.quiet_period?;
    let last_flow = inp
        .monitor
        .last_unmatched_at
        .filter(|t| *t >= evidence_from);
    let since = last_flow.unwrap_or(evidence_from);
    let quiet_end = plus(since, quiet);
    if now >= quiet_end {
        return None;
    }
    let what = match (last_flow, s.evidence_from) {
        (Some(t), _) => format!("unmatched flow seen at {t}"),
        (None, Some(t)) if t >= s.monitor_from => format!("back in monitor mode since {t}"),
        _ => format!("monitor mode since {since}"),
    };
    Some(Blocking {
        reason: reason::QUIET_PERIOD,
        message: format!(
            "{what}; quiet period of {} ends at {quiet_end}",
            crate::api::duration::Duration::from(quiet)
        ),
        clears_at: Some(quiet_end),
    })
}

/// The gates the window waived, for messages (empty when none).
pub(super) fn waived_note(w: &Window) -> String {
    if w.waived.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = w.waived.iter().map(|g| g.as_str()).collect();
    format!(
        "; gates waived by the window: {} (enforcing without that evidence)",
        names.join(", ")
    )
}

pub(super) fn closed_gate(blockers: &[Blocking]) -> Gate {
    Gate {
        open: false,
        reason: blockers
            .first()
            .map(|b| b.reason)
            .unwrap_or(reason::GATES_OPEN),
        message: blockers
            .iter()
            .map(|b| b.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The gate as it stands before enforceAt: what would block enforcement if it were due now.
pub(super) fn preview_gate(
    inp: &Inputs<'_>,
    s: &Schedule,
    now: Timestamp,
    wake: &mut Vec<Timestamp>,
) -> Gate {
    let blockers = blockers(inp, s, now, false, wake);
    wake.extend(blockers.iter().filter_map(|b| b.clears_at));
    if blockers.is_empty() {
        Gate {
            open: true,
            reason: reason::GATES_OPEN,
            message: format!(
                "enforcement at {} if the gates stay open{}",
                s.enforce_at,
                waived_note(inp.window)
            ),
        }
    } else {
        let mut g = closed_gate(&blockers);
        g.message = format!(
            "enforcement at {} would be held: {}",
            s.enforce_at, g.message
        );
        g
    }
}
