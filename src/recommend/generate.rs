//! Seeded, deterministic flow samples for `microseg recommend` tests and docs: one application
//! ("orders", VM tag `app|orders`) with a realistic mix — callers from another application,
//! many clients in one /24, a monitoring host, a database and DNS in Git, NTP servers, traffic
//! between its own members, replies recorded the wrong way round, ephemeral source ports, a few
//! one-off flows and traffic that does not touch it — written as vRNI JSON, CSV and DFW log lines
//! (the same flows in each), with the VM inventory and the other applications' policies.
//! Pure: same seed, same bytes. `tests/it/recommend.rs` writes them to tests/fixtures/flows/ with
//! `MICROSEG_UPDATE_SAMPLES=1` and otherwise checks the committed files still match.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::input::to_csv;
use super::{Endpoint, InventoryVm, Observation, Protocol};
use crate::nsx::model::Tag;

/// The seed the committed samples use.
pub const SEED: u64 = 20_270_110;

/// A small deterministic generator (SplitMix64), so samples do not depend on a crate's
/// algorithm.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The samples: flows, inventory, and the files that hold them.
#[derive(Clone, Debug)]
pub struct Samples {
    /// Every flow record.
    pub flows: Vec<Observation>,
    /// The VMs.
    pub vms: Vec<InventoryVm>,
    /// File name (relative to the fixture directory) → content.
    pub files: BTreeMap<String, String>,
}

fn vm(name: &str, ip: &str, tag: Option<&str>) -> InventoryVm {
    InventoryVm {
        name: name.into(),
        ips: vec![ip.into()],
        tags: tag.map(|t| vec![Tag::new("app", t)]).unwrap_or_default(),
    }
}

fn endpoint(vms: &[InventoryVm], ip: &str) -> Endpoint {
    let addr: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match vms.iter().find(|v| v.ips.iter().any(|i| i == ip)) {
        Some(v) => Endpoint {
            ip: addr,
            vm: Some(v.name.clone()),
            tags: v
                .tags
                .iter()
                .map(|t| format!("{}|{}", t.scope, t.tag))
                .collect(),
        },
        None => Endpoint::ip(addr),
    }
}

const WEB: [&str; 4] = ["10.10.1.21", "10.10.1.22", "10.10.1.23", "10.10.1.24"];
const APP: [&str; 3] = ["10.10.2.11", "10.10.2.12", "10.10.2.13"];
const DB: [&str; 2] = ["10.10.3.31", "10.10.3.32"];
const DNS: &str = "10.0.0.53";
const NTP: [&str; 2] = ["10.0.0.123", "10.0.0.124"];
const MONITORING: &str = "10.99.0.5";

/// The inventory of the samples.
pub fn inventory() -> Vec<InventoryVm> {
    let mut vms = Vec::new();
    for (i, ip) in WEB.iter().enumerate() {
        vms.push(vm(&format!("web-{:02}", i + 1), ip, Some("shop-web")));
    }
    for (i, ip) in APP.iter().enumerate() {
        vms.push(vm(&format!("orders-{:02}", i + 1), ip, Some("orders")));
    }
    for (i, ip) in DB.iter().enumerate() {
        vms.push(vm(&format!("db-{:02}", i + 1), ip, None));
    }
    vms.push(vm("dns-01", DNS, None));
    vms
}

const POLICIES: &str = r#"# The other applications already in Git: recommended rules name them, not their addresses.
apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata:
  name: wave-1
  namespace: shop
spec:
  notifyAt: "2027-02-01T09:00:00Z"
  monitorFrom: "2027-02-01T09:00:00Z"
  enforceAt: "2027-02-16T09:00:00Z"
---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata:
  name: web
  namespace: shop
spec:
  owners: [{ name: Web team, email: web@example.com }]
  criticality: Medium
  window: { name: wave-1 }
  members: [{ vmTag: { scope: app, tag: shop-web } }]
---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata:
  name: db
  namespace: shop
spec:
  owners: [{ name: DBA, email: dba@example.com }]
  criticality: High
  window: { name: wave-1 }
  members: [{ vmName: { startsWith: db- } }]
---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata:
  name: dns
  namespace: infra
spec:
  owners: [{ name: Infrastructure, email: infra@example.com }]
  criticality: Critical
  window: { name: wave-critical }
  members: [{ ipAddress: 10.0.0.53 }, { ipAddress: 10.0.0.54 }]
"#;

/// Generates the samples for `seed`.
pub fn samples(seed: u64) -> Samples {
    let mut g = Flows {
        rng: SplitMix::new(seed),
        vms: inventory(),
        flows: Vec::new(),
    };
    g.application_traffic();
    g.dependencies();
    g.oddities();
    let Flows {
        mut rng,
        vms,
        flows,
    } = g;
    let mut files = BTreeMap::new();
    files.insert("flows.json".into(), vrni_json(&flows));
    files.insert("flows.csv".into(), to_csv(&flows));
    files.insert("dfw.log".into(), dfw_log(&flows, &vms, &mut rng));
    files.insert(
        "vms.json".into(),
        serde_json::to_string_pretty(&vms).unwrap_or_default() + "\n",
    );
    files.insert("policies/shop.yaml".into(), POLICIES.into());
    Samples { flows, vms, files }
}

/// The flows generated so far, and the random source that varies them (the order of the draws
/// makes a seed's samples).
struct Flows {
    rng: SplitMix,
    vms: Vec<InventoryVm>,
    flows: Vec<Observation>,
}

impl Flows {
    /// One flow; a TCP or UDP flow without `src_port` comes from a random ephemeral port.
    fn add(
        &mut self,
        (src, dst): (&str, &str),
        protocol: Protocol,
        port: Option<u16>,
        src_port: Option<u16>,
        count: u64,
    ) {
        let ephemeral = self.rng.range(49152, 65535) as u16;
        self.flows.push(Observation {
            src: endpoint(&self.vms, src),
            dst: endpoint(&self.vms, dst),
            protocol,
            src_port: match protocol {
                Protocol::Tcp | Protocol::Udp => Some(src_port.unwrap_or(ephemeral)),
                _ => None,
            },
            port: port.map(|p| (p, p)),
            count,
            direction: None,
            seen: None,
            volume: None,
        });
    }

    /// A TCP flow to `port` from an ephemeral port.
    fn tcp(&mut self, src: &str, dst: &str, port: u16, count: u64) {
        self.add((src, dst), Protocol::Tcp, Some(port), None, count);
    }

    /// What the application serves: the web tier, many clients of one /24, monitoring.
    fn application_traffic(&mut self) {
        // The web tier calls the application.
        for w in WEB {
            for a in APP {
                let n = self.rng.range(5, 20);
                self.tcp(w, a, 8443, n);
            }
        }
        // Many clients of one /24 on HTTPS, a few flows each.
        let mut clients: Vec<u64> = Vec::new();
        while clients.len() < 24 {
            let x = self.rng.range(10, 250);
            if !clients.contains(&x) {
                clients.push(x);
            }
        }
        for x in clients {
            let a = APP[self.rng.range(0, 2) as usize];
            let n = self.rng.range(1, 4);
            self.tcp(&format!("10.20.30.{x}"), a, 443, n);
        }
        // A monitoring host scrapes and pings every member.
        for a in APP {
            self.tcp(MONITORING, a, 9100, 10);
            self.add((MONITORING, a), Protocol::Icmp, None, None, 3);
        }
    }

    /// What the application calls: its database, DNS and NTP; and replication between its own
    /// members.
    fn dependencies(&mut self) {
        for a in APP {
            for d in DB {
                let n = self.rng.range(8, 15);
                self.tcp(a, d, 5432, n);
            }
            let n = self.rng.range(10, 30);
            self.add((a, DNS), Protocol::Udp, Some(53), None, n);
            self.tcp(a, DNS, 53, 3);
            // A reply recorded as a flow: DNS answering from port 53 to an ephemeral port.
            let reply_port = self.rng.range(49152, 65535) as u16;
            self.add((DNS, a), Protocol::Udp, Some(reply_port), Some(53), 4);
            for t in NTP {
                self.add((a, t), Protocol::Udp, Some(123), Some(123), 6);
            }
        }
        self.tcp(APP[0], APP[1], 7000, 12);
        self.tcp(APP[1], APP[2], 7000, 12);
    }

    /// One-off flows a human has to judge, and traffic that does not touch the application.
    fn oddities(&mut self) {
        self.tcp("203.0.113.77", APP[0], 22, 1);
        self.tcp(APP[1], "198.51.100.9", 8080, 1);
        self.tcp(WEB[0], APP[2], 3389, 2);
        // Traffic that does not touch the application.
        self.tcp(WEB[1], DB[0], 5432, 5);
    }
}

fn reference(e: &Endpoint, n: usize) -> Value {
    match &e.vm {
        Some(name) => json!({
            "entity_id": format!("18230:1:{}", 1000 + n),
            "entity_type": "VirtualMachine",
            "entity_name": name,
        }),
        None => Value::Null,
    }
}

fn address(ip: &IpAddr) -> Value {
    json!({"ip_address": ip.to_string(), "netmask": "255.255.255.255", "network_address": ip.to_string()})
}

fn vrni_json(flows: &[Observation]) -> String {
    let list: Vec<Value> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let port = f.port.map(|(a, b)| {
                json!({"start": a, "end": b, "display": a.to_string(), "iana_name": "", "iana_port_display": a.to_string()})
            });
            let mut o = json!({
                "entity_id": format!("18230:515:{}", 100_000 + i),
                "entity_type": "Flow",
                "name": format!("{} -> {}", f.src.ip, f.dst.ip),
                "source_ip": address(&f.src.ip),
                "destination_ip": address(&f.dst.ip),
                "protocol": match f.protocol {
                    Protocol::Tcp => "TCP".to_string(),
                    Protocol::Udp => "UDP".to_string(),
                    Protocol::Icmp => "ICMP".to_string(),
                    Protocol::Icmpv6 => "ICMPv6".to_string(),
                    Protocol::Other(n) => n.to_string(),
                    Protocol::Unnamed => "OTHER".to_string(),
                },
                "firewall_action": "ALLOW",
                "traffic_type": "EAST_WEST_TRAFFIC",
                "within_host": false,
                "flow_tag": ["TAG_UNICAST"],
                "source_vm": reference(&f.src, 2 * i),
                "destination_vm": reference(&f.dst, 2 * i + 1),
                "source_vm_tags": f.src.tags,
                "destination_vm_tags": f.dst.tags,
                "count": f.count,
            });
            if let (Some(map), Some(p)) = (o.as_object_mut(), port) {
                map.insert("port".into(), p);
            }
            if let (Some(map), Some(p)) = (o.as_object_mut(), f.src_port) {
                map.insert("source_port".into(), json!(p));
            }
            o
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "results": list, "total_count": flows.len() }))
        .unwrap_or_default()
        + "\n"
}

/// One DFW `match` line per flow seen, as a logged allow rule at the application's vNIC writes it
/// (a fresh ephemeral source port each time).
fn dfw_log(flows: &[Observation], vms: &[InventoryVm], rng: &mut SplitMix) -> String {
    let mut out = String::new();
    let mut second = 0u64;
    for f in flows {
        let at_dst = f.dst.tags.iter().any(|t| t == "app|orders");
        let (vnic, dir) = if at_dst {
            (&f.dst, "IN")
        } else {
            (&f.src, "OUT")
        };
        let hash = vms
            .iter()
            .position(|v| Some(&v.name) == vnic.vm.as_ref())
            .map(|i| format!("{:08x}", 0x2d4b_6e00 + i))
            .unwrap_or_else(|| "2d4b6eff".into());
        for _ in 0..f.count {
            second += 1;
            let ts = format!(
                "2027-01-10T{:02}:{:02}:{:02}.000Z",
                8 + second / 3600,
                (second / 60) % 60,
                second % 60
            );
            let (proto, len, flags) = match f.protocol {
                Protocol::Tcp => ("TCP", 60, " S"),
                Protocol::Udp => ("UDP", 40, ""),
                _ => ("ICMP", 84, ""),
            };
            let endpoints = match (f.protocol, f.port) {
                (Protocol::Tcp | Protocol::Udp, Some((p, _))) => {
                    let sport = match f.src_port {
                        Some(s) if s < 1024 => s,
                        _ => rng.range(49152, 65535) as u16,
                    };
                    format!("{}/{sport}->{}/{p}", f.src.ip, f.dst.ip)
                }
                _ => format!("{}->{}", f.src.ip, f.dst.ip),
            };
            let _ = writeln!(
                out,
                "{ts} {hash} INET match PASS 1024 {dir} {len} {proto} {endpoints}{flags} orders-observe"
            );
        }
    }
    out
}
