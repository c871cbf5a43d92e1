use super::*;
use crate::monitor::parse_line;
use compact_str::CompactString;

fn key() -> PolicyKey {
    PolicyKey {
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn index() -> Index {
    let mut ix = Index::default();
    let ids = BTreeMap::from([
        ("https".to_string(), 1001),
        (CATCHALL_IN.to_string(), 1002),
        (CATCHALL_OUT.to_string(), 1003),
    ]);
    ix.add(key(), &ids, "ms_c1_shop_web");
    ix
}

fn now() -> Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn delta(lines: &[&str]) -> Delta {
    let ix = index();
    let mut d = Delta::default();
    for l in lines {
        let r = parse_line(l).unwrap();
        let o = Observation::from(&r);
        if let Some(a) = ix.attribute(o.rule_id, o.rule_tag) {
            d.add(&o, &a.role, now());
        }
    }
    d
}

const UNMATCHED: &str = "2026-11-26T11:59:00.000Z b6507827 INET match PASS 1002 IN 52 TCP 10.9.0.1/49627->10.1.0.5/8443 S";
const UNMATCHED_LATER: &str = "2026-11-26T11:59:30.000Z b6507827 INET match PASS 1002 IN 52 TCP 10.9.0.1/50001->10.1.0.5/8443 S";
const HEALTHY: &str = "2026-11-26T11:59:10.000Z b6507827 INET match PASS 1001 IN 52 TCP 10.9.0.2/49627->10.1.0.5/443 S";
const TERM: &str = "2026-11-26T11:59:40.000Z b6507827 INET TERM PASS 1002 IN TCP FIN 10.9.0.1/49627->10.1.0.5/8443 2/2 100/100";
const DROPPED: &str =
    "2026-11-26T11:59:50.000Z b6507827 INET match DROP 1003 OUT 52 UDP 10.1.0.5/40000->10.8.0.1/53";

#[test]
fn catch_all_lines_are_unmatched_and_explicit_rules_are_healthy() {
    let d = delta(&[UNMATCHED, UNMATCHED_LATER, HEALTHY, TERM, DROPPED]);
    assert_eq!(d.unmatched, 3);
    assert_eq!(d.healthy, 1);
    // Source ports are not part of the key: the two 8443 lines are one flow.
    assert_eq!(d.flows.len(), 2);
    let inbound = d
        .flows
        .iter()
        .find(|(k, _)| k.direction == Direction::Inbound)
        .unwrap();
    assert_eq!(inbound.1.count, 2);
    assert_eq!(inbound.0.port, Some(8443));
    assert_eq!(
        d.last_log,
        Some("2026-11-26T11:59:50Z".parse().unwrap()),
        "TERM and every other line prove logs arrive"
    );
    assert_eq!(d.buckets.values().map(|b| b.1).sum::<u64>(), 1);
}

#[test]
fn monitor_tag_attributes_before_rule_ids_are_known() {
    let mut ix = Index::default();
    ix.add(key(), &BTreeMap::new(), "ms_c1_shop_web");
    let tag = crate::nsx::naming::monitor_tag("ms_c1_shop_web", Direction::Outbound);
    let a = ix.attribute(77, Some(&tag)).unwrap();
    assert_eq!(a.role, RuleRole::CatchAll(Direction::Outbound));
    assert!(ix.attribute(77, Some("other")).is_none());
    assert!(ix.attribute(77, None).is_none());
}

#[test]
fn apply_accumulates_and_a_repeated_key_is_not_counted_twice() {
    let mut m = MonitorStatus::default();
    let d = delta(&[UNMATCHED, DROPPED, HEALTHY]);
    let a = apply(&mut m, &key(), &d, Some("k1"), 100);
    assert_eq!((a.duplicate, a.new_flows), (false, 2));
    assert_eq!(m.unmatched_total, 2);
    assert_eq!(m.healthy_total, 1);
    assert_eq!(m.open_alerts, 2);
    let again = apply(&mut m, &key(), &d, Some("k1"), 100);
    assert!(again.duplicate);
    assert_eq!(m.unmatched_total, 2);
    apply(&mut m, &key(), &d, Some("k2"), 100);
    assert_eq!(m.unmatched_total, 4);
    assert_eq!(m.flows.len(), 2);
    assert_eq!(m.flows.iter().map(|f| f.count).sum::<i64>(), 4);
    assert_eq!(m.series.iter().map(|b| b.dropped).sum::<i64>(), 2);
}

#[test]
fn batch_keys_are_bounded() {
    let mut m = MonitorStatus::default();
    for i in 0..(BATCH_KEYS_MAX + 10) {
        apply(
            &mut m,
            &key(),
            &Delta::default(),
            Some(&format!("k{i}")),
            10,
        );
    }
    assert_eq!(m.batches.len(), BATCH_KEYS_MAX);
    assert_eq!(m.batches.first().map(CompactString::as_str), Some("k10"));
}

fn flows(n: u16) -> Delta {
    let mut d = Delta::default();
    let role = RuleRole::CatchAll(Direction::Inbound);
    for p in 0..n {
        let o = Observation {
            dst_port: Some(1000 + p),
            ..observation()
        };
        d.add(&o, &role, now());
    }
    d
}

#[test]
fn the_cap_counts_overflow_and_acknowledged_flows_make_room() {
    let mut m = MonitorStatus::default();
    let a = apply(&mut m, &key(), &flows(5), None, 3);
    assert_eq!((a.new_flows, a.overflowed), (5, 2));
    assert_eq!(m.flows.len(), 3);
    assert_eq!(m.overflow, 2);
    assert_eq!(m.open_alerts, 5, "overflowed flows stay open alerts");

    let id = m.flows[0].id.to_string();
    let n = acknowledge(
        &mut m,
        &AckTarget::Flows(vec![id.clone()]),
        "alice",
        "known backup job",
        now(),
    )
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(m.open_alerts, 4);
    assert_eq!(
        m.flows.last().unwrap().id,
        id,
        "acknowledged flows sort last"
    );
    assert_eq!(
        m.flows.last().unwrap().acknowledged.as_ref().unwrap().by,
        "alice"
    );

    // A new distinct flow replaces the acknowledged one.
    let mut more = Delta::default();
    more.add(
        &Observation {
            dst_port: Some(9999),
            ..observation()
        },
        &RuleRole::CatchAll(Direction::Inbound),
        now(),
    );
    apply(&mut m, &key(), &more, None, 3);
    assert!(m.flows.iter().all(|f| f.id != id));
    assert_eq!(m.overflow, 2);

    assert_eq!(
        acknowledge(
            &mut m,
            &AckTarget::Flows(vec!["nope".into()]),
            "a",
            "",
            now()
        ),
        Err(vec!["nope".to_string()])
    );
    let n = acknowledge(&mut m, &AckTarget::All, "bob", "all reviewed", now()).unwrap();
    assert_eq!(n, 5);
    assert_eq!((m.open_alerts, m.overflow), (0, 0));
}

fn observation() -> Observation<'static> {
    Observation {
        time: now(),
        rule_id: 1002,
        rule_tag: None,
        is_match: true,
        action: Some(Action::Pass),
        protocol: Some(Protocol::Tcp),
        src: Some("10.9.0.1".parse().unwrap()),
        dst: Some("10.1.0.5".parse().unwrap()),
        dst_port: Some(1),
    }
}

#[test]
fn an_acknowledged_flow_seen_again_stays_acknowledged_and_counts() {
    let mut m = MonitorStatus::default();
    let mut d = Delta::default();
    d.add(
        &observation(),
        &RuleRole::CatchAll(Direction::Inbound),
        now(),
    );
    apply(&mut m, &key(), &d, None, 10);
    acknowledge(&mut m, &AckTarget::All, "a", "", now()).unwrap();
    apply(&mut m, &key(), &d, None, 10);
    assert_eq!(m.flows[0].count, 2);
    assert!(m.flows[0].acknowledged.is_some());
    assert_eq!(m.open_alerts, 0);
}

#[test]
fn log_times_ahead_of_the_receiver_are_clamped() {
    let mut d = Delta::default();
    d.add(
        &Observation {
            time: now() + SignedDuration::from_hours(5),
            ..observation()
        },
        &RuleRole::CatchAll(Direction::Inbound),
        now(),
    );
    assert_eq!(d.last_log, Some(now()));
}

#[test]
fn series_keeps_six_hours_and_rollback_counts_drops_since_enforcement_within_the_period() {
    let mut m = MonitorStatus::default();
    let mut d = Delta::default();
    for minutes_ago in [400, 30, 9, 5, 1] {
        d.add(
            &Observation {
                time: now() - SignedDuration::from_mins(minutes_ago),
                action: Some(Action::Drop),
                ..observation()
            },
            &RuleRole::CatchAll(Direction::Inbound),
            now(),
        );
    }
    apply(&mut m, &key(), &d, None, 10);
    assert_eq!(m.series.len(), 4, "the bucket from 400 minutes ago is gone");
    let ten = SignedDuration::from_mins(10);
    assert_eq!(
        dropped_within(&m, now() - SignedDuration::from_hours(1), ten, now()),
        3
    );
    assert_eq!(
        dropped_within(&m, now() - SignedDuration::from_mins(6), ten, now()),
        2
    );
    assert_eq!(dropped_within(&m, now(), ten, now()), 0);
}

#[test]
fn flow_ids_are_stable_and_distinguish_applications() {
    let k = FlowKey {
        source: "10.0.0.1".into(),
        destination: "10.0.0.2".into(),
        protocol: "TCP".into(),
        port: Some(443),
        direction: Direction::Inbound,
        action: "PASS".into(),
    };
    let a = flow_id(&key(), &k);
    assert_eq!(a.len(), 12);
    assert_eq!(a, flow_id(&key(), &k));
    let other = PolicyKey {
        namespace: "shop".into(),
        name: "db".into(),
    };
    assert_ne!(a, flow_id(&other, &k));
}

#[test]
fn records_at_the_ends_of_time_neither_panic_nor_overflow_the_counts() {
    let last: Timestamp = "9999-12-30T22:00:00Z".parse().unwrap();
    let epoch = Timestamp::UNIX_EPOCH;
    let mut m = MonitorStatus::default();
    for (time, received) in [
        (last, Timestamp::MAX),
        (Timestamp::MAX, Timestamp::MAX),
        (epoch, now()),
        (Timestamp::MIN, now()),
    ] {
        let mut d = Delta::default();
        d.add(
            &Observation {
                time,
                action: Some(Action::Drop),
                ..observation()
            },
            &RuleRole::CatchAll(Direction::Inbound),
            received,
        );
        let mut again = d.clone();
        again.merge(&d);
        apply(&mut m, &key(), &again, None, 10);
    }
    // The newest bucket is at the end of time; the six-hour horizon before it drops the rest.
    assert_eq!(
        m.series.last().map(|b| b.start.0),
        Some("9999-12-30T22:00:00Z".parse().unwrap())
    );
    assert_eq!(m.last_log_at.as_ref().map(|t| t.0), Some(Timestamp::MAX));
    // Windows reaching past either end clamp instead of panicking.
    for (since, period, at) in [
        (Timestamp::MIN, SignedDuration::MAX, Timestamp::MAX),
        (Timestamp::MIN, SignedDuration::MAX, Timestamp::MIN),
        (epoch, SignedDuration::from_mins(10), epoch),
        (Timestamp::MAX, SignedDuration::MIN, Timestamp::MAX),
    ] {
        let _ = dropped_within(&m, since, period, at);
    }
    assert_eq!(
        dropped_within(&m, Timestamp::MIN, SignedDuration::MAX, Timestamp::MAX),
        m.series.iter().map(|b| b.dropped).sum::<i64>()
    );
    // Counts saturate instead of overflowing.
    for b in &mut m.series {
        b.dropped = i64::MAX;
    }
    m.series.push(MonitorBucket {
        start: Time(time::minus(last, SignedDuration::from_mins(1))),
        unmatched: 1,
        dropped: i64::MAX,
    });
    assert_eq!(
        dropped_within(&m, Timestamp::MIN, SignedDuration::MAX, Timestamp::MAX),
        i64::MAX
    );
}

/// `apply` as it was, finding flows by scanning the list: the reference for the hashed lookup.
fn apply_by_scan(m: &mut MonitorStatus, delta: &Delta, cap: usize) -> Applied {
    let mut out = Applied::default();
    let cap = cap.clamp(1, FLOWS_MAX);
    add_totals(m, delta);
    for (k, c) in &delta.flows {
        let id = flow_id(&key(), k);
        if let Some(f) = m.flows.iter_mut().find(|f| f.id == id) {
            seen_again(f, c);
            continue;
        }
        out.new_flows += 1;
        if m.flows.len() >= cap {
            match oldest_acknowledged(&m.flows) {
                Some(i) => {
                    m.flows.remove(i);
                }
                None => {
                    m.overflow = m.overflow.saturating_add(1);
                    out.overflowed += 1;
                    continue;
                }
            }
        }
        m.flows.push(first_seen(id, k, c));
    }
    settle(m, delta);
    out
}

#[derive(Debug, Clone)]
enum Step {
    /// Flows on these destination ports, seen this many seconds before now.
    Apply(Vec<(u16, u8)>),
    /// Acknowledge the flow at this position (modulo the length).
    Ack(usize),
    AckAll,
    /// A copy of the flow at this position appended (a hand-edited status with a repeated id).
    Repeat(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => proptest::collection::vec((0u16..12, 0u8..60), 0..8).prop_map(Step::Apply),
        2 => (0usize..16).prop_map(Step::Ack),
        1 => Just(Step::AckAll),
        1 => (0usize..16).prop_map(Step::Repeat),
    ]
}

proptest::proptest! {
    /// Finding flows by hashed id (with evictions, acknowledgements and repeated ids in between)
    /// gives exactly what scanning the list gave.
    #[test]
    fn apply_matches_the_scanning_reference(
        steps in proptest::collection::vec(step(), 1..30),
        cap in 1usize..8,
    ) {
        let mut fast = MonitorStatus::default();
        let mut slow = MonitorStatus::default();
        for s in steps {
            match s {
                Step::Apply(flows) => {
                    let mut d = Delta::default();
                    for (port, ago) in flows {
                        d.add(
                            &Observation {
                                time: now() - SignedDuration::from_secs(i64::from(ago)),
                                dst_port: Some(port),
                                ..observation()
                            },
                            &RuleRole::CatchAll(Direction::Inbound),
                            now(),
                        );
                    }
                    let a = apply(&mut fast, &key(), &d, None, cap);
                    let b = apply_by_scan(&mut slow, &d, cap);
                    proptest::prop_assert_eq!(a, b);
                }
                Step::Ack(i) => {
                    let ids: Vec<String> =
                        fast.flows.get(i % fast.flows.len().max(1)).map(|f| f.id.to_string()).into_iter().collect();
                    let a = acknowledge(&mut fast, &AckTarget::Flows(ids.clone()), "a", "", now());
                    let b = acknowledge(&mut slow, &AckTarget::Flows(ids), "a", "", now());
                    proptest::prop_assert_eq!(a, b);
                }
                Step::AckAll => {
                    let a = acknowledge(&mut fast, &AckTarget::All, "a", "", now());
                    let b = acknowledge(&mut slow, &AckTarget::All, "a", "", now());
                    proptest::prop_assert_eq!(a, b);
                }
                Step::Repeat(i) => {
                    if let Some(f) = fast.flows.get(i % fast.flows.len().max(1)).cloned() {
                        fast.flows.push(f.clone());
                        slow.flows.push(f);
                    }
                }
            }
            proptest::prop_assert_eq!(&fast, &slow);
        }
    }
}

#[test]
fn absorbing_a_delta_is_merging_it() {
    let a = delta(&[UNMATCHED, HEALTHY, DROPPED]);
    let b = delta(&[UNMATCHED_LATER, UNMATCHED, TERM]);
    let mut merged = a.clone();
    merged.merge(&b);
    let mut absorbed = a;
    absorbed.absorb(b);
    assert_eq!(merged, absorbed);
    assert_eq!(absorbed.unmatched, 4);
}

/// An index kept by `set` and `remove` answers as one built from scratch.
#[test]
fn index_updates_one_application_at_a_time() {
    let mut ix = index();
    let other = PolicyKey {
        namespace: "shop".into(),
        name: "db".into(),
    };
    let ids = BTreeMap::from([(CATCHALL_IN.to_string(), 2002)]);
    assert!(ix.set(other.clone(), &ids, "ms_c1_shop_db"));
    assert!(!ix.set(other.clone(), &ids, "ms_c1_shop_db"), "no change");
    assert_eq!((ix.rules(), ix.policies()), (4, 2));
    // web's rule ids change: the old ones go.
    let web = BTreeMap::from([(CATCHALL_IN.to_string(), 1102)]);
    assert!(ix.set(key(), &web, "ms_c1_shop_web"));
    assert!(ix.attribute(1001, None).is_none());
    assert_eq!(
        ix.attribute(1102, None).map(|a| a.role.clone()),
        Some(RuleRole::CatchAll(Direction::Inbound))
    );
    assert!(ix.remove(&other));
    assert!(!ix.remove(&other));
    assert!(ix.attribute(2002, None).is_none());
    let tag = crate::nsx::naming::monitor_tag("ms_c1_shop_db", Direction::Inbound);
    assert!(ix.attribute(7, Some(&tag)).is_none());
    assert_eq!((ix.rules(), ix.policies()), (1, 1));
}

#[test]
fn fifty_thousand_distinct_old_minutes_add_no_bucket_and_merge_in_linear_time() {
    let mut d = Delta::default();
    for minutes_ago in 400..50_400 {
        d.add(
            &Observation {
                time: now() - SignedDuration::from_mins(minutes_ago),
                ..observation()
            },
            &RuleRole::CatchAll(Direction::Inbound),
            now(),
        );
    }
    assert_eq!(d.unmatched, 50_000);
    assert!(
        d.buckets.is_empty(),
        "lines older than the series add no bucket"
    );
    // A delta built elsewhere with 50,000 distinct minutes (the old quadratic merge took
    // minutes): merged in one pass, six hours kept.
    let mut many = Delta::default();
    let start = now().as_second().div_euclid(60) * 60;
    for i in 0..50_000i64 {
        many.buckets.insert(start - i * 60, (1, 0));
    }
    many.last_log = Some(now());
    let mut m = MonitorStatus::default();
    let t = std::time::Instant::now();
    apply(&mut m, &key(), &many, None, 10);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(m.series.len(), SERIES_MAX);
    assert!(m.series.windows(2).all(|w| w[0].start.0 < w[1].start.0));
}

#[test]
fn a_canary_catch_all_counts_as_the_catch_all_of_its_direction() {
    let mut ix = Index::default();
    let ids: BTreeMap<String, i64> = [
        ("catchall_in_canary".to_string(), 5),
        ("catchall_out_canary".to_string(), 6),
        ("https".to_string(), 7),
    ]
    .into();
    ix.set(key(), &ids, "ms_demo_shop_app");
    assert_eq!(
        ix.attribute(5, None).unwrap().role,
        RuleRole::CatchAll(Direction::Inbound)
    );
    assert_eq!(
        ix.attribute(6, None).unwrap().role,
        RuleRole::CatchAll(Direction::Outbound)
    );
    assert_eq!(
        ix.attribute(7, None).unwrap().role,
        RuleRole::Explicit("https".into())
    );
}
