//! The objects of a fresh manager: domain `default`, its default layer-2 and layer-3
//! sections with their rules, and the default services.

use std::collections::BTreeMap;

use serde_json::json;

use super::objects::*;
use super::*;
use crate::nsx::predefined;
use crate::nsxsim::validate::Obj;

impl Store {
    /// A fresh manager: domain `default`, its default L2/L3 policies and the default services.
    pub fn new() -> Self {
        let ctx = Ctx {
            user: "system".into(),
            now_ms: 0,
            principal: false,
            allow_overwrite: false,
            pending_delete_ms: 0,
        };
        let mut store = Store {
            domains: BTreeMap::new(),
            services: BTreeMap::new(),
            next_rule_id: FIRST_RULE_ID,
            vms: Vec::new(),
            protected: BTreeMap::new(),
            pending: BTreeMap::new(),
        };
        store.domains.insert("default".into(), default_domain(&ctx));
        store.services.extend(default_services(&ctx));
        store
    }
}

/// Marks a seeded object as the system's.
fn system_owned(mut o: Obj) -> Obj {
    o.insert("_system_owned".into(), json!(true));
    o.insert("is_default".into(), json!(true));
    o.insert("_create_user".into(), json!("system"));
    o
}

/// Domain `default` with its default layer-3 and layer-2 sections and their rules.
fn default_domain(ctx: &Ctx) -> DomainState {
    let domain = stamp(
        Obj::new(),
        None,
        "Domain",
        "default",
        "/infra/domains/default".into(),
        "/infra",
        ctx,
    );
    let mut d = DomainState {
        domain,
        ..DomainState::default()
    };
    for (pid, category, stateful, rules) in [
        (
            "default-layer3-section",
            "Application",
            true,
            vec![
                ("default_rule_NDP", 3, 25000, "IPV6"),
                ("default_rule_DHCP", 4, 50000, "IPV4_IPV6"),
                ("default-layer3-rule", 2, 2_147_483_647, "IPV4_IPV6"),
            ],
        ),
        (
            "default-layer2-section",
            "Ethernet",
            false,
            vec![("default-layer2-rule", 1, 2_147_483_647, "")],
        ),
    ] {
        let mut p = Obj::new();
        p.insert("category".into(), json!(category));
        p.insert("stateful".into(), json!(stateful));
        p.insert("sequence_number".into(), json!(0));
        p.insert("scope".into(), json!(["ANY"]));
        let path = policy_path("default", pid);
        let mut policy = system_owned(stamp(
            policy_defaults(p),
            None,
            "SecurityPolicy",
            pid,
            path.clone(),
            "/infra/domains/default",
            ctx,
        ));
        set_internal_sequence(&mut policy);
        let mut ps = PolicyState {
            policy,
            rules: BTreeMap::new(),
        };
        for (rid, num, seq, proto) in rules {
            let mut r = rule_defaults(Obj::new(), category == "Ethernet");
            r.insert("sequence_number".into(), json!(seq));
            let services = match rid {
                "default_rule_NDP" => {
                    json!(["/infra/services/IPv6-ICMP_Neighbor_Solicitation"])
                }
                "default_rule_DHCP" => {
                    json!(["/infra/services/DHCP-Server", "/infra/services/DHCP-Client"])
                }
                _ => json!(["ANY"]),
            };
            r.insert("services".into(), services);
            if proto.is_empty() {
                r.remove("ip_protocol");
            } else {
                r.insert("ip_protocol".into(), json!(proto));
            }
            if rid == "default-layer3-rule" {
                // Observed display name (reference §2.3).
                r.insert("display_name".into(), json!("Default Layer3 Rule"));
            }
            let mut r = system_owned(stamp(
                r,
                None,
                "Rule",
                rid,
                rule_path("default", pid, rid),
                &path,
                ctx,
            ));
            r.insert("rule_id".into(), json!(num));
            ps.rules.insert(rid.to_string(), r);
        }
        d.policies.insert(pid.to_string(), ps);
    }
    d
}

/// The default services, each with its one service entry.
fn default_services(ctx: &Ctx) -> Vec<(String, ServiceState)> {
    let mut out = Vec::new();
    for predefined::Service {
        id,
        protocol,
        ports,
    } in predefined::SERVICES
    {
        let proto = protocol.as_str();
        let mut s = Obj::new();
        s.insert("service_type".into(), json!("NON_ETHER"));
        let path = service_path(id);
        let service = system_owned(stamp(s, None, "Service", id, path.clone(), "/infra", ctx));
        let eid = format!("{id}-{}", proto.to_ascii_lowercase());
        let mut e = Obj::new();
        e.insert("l4_protocol".into(), json!(proto));
        e.insert("source_ports".into(), json!([]));
        e.insert("destination_ports".into(), json!(ports));
        let entry = system_owned(stamp(
            e,
            None,
            "L4PortSetServiceEntry",
            &eid,
            format!("{path}/service-entries/{eid}"),
            &path,
            ctx,
        ));
        let mut entries = BTreeMap::new();
        entries.insert(eid, entry);
        out.push(((*id).to_string(), ServiceState { service, entries }));
    }
    let mut icmp = Obj::new();
    icmp.insert("service_type".into(), json!("NON_ETHER"));
    let path = service_path("IPv6-ICMP_Neighbor_Solicitation");
    let service = system_owned(stamp(
        icmp,
        None,
        "Service",
        "IPv6-ICMP_Neighbor_Solicitation",
        path.clone(),
        "/infra",
        ctx,
    ));
    let mut e = Obj::new();
    e.insert("protocol".into(), json!("ICMPv6"));
    e.insert("icmp_type".into(), json!(135));
    let entry = system_owned(stamp(
        e,
        None,
        "ICMPTypeServiceEntry",
        "ICMPv6-NS",
        format!("{path}/service-entries/ICMPv6-NS"),
        &path,
        ctx,
    ));
    out.push((
        "IPv6-ICMP_Neighbor_Solicitation".into(),
        ServiceState {
            service,
            entries: BTreeMap::from([("ICMPv6-NS".to_string(), entry)]),
        },
    ));
    out
}
