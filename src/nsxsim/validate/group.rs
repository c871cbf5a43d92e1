//! Checks of a group body and its expression list (conditions, IP addresses, paths, MAC
//! addresses, external ids), with NSX's limits on conditions and members.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::{
    CONDITION, GROUP, MAX_CONDITIONS, MAX_MEMBERS, Obj, as_obj, check_common, check_enum, opt_bool,
    opt_str, str_list, strict,
};
use crate::nsx::model::ApiError;
use crate::nsxsim::errors::{invalid, json_error};

/// Checks a group body (`Group`).
pub fn check_group(obj: &Obj, id: &str, errs: &mut Vec<ApiError>) {
    strict(obj, true, &[GROUP], errs);
    check_common(obj, "Group", id, errs);
    match obj.get("expression") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => check_expression(items, id, errs),
        Some(_) => errs.push(json_error("property expression must be an array.")),
    }
}

/// Checks a group's expression list: odd length, conjunctions at odd indices, at most 5
/// conditions and 500 members, one address family per IPAddressExpression.
fn check_expression(items: &[Value], group: &str, errs: &mut Vec<ApiError>) {
    if !items.is_empty() && items.len().is_multiple_of(2) {
        errs.push(invalid(format!(
            "Group [{group}] expression has an even number ({}) of elements; expressions and conjunction operators must alternate.",
            items.len()
        )));
    }
    let mut conditions = 0usize;
    let mut members = 0usize;
    for (i, item) in items.iter().enumerate() {
        let Some(e) = as_obj(item, "an expression", errs) else {
            continue;
        };
        let rt = opt_str(e, "resource_type", errs).unwrap_or("");
        let is_conj = rt == "ConjunctionOperator";
        if is_conj != (i % 2 == 1) {
            errs.push(invalid(format!(
                "Group [{group}] expression element {i} ({rt}) is misplaced: conjunction operators must be at odd positions and only there."
            )));
        }
        match rt {
            "Condition" => {
                conditions += 1;
                check_condition(e, group, errs);
            }
            "NestedExpression" => {
                conditions += 1;
                strict(e, true, &[&["expressions"]], errs);
            }
            "ConjunctionOperator" => {
                strict(e, true, &[&["conjunction_operator"]], errs);
                check_enum(e, "conjunction_operator", &["OR", "AND"], errs);
                if opt_str(e, "conjunction_operator", errs).is_none() {
                    errs.push(invalid(format!(
                        "Group [{group}] conjunction requires field conjunction_operator."
                    )));
                }
            }
            "IPAddressExpression" => members += check_ip_expression(e, group, errs),
            "PathExpression" => {
                strict(e, true, &[&["paths"]], errs);
                members += str_list(e, "paths", errs).map(|p| p.len()).unwrap_or(0);
            }
            "MACAddressExpression" => {
                strict(e, true, &[&["mac_addresses"]], errs);
                members += str_list(e, "mac_addresses", errs)
                    .map(|p| p.len())
                    .unwrap_or(0);
            }
            "ExternalIDExpression" => {
                strict(e, true, &[&["member_type", "external_ids"]], errs);
                members += str_list(e, "external_ids", errs)
                    .map(|p| p.len())
                    .unwrap_or(0);
            }
            other => errs.push(invalid(format!(
                "Group [{group}] expression resource_type [{other}] is not supported."
            ))),
        }
    }
    if conditions > MAX_CONDITIONS {
        errs.push(invalid(format!(
            "Group [{group}] has {conditions} conditions, the maximum is {MAX_CONDITIONS}."
        )));
    }
    if members > MAX_MEMBERS {
        errs.push(invalid(format!(
            "Group [{group}] has {members} IP addresses, MAC addresses, external ids and paths, the maximum is {MAX_MEMBERS}."
        )));
    }
}

/// Checks one `Condition` of a group's expression.
fn check_condition(e: &Obj, group: &str, errs: &mut Vec<ApiError>) {
    strict(e, true, &[CONDITION], errs);
    for key in ["member_type", "key", "operator", "value"] {
        if opt_str(e, key, errs).is_none() {
            errs.push(invalid(format!(
                "Group [{group}] condition requires field {key}."
            )));
        }
    }
    check_enum(
        e,
        "operator",
        &[
            "EQUALS",
            "CONTAINS",
            "STARTSWITH",
            "ENDSWITH",
            "NOTEQUALS",
            "NOTIN",
            "MATCHES",
            "IN",
        ],
        errs,
    );
    check_enum(
        e,
        "key",
        &[
            "Tag",
            "Name",
            "OSName",
            "ComputerName",
            "NodeType",
            "GroupType",
            "ALL",
            "IPAddress",
            "PodCidr",
        ],
        errs,
    );
    opt_bool(e, "exclude", errs);
}

/// Checks one `IPAddressExpression` (one address family); returns how many addresses it holds.
fn check_ip_expression(e: &Obj, group: &str, errs: &mut Vec<ApiError>) -> usize {
    strict(e, true, &[&["ip_addresses"]], errs);
    let ips = str_list(e, "ip_addresses", errs).unwrap_or_default();
    let mut v4 = false;
    let mut v6 = false;
    for ip in &ips {
        match parse_address(ip) {
            Some(true) => v4 = true,
            Some(false) => v6 = true,
            None => errs.push(invalid(format!(
                "Group [{group}] IP address [{ip}] is not an address, range or CIDR."
            ))),
        }
    }
    if v4 && v6 {
        errs.push(invalid(format!(
            "Group [{group}] IPAddressExpression mixes IPv4 and IPv6 addresses; use one expression per family."
        )));
    }
    ips.len()
}

/// Parses an address, CIDR or `a-b` range; `Some(true)` for IPv4, `Some(false)` for IPv6.
pub fn parse_address(s: &str) -> Option<bool> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.is_ipv4());
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(matches!(net, IpNet::V4(_)));
    }
    let (a, b) = s.split_once('-')?;
    let a: IpAddr = a.trim().parse().ok()?;
    let b: IpAddr = b.trim().parse().ok()?;
    if a.is_ipv4() != b.is_ipv4() || a > b {
        return None;
    }
    Some(a.is_ipv4())
}
