//! `microseg recommend`: a SegmentationPolicy from observed flows. Pure: takes parsed flows (see
//! [`input`]), how to recognise the application, the other applications already in Git and the
//! options; returns the policy as YAML that passes the CRD schema. Same input, same bytes.
//!
//! How flows become rules:
//! - A reply recorded as a flow (well-known source port below 1024 towards an ephemeral port) is
//!   turned round; source ports are otherwise ignored: rules match destination ports.
//! - A flow into the application is inbound, out of it outbound, inside it both (peer: the
//!   application itself). A flow that touches no member is ignored and counted.
//! - A peer that belongs to an application in Git (its IP/CIDR, VM name or VM tag members) is named
//!   by that application; other peers are addresses, collapsed to their /prefix network when at
//!   least `collapse_min` addresses of one network use the same service.
//! - Entries (direction, peer, service) seen fewer than `rare_below` times are not made into
//!   rules: they are listed as comments for a human to decide.
//! - Peers with the same set of services share a rule; rules hold at most 128 peers and 15 ports.
//!
//! [`cli`] is the one IO shell here (files, vRNI, the cluster): the command's orchestration.
//! Every other file of this directory stays pure (a test checks).

pub mod generate;
pub mod input;
mod render;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::api::{
    ApplicationRef, CatchAll, Criticality, Direction, Member, Owner, Peer, PolicyRule, Port,
    SegmentationPolicy, SegmentationPolicySpec, VmName, VmTag, WindowRef,
};
use crate::net::Protocol;
use crate::nsx::model::Tag;
use render::{Facts, peers_stats, plural, policy, render, volume_text};
use rules::{collapse, nsx_selectors, rules};

/// Default prefix length addresses are collapsed to (IPv4).
pub const DEFAULT_PREFIX: u8 = 24;
/// Default number of addresses of one network that makes a CIDR peer.
pub const DEFAULT_COLLAPSE_MIN: usize = 4;
/// Default: entries seen fewer times than this are rare.
pub const DEFAULT_RARE_BELOW: u64 = 3;
/// Source ports at or above this are ephemeral (IANA dynamic range starts at 49152; Linux uses
/// 32768 and up).
pub const EPHEMERAL_FROM: u16 = 32768;
/// Most peers in one rule (NSX's limit).
pub const MAX_PEERS: usize = 128;
/// Most ports in one rule (the CRD's limit).
pub const MAX_PORTS: usize = 15;

/// Why no recommendation could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecommendError {
    /// An input or option is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// Where.
        field: String,
        /// Why.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> RecommendError {
    RecommendError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// VM name, when the source knows it.
    pub vm: Option<String>,
    /// VM tags as `scope|tag` (or `tag`).
    pub tags: Vec<String>,
}

impl Endpoint {
    /// An address without VM facts.
    pub fn ip(ip: IpAddr) -> Endpoint {
        Endpoint {
            ip,
            vm: None,
            tags: Vec::new(),
        }
    }
}

/// The volume a conversation record carries (vRNI exports and API): what it moved, not how often
/// it was logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Bytes in both directions, when the source gives them.
    pub bytes: Option<u64>,
    /// Sessions (connections), when the source gives them.
    pub sessions: Option<u64>,
}

/// One observed flow (or an aggregate of identical ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Initiator.
    pub src: Endpoint,
    /// Responder.
    pub dst: Endpoint,
    /// Protocol.
    pub protocol: Protocol,
    /// Source port, when known.
    pub src_port: Option<u16>,
    /// Destination port or range, when the protocol has ports.
    pub port: Option<(u16, u16)>,
    /// How many times it was seen.
    pub count: u64,
    /// Direction from the application's point of view, when the source says it (monitor flows).
    pub direction: Option<Direction>,
    /// When it was seen (first, last), as the source writes it.
    pub seen: Option<(String, String)>,
    /// Set when the record is one conversation of a flow-analytics tool (vRNI) rather than one
    /// logged packet or connection: its volume, as far as the source gives it.
    pub volume: Option<Volume>,
}

/// What the evidence of an entry is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Flow records (DFW `match` lines, monitor flows, the CSV's `count`).
    Records,
    /// Sessions of vRNI conversations (every record gives a session count).
    Sessions,
    /// Bytes of vRNI conversations (every record gives bytes, not all give sessions).
    Bytes,
    /// vRNI conversations, counted (the records give no volume).
    Conversations,
}

impl Measure {
    /// The measure a set of flows supports: records unless they are conversations; then
    /// sessions when every conversation has them, else bytes when every one has them, else
    /// conversations.
    pub fn of(flows: &[Observation]) -> Measure {
        let volumes: Vec<&Volume> = flows.iter().filter_map(|f| f.volume.as_ref()).collect();
        if volumes.is_empty() {
            Measure::Records
        } else if volumes.iter().all(|v| v.sessions.is_some()) {
            Measure::Sessions
        } else if volumes.iter().all(|v| v.bytes.is_some()) {
            Measure::Bytes
        } else {
            Measure::Conversations
        }
    }

    /// The rarity threshold used when none is given: a record or session count below 3, a
    /// conversation that moved no byte (a refused or unanswered attempt); every conversation
    /// vRNI reports without volume is evidence of its own.
    pub fn default_rare_below(self) -> u64 {
        match self {
            Measure::Records | Measure::Sessions => DEFAULT_RARE_BELOW,
            Measure::Bytes | Measure::Conversations => 1,
        }
    }

    /// The unit, plural.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Records => "flow records",
            Measure::Sessions => "sessions",
            Measure::Bytes => "bytes",
            Measure::Conversations => "conversations",
        }
    }

    fn weight(self, s: &Stats) -> u64 {
        match self {
            Measure::Records => s.count,
            Measure::Sessions => s.sessions,
            Measure::Bytes => s.bytes,
            Measure::Conversations => s.conversations,
        }
    }
}

impl Observation {
    /// The flow as initiated: a reply (a well-known source port towards an ephemeral destination
    /// port) is turned round.
    pub fn normalised(&self) -> Observation {
        let reply = matches!(self.protocol, Protocol::Tcp | Protocol::Udp)
            && matches!((self.src_port, self.port), (Some(s), Some((d, _))) if s < 1024 && d >= EPHEMERAL_FROM);
        if !reply {
            return self.clone();
        }
        Observation {
            src: self.dst.clone(),
            dst: self.src.clone(),
            src_port: self.port.map(|p| p.0),
            port: self.src_port.map(|p| (p, p)),
            direction: self.direction.map(|d| match d {
                Direction::Inbound => Direction::Outbound,
                Direction::Outbound => Direction::Inbound,
            }),
            ..self.clone()
        }
    }
}

/// A VM of the NSX inventory (the simulator's `/admin/vms` shape): fills in VM names and tags for
/// sources that only know addresses (DFW logs, monitor flows).
#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, PartialEq, Eq)]
pub struct InventoryVm {
    /// Name.
    pub name: String,
    /// Addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// How to recognise the application's workloads (OR-ed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Application {
    /// VM tags.
    pub tags: Vec<VmTag>,
    /// VM names (equals or startsWith).
    pub names: Vec<VmName>,
    /// Addresses and networks.
    pub networks: Vec<IpNet>,
}

fn tag_matches(want: &VmTag, have: &str) -> bool {
    let (scope, tag) = have.split_once('|').unwrap_or(("", have));
    tag == want.tag
        && want
            .scope
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == scope)
}

fn name_matches(want: &VmName, have: &str) -> bool {
    match (&want.equals, &want.starts_with) {
        (Some(e), _) => have == e,
        (None, Some(p)) => have.starts_with(p.as_str()),
        (None, None) => false,
    }
}

impl Application {
    /// Reads the recognisable members of a policy (NSX group paths cannot be matched).
    pub fn from_members(members: &[Member]) -> Application {
        let mut app = Application::default();
        for m in members {
            if let Some(t) = &m.vm_tag {
                app.tags.push(t.clone());
            }
            if let Some(n) = &m.vm_name {
                app.names.push(n.clone());
            }
            if let Some(net) = m.ip_address.as_deref().and_then(parse_net) {
                app.networks.push(net);
            }
        }
        app
    }

    /// True when nothing recognises a member.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.names.is_empty() && self.networks.is_empty()
    }

    /// True when the endpoint is one of the application's workloads.
    pub fn contains(&self, e: &Endpoint) -> bool {
        self.networks.iter().any(|n| n.contains(&e.ip))
            || e.vm
                .as_deref()
                .is_some_and(|vm| self.names.iter().any(|n| name_matches(n, vm)))
            || e.tags
                .iter()
                .any(|t| self.tags.iter().any(|w| tag_matches(w, t)))
    }

    /// The members that recognise the application in NSX.
    pub fn members(&self) -> Vec<Member> {
        let none = Member {
            vm_tag: None,
            vm_name: None,
            ip_address: None,
            nsx_group: None,
        };
        let mut out = Vec::new();
        for t in &self.tags {
            out.push(Member {
                vm_tag: Some(t.clone()),
                ..none.clone()
            });
        }
        for n in &self.names {
            out.push(Member {
                vm_name: Some(n.clone()),
                ..none.clone()
            });
        }
        for n in &self.networks {
            let text = if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            };
            out.push(Member {
                ip_address: Some(text),
                ..none.clone()
            });
        }
        out
    }
}

/// Parses an address or a CIDR block.
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.trim()
        .parse::<IpNet>()
        .ok()
        .or_else(|| s.trim().parse::<IpAddr>().ok().map(IpNet::from))
}

/// Everything the recommended policy needs besides flows.
#[derive(Clone, Debug)]
pub struct Options {
    /// metadata.name.
    pub name: String,
    /// metadata.namespace.
    pub namespace: String,
    /// spec.application.
    pub application: Option<String>,
    /// spec.window.name.
    pub window: String,
    /// spec.owners.
    pub owners: Vec<Owner>,
    /// spec.criticality.
    pub criticality: Criticality,
    /// Prefix length IPv4 peers collapse to (IPv6 peers use /64).
    pub prefix: u8,
    /// Addresses of one network (same direction and service) that make a CIDR peer.
    pub collapse_min: usize,
    /// Entries whose evidence (in the flows' [`Measure`]) is below this are listed as rare
    /// instead of becoming rules; `None`: the measure's default.
    pub rare_below: Option<u64>,
    /// Where the flows came from (a file and its format, or a vRNI API), stated in the output.
    pub source: String,
    /// Turn on the outbound catch-all (the outbound rules only matter with it).
    pub outbound_catch_all: bool,
    /// Rules kept as they are, first (recommending for an existing policy).
    pub keep_rules: Vec<PolicyRule>,
}

impl Options {
    /// Options with the defaults for everything but identity, window and owners.
    pub fn new(name: &str, namespace: &str, window: &str, owners: Vec<Owner>) -> Options {
        Options {
            name: name.into(),
            namespace: namespace.into(),
            application: None,
            window: window.into(),
            owners,
            criticality: Criticality::Medium,
            prefix: DEFAULT_PREFIX,
            collapse_min: DEFAULT_COLLAPSE_MIN,
            rare_below: None,
            source: "flows".into(),
            outbound_catch_all: false,
            keep_rules: Vec::new(),
        }
    }
}

/// The other end of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKey {
    /// The application itself (traffic between its members).
    Itself,
    /// Another application in Git: (namespace, name).
    Application(String, String),
    /// A network (collapsed addresses).
    Network(IpNet),
    /// One address.
    Address(IpAddr),
}

impl PeerKey {
    fn label(&self) -> String {
        match self {
            PeerKey::Itself => "itself".into(),
            PeerKey::Application(ns, n) => format!("application {ns}/{n}"),
            PeerKey::Network(n) => n.to_string(),
            PeerKey::Address(a) => a.to_string(),
        }
    }

    fn slug(&self) -> String {
        match self {
            PeerKey::Itself => "self".into(),
            PeerKey::Application(_, n) => n.clone(),
            PeerKey::Network(n) => n.to_string(),
            PeerKey::Address(a) => a.to_string(),
        }
    }
}

/// A service: protocol and destination ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Service {
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port range (TCP/UDP only).
    pub ports: Option<(u16, u16)>,
}

impl Service {
    fn label(&self) -> String {
        match self.ports {
            Some((a, b)) if a == b => format!("{}/{a}", self.protocol),
            Some((a, b)) => format!("{}/{a}-{b}", self.protocol),
            None => self.protocol.to_string(),
        }
    }

    fn port(&self) -> Option<Port> {
        let protocol = match self.protocol {
            p @ (Protocol::Tcp | Protocol::Udp | Protocol::Icmp | Protocol::Icmpv6) => p,
            Protocol::Other(_) | Protocol::Unnamed => return None,
        };
        let (port, end_port) = match self.ports {
            Some((a, b)) if b > a => (Some(i32::from(a)), Some(i32::from(b))),
            Some((a, _)) => (Some(i32::from(a)), None),
            None => (None, None),
        };
        Some(Port {
            protocol: Some(protocol),
            port,
            end_port,
            icmp_type: None,
            nsx_service: None,
        })
    }
}

/// What was seen of one (direction, peer, service).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows.
    pub count: u64,
    /// Conversation records (vRNI) behind the entry.
    pub conversations: u64,
    /// Bytes of those conversations, where given.
    pub bytes: u64,
    /// Sessions of those conversations, where given.
    pub sessions: u64,
    /// Distinct peer addresses.
    pub addresses: BTreeSet<IpAddr>,
    /// Earliest first-seen and latest last-seen, as the source wrote them.
    pub seen: Option<(String, String)>,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.count += other.count;
        self.conversations += other.conversations;
        self.bytes += other.bytes;
        self.sessions += other.sessions;
        self.addresses.extend(other.addresses.iter().copied());
        self.seen = match (self.seen.take(), other.seen.clone()) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, y) => x.or(y),
        };
    }
}

/// An entry not turned into a rule, for a human to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rare {
    /// Direction.
    pub direction: Direction,
    /// Peer.
    pub peer: PeerKey,
    /// Service.
    pub service: Service,
    /// What was seen.
    pub stats: Stats,
    /// Why it is not a rule.
    pub why: String,
}

/// The result.
#[derive(Clone, Debug)]
pub struct Recommendation {
    /// The policy.
    pub policy: SegmentationPolicy,
    /// Entries listed as comments.
    pub rare: Vec<Rare>,
    /// Flow records read.
    pub flows: usize,
    /// Flow records that touch no member of the application.
    pub ignored: usize,
    /// What the evidence is counted in.
    pub measure: Measure,
    /// The rarity threshold applied (in `measure`).
    pub rare_below: u64,
    /// Per rule (by name): what was seen behind it.
    pub evidence: Vec<(String, Stats)>,
    /// Things a reviewer must know (selectors NSX may not have, ...).
    pub notes: Vec<String>,
    /// The YAML (policy plus comments), validated against the CRD schema.
    pub yaml: String,
}

/// A SegmentationPolicy in Git that peers can be named after.
#[derive(Clone, Debug)]
struct Known {
    namespace: String,
    name: String,
    app: Application,
}

fn known_apps(known: &[SegmentationPolicy], opts: &Options) -> Vec<Known> {
    known
        .iter()
        .filter_map(|p| {
            let (namespace, name) = crate::api::manifest::key(&p.metadata);
            if namespace == opts.namespace && name == opts.name {
                return None;
            }
            let app = Application::from_members(&p.spec.members);
            (!app.is_empty()).then_some(Known {
                namespace,
                name,
                app,
            })
        })
        .collect()
}

/// Fills in VM names and tags from the inventory where the flow source lacks them.
pub fn enrich(e: &mut Endpoint, inventory: &[InventoryVm]) {
    if let Some(vm) = inventory.iter().find(|vm| {
        vm.ips
            .iter()
            .any(|i| i.parse::<IpAddr>().ok() == Some(e.ip))
    }) {
        if e.vm.is_none() {
            e.vm = Some(vm.name.clone());
        }
        // NSX tags join the tags the source gave (vRNI's are vCenter tags).
        for t in &vm.tags {
            let t = format!("{}|{}", t.scope, t.tag);
            if !e.tags.contains(&t) {
                e.tags.push(t);
            }
        }
    }
}

type Entries = BTreeMap<(Direction, PeerKey, Service), Stats>;
/// Entries kept as rules: per direction, per peer, the services and what was seen.
type Kept = BTreeMap<Direction, BTreeMap<PeerKey, BTreeMap<Service, Stats>>>;

/// The entries the flows make (direction, peer, service), the members of the application
/// they show, and how many flows touch no member.
fn entries(
    flows: &[Observation],
    app: &Application,
    inventory: &[InventoryVm],
    known: &[Known],
    opts: &Options,
) -> (Entries, Vec<Endpoint>, usize) {
    let mut entries: Entries = BTreeMap::new();
    let mut matched: Vec<Endpoint> = Vec::new();
    let mut ignored = 0;
    for f in flows {
        let mut f = f.normalised();
        enrich(&mut f.src, inventory);
        enrich(&mut f.dst, inventory);
        let (src_in, dst_in) = match f.direction {
            Some(Direction::Inbound) => (false, true),
            Some(Direction::Outbound) => (true, false),
            None => (app.contains(&f.src), app.contains(&f.dst)),
        };
        let service = Service {
            protocol: f.protocol,
            ports: match f.protocol {
                Protocol::Tcp | Protocol::Udp => f.port,
                _ => None,
            },
        };
        for (e, inside) in [(&f.src, src_in), (&f.dst, dst_in)] {
            if inside && !matched.contains(e) {
                matched.push(e.clone());
            }
        }
        let volume = f.volume.unwrap_or_default();
        let stats = |peer: &Endpoint| Stats {
            count: f.count.max(1),
            conversations: u64::from(f.volume.is_some()),
            bytes: volume.bytes.unwrap_or(0),
            sessions: volume.sessions.unwrap_or(0),
            addresses: BTreeSet::from([peer.ip]),
            seen: f.seen.clone(),
        };
        let peer_of = |e: &Endpoint| -> PeerKey {
            known
                .iter()
                .find(|k| k.app.contains(e))
                .map(|k| PeerKey::Application(k.namespace.clone(), k.name.clone()))
                .unwrap_or(PeerKey::Address(e.ip))
        };
        let mut add = |dir: Direction, peer: PeerKey, s: Stats| {
            entries.entry((dir, peer, service)).or_default().add(&s);
        };
        match (src_in, dst_in) {
            (false, true) => add(Direction::Inbound, peer_of(&f.src), stats(&f.src)),
            (true, false) => add(Direction::Outbound, peer_of(&f.dst), stats(&f.dst)),
            (true, true) => {
                add(Direction::Inbound, PeerKey::Itself, stats(&f.src));
                if opts.outbound_catch_all {
                    add(Direction::Outbound, PeerKey::Itself, stats(&f.dst));
                }
            }
            (false, false) => ignored += 1,
        }
    }
    (entries, matched, ignored)
}

/// Entries kept as rules (by direction and peer), and the rare ones with why.
fn sort_out(entries: Entries, measure: Measure, rare_below: u64) -> (Kept, Vec<Rare>) {
    let mut rare = Vec::new();
    let mut kept: Kept = BTreeMap::new();
    for ((dir, peer, service), stats) in entries {
        let why = if service.port().is_none() {
            Some(format!(
                "{} cannot be written as a port of a rule",
                service.protocol
            ))
        } else if measure == Measure::Records && stats.count < rare_below {
            Some(format!("seen fewer than {rare_below} times"))
        } else if measure != Measure::Records && measure.weight(&stats) < rare_below {
            Some(format!(
                "{} {} in {}, below {rare_below}",
                measure.weight(&stats),
                measure.unit(),
                plural(stats.conversations, "conversation")
            ))
        } else {
            None
        };
        match why {
            Some(why) => rare.push(Rare {
                direction: dir,
                peer,
                service,
                stats,
                why,
            }),
            None => {
                kept.entry(dir)
                    .or_default()
                    .entry(peer)
                    .or_default()
                    .insert(service, stats);
            }
        }
    }
    (kept, rare)
}

/// Recommends a policy for `app` from `flows`.
pub fn recommend(
    flows: &[Observation],
    app: &Application,
    inventory: &[InventoryVm],
    known: &[SegmentationPolicy],
    opts: &Options,
) -> Result<Recommendation, RecommendError> {
    if app.is_empty() {
        return Err(invalid(
            "application",
            "give a VM tag, VM names, or addresses that recognise it",
        ));
    }
    if !(8..=32).contains(&opts.prefix) {
        return Err(invalid(
            "prefix",
            format!("{} is not in 8..=32", opts.prefix),
        ));
    }
    let known = known_apps(known, opts);
    let measure = Measure::of(flows);
    let rare_below = opts.rare_below.unwrap_or(measure.default_rare_below());
    let (entries, matched, ignored) = entries(flows, app, inventory, &known, opts);
    let (kept, rare) = sort_out(collapse(entries, opts), measure, rare_below);
    let (rules, evidence) = rules(&kept, measure, opts);
    let (selectors, notes) = nsx_selectors(app, &matched, inventory);
    let policy = policy(&selectors, rules, opts);
    let facts = Facts {
        flows: flows.len(),
        ignored,
        measure,
        rare_below,
        evidence: &evidence,
        notes: &notes,
    };
    let yaml = render(&policy, &rare, &facts, opts)?;
    Ok(Recommendation {
        policy,
        rare,
        flows: flows.len(),
        ignored,
        measure,
        rare_below,
        evidence,
        notes,
        yaml,
    })
}

#[cfg(test)]
mod tests;
