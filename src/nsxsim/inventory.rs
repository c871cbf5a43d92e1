//! The simulated VM inventory: effective group membership computed from group expressions, and
//! the DFW packet-log lines (reference §9) NSX would emit for a flow under the current
//! policies — first matching rule in category / policy sequence / rule sequence order, with
//! applied-to scope and direction, evaluated at the source VM's vNIC (OUT) and then at the
//! destination VM's vNIC (IN).
//!
//! Line format (NSX 4.x real output): `<ts> <filter-hash> INET match <PASS|DROP|REJECT>
//! <rule_id> <IN|OUT> <len> <PROTO> <src>/<sport>-><dst>/<dport> [S] [<rule tag>]`, with the
//! bare rule id and the rule tag (truncated to 32 characters) last when the rule has one.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::{Store, Vm};
use super::validate::Obj;

/// A flow to evaluate.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Flow {
    /// Source address.
    pub src_ip: String,
    /// Destination address.
    pub dst_ip: String,
    /// `TCP`, `UDP` or `ICMP`.
    pub protocol: String,
    /// Destination port (TCP/UDP) or ICMP type.
    #[serde(default)]
    pub dst_port: Option<u16>,
    /// Source port (default 49152).
    #[serde(default)]
    pub src_port: Option<u16>,
}

const MAX_DEPTH: usize = 5;

fn group_by_path<'a>(st: &'a Store, path: &str) -> Option<&'a Obj> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "infra", "domains", d, "groups", g] => {
            st.domains.get(*d).and_then(|dom| dom.groups.get(*g))
        }
        _ => None,
    }
}

fn condition_matches(vm: &Vm, c: &Obj) -> bool {
    let get = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    if get("member_type") != "VirtualMachine" {
        return false;
    }
    let op = get("operator");
    let value = get("value");
    let cmp = |s: &str, want: &str| match op {
        "EQUALS" => s == want,
        "NOTEQUALS" => s != want,
        "STARTSWITH" => s.starts_with(want),
        "ENDSWITH" => s.ends_with(want),
        "CONTAINS" => s.contains(want),
        _ => false,
    };
    match get("key") {
        "Name" => cmp(&vm.name, value),
        "Tag" => {
            let (scope, tag) = value.split_once('|').unwrap_or(("", value));
            vm.tags
                .iter()
                .any(|t| (scope.is_empty() || t.scope == scope) && cmp(&t.tag, tag))
        }
        _ => false,
    }
}

/// Evaluates a term of a group's expression for a VM.
fn term_matches(st: &Store, vm: &Vm, term: &Obj, depth: usize) -> bool {
    match term.get("resource_type").and_then(Value::as_str) {
        Some("Condition") => condition_matches(vm, term),
        Some("PathExpression") => term
            .get("paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|p| group_by_path(st, p))
            .any(|g| vm_in_group(st, vm, g, depth + 1)),
        Some("NestedExpression") => term
            .get("expressions")
            .and_then(Value::as_array)
            .is_some_and(|e| eval(st, vm, e, depth + 1)),
        _ => false,
    }
}

/// Left-to-right evaluation of `term (op term)*`.
fn eval(st: &Store, vm: &Vm, items: &[Value], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let mut acc: Option<bool> = None;
    let mut op = "OR";
    for item in items {
        let Some(o) = item.as_object() else { continue };
        if o.get("resource_type").and_then(Value::as_str) == Some("ConjunctionOperator") {
            op = o
                .get("conjunction_operator")
                .and_then(Value::as_str)
                .unwrap_or("OR");
            continue;
        }
        let t = term_matches(st, vm, o, depth);
        acc = Some(match (acc, op) {
            (None, _) => t,
            (Some(a), "AND") => a && t,
            (Some(a), _) => a || t,
        });
    }
    acc.unwrap_or(false)
}

fn vm_in_group(st: &Store, vm: &Vm, group: &Obj, depth: usize) -> bool {
    group
        .get("expression")
        .and_then(Value::as_array)
        .is_some_and(|e| eval(st, vm, e, depth))
}

/// The VMs that are effective members of a group.
pub fn members(st: &Store, group: &Obj) -> Vec<Vm> {
    st.vms
        .iter()
        .filter(|vm| vm_in_group(st, vm, group, 0))
        .cloned()
        .collect()
}

fn static_ips(st: &Store, group: &Obj, depth: usize, out: &mut BTreeSet<String>) {
    if depth > MAX_DEPTH {
        return;
    }
    for e in group
        .get("expression")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match e.get("resource_type").and_then(Value::as_str) {
            Some("IPAddressExpression") => out.extend(
                e.get("ip_addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from),
            ),
            Some("PathExpression") => {
                for p in e
                    .get("paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if let Some(g) = group_by_path(st, p) {
                        static_ips(st, g, depth + 1, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The effective IP members: the member VMs' addresses and the static addresses.
pub fn member_ips(st: &Store, group: &Obj) -> Vec<String> {
    let mut out = BTreeSet::new();
    for vm in members(st, group) {
        out.extend(vm.ips.iter().cloned());
    }
    static_ips(st, group, 0, &mut out);
    out.into_iter().collect()
}

fn ip_in(ip: IpAddr, spec: &str) -> bool {
    if let Ok(a) = spec.parse::<IpAddr>() {
        return a == ip;
    }
    if let Ok(net) = spec.parse::<IpNet>() {
        return net.contains(&ip);
    }
    if let Some((a, b)) = spec.split_once('-')
        && let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>())
    {
        return a <= ip && ip <= b;
    }
    false
}

fn peer_matches(st: &Store, ip: IpAddr, list: &[Value]) -> bool {
    list.iter().filter_map(Value::as_str).any(|p| {
        if p.eq_ignore_ascii_case("ANY") {
            true
        } else if p.starts_with('/') {
            group_by_path(st, p)
                .is_some_and(|g| member_ips(st, g).iter().any(|spec| ip_in(ip, spec)))
        } else {
            ip_in(ip, p)
        }
    })
}

fn vm_in_scope(st: &Store, vm: Option<&Vm>, scope: &[Value]) -> bool {
    if scope.is_empty()
        || scope
            .iter()
            .filter_map(Value::as_str)
            .any(|s| s.eq_ignore_ascii_case("ANY"))
    {
        return true;
    }
    let Some(vm) = vm else { return false };
    scope
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|p| group_by_path(st, p))
        .any(|g| vm_in_group(st, vm, g, 0))
}

fn entry_matches(e: &Obj, flow: &Flow) -> bool {
    let proto = flow.protocol.to_ascii_uppercase();
    match e.get("resource_type").and_then(Value::as_str) {
        Some("L4PortSetServiceEntry") => {
            if e.get("l4_protocol").and_then(Value::as_str) != Some(proto.as_str()) {
                return false;
            }
            let ports: Vec<&str> = e
                .get("destination_ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(port) = flow.dst_port else {
                return ports.is_empty();
            };
            ports.is_empty()
                || ports.iter().any(|p| match p.split_once('-') {
                    Some((a, b)) => {
                        let a = a.trim().parse::<u16>().unwrap_or(0);
                        let b = b.trim().parse::<u16>().unwrap_or(0);
                        a <= port && port <= b
                    }
                    None => p.trim().parse::<u16>().ok() == Some(port),
                })
        }
        Some("ICMPTypeServiceEntry") => {
            proto.starts_with("ICMP")
                && e.get("icmp_type")
                    .and_then(Value::as_i64)
                    .is_none_or(|t| flow.dst_port.is_none_or(|p| i64::from(p) == t))
        }
        _ => false,
    }
}

/// Whether a rule's services admit the flow (reference §11a): `["ANY"]` (or none) with no inline
/// entries is every service; `["ANY"]` beside non-empty inline entries — how NSX reads back a
/// rule written with entries only — is only the entries' traffic; service paths plus entries
/// are the union.
fn service_matches(st: &Store, rule: &Obj, flow: &Flow) -> bool {
    let services: Vec<&str> = rule
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let inline: Vec<&Obj> = rule
        .get("service_entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    let any = services.iter().any(|s| s.eq_ignore_ascii_case("ANY"));
    if any && inline.is_empty() {
        return true;
    }
    if services.is_empty() && inline.is_empty() {
        return true;
    }
    let by_path = services.iter().any(|p| {
        p.strip_prefix("/infra/services/")
            .and_then(|id| st.services.get(id))
            .is_some_and(|s| s.entries.values().any(|e| entry_matches(e, flow)))
    });
    by_path || inline.iter().any(|e| entry_matches(e, flow))
}

fn filter_hash(vm: &Vm) -> String {
    let digest = Sha256::digest(format!("{}/vnic0", vm.name).as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Evaluates the flow at one vNIC; returns the matching rule (first match).
fn first_match<'a>(
    st: &'a Store,
    vm: Option<&Vm>,
    dir: &str,
    src: IpAddr,
    dst: IpAddr,
    flow: &Flow,
) -> Option<&'a Obj> {
    for (_, ps) in st.evaluation_order() {
        let p = &ps.policy;
        if p.get("category").and_then(Value::as_str) == Some("Ethernet") {
            continue;
        }
        let pscope = p
            .get("scope")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in Store::ordered_rules(ps) {
            if r.get("disabled").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let rdir = r
                .get("direction")
                .and_then(Value::as_str)
                .unwrap_or("IN_OUT");
            if rdir != "IN_OUT" && rdir != dir {
                continue;
            }
            let rscope = r
                .get("scope")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let scope_any = rscope
                .iter()
                .filter_map(Value::as_str)
                .all(|s| s.eq_ignore_ascii_case("ANY"));
            let scope = if scope_any { &pscope } else { &rscope };
            if !vm_in_scope(st, vm, scope) {
                continue;
            }
            let list = |k: &str| {
                r.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let neg = |k: &str| r.get(k).and_then(Value::as_bool) == Some(true);
            let src_ok = peer_matches(st, src, &list("source_groups")) != neg("sources_excluded");
            let dst_ok =
                peer_matches(st, dst, &list("destination_groups")) != neg("destinations_excluded");
            if src_ok && dst_ok && service_matches(st, r, flow) {
                return Some(r);
            }
        }
    }
    None
}

/// Packet-log lines NSX would write for `flow` (only for logged rules).
pub fn packet_log(st: &Store, flow: &Flow) -> Vec<String> {
    let (Ok(src), Ok(dst)) = (flow.src_ip.parse::<IpAddr>(), flow.dst_ip.parse::<IpAddr>()) else {
        return Vec::new();
    };
    let owner = |ip: IpAddr| {
        st.vms
            .iter()
            .find(|vm| vm.ips.iter().any(|i| i.parse::<IpAddr>().ok() == Some(ip)))
    };
    let ts = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let proto = flow.protocol.to_ascii_uppercase();
    let af = if src.is_ipv4() { "INET" } else { "INET6" };
    let mut lines = Vec::new();
    for (vm, dir) in [(owner(src), "OUT"), (owner(dst), "IN")] {
        let Some(vm) = vm else { continue };
        let Some(rule) = first_match(st, Some(vm), dir, src, dst, flow) else {
            continue;
        };
        let action = match rule.get("action").and_then(Value::as_str) {
            Some("DROP") => "DROP",
            Some("REJECT") => "REJECT",
            _ => "PASS",
        };
        if rule.get("logged").and_then(Value::as_bool) == Some(true) {
            let rule_id = rule.get("rule_id").and_then(Value::as_i64).unwrap_or(0);
            let endpoints = if proto == "TCP" || proto == "UDP" {
                format!(
                    "{src}/{}->{dst}/{}",
                    flow.src_port.unwrap_or(49152),
                    flow.dst_port.unwrap_or(0)
                )
            } else {
                format!("{src}->{dst}")
            };
            let (len, flags) = match proto.as_str() {
                "TCP" => ("60", " S"),
                "UDP" => ("40", ""),
                _ => ("84", ""),
            };
            let mut line = format!(
                "{ts} {} {af} match {action} {rule_id} {dir} {len} {proto} {endpoints}{flags}",
                filter_hash(vm)
            );
            if let Some(tag) = rule.get("tag").and_then(Value::as_str)
                && !tag.is_empty()
            {
                line.push(' ');
                line.extend(tag.chars().take(32));
            }
            lines.push(line);
        }
        if action != "PASS" {
            break;
        }
    }
    lines
}
