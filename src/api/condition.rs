//! Condition types, reasons and the pure `set_condition` that keeps `lastTransitionTime` unless
//! the status changes.

use super::k8s::{Condition, Time, Timestamp};

/// microseg has done what the current spec asks for now: NSX holds the phase's state and nothing
/// needs a person. A designed wait (Held for approval, suspend, blackout, an evidence gate) is
/// Ready=True with the wait in `EnforcementGate` and the phase; see README "GitOps".
pub const READY: &str = "Ready";
/// kstatus `Stalled`: the controller cannot go on until a person changes Git (window or peer
/// missing, invalid spec, no members, name clash, an NSX object not ours, rolled back).
/// Flux and kstatus report such an object as Failed.
pub const STALLED: &str = "Stalled";
/// kstatus `Reconciling`: the current generation is not yet confirmed in NSX (first visit, an
/// NSX error or an undelivered notice that the controller retries).
pub const RECONCILING: &str = "Reconciling";
/// NSX matches the desired state of the current phase.
pub const SYNCED: &str = "Synced";
/// The owner notice for the coming enforcement was delivered.
pub const OWNER_NOTIFIED: &str = "OwnerNotified";
/// Whether enforcement may proceed, and why not.
pub const ENFORCEMENT_GATE: &str = "EnforcementGate";
/// DFW logs of the application are arriving.
pub const MONITORING_HEALTHY: &str = "MonitoringHealthy";

/// Every condition type a policy reports, in display order.
pub const POLICY_CONDITIONS: [&str; 7] = [
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    OWNER_NOTIFIED,
    ENFORCEMENT_GATE,
    MONITORING_HEALTHY,
];

/// Condition status values.
pub const TRUE: &str = "True";
/// Condition status values.
pub const FALSE: &str = "False";
/// Condition status values.
pub const UNKNOWN: &str = "Unknown";

/// Reasons (PascalCase), shared by conditions and events.
pub mod reason {
    /// Nothing observed yet.
    pub const PENDING: &str = "Pending";
    /// Condition holds.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The window named by spec.window was not found.
    pub const WINDOW_NOT_FOUND: &str = "WindowNotFound";
    /// The spec breaks a rule the schema could not check.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A peer application does not exist.
    pub const PEER_NOT_FOUND: &str = "PeerNotFound";
    /// Members resolve to nothing.
    pub const NO_MEMBERS: &str = "NoMembers";
    /// Another policy claims the same NSX ids.
    pub const NAME_CLASH: &str = "NameClash";
    /// An NSX object with our id exists but is not ours.
    pub const NOT_OWNED: &str = "NotOwned";
    /// NSX refused or failed a call.
    pub const NSX_ERROR: &str = "NsxError";
    /// NSX matched already.
    pub const IN_SYNC: &str = "InSync";
    /// NSX was written.
    pub const APPLIED: &str = "Applied";
    /// Dry run: the change was computed, not written.
    pub const DRY_RUN: &str = "DryRun";
    /// Nothing is written before monitorFrom.
    pub const NOT_STARTED: &str = "NotStarted";
    /// The notice is not due yet.
    pub const NOT_DUE: &str = "NotDue";
    /// The notice is due and not yet delivered.
    pub const NOTICE_DUE: &str = "NoticeDue";
    /// The notice was delivered.
    pub const DELIVERED: &str = "Delivered";
    /// The notice was not delivered before enforcement was due.
    pub const NOTICE_NOT_DELIVERED: &str = "NoticeNotDelivered";
    /// Enforcement was moved later by a late notice.
    pub const NOTICE_LATE: &str = "NoticeLate";
    /// Gates open.
    pub const GATES_OPEN: &str = "GatesOpen";
    /// Suspended by spec.suspend or the window's suspend.
    pub const SUSPENDED: &str = "Suspended";
    /// Inside a blackout.
    pub const BLACKOUT: &str = "Blackout";
    /// Approval annotation missing.
    pub const APPROVAL_MISSING: &str = "ApprovalMissing";
    /// Too many open alerts.
    pub const TOO_MANY_OPEN_ALERTS: &str = "TooManyOpenAlerts";
    /// Unmatched flows too recent.
    pub const QUIET_PERIOD: &str = "QuietPeriodNotMet";
    /// Logs stopped arriving.
    pub const MONITORING_BLIND: &str = "MonitoringBlind";
    /// Not ready (peer, members, NSX).
    pub const NOT_READY: &str = "NotReady";
    /// Logs arrive.
    pub const LOGS_ARRIVING: &str = "LogsArriving";
    /// No log ingestion configured or no log seen yet.
    pub const NO_LOGS_YET: &str = "NoLogsYet";
    /// Monitoring is not active in this phase.
    pub const NOT_MONITORING: &str = "NotMonitoring";
    /// Enforcement is over (cleaned up).
    pub const COMPLETED: &str = "Completed";
    /// Too many dropped flows after enforcement.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// Phase change that followed the schedule.
    pub const SCHEDULED: &str = "Scheduled";
    /// A canary step is in force: DROP for the canary VMs, PASS for the rest.
    pub const CANARY: &str = "Canary";
    /// A canary step is over but a gate keeps it from widening.
    pub const CANARY_HELD: &str = "CanaryHeld";
    /// A spec change under DROP widens what DROP affects: back to PASS and the gates.
    pub const CHANGE_UNDER_DROP: &str = "ChangeUnderDrop";
    /// A spec change under DROP that only narrows it (or an approved one): stays enforcing.
    pub const CHANGE_ACCEPTED: &str = "ChangeAccepted";
    /// An evidence gate is waived by the window while the application enforces.
    pub const GATE_WAIVED: &str = "GateWaived";
    /// The reconcile panicked (a bug): caught, reported, retried after a back-off.
    pub const RECONCILE_PANICKED: &str = "ReconcilePanicked";
    /// The object cannot be decoded by the controller and is skipped until fixed.
    pub const INVALID_OBJECT: &str = "InvalidObject";
    /// Stalled=False / Reconciling=False: nothing of the kind.
    pub const NONE: &str = "None";
}

/// Sets (or adds) a condition. `lastTransitionTime` changes only when the status changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let message = message.into();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        existing.status = status.to_string();
        existing.reason = reason.to_string();
        existing.message = message;
        existing.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    });
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let mut c = Vec::new();
        set_condition(&mut c, SYNCED, TRUE, reason::IN_SYNC, "a", Some(1), t0);
        set_condition(&mut c, SYNCED, TRUE, reason::APPLIED, "b", Some(2), t1);
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!(c[0].reason, reason::APPLIED);
        assert_eq!(c[0].observed_generation, Some(2));
        set_condition(&mut c, SYNCED, FALSE, reason::NSX_ERROR, "c", Some(2), t2);
        assert_eq!(c[0].last_transition_time, Time(t2));
        assert_eq!(c.len(), 1);
    }
}
