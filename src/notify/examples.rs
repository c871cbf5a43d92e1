//! Example notices, one of each kind, for the rendered examples under `docs/notices/`, the
//! channel tests and previews. Pure data: fixed timestamps, no IO, no clock.

use k8s_openapi::jiff::Timestamp;

use super::{Notice, NoticeKind, message_id};
use crate::api::k8s::Time;
use crate::api::{Direction, FlowSummary, Owner, Phase};

/// Every notice kind, in the order an owner meets them in a rollout.
pub const KINDS: [NoticeKind; 7] = [
    NoticeKind::Scheduled,
    NoticeKind::Reminder,
    NoticeKind::Postponed,
    NoticeKind::AlertDigest,
    NoticeKind::Enforced,
    NoticeKind::RolledBack,
    NoticeKind::Completed,
];

fn at(text: &str) -> Timestamp {
    // The literals below are valid RFC 3339; UNIX_EPOCH only if someone breaks one.
    text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The example owner: a team with an e-mail address and a webhook.
pub fn owner() -> Owner {
    Owner {
        name: "Web Team".to_string(),
        email: Some("web-team@example.com".to_string()),
        webhook: Some("https://hooks.example.com/services/T000/B000/XXXXSECRETXXXX".to_string()),
    }
}

fn flow(
    source: &str,
    destination: &str,
    protocol: &str,
    port: Option<i32>,
    direction: Direction,
    count: i64,
    (first, last): (&str, &str),
) -> FlowSummary {
    FlowSummary {
        id: Default::default(),
        source: source.into(),
        destination: destination.into(),
        protocol: protocol.into(),
        port,
        direction,
        action: "PASS".into(),
        count,
        first_seen: Time(at(first)),
        last_seen: Time(at(last)),
        acknowledged: None,
    }
}

/// Top unmatched flows of the example application.
pub fn flows() -> Vec<FlowSummary> {
    vec![
        flow(
            "10.20.30.40",
            "10.1.0.11",
            "TCP",
            Some(8443),
            Direction::Inbound,
            1_284,
            ("2027-02-03T08:12:44Z", "2027-02-09T17:55:02Z"),
        ),
        flow(
            "10.1.0.11",
            "10.9.8.7",
            "UDP",
            Some(514),
            Direction::Outbound,
            312,
            ("2027-02-04T00:00:09Z", "2027-02-09T23:40:51Z"),
        ),
        flow(
            "10.20.30.41",
            "10.1.0.12",
            "ICMP",
            None,
            Direction::Inbound,
            17,
            ("2027-02-05T10:01:00Z", "2027-02-08T10:01:00Z"),
        ),
    ]
}

/// One example notice of `kind` for the application "Shop web frontend" (namespace `wave-1`,
/// policy `shop-web`): monitor mode from 2027-02-01, enforcement 2027-02-16, clean-up
/// 2027-03-02, all 09:00 UTC.
pub fn notice(kind: NoticeKind) -> Notice {
    let owner = owner();
    let (phase, enforce_at, reason, flows, occasion) = match kind {
        NoticeKind::Scheduled => (Phase::Pending, "2027-02-16T09:00:00Z", None, vec![], "2027-02-16T09:00:00Z"),
        NoticeKind::Reminder => (Phase::Monitoring, "2027-02-16T09:00:00Z", None, vec![], "2027-02-16T09:00:00Z"),
        NoticeKind::Postponed => (
            Phase::Held,
            "2027-02-23T09:00:00Z",
            Some("quietPeriod: an unmatched flow was seen 2027-02-15 22:14 UTC, < 24h before enforcement".to_string()),
            vec![],
            "2027-02-23T09:00:00Z",
        ),
        NoticeKind::AlertDigest => (Phase::Monitoring, "2027-02-16T09:00:00Z", None, flows(), "2027-02-10"),
        NoticeKind::Enforced => (Phase::Enforcing, "2027-02-16T09:00:00Z", None, vec![], "2027-02-16T09:00:00Z"),
        NoticeKind::RolledBack => (
            Phase::RolledBack,
            "2027-02-16T09:00:00Z",
            Some("412 dropped flows in 10 minutes after enforcement (limit 100): the catch-all is PASS again".to_string()),
            vec![],
            "2027-02-16T09:27:00Z",
        ),
        NoticeKind::Completed => (Phase::Completed, "2027-02-16T09:00:00Z", None, vec![], "2027-03-02T09:00:00Z"),
    };
    Notice {
        kind,
        namespace: "wave-1".to_string(),
        name: "shop-web".to_string(),
        application: "Shop web frontend".to_string(),
        message_id: message_id(kind, "wave-1", "shop-web", &owner.name, occasion),
        owner,
        phase,
        monitor_from: at("2027-02-01T09:00:00Z"),
        enforce_at: at(enforce_at),
        cleanup_at: at("2027-03-02T09:00:00Z"),
        reason,
        flows,
        canary: None,
    }
}

/// One example notice of every kind.
pub fn all() -> Vec<Notice> {
    KINDS.iter().map(|k| notice(*k)).collect()
}
