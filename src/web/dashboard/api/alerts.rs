//! The alert queue: unmatched flows of every application as alerts, filtered and ordered for
//! triage.

use super::*;

/// One alert (an aggregated unmatched flow) with its application and suggested rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Namespace of the policy.
    pub namespace: String,
    /// SegmentationPolicy name.
    pub policy: String,
    /// Display name.
    pub application: String,
    /// Criticality of the application.
    pub criticality: String,
    /// Phase of the application.
    pub phase: String,
    /// Flow id (what acknowledging names).
    pub id: String,
    /// Source address.
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// Protocol.
    pub protocol: String,
    /// Destination port.
    pub port: Option<i32>,
    /// Inbound | Outbound (from the application's point of view).
    pub direction: String,
    /// PASS (monitor mode) or DROP (enforcing).
    pub action: String,
    /// Occurrences.
    pub count: i64,
    /// First seen.
    pub first_seen: Time,
    /// Last seen.
    pub last_seen: Time,
    /// Who acknowledged it, when and why; `None` while open.
    pub acknowledged: Option<Acknowledgement>,
    /// The `spec.rules` entry (YAML) that makes this flow an explicit, logged rule.
    pub suggested_rule: String,
}

pub(super) fn alert(p: &AppSummary, f: &FlowSummary) -> Alert {
    Alert {
        namespace: p.namespace.clone(),
        policy: p.name.clone(),
        application: p.application.clone(),
        criticality: p.criticality.clone(),
        phase: p.phase.clone(),
        id: f.id.to_string(),
        source: f.source.to_string(),
        destination: f.destination.to_string(),
        protocol: f.protocol.to_string(),
        port: f.port,
        direction: format!("{:?}", f.direction),
        action: f.action.to_string(),
        count: f.count,
        first_seen: f.first_seen.clone(),
        last_seen: f.last_seen.clone(),
        acknowledged: f.acknowledged.as_deref().cloned(),
        suggested_rule: rule_entry(f),
    }
}

/// Newest first, then loudest.
pub(super) fn queue_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    b.last_seen
        .0
        .cmp(&a.last_seen.0)
        .then_with(|| b.count.cmp(&a.count))
        .then_with(|| (&a.namespace, &a.policy, &a.id).cmp(&(&b.namespace, &b.policy, &b.id)))
}

/// Which alerts a queue lists.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Not acknowledged (the default).
    #[default]
    Open,
    /// Acknowledged.
    Acknowledged,
    /// Both.
    All,
}

/// Query of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertQuery {
    /// open (default), acknowledged or all.
    #[serde(default)]
    pub state: AlertState,
    /// Filters, as for the programme.
    #[serde(flatten)]
    pub filter: Filter,
}

/// Flows beyond the per-application bound, counted but not listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overflow {
    /// Namespace.
    pub namespace: String,
    /// Policy.
    pub policy: String,
    /// Unlisted open flows.
    pub count: i64,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertQueue {
    /// Server time.
    pub now: Time,
    /// Open alerts of the applications matching the filter (listed or not).
    pub open: i64,
    /// The alerts, newest and loudest first.
    pub alerts: Vec<Alert>,
    /// Applications with flows beyond the listed bound.
    pub overflow: Vec<Overflow>,
}

/// The alert queue across applications.
pub fn alerts(
    policies: &[Arc<SegmentationPolicy>],
    query: &AlertQuery,
    now: Timestamp,
) -> AlertQueue {
    let mut list = Vec::new();
    let mut overflow = Vec::new();
    let mut open = 0;
    for p in policies {
        let a = summary(p);
        if !query.filter.matches(&a) {
            continue;
        }
        open += a.open_alerts;
        let Some(m) = p.status.as_ref().and_then(|s| s.monitor.as_ref()) else {
            continue;
        };
        if m.overflow > 0 {
            overflow.push(Overflow {
                namespace: a.namespace.clone(),
                policy: a.name.clone(),
                count: m.overflow,
            });
        }
        for f in &m.flows {
            let wanted = match query.state {
                AlertState::Open => f.acknowledged.is_none(),
                AlertState::Acknowledged => f.acknowledged.is_some(),
                AlertState::All => true,
            };
            if wanted {
                list.push(alert(&a, f));
            }
        }
    }
    list.sort_by(queue_order);
    AlertQueue {
        now: Time(now),
        open,
        alerts: list,
        overflow,
    }
}
