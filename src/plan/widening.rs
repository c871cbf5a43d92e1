//! Does a spec change widen what an enforcing catch-all DROPs? Pure.
//!
//! Under DROP, traffic that no explicit allow rule matches is dropped. A new spec is *safe* to
//! apply straight away when everything it drops was already dropped:
//! - every member of the new spec is covered by a member of the enforced one (members removed,
//!   or narrowed: a longer name prefix, a tag with a scope, a smaller CIDR);
//! - every allow rule of the enforced spec is still there, with the same name and direction,
//!   and allows at least the same peers and services (allow rules may be added or widened);
//! - no drop or reject rule is new or changed, and no catch-all is added.
//!
//! Anything else *widens* DROP (new VMs under DROP, traffic that was allowed and no longer is)
//! and takes the application back to monitor mode and through the gates, unless the new
//! generation is approved. Coverage is decided conservatively: when in doubt, it widens.

use ipnet::IpNet;

use crate::api::{
    Action, CatchAll, EnforcedSpec, Member, Peer, PolicyRule, Port, SegmentationPolicySpec,
};

/// How the new spec compares with the enforced one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// What widens DROP, for people (empty: nothing).
    pub widens: Vec<String>,
    /// What changed without widening DROP, for people.
    pub narrows: Vec<String>,
}

impl Comparison {
    /// The reasons as one sentence, or `None` when nothing widens.
    pub fn widening(&self) -> Option<String> {
        (!self.widens.is_empty()).then(|| self.widens.join("; "))
    }
}

/// Compares the spec under DROP (`old`) with a new spec; `namespace` resolves peers that name
/// an application without a namespace.
pub fn compare(old: &EnforcedSpec, new: &SegmentationPolicySpec, namespace: &str) -> Comparison {
    let mut c = Comparison::default();
    compare_members(&old.members, &new.members, &mut c);
    compare_rules(&old.rules, &new.rules, namespace, &mut c);
    compare_catch_all(old.catch_all, new.catch_all, &mut c);
    c
}

/// The enforced spec record of `spec` at `generation`.
pub fn snapshot(spec: &SegmentationPolicySpec, generation: i64) -> EnforcedSpec {
    EnforcedSpec {
        generation,
        members: spec.members.clone(),
        rules: spec.rules.clone(),
        catch_all: spec.catch_all,
    }
}

fn compare_members(old: &[Member], new: &[Member], c: &mut Comparison) {
    for m in new {
        if !old.iter().any(|o| member_covers(o, m)) {
            let what = if old.iter().any(|o| same_kind(o, m)) {
                "member widened or added"
            } else {
                "member added"
            };
            c.widens.push(format!("{what}: {}", describe_member(m)));
        }
    }
    for o in old {
        if !new.contains(o) {
            c.narrows.push(format!(
                "member removed or narrowed: {}",
                describe_member(o)
            ));
        }
    }
}

fn same_kind(a: &Member, b: &Member) -> bool {
    (a.vm_tag.is_some() && b.vm_tag.is_some())
        || (a.vm_name.is_some() && b.vm_name.is_some())
        || (a.ip_address.is_some() && b.ip_address.is_some())
        || (a.nsx_group.is_some() && b.nsx_group.is_some())
}

/// Everything `narrow` matches, `wide` matches too.
fn member_covers(wide: &Member, narrow: &Member) -> bool {
    if let (Some(w), Some(n)) = (&wide.vm_tag, &narrow.vm_tag) {
        return w.tag == n.tag && (w.scope.is_none() || w.scope == n.scope);
    }
    if let (Some(w), Some(n)) = (&wide.vm_name, &narrow.vm_name) {
        return match (&w.equals, &w.starts_with, &n.equals, &n.starts_with) {
            (Some(a), _, Some(b), _) => a == b,
            (_, Some(p), Some(b), _) => b.starts_with(p.as_str()),
            (_, Some(p), _, Some(q)) => q.starts_with(p.as_str()),
            _ => false,
        };
    }
    if let (Some(w), Some(n)) = (&wide.ip_address, &narrow.ip_address) {
        return match (net(w), net(n)) {
            (Some(w), Some(n)) => w.contains(&n),
            _ => w == n,
        };
    }
    if let (Some(w), Some(n)) = (&wide.nsx_group, &narrow.nsx_group) {
        return w == n;
    }
    false
}

fn net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn describe_member(m: &Member) -> String {
    if let Some(t) = &m.vm_tag {
        return match &t.scope {
            Some(s) => format!("VM tag {s}|{}", t.tag),
            None => format!("VM tag {}", t.tag),
        };
    }
    if let Some(n) = &m.vm_name {
        return match (&n.equals, &n.starts_with) {
            (Some(e), _) => format!("VM name {e}"),
            (_, Some(p)) => format!("VM names starting with {p}"),
            _ => "VM name".into(),
        };
    }
    if let Some(ip) = &m.ip_address {
        return format!("address {ip}");
    }
    if let Some(g) = &m.nsx_group {
        return format!("NSX group {g}");
    }
    "member".into()
}

fn compare_rules(old: &[PolicyRule], new: &[PolicyRule], ns: &str, c: &mut Comparison) {
    for o in old.iter().filter(|r| r.action == Action::Allow) {
        match new.iter().find(|r| r.name == o.name) {
            None => c.widens.push(format!("allow rule {} removed", o.name)),
            Some(n) if n.action != Action::Allow => c
                .widens
                .push(format!("allow rule {} turned to {:?}", o.name, n.action)),
            Some(n) if n.direction != o.direction => c
                .widens
                .push(format!("allow rule {} changed direction", o.name)),
            Some(n) if !peers_cover(&n.peers, &o.peers, ns) => c
                .widens
                .push(format!("allow rule {} narrowed: fewer peers", o.name)),
            Some(n) if !ports_cover(&n.ports, &o.ports) => c
                .widens
                .push(format!("allow rule {} narrowed: fewer services", o.name)),
            Some(n) if n != o => c
                .narrows
                .push(format!("allow rule {} kept or widened", o.name)),
            Some(_) => {}
        }
    }
    for n in new.iter().filter(|r| r.action != Action::Allow) {
        let same = old.iter().any(|o| o.name == n.name && same_effect(o, n));
        if !same {
            c.widens
                .push(format!("{:?} rule {} added or changed", n.action, n.name));
        }
    }
    // Position matters for drop rules only; a reordering that keeps every drop rule identical
    // cannot shadow an allow rule that was not shadowed before unless a drop rule moved up.
    let old_drops: Vec<&str> = old
        .iter()
        .filter(|r| r.action != Action::Allow)
        .map(|r| r.name.as_str())
        .collect();
    for n in new.iter().filter(|r| r.action != Action::Allow) {
        let new_pos = position_among_allows(new, &n.name);
        let old_pos = old_drops
            .contains(&n.name.as_str())
            .then(|| position_among_allows(old, &n.name));
        if let Some(old_pos) = old_pos
            && new_pos < old_pos
        {
            c.widens.push(format!(
                "{:?} rule {} moved above allow rules",
                n.action, n.name
            ));
        }
    }
    for n in new.iter().filter(|r| r.action == Action::Allow) {
        if !old.iter().any(|o| o.name == n.name) {
            c.narrows.push(format!("allow rule {} added", n.name));
        }
    }
}

/// How many allow rules (by name) precede the rule `name`.
fn position_among_allows(rules: &[PolicyRule], name: &str) -> usize {
    rules
        .iter()
        .take_while(|r| r.name != name)
        .filter(|r| r.action == Action::Allow)
        .count()
}

fn same_effect(a: &PolicyRule, b: &PolicyRule) -> bool {
    a.direction == b.direction && a.peers == b.peers && a.ports == b.ports && a.action == b.action
}

/// Every peer of `old` is matched by some peer of `new`.
fn peers_cover(new: &[Peer], old: &[Peer], ns: &str) -> bool {
    old.iter()
        .all(|o| new.iter().any(|n| peer_covers(n, o, ns)))
}

fn peer_covers(wide: &Peer, narrow: &Peer, ns: &str) -> bool {
    if wide.any == Some(true) {
        return true;
    }
    if let (Some(w), Some(n)) = (&wide.cidr, &narrow.cidr) {
        return match (net(w), net(n)) {
            (Some(w), Some(n)) => w.contains(&n),
            _ => w == n,
        };
    }
    if let (Some(w), Some(n)) = (&wide.application, &narrow.application) {
        let w_ns = w.namespace.as_deref().unwrap_or(ns);
        let n_ns = n.namespace.as_deref().unwrap_or(ns);
        return w.name == n.name && w_ns == n_ns;
    }
    if let (Some(w), Some(n)) = (&wide.nsx_group, &narrow.nsx_group) {
        return w == n;
    }
    false
}

/// Every service of `old` is matched by some service of `new` (an empty list is any service).
fn ports_cover(new: &[Port], old: &[Port]) -> bool {
    if new.is_empty() {
        return true;
    }
    if old.is_empty() {
        return false;
    }
    old.iter().all(|o| new.iter().any(|n| port_covers(n, o)))
}

fn port_covers(wide: &Port, narrow: &Port) -> bool {
    if wide.nsx_service.is_some() || narrow.nsx_service.is_some() {
        return wide.nsx_service == narrow.nsx_service && wide.protocol == narrow.protocol;
    }
    if wide.protocol != narrow.protocol {
        return false;
    }
    let range = |p: &Port| {
        p.port
            .map(|first| (first, p.end_port.unwrap_or(first)))
            .unwrap_or((1, 65535))
    };
    let ((wa, wb), (na, nb)) = (range(wide), range(narrow));
    let ports_ok = wide.port.is_none() || (wa <= na && nb <= wb);
    let icmp_ok = wide.icmp_type.is_none() || wide.icmp_type == narrow.icmp_type;
    ports_ok && icmp_ok
}

fn compare_catch_all(old: CatchAll, new: CatchAll, c: &mut Comparison) {
    if new.inbound && !old.inbound {
        c.widens.push("inbound catch-all added".into());
    }
    if new.outbound && !old.outbound {
        c.widens.push("outbound catch-all added".into());
    }
    if old.inbound && !new.inbound {
        c.narrows.push("inbound catch-all removed".into());
    }
    if old.outbound && !new.outbound {
        c.narrows.push("outbound catch-all removed".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SegmentationPolicy;

    fn web() -> SegmentationPolicySpec {
        let p: SegmentationPolicy =
            serde_yaml::from_str(include_str!("../../deploy/examples/10-web.yaml")).unwrap();
        p.spec
    }

    fn member(yaml: &str) -> Member {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn widens(old: &SegmentationPolicySpec, new: &SegmentationPolicySpec) -> Vec<String> {
        compare(&snapshot(old, 1), new, "shop").widens
    }

    #[test]
    fn the_same_spec_widens_nothing() {
        let s = web();
        assert_eq!(compare(&snapshot(&s, 1), &s, "shop"), Comparison::default());
    }

    #[test]
    fn adding_or_widening_members_widens_and_narrowing_does_not() {
        let old = {
            let mut s = web();
            s.members = vec![
                member("vmName: {startsWith: web-}"),
                member("ipAddress: 10.1.0.0/24"),
                member("vmTag: {scope: app, tag: web}"),
            ];
            s
        };
        let cases = [
            ("vmName: {startsWith: web-prod-}", false),
            ("vmName: {equals: web-01}", false),
            ("vmName: {startsWith: we}", true),
            ("ipAddress: 10.1.0.7", false),
            ("ipAddress: 10.1.0.128/25", false),
            ("ipAddress: 10.1.0.0/16", true),
            ("vmTag: {scope: app, tag: web}", false),
            ("vmTag: {tag: web}", true),
            ("nsxGroup: /infra/domains/default/groups/x", true),
        ];
        for (yaml, widened) in cases {
            let mut new = old.clone();
            new.members = vec![member(yaml)];
            assert_eq!(!widens(&old, &new).is_empty(), widened, "{yaml}");
        }
        let mut added = old.clone();
        added.members.push(member("ipAddress: 192.168.9.9"));
        assert_eq!(
            widens(&old, &added),
            vec!["member widened or added: address 192.168.9.9"]
        );
        let mut fewer = old.clone();
        fewer.members.pop();
        let c = compare(&snapshot(&old, 1), &fewer, "shop");
        assert!(c.widens.is_empty());
        assert_eq!(
            c.narrows,
            vec!["member removed or narrowed: VM tag app|web"]
        );
    }

    #[test]
    fn removing_or_narrowing_an_allow_rule_widens_and_adding_one_does_not() {
        let old = web();
        assert!(!old.rules.is_empty());
        let first = old.rules[0].name.clone();

        let mut removed = old.clone();
        removed.rules.remove(0);
        assert_eq!(
            widens(&old, &removed),
            vec![format!("allow rule {first} removed")]
        );

        let mut fewer_ports = old.clone();
        fewer_ports.rules[0].ports =
            vec![serde_yaml::from_str("{protocol: TCP, port: 1}").unwrap()];
        assert_eq!(
            widens(&old, &fewer_ports),
            vec![format!("allow rule {first} narrowed: fewer services")]
        );

        let mut to_drop = old.clone();
        to_drop.rules[0].action = Action::Drop;
        assert!(!widens(&old, &to_drop).is_empty());

        let mut any_port = old.clone();
        any_port.rules[0].ports.clear();
        any_port.rules[0].peers = vec![serde_yaml::from_str("{any: true}").unwrap()];
        assert!(
            widens(&old, &any_port).is_empty(),
            "widening an allow rule is safe"
        );

        let mut added = old.clone();
        let mut extra = old.rules[0].clone();
        extra.name = "metrics-scrape".into();
        added.rules.push(extra);
        let c = compare(&snapshot(&old, 1), &added, "shop");
        assert!(c.widens.is_empty());
        assert_eq!(c.narrows, vec!["allow rule metrics-scrape added"]);

        let mut deny = old.clone();
        let mut d = old.rules[0].clone();
        d.name = "block-telnet".into();
        d.action = Action::Reject;
        deny.rules.insert(0, d);
        assert_eq!(
            widens(&old, &deny),
            vec!["Reject rule block-telnet added or changed"]
        );
    }

    #[test]
    fn a_new_catch_all_widens() {
        let old = web();
        let mut new = old.clone();
        new.catch_all.outbound = !old.catch_all.outbound;
        let c = compare(&snapshot(&old, 1), &new, "shop");
        assert_eq!(c.widens.is_empty(), old.catch_all.outbound);
    }

    #[test]
    fn port_ranges_and_cidrs_are_compared_by_containment() {
        let p = |y: &str| -> Port { serde_yaml::from_str(y).unwrap() };
        assert!(port_covers(
            &p("{protocol: TCP, port: 8000, endPort: 9000}"),
            &p("{protocol: TCP, port: 8443}")
        ));
        assert!(!port_covers(
            &p("{protocol: TCP, port: 8443}"),
            &p("{protocol: TCP, port: 8000, endPort: 9000}")
        ));
        assert!(port_covers(
            &p("{protocol: UDP}"),
            &p("{protocol: UDP, port: 53}")
        ));
        assert!(!port_covers(
            &p("{protocol: UDP, port: 53}"),
            &p("{protocol: TCP, port: 53}")
        ));
        assert!(port_covers(
            &p("{protocol: ICMP}"),
            &p("{protocol: ICMP, icmpType: 8}")
        ));
        let peer = |y: &str| -> Peer { serde_yaml::from_str(y).unwrap() };
        assert!(peer_covers(
            &peer("{cidr: 10.0.0.0/8}"),
            &peer("{cidr: 10.20.0.0/16}"),
            "shop"
        ));
        assert!(!peer_covers(
            &peer("{cidr: 10.20.0.0/16}"),
            &peer("{cidr: 10.0.0.0/8}"),
            "shop"
        ));
        assert!(peer_covers(
            &peer("{application: {name: app, namespace: shop}}"),
            &peer("{application: {name: app}}"),
            "shop"
        ));
        assert!(!peer_covers(
            &peer("{application: {name: app, namespace: other}}"),
            &peer("{application: {name: app}}"),
            "shop"
        ));
    }
}
