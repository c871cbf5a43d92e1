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

pub mod cli;
pub mod generate;
pub mod input;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::api::{
    ApplicationRef, CatchAll, Criticality, Direction, Member, Owner, Peer, PolicyRule, Port,
    Protocol, SegmentationPolicy, SegmentationPolicySpec, VmName, VmTag, WindowRef,
};
use crate::nsx::model::Tag;

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

/// IP protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// Another protocol number (cannot be written as a port: listed for a human).
    Other(u8),
    /// A protocol the source does not name (vRNI's `OTHER`): listed for a human.
    Unnamed,
}

impl Proto {
    /// Reads `TCP`, `UDP`, `ICMP`, `ICMPv6`, `PROTO n` or a number.
    pub fn parse(s: &str) -> Option<Proto> {
        let t = s.trim();
        Some(match t.to_ascii_uppercase().as_str() {
            "TCP" | "6" => Proto::Tcp,
            "UDP" | "17" => Proto::Udp,
            "ICMP" | "ICMPV4" | "1" => Proto::Icmp,
            "ICMPV6" | "IPV6-ICMP" | "58" => Proto::Icmpv6,
            "OTHER" => Proto::Unnamed,
            other => Proto::Other(
                other
                    .trim_start_matches("PROTO")
                    .trim()
                    .parse::<u8>()
                    .ok()?,
            ),
        })
    }

    fn label(self) -> String {
        match self {
            Proto::Tcp => "TCP".into(),
            Proto::Udp => "UDP".into(),
            Proto::Icmp => "ICMP".into(),
            Proto::Icmpv6 => "ICMPv6".into(),
            Proto::Other(n) => format!("PROTO {n}"),
            Proto::Unnamed => "OTHER".into(),
        }
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
    pub protocol: Proto,
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
        let reply = matches!(self.protocol, Proto::Tcp | Proto::Udp)
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
    pub protocol: Proto,
    /// Destination port range (TCP/UDP only).
    pub ports: Option<(u16, u16)>,
}

impl Service {
    fn label(&self) -> String {
        match self.ports {
            Some((a, b)) if a == b => format!("{}/{a}", self.protocol.label()),
            Some((a, b)) => format!("{}/{a}-{b}", self.protocol.label()),
            None => self.protocol.label(),
        }
    }

    fn port(&self) -> Option<Port> {
        let protocol = match self.protocol {
            Proto::Tcp => Protocol::Tcp,
            Proto::Udp => Protocol::Udp,
            Proto::Icmp => Protocol::Icmp,
            Proto::Icmpv6 => Protocol::Icmpv6,
            Proto::Other(_) | Proto::Unnamed => return None,
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
            let namespace = p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = p.metadata.name.clone().unwrap_or_default();
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
                Proto::Tcp | Proto::Udp => f.port,
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
    let entries = collapse(entries, opts);
    let mut rare = Vec::new();
    let mut kept: BTreeMap<Direction, BTreeMap<PeerKey, BTreeMap<Service, Stats>>> =
        BTreeMap::new();
    for ((dir, peer, service), stats) in entries {
        let why = if service.port().is_none() {
            Some(format!(
                "{} cannot be written as a port of a rule",
                service.protocol.label()
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

/// True when the tag is written the way vCenter tags are (`Category:Tag`), not NSX's `scope|tag`.
fn vcenter_form(t: &VmTag) -> bool {
    t.scope.as_deref().is_none_or(str::is_empty) && t.tag.contains(':')
}

/// The members the policy names: a VM tag that NSX does not have (vRNI reports vCenter tags,
/// `Category:Tag`; NSX groups match NSX tags) would make an empty group, so it is replaced by
/// what NSX does know of the VMs it matched: their names, else their addresses.
fn nsx_selectors(
    app: &Application,
    matched: &[Endpoint],
    inventory: &[InventoryVm],
) -> (Application, Vec<String>) {
    let mut out = Application {
        tags: Vec::new(),
        ..app.clone()
    };
    let mut notes = Vec::new();
    for t in &app.tags {
        let in_nsx = inventory.iter().any(|vm| {
            vm.tags
                .iter()
                .any(|x| tag_matches(t, &format!("{}|{}", x.scope, x.tag)))
        });
        let label = match &t.scope {
            Some(s) if !s.is_empty() => format!("{s}|{}", t.tag),
            _ => t.tag.clone(),
        };
        if in_nsx || (inventory.is_empty() && !vcenter_form(t)) {
            if !in_nsx {
                notes.push(format!(
                    "VM tag {label:?} was not checked against NSX (no --inventory): NSX must carry it as a tag or the group is empty"
                ));
            }
            out.tags.push(t.clone());
            continue;
        }
        let why = if inventory.is_empty() {
            "looks like a vCenter tag (Category:Tag, as vRNI reports them), not an NSX tag"
        } else {
            "is on no VM of the NSX inventory"
        };
        let hits: Vec<&Endpoint> = matched
            .iter()
            .filter(|e| e.tags.iter().any(|have| tag_matches(t, have)))
            .collect();
        if hits.is_empty() {
            notes.push(format!(
                "VM tag {label:?} {why}, and no flow matched it: an NSX group on it would be empty; it is kept, replace it by hand"
            ));
            out.tags.push(t.clone());
            continue;
        }
        // An NSX tag that exactly these VMs carry in the inventory is the best replacement.
        let vm_of = |e: &Endpoint| {
            inventory.iter().position(|vm| {
                vm.ips
                    .iter()
                    .any(|i| i.parse::<IpAddr>().ok() == Some(e.ip))
            })
        };
        let hit_vms: Option<BTreeSet<usize>> = hits.iter().map(|e| vm_of(e)).collect();
        let exact = hit_vms.and_then(|set| {
            let first = *set.iter().next()?;
            inventory[first].tags.iter().find(|t| {
                let carriers: BTreeSet<usize> = inventory
                    .iter()
                    .enumerate()
                    .filter(|(_, vm)| vm.tags.contains(t))
                    .map(|(i, _)| i)
                    .collect();
                carriers == set
            })
        });
        if let Some(t) = exact {
            out.tags.push(VmTag {
                scope: Some(t.scope.clone()).filter(|s| !s.is_empty()),
                tag: t.tag.clone(),
            });
            notes.push(format!(
                "VM tag {label:?} {why}: an NSX group on it would be empty, so the member is the NSX tag \"{}|{}\" that exactly the VMs it matched carry",
                t.scope, t.tag
            ));
            continue;
        }
        let mut names = Vec::new();
        for e in hits {
            match &e.vm {
                Some(vm) => {
                    let n = VmName {
                        equals: Some(vm.clone()),
                        starts_with: None,
                    };
                    if !out.names.contains(&n) {
                        names.push(vm.clone());
                        out.names.push(n);
                    }
                }
                None => {
                    let net = IpNet::from(e.ip);
                    if !out.networks.contains(&net) {
                        names.push(e.ip.to_string());
                        out.networks.push(net);
                    }
                }
            }
        }
        notes.push(format!(
            "VM tag {label:?} {why}: an NSX group on it would be empty, so the members are the VMs it matched in the flows instead: {}",
            names.join(", ")
        ));
    }
    (out, notes)
}

/// Replaces address peers by their network where enough addresses of one network share a
/// direction and service.
fn collapse(entries: Entries, opts: &Options) -> Entries {
    let network = |ip: IpAddr| -> IpNet {
        let len = if ip.is_ipv4() { opts.prefix } else { 64 };
        IpNet::new(ip, len)
            .map(|n| n.trunc())
            .unwrap_or(IpNet::from(ip))
    };
    let mut per_net: BTreeMap<(Direction, Service, IpNet), BTreeSet<IpAddr>> = BTreeMap::new();
    for (dir, peer, service) in entries.keys() {
        if let PeerKey::Address(ip) = peer {
            per_net
                .entry((*dir, *service, network(*ip)))
                .or_default()
                .insert(*ip);
        }
    }
    let mut out: Entries = BTreeMap::new();
    for ((dir, peer, service), stats) in entries {
        let peer = match peer {
            PeerKey::Address(ip)
                if per_net
                    .get(&(dir, service, network(ip)))
                    .is_some_and(|s| s.len() >= opts.collapse_min) =>
            {
                PeerKey::Network(network(ip))
            }
            other => other,
        };
        out.entry((dir, peer, service)).or_default().add(&stats);
    }
    out
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn rule_name(
    dir: Direction,
    peers: &[&PeerKey],
    services: &[Service],
    taken: &BTreeSet<String>,
) -> String {
    let way = match dir {
        Direction::Inbound => "from",
        Direction::Outbound => "to",
    };
    let peer = match peers {
        [one] => one.slug(),
        [first, rest @ ..] => format!("{}-and-{}-more", first.slug(), rest.len()),
        [] => "none".into(),
    };
    let service = match services {
        [one] => one.label(),
        [first, rest @ ..] => format!("{}-and-{}-more", first.label(), rest.len()),
        [] => "any".into(),
    };
    let mut base = slug(&format!("{way}-{peer}-{service}"));
    base.truncate(58);
    let base = base.trim_end_matches('-').to_string();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn peer(p: &PeerKey, opts: &Options) -> Peer {
    let none = Peer {
        application: None,
        cidr: None,
        nsx_group: None,
        any: None,
    };
    match p {
        PeerKey::Itself => Peer {
            application: Some(ApplicationRef {
                name: opts.name.clone(),
                namespace: None,
            }),
            ..none
        },
        PeerKey::Application(ns, name) => Peer {
            application: Some(ApplicationRef {
                name: name.clone(),
                namespace: (ns != &opts.namespace).then(|| ns.clone()),
            }),
            ..none
        },
        PeerKey::Network(n) => Peer {
            cidr: Some(n.to_string()),
            ..none
        },
        PeerKey::Address(a) => Peer {
            cidr: Some(a.to_string()),
            ..none
        },
    }
}

fn rules(
    kept: &BTreeMap<Direction, BTreeMap<PeerKey, BTreeMap<Service, Stats>>>,
    measure: Measure,
    opts: &Options,
) -> (Vec<PolicyRule>, Vec<(String, Stats)>) {
    let mut evidence = Vec::new();
    let mut taken: BTreeSet<String> = opts.keep_rules.iter().map(|r| r.name.clone()).collect();
    let mut out = opts.keep_rules.clone();
    for (dir, peers) in kept {
        // Peers with the same services share a rule.
        let mut by_services: BTreeMap<Vec<Service>, Vec<&PeerKey>> = BTreeMap::new();
        for (p, services) in peers {
            by_services
                .entry(services.keys().copied().collect())
                .or_default()
                .push(p);
        }
        for (services, peers) in by_services {
            for peer_chunk in peers.chunks(MAX_PEERS) {
                for service_chunk in services.chunks(MAX_PORTS) {
                    let name = rule_name(*dir, peer_chunk, service_chunk, &taken);
                    taken.insert(name.clone());
                    let mut total = Stats::default();
                    for p in peer_chunk {
                        for s in service_chunk {
                            if let Some(st) = peers_stats(kept, *dir, p, s) {
                                total.add(st);
                            }
                        }
                    }
                    let (count, addresses) = (total.count, total.addresses.len() as u64);
                    let observed = match measure {
                        Measure::Records => plural(count, "flow"),
                        Measure::Conversations => plural(total.conversations, "conversation"),
                        Measure::Sessions | Measure::Bytes => format!(
                            "{} ({})",
                            plural(total.conversations, "conversation"),
                            volume_text(&total)
                        ),
                    };
                    evidence.push((name.clone(), total));
                    let way = match dir {
                        Direction::Inbound => "from",
                        Direction::Outbound => "to",
                    };
                    out.push(PolicyRule {
                        name,
                        direction: *dir,
                        peers: peer_chunk.iter().map(|p| peer(p, opts)).collect(),
                        ports: service_chunk.iter().filter_map(Service::port).collect(),
                        action: crate::api::Action::Allow,
                        logged: false,
                        description: Some(format!(
                            "observed {observed} {way} {}",
                            plural(addresses, "peer address")
                        )),
                    });
                }
            }
        }
    }
    (out, evidence)
}

/// Bytes with a binary unit, and sessions, as far as known.
fn volume_text(s: &Stats) -> String {
    let mut parts = Vec::new();
    if s.bytes > 0 {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = s.bytes as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < units.len() {
            v /= 1024.0;
            u += 1;
        }
        parts.push(if u == 0 {
            format!("{} B", s.bytes)
        } else {
            format!("{v:.1} {}", units[u])
        });
    }
    if s.sessions > 0 {
        parts.push(plural(s.sessions, "session"));
    }
    if parts.is_empty() {
        "no volume given".into()
    } else {
        parts.join(", ")
    }
}

fn peers_stats<'a>(
    kept: &'a BTreeMap<Direction, BTreeMap<PeerKey, BTreeMap<Service, Stats>>>,
    dir: Direction,
    peer: &PeerKey,
    service: &Service,
) -> Option<&'a Stats> {
    kept.get(&dir)?.get(peer)?.get(service)
}

fn policy(app: &Application, rules: Vec<PolicyRule>, opts: &Options) -> SegmentationPolicy {
    let spec = SegmentationPolicySpec {
        application: opts.application.clone(),
        owners: opts.owners.clone(),
        criticality: opts.criticality,
        window: WindowRef {
            name: opts.window.clone(),
        },
        members: app.members(),
        rules,
        catch_all: CatchAll {
            inbound: true,
            outbound: opts.outbound_catch_all,
        },
        after_cleanup: Default::default(),
        nsx: Default::default(),
        suspend: false,
        canary_vms: Vec::new(),
    };
    let mut p = SegmentationPolicy::new(&opts.name, spec);
    p.metadata.namespace = Some(opts.namespace.clone());
    p
}

/// What the rendered comments state besides the policy.
struct Facts<'a> {
    flows: usize,
    ignored: usize,
    measure: Measure,
    rare_below: u64,
    evidence: &'a [(String, Stats)],
    notes: &'a [String],
}

fn render(
    policy: &SegmentationPolicy,
    rare: &[Rare],
    facts: &Facts<'_>,
    opts: &Options,
) -> Result<String, RecommendError> {
    let Facts {
        flows,
        ignored,
        measure,
        rare_below,
        ..
    } = *facts;
    let spec = serde_yaml::to_string(&policy.spec)
        .map_err(|e| invalid("spec", format!("does not render as YAML: {e}")))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Recommended by microseg from {flows} flow records ({ignored} touch no member of the application)."
    );
    let _ = writeln!(out, "# Source: {}.", opts.source);
    let _ = writeln!(
        out,
        "# Evidence is counted in {}; entries below {rare_below} are listed at the end as rare. Peers of one /{} network collapse to it from {} addresses.",
        measure.unit(),
        opts.prefix,
        opts.collapse_min
    );
    for n in facts.notes {
        let _ = writeln!(out, "# NOTE: {n}.");
    }
    out.push_str("apiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata:\n");
    let _ = writeln!(out, "  name: {}", yaml_scalar(&opts.name)?);
    let _ = writeln!(out, "  namespace: {}", yaml_scalar(&opts.namespace)?);
    out.push_str("spec:\n");
    for line in spec.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !facts.evidence.is_empty() {
        let _ = writeln!(out, "# Evidence per rule, from {}:", opts.source);
        for (name, s) in facts.evidence {
            let seen = s
                .seen
                .as_ref()
                .map(|(a, b)| format!(", first {a}, last {b}"))
                .unwrap_or_default();
            let volume = if s.conversations > 0 && (s.bytes > 0 || s.sessions > 0) {
                format!(
                    "{} ({})",
                    plural(s.conversations, "conversation"),
                    volume_text(s)
                )
            } else if s.conversations > 0 {
                plural(s.conversations, "conversation")
            } else {
                plural(s.count, "flow record")
            };
            let _ = writeln!(
                out,
                "#   {name}: {volume} with {}{seen}",
                plural(s.addresses.len() as u64, "peer address")
            );
        }
    }
    if !rare.is_empty() {
        out.push_str(
            "# Rare flows, not made into rules: add a rule by hand if they are legitimate.\n",
        );
        for r in rare {
            let seen = r
                .stats
                .seen
                .as_ref()
                .map(|(a, b)| format!(", first {a}, last {b}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "#   {:?} {} {} {}: {} ({}{seen})",
                r.direction,
                match r.direction {
                    Direction::Inbound => "from",
                    Direction::Outbound => "to",
                },
                r.peer.label(),
                r.service.label(),
                if r.stats.conversations > 0 {
                    plural(r.stats.conversations, "conversation")
                } else {
                    plural(r.stats.count, "flow")
                },
                r.why
            );
        }
    }
    // The same check `microseg plan` applies: CRD schema and CEL rules.
    let parsed = crate::api::manifest::resources(&out)
        .map_err(|e| invalid("recommended policy", e.to_string()))?;
    if parsed.len() != 1 {
        return Err(invalid(
            "recommended policy",
            format!("rendered {} resources instead of one", parsed.len()),
        ));
    }
    Ok(out)
}

fn plural(n: u64, what: &str) -> String {
    match (n, what.ends_with('s')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

fn yaml_scalar(s: &str) -> Result<String, RecommendError> {
    serde_yaml::to_string(s)
        .map(|t| t.trim_end().to_string())
        .map_err(|e| invalid("metadata", e.to_string()))
}

#[cfg(test)]
mod tests;
