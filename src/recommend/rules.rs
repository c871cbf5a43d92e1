//! From entries to rules: address peers collapsed to networks, peers with the same services
//! sharing a named rule, and the members NSX can select. Pure.

use super::*;

/// True when the tag is written the way vCenter tags are (`Category:Tag`), not NSX's `scope|tag`.
pub(super) fn vcenter_form(t: &VmTag) -> bool {
    t.scope.as_deref().is_none_or(str::is_empty) && t.tag.contains(':')
}

/// The members the policy names: a VM tag that NSX does not have (vRNI reports vCenter tags,
/// `Category:Tag`; NSX groups match NSX tags) would make an empty group, so it is replaced by
/// what NSX does know of the VMs it matched: their names, else their addresses.
pub(super) fn nsx_selectors(
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
pub(super) fn collapse(entries: Entries, opts: &Options) -> Entries {
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

pub(super) fn slug(s: &str) -> String {
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

pub(super) fn rule_name(
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

pub(super) fn peer(p: &PeerKey, opts: &Options) -> Peer {
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

pub(super) fn rules(
    kept: &Kept,
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
