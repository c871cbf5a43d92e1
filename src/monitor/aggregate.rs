//! Attribution and aggregation of DFW log records (pure: no IO, no clock; time comes in).
//!
//! A record belongs to an application when its rule id is one of the application's rules (from
//! `status.nsx.ruleIds`) or, while the ids are not known yet, when its rule tag is one of the
//! application's catch-all monitor tags. A `match` line on a catch-all is an unmatched flow; a line
//! on an explicit rule is healthy traffic; TERM and other lines only prove that logs arrive.
//!
//! Unmatched flows are aggregated per (application, source, destination, protocol, destination
//! port, direction, action) into a [`Delta`], which [`apply`] folds into the policy's
//! `status.monitor`, bounded by a cap on distinct flows with an overflow counter.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::loginsight::FieldRecord;
use super::parse::{Action, LogRecord, Protocol, Reason};
use crate::api::time;
use crate::api::{Acknowledgement, Direction, FlowSummary, MonitorBucket, MonitorStatus};
use crate::nsx::naming::{CATCHALL_IN, CATCHALL_OUT};
use crate::nsx::naming::{CATCHALL_IN_CANARY, CATCHALL_OUT_CANARY};

/// Most buckets kept in `status.monitor.series` (one per minute: six hours).
pub const SERIES_MAX: usize = 360;
/// Most idempotency keys kept in `status.monitor.batches`.
pub const BATCH_KEYS_MAX: usize = 256;
/// Most distinct flows the status can hold (the CRD's bound).
pub const FLOWS_MAX: usize = 500;

/// `namespace/name` of a SegmentationPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a rule of an application is, for attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRole {
    /// The inbound or outbound catch-all.
    CatchAll(Direction),
    /// An explicit rule, by name.
    Explicit(String),
}

/// Where a record belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The application's policy (shared: attributing a line copies no string).
    pub policy: Arc<PolicyKey>,
    /// Which of its rules the record hit.
    pub role: RuleRole,
}

/// What one application put in the index, so that it can be replaced or removed alone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    rule_ids: BTreeMap<String, i64>,
    object_id: String,
    tags: [String; 2],
}

/// Rule ids and monitor tags of every application, built from the policies' status.
///
/// Kept up to date one application at a time ([`Index::set`], [`Index::remove`]): an update
/// costs the application's rules, and [`Index::attribute`] is two hash lookups whatever the
/// number of applications. NSX rule ids are unique; should two applications claim the same id
/// (a stale status), the one set last has it.
#[derive(Debug, Default, Clone)]
pub struct Index {
    by_rule: HashMap<u32, Attribution>,
    by_tag: HashMap<String, Attribution>,
    by_policy: HashMap<PolicyKey, Contribution>,
}

impl Index {
    /// Adds one application: its rule ids by rule name (`status.nsx.ruleIds`) and its NSX object
    /// id (for the monitor tags of its catch-alls). The same as [`Index::set`].
    pub fn add(&mut self, policy: PolicyKey, rule_ids: &BTreeMap<String, i64>, object_id: &str) {
        self.set(policy, rule_ids, object_id);
    }

    /// Sets one application's rule ids and object id, replacing what it had; returns false,
    /// having done nothing, when they are the ones it has.
    pub fn set(
        &mut self,
        policy: PolicyKey,
        rule_ids: &BTreeMap<String, i64>,
        object_id: &str,
    ) -> bool {
        if self.has(&policy, rule_ids, object_id) {
            return false;
        }
        self.remove(&policy);
        let shared = Arc::new(policy.clone());
        for (name, id) in rule_ids {
            let Ok(id) = u32::try_from(*id) else { continue };
            let role = match name.as_str() {
                // A canary step's DROP catch-all is the catch-all for its VMs.
                CATCHALL_IN | CATCHALL_IN_CANARY => RuleRole::CatchAll(Direction::Inbound),
                CATCHALL_OUT | CATCHALL_OUT_CANARY => RuleRole::CatchAll(Direction::Outbound),
                other => RuleRole::Explicit(other.to_string()),
            };
            self.by_rule.insert(
                id,
                Attribution {
                    policy: shared.clone(),
                    role,
                },
            );
        }
        let tags = [Direction::Inbound, Direction::Outbound].map(|direction| {
            let tag = crate::nsx::naming::monitor_tag(object_id, direction);
            self.by_tag.insert(
                tag.clone(),
                Attribution {
                    policy: shared.clone(),
                    role: RuleRole::CatchAll(direction),
                },
            );
            tag
        });
        self.by_policy.insert(
            policy,
            Contribution {
                rule_ids: rule_ids.clone(),
                object_id: object_id.to_string(),
                tags,
            },
        );
        true
    }

    /// True when the application is in the index with these rule ids and object id (setting
    /// them would change nothing).
    pub fn has(
        &self,
        policy: &PolicyKey,
        rule_ids: &BTreeMap<String, i64>,
        object_id: &str,
    ) -> bool {
        self.by_policy
            .get(policy)
            .is_some_and(|c| c.rule_ids == *rule_ids && c.object_id == object_id)
    }

    /// True when the application is in the index.
    pub fn contains(&self, policy: &PolicyKey) -> bool {
        self.by_policy.contains_key(policy)
    }

    /// Removes one application; returns false when it was not there.
    pub fn remove(&mut self, policy: &PolicyKey) -> bool {
        let Some(c) = self.by_policy.remove(policy) else {
            return false;
        };
        for id in c.rule_ids.values() {
            if let Ok(id) = u32::try_from(*id)
                && self.by_rule.get(&id).is_some_and(|a| *a.policy == *policy)
            {
                self.by_rule.remove(&id);
            }
        }
        for tag in &c.tags {
            if self.by_tag.get(tag).is_some_and(|a| *a.policy == *policy) {
                self.by_tag.remove(tag);
            }
        }
        true
    }

    /// Number of rule ids known.
    pub fn rules(&self) -> usize {
        self.by_rule.len()
    }

    /// Number of applications known.
    pub fn policies(&self) -> usize {
        self.by_policy.len()
    }

    /// The application and rule a record belongs to, if any.
    pub fn attribute(&self, rule_id: u32, rule_tag: Option<&str>) -> Option<&Attribution> {
        self.by_rule
            .get(&rule_id)
            .or_else(|| rule_tag.and_then(|t| self.by_tag.get(t)))
    }
}

/// The fields of a log record that matter here, from a DFW line or Log Insight fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// When the packet was logged.
    pub time: Timestamp,
    /// NSX rule id.
    pub rule_id: u32,
    /// Rule tag, when the line carries one.
    pub rule_tag: Option<&'a str>,
    /// A first-packet `match` line (false: TERM and other reasons).
    pub is_match: bool,
    /// What the datapath did, when known.
    pub action: Option<Action>,
    /// Protocol, when known.
    pub protocol: Option<Protocol>,
    /// Source.
    pub src: Option<IpAddr>,
    /// Destination.
    pub dst: Option<IpAddr>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

impl<'a> From<&LogRecord<'a>> for Observation<'a> {
    fn from(r: &LogRecord<'a>) -> Self {
        Observation {
            time: r.time,
            rule_id: r.rule_id,
            rule_tag: r.rule_tag,
            is_match: r.reason == Reason::Match,
            action: r.action,
            protocol: Some(r.protocol),
            src: Some(r.src),
            dst: Some(r.dst),
            dst_port: r.dst_port,
        }
    }
}

impl<'a> Observation<'a> {
    /// From Log Insight content-pack fields; `received` stands in for a missing timestamp.
    pub fn from_fields(r: &FieldRecord<'a>, received: Timestamp) -> Self {
        Observation {
            time: r.time.unwrap_or(received),
            rule_id: r.rule_id,
            rule_tag: None,
            is_match: true,
            action: r.action,
            protocol: r.protocol,
            src: r.src,
            dst: r.dst,
            dst_port: r.dst_port,
        }
    }
}

/// Aggregation key of an unmatched flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address (`?` when unknown).
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// `TCP`, `UDP`, `ICMP`, `PROTO n`, or `?`.
    pub protocol: String,
    /// Destination port for TCP and UDP.
    pub port: Option<u16>,
    /// From the application's point of view.
    pub direction: Direction,
    /// `PASS`, `DROP`, `REJECT`, or `?`.
    pub action: String,
}

/// Counts and first/last seen of one flow within a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCount {
    /// Occurrences.
    pub count: u64,
    /// Earliest.
    pub first: Timestamp,
    /// Latest.
    pub last: Timestamp,
}

impl FlowCount {
    fn fold(&mut self, c: &FlowCount) {
        self.count = self.count.saturating_add(c.count);
        self.first = self.first.min(c.first);
        self.last = self.last.max(c.last);
    }
}

/// What a batch contributes to one application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Unmatched (catch-all `match`) lines.
    pub unmatched: u64,
    /// Lines on explicit rules.
    pub healthy: u64,
    /// Latest log time (clamped to the receive time).
    pub last_log: Option<Timestamp>,
    /// Latest unmatched time.
    pub last_unmatched: Option<Timestamp>,
    /// Unmatched flows.
    pub flows: BTreeMap<FlowKey, FlowCount>,
    /// Per minute (epoch seconds of the minute's start): (unmatched, dropped).
    pub buckets: BTreeMap<i64, (u64, u64)>,
}

impl Delta {
    /// Nothing to record.
    pub fn is_empty(&self) -> bool {
        self.last_log.is_none()
    }

    /// Adds one attributed observation; `now` bounds log times from clocks ahead of ours.
    pub fn add(&mut self, o: &Observation<'_>, role: &RuleRole, now: Timestamp) {
        let t = o.time.min(now);
        self.last_log = Some(self.last_log.map_or(t, |l| l.max(t)));
        let RuleRole::CatchAll(direction) = role else {
            if o.is_match {
                self.healthy += 1;
            }
            return;
        };
        if !o.is_match {
            return;
        }
        self.unmatched += 1;
        self.last_unmatched = Some(self.last_unmatched.map_or(t, |l| l.max(t)));
        let dropped = matches!(o.action, Some(Action::Drop | Action::Reject));
        // The series keeps six hours; a line older than that counts in the totals and its flow,
        // never as a bucket (one batch of old minutes cannot grow the series work).
        if minute(t) > minute(now) - series_span_secs() {
            let bucket = self.buckets.entry(minute(t)).or_default();
            bucket.0 += 1;
            if dropped {
                bucket.1 += 1;
            }
        }
        let protocol = o.protocol;
        let key = FlowKey {
            source: o.src.map_or_else(|| "?".into(), |a| a.to_string()),
            destination: o.dst.map_or_else(|| "?".into(), |a| a.to_string()),
            protocol: protocol.map_or_else(|| "?".into(), |p| p.to_string()),
            port: match protocol {
                Some(Protocol::Tcp | Protocol::Udp) | None => o.dst_port,
                _ => None,
            },
            direction: *direction,
            action: o.action.map_or("?", |a| a.as_str()).to_string(),
        };
        self.flows
            .entry(key)
            .and_modify(|c| {
                c.count += 1;
                c.first = c.first.min(t);
                c.last = c.last.max(t);
            })
            .or_insert(FlowCount {
                count: 1,
                first: t,
                last: t,
            });
    }

    /// Folds another delta of the same application into this one.
    pub fn merge(&mut self, other: &Delta) {
        self.merge_counts(other);
        for (k, c) in &other.flows {
            match self.flows.get_mut(k) {
                Some(m) => m.fold(c),
                None => {
                    self.flows.insert(k.clone(), *c);
                }
            }
        }
    }

    /// [`Delta::merge`], taking the other delta's keys instead of copying them.
    pub fn absorb(&mut self, other: Delta) {
        self.merge_counts(&other);
        for (k, c) in other.flows {
            self.flows.entry(k).and_modify(|m| m.fold(&c)).or_insert(c);
        }
    }

    fn merge_counts(&mut self, other: &Delta) {
        self.unmatched = self.unmatched.saturating_add(other.unmatched);
        self.healthy = self.healthy.saturating_add(other.healthy);
        self.last_log = max_opt(self.last_log, other.last_log);
        self.last_unmatched = max_opt(self.last_unmatched, other.last_unmatched);
        for (m, (u, d)) in &other.buckets {
            let b = self.buckets.entry(*m).or_default();
            b.0 = b.0.saturating_add(*u);
            b.1 = b.1.saturating_add(*d);
        }
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Seconds the series spans.
fn series_span_secs() -> i64 {
    i64::try_from(SERIES_MAX).unwrap_or(360) * 60
}

fn minute(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60) * 60
}

/// Stable id of a flow of an application: 12 hex digits.
pub fn flow_id(policy: &PolicyKey, k: &FlowKey) -> String {
    let mut h = Sha256::new();
    for part in [
        policy.namespace.as_str(),
        policy.name.as_str(),
        k.source.as_str(),
        k.destination.as_str(),
        k.protocol.as_str(),
        &k.port.map(|p| p.to_string()).unwrap_or_default(),
        match k.direction {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        },
        k.action.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex12(&h.finalize())
}

/// First 12 hex digits of a digest.
pub fn hex12(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(12);
    for b in bytes.iter().take(6) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The batch key was already recorded: nothing was added.
    pub duplicate: bool,
    /// Distinct flows seen for the first time.
    pub new_flows: u64,
    /// Distinct new flows that did not fit (counted in `overflow`).
    pub overflowed: u64,
}

/// Folds `delta` into `m`. A `key` already in `m.batches` makes it a no-op (a retried batch);
/// otherwise the key is remembered. `cap` bounds the distinct flows kept (at most
/// [`FLOWS_MAX`]); when full, the acknowledged flow seen longest ago makes room, and when none is
/// acknowledged the flow is counted in `overflow`.
pub fn apply(
    m: &mut MonitorStatus,
    policy: &PolicyKey,
    delta: &Delta,
    key: Option<&str>,
    cap: usize,
) -> Applied {
    let mut out = Applied::default();
    if let Some(key) = key {
        if m.batches.iter().any(|k| k == key) {
            out.duplicate = true;
            return out;
        }
        m.batches.push(key.into());
        let excess = m.batches.len().saturating_sub(BATCH_KEYS_MAX);
        m.batches.drain(..excess);
    }
    let cap = cap.clamp(1, FLOWS_MAX);
    let mut positions = FlowPositions::new(&m.flows);
    let mut acknowledged = m.flows.iter().filter(|f| f.acknowledged.is_some()).count();
    add_totals(m, delta);
    for (k, c) in &delta.flows {
        let id = flow_id(policy, k);
        if let Some(f) = positions
            .find(&m.flows, &id)
            .and_then(|i| m.flows.get_mut(i))
        {
            seen_again(f, c);
            continue;
        }
        out.new_flows += 1;
        if m.flows.len() >= cap {
            let oldest_acked = (acknowledged > 0)
                .then(|| oldest_acknowledged(&m.flows))
                .flatten();
            match oldest_acked {
                Some(i) => {
                    m.flows.remove(i);
                    acknowledged -= 1;
                    positions = FlowPositions::new(&m.flows);
                }
                None => {
                    m.overflow = m.overflow.saturating_add(1);
                    out.overflowed += 1;
                    continue;
                }
            }
        }
        positions.pushed(&id, m.flows.len());
        m.flows.push(first_seen(id, k, c));
    }
    settle(m, delta);
    out
}

/// Adds the delta's counters and last instants to the application's.
fn add_totals(m: &mut MonitorStatus, delta: &Delta) {
    m.unmatched_total = m.unmatched_total.saturating_add(to_i64(delta.unmatched));
    m.healthy_total = m.healthy_total.saturating_add(to_i64(delta.healthy));
    m.last_log_at = max_opt(m.last_log_at.as_ref().map(|t| t.0), delta.last_log).map(Time);
    m.last_unmatched_at = max_opt(
        m.last_unmatched_at.as_ref().map(|t| t.0),
        delta.last_unmatched,
    )
    .map(Time);
}

/// A flow already kept, seen again: its count grows and its first and last sightings widen.
fn seen_again(f: &mut FlowSummary, c: &FlowCount) {
    f.count = f.count.saturating_add(to_i64(c.count));
    f.first_seen = Time(f.first_seen.0.min(c.first));
    f.last_seen = Time(f.last_seen.0.max(c.last));
}

/// A flow seen for the first time.
fn first_seen(id: String, k: &FlowKey, c: &FlowCount) -> FlowSummary {
    FlowSummary {
        id: id.into(),
        source: k.source.as_str().into(),
        destination: k.destination.as_str().into(),
        protocol: k.protocol.as_str().into(),
        port: k.port.map(i32::from),
        direction: k.direction,
        action: k.action.as_str().into(),
        count: to_i64(c.count),
        first_seen: Time(c.first),
        last_seen: Time(c.last),
        acknowledged: None,
    }
}

/// The acknowledged flow seen longest ago: the one that makes room when the list is full.
fn oldest_acknowledged(flows: &[FlowSummary]) -> Option<usize> {
    flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.acknowledged.is_some())
        .min_by_key(|(_, f)| f.last_seen.0)
        .map(|(i, _)| i)
}

/// Once the flows are folded in: flows in order, the delta's minutes in the series, and the
/// open alerts counted again.
fn settle(m: &mut MonitorStatus, delta: &Delta) {
    sort_flows(&mut m.flows);
    merge_series(&mut m.series, &delta.buckets);
    m.open_alerts = open_alerts(m);
}

/// Where each flow id is in a flow list: finding a flow costs a hash, not a scan of the list.
struct FlowPositions(HashMap<u64, usize>);

impl FlowPositions {
    fn hash(id: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    }

    fn new(flows: &[FlowSummary]) -> Self {
        let mut map = HashMap::with_capacity(flows.len());
        for (i, f) in flows.iter().enumerate() {
            map.entry(Self::hash(&f.id)).or_insert(i);
        }
        FlowPositions(map)
    }

    fn pushed(&mut self, id: &str, at: usize) {
        self.0.entry(Self::hash(id)).or_insert(at);
    }

    /// The first flow with `id` (a hash collision falls back to a scan).
    fn find(&self, flows: &[FlowSummary], id: &str) -> Option<usize> {
        let i = *self.0.get(&Self::hash(id))?;
        if flows.get(i).is_some_and(|f| f.id == id) {
            Some(i)
        } else {
            flows.iter().position(|f| f.id == id)
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Open first, then loudest, then newest; ties by id (deterministic).
fn sort_flows(flows: &mut [FlowSummary]) {
    flows.sort_by(|a, b| {
        a.acknowledged
            .is_some()
            .cmp(&b.acknowledged.is_some())
            .then(b.count.cmp(&a.count))
            .then(b.last_seen.0.cmp(&a.last_seen.0))
            .then(a.id.cmp(&b.id))
    });
}

/// Adds the buckets to the series: one pass over both (the series is kept sorted), whatever
/// the number of distinct minutes.
fn merge_series(series: &mut Vec<MonitorBucket>, buckets: &BTreeMap<i64, (u64, u64)>) {
    let mut merged: BTreeMap<i64, (i64, i64)> = series
        .drain(..)
        .map(|b| (b.start.0.as_second(), (b.unmatched, b.dropped)))
        .collect();
    for (start, (u, d)) in buckets {
        let b = merged.entry(*start).or_default();
        b.0 = b.0.saturating_add(to_i64(*u));
        b.1 = b.1.saturating_add(to_i64(*d));
    }
    let Some(newest) = merged.keys().next_back().copied() else {
        return;
    };
    let horizon = newest.saturating_sub(series_span_secs());
    series.extend(
        merged
            .range(horizon.saturating_add(1)..)
            .filter_map(|(start, (u, d))| {
                Some(MonitorBucket {
                    start: Time(Timestamp::from_second(*start).ok()?),
                    unmatched: *u,
                    dropped: *d,
                })
            }),
    );
    let excess = series.len().saturating_sub(SERIES_MAX);
    series.drain(..excess);
}

/// Unacknowledged distinct flows plus the overflow.
pub fn open_alerts(m: &MonitorStatus) -> i64 {
    let open = m.flows.iter().filter(|f| f.acknowledged.is_none()).count();
    to_i64(open as u64).saturating_add(m.overflow)
}

/// Which alerts to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckTarget {
    /// These flow ids.
    Flows(Vec<String>),
    /// Every open flow and the overflow.
    All,
}

/// Acknowledges alerts; returns how many were open and are now acknowledged. Unknown ids are
/// returned in the error, and nothing is changed then.
pub fn acknowledge(
    m: &mut MonitorStatus,
    target: &AckTarget,
    by: &str,
    comment: &str,
    at: Timestamp,
) -> Result<u64, Vec<String>> {
    let ack = Acknowledgement {
        by: by.to_string(),
        at: Time(at),
        comment: comment.to_string(),
    };
    let mut n = 0;
    match target {
        AckTarget::Flows(ids) => {
            let unknown: Vec<String> = ids
                .iter()
                .filter(|id| !m.flows.iter().any(|f| f.id == id.as_str()))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(unknown);
            }
            for f in m.flows.iter_mut() {
                if f.acknowledged.is_none() && ids.iter().any(|id| f.id == id.as_str()) {
                    f.acknowledged = Some(Box::new(ack.clone()));
                    n += 1;
                }
            }
        }
        AckTarget::All => {
            for f in m.flows.iter_mut().filter(|f| f.acknowledged.is_none()) {
                f.acknowledged = Some(Box::new(ack.clone()));
                n += 1;
            }
            n += u64::try_from(m.overflow).unwrap_or(0);
            m.overflow = 0;
        }
    }
    sort_flows(&mut m.flows);
    m.open_alerts = open_alerts(m);
    Ok(n)
}

/// Unmatched flows the catch-all dropped in the last `period` before `now`, counting only since
/// `since` (enforcement start). Minute buckets: a bucket counts when any part of it is inside.
pub fn dropped_within(
    m: &MonitorStatus,
    since: Timestamp,
    period: SignedDuration,
    now: Timestamp,
) -> i64 {
    let from = since.max(time::minus(now, period));
    m.series
        .iter()
        .filter(|b| time::plus(b.start.0, SignedDuration::from_mins(1)) > from && b.start.0 <= now)
        .fold(0i64, |n, b| n.saturating_add(b.dropped))
}

#[cfg(test)]
mod tests;
