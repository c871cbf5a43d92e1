//! From the spec's words to NSX's: members as group expressions, peers as groups or
//! addresses, ports as services and inline service entries.

use super::*;

pub(super) fn group_expression(members: &[Member]) -> Result<Vec<Expression>, PlanError> {
    let mut parts = Vec::new();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut paths = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if let Some(t) = &m.vm_tag {
            parts.push(Expression::Condition {
                member_type: "VirtualMachine".into(),
                key: "Tag".into(),
                operator: "EQUALS".into(),
                value: format!("{}|{}", t.scope.as_deref().unwrap_or(""), t.tag),
                scope_operator: None,
                exclude: None,
            });
        } else if let Some(n) = &m.vm_name {
            let (operator, value) = match (&n.equals, &n.starts_with) {
                (Some(v), _) => ("EQUALS", v),
                (None, Some(v)) => ("STARTSWITH", v),
                (None, None) => {
                    return Err(PlanError::Invalid {
                        field: format!("spec.members[{i}].vmName"),
                        reason: "set equals or startsWith".into(),
                    });
                }
            };
            parts.push(Expression::Condition {
                member_type: "VirtualMachine".into(),
                key: "Name".into(),
                operator: operator.into(),
                value: value.clone(),
                scope_operator: None,
                exclude: None,
            });
        } else if let Some(ip) = &m.ip_address {
            let net = parse_address(ip).ok_or_else(|| PlanError::Invalid {
                field: format!("spec.members[{i}].ipAddress"),
                reason: format!("{ip:?} is not an IP address or CIDR block"),
            })?;
            if net.addr().is_ipv4() {
                v4.push(ip.clone());
            } else {
                v6.push(ip.clone());
            }
        } else if let Some(p) = &m.nsx_group {
            paths.push(p.clone());
        }
    }
    if parts.len() > MAX_CONDITIONS {
        return Err(PlanError::Invalid {
            field: "spec.members".into(),
            reason: format!(
                "{} vmTag/vmName members; NSX allows {MAX_CONDITIONS}",
                parts.len()
            ),
        });
    }
    // One expression per address family (NSX refuses mixed families), then paths.
    for ips in [v4, v6] {
        if !ips.is_empty() {
            parts.push(Expression::IpAddressExpression { ip_addresses: ips });
        }
    }
    if !paths.is_empty() {
        parts.push(Expression::PathExpression { paths });
    }
    let mut out = Vec::with_capacity(parts.len() * 2);
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(Expression::ConjunctionOperator {
                conjunction_operator: "OR".into(),
            });
        }
        out.push(p);
    }
    Ok(out)
}

pub(super) fn parse_address(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

pub(super) fn resolve_peers(
    rule: &str,
    peers: &[Peer],
    namespace: &str,
    groups: &PeerGroups,
) -> Result<Vec<String>, PlanError> {
    let mut out = BTreeSet::new();
    for p in peers {
        if p.any == Some(true) {
            return Ok(vec![ANY.into()]);
        }
        if let Some(ApplicationRef {
            name,
            namespace: ns,
        }) = &p.application
        {
            let ns = ns.clone().unwrap_or_else(|| namespace.to_string());
            let path =
                groups
                    .get(&(ns.clone(), name.clone()))
                    .ok_or_else(|| PlanError::PeerNotFound {
                        rule: rule.into(),
                        peer: format!("{ns}/{name}"),
                    })?;
            out.insert(path.clone());
        } else if let Some(c) = &p.cidr {
            out.insert(c.clone());
        } else if let Some(g) = &p.nsx_group {
            out.insert(g.clone());
        }
    }
    Ok(out.into_iter().collect())
}

pub(super) fn services(
    ports: &[Port],
    field: &str,
) -> Result<(Vec<String>, Vec<ServiceEntry>), PlanError> {
    if ports.is_empty() {
        return Ok((vec![ANY.into()], Vec::new()));
    }
    let mut paths = BTreeSet::new();
    let mut l4: BTreeMap<L4Protocol, Vec<String>> = BTreeMap::new();
    let mut l4_any: BTreeSet<L4Protocol> = BTreeSet::new();
    let mut icmp = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        if let Some(s) = &p.nsx_service {
            paths.insert(s.clone());
            continue;
        }
        let Some(protocol) = p.protocol else {
            return Err(PlanError::Invalid {
                field: format!("{field}[{i}]"),
                reason: "set protocol or nsxService".into(),
            });
        };
        if let Some(key) = L4Protocol::of(protocol) {
            match (p.port, p.end_port) {
                (None, _) => {
                    l4_any.insert(key);
                }
                (Some(a), Some(b)) if b < a => {
                    return Err(PlanError::Invalid {
                        field: format!("{field}[{i}].endPort"),
                        reason: format!("{b} is below port {a}"),
                    });
                }
                (Some(a), Some(b)) if b > a => l4.entry(key).or_default().push(format!("{a}-{b}")),
                (Some(a), _) => l4.entry(key).or_default().push(a.to_string()),
            }
        } else if let Some(family) = IcmpProtocol::of(protocol) {
            icmp.insert((family, p.icmp_type.map(i64::from)));
        } else {
            return Err(PlanError::Invalid {
                field: format!("{field}[{i}].protocol"),
                reason: format!("{protocol} is not a protocol a rule can match"),
            });
        }
    }
    let mut entries = Vec::new();
    for proto in [L4Protocol::Tcp, L4Protocol::Udp] {
        if l4_any.contains(&proto) {
            entries.push(ServiceEntry::L4PortSetServiceEntry {
                id: format!("{}-all", proto.as_str().to_lowercase()),
                l4_protocol: proto,
                source_ports: Vec::new(),
                destination_ports: Vec::new(),
            });
            continue;
        }
        let Some(values) = l4.get(&proto) else {
            continue;
        };
        let mut values = values.clone();
        values.sort_by_key(|v| port_sort_key(v));
        values.dedup();
        // Split into entries of at most 15 values, a range counting twice.
        let mut chunk: Vec<String> = Vec::new();
        let mut weight = 0;
        let mut n = 0;
        for v in values {
            let w = if v.contains('-') { 2 } else { 1 };
            if weight + w > MAX_PORT_VALUES {
                n += 1;
                entries.push(l4_entry(&proto, n, std::mem::take(&mut chunk)));
                weight = 0;
            }
            weight += w;
            chunk.push(v);
        }
        if !chunk.is_empty() {
            n += 1;
            entries.push(l4_entry(&proto, n, chunk));
        }
    }
    for (family, t) in icmp {
        let id = match t {
            Some(t) => format!("{}-{t}", family.as_str().to_lowercase()),
            None => format!("{}-all", family.as_str().to_lowercase()),
        };
        entries.push(ServiceEntry::IcmpTypeServiceEntry {
            id,
            protocol: family,
            icmp_type: t,
            icmp_code: None,
        });
    }
    let paths: Vec<String> = paths.into_iter().collect();
    // Inline entries go beside `["ANY"]`, as production clients write them and as a real
    // manager reads them back (reference §11a): ANY plus entries is only the entries' traffic.
    let services = if paths.is_empty() && !entries.is_empty() {
        vec![ANY.into()]
    } else {
        paths
    };
    Ok((services, entries))
}

pub(super) fn port_sort_key(v: &str) -> (u32, u32) {
    let mut it = v.split('-').map(|x| x.parse::<u32>().unwrap_or(0));
    let a = it.next().unwrap_or(0);
    (a, it.next().unwrap_or(a))
}

pub(super) fn l4_entry(proto: &L4Protocol, n: usize, ports: Vec<String>) -> ServiceEntry {
    ServiceEntry::L4PortSetServiceEntry {
        id: format!("{}-{n}", proto.as_str().to_lowercase()),
        l4_protocol: proto.clone(),
        source_ports: Vec::new(),
        destination_ports: ports,
    }
}
