//! Flow sources of `microseg recommend`, parsed from text. Pure.
//!
//! - **vRNI / Aria Operations for Networks Flow JSON** (reference §11): one Flow (`GET
//!   /entities/flows/{id}`), a list of Flows, `{"results": [...]}`, or the bulk fetch answer
//!   (`POST /entities/fetch`: `{"results": [{entity_id, entity_type, time, entity}]}`, whose
//!   `time` becomes first/last seen). Read per flow: `source_ip.ip_address`,
//!   `destination_ip.ip_address`, `port.start`/`port.end`, `protocol` (`OTHER` included),
//!   `source_vm`/`destination_vm` (a Reference: its `entity_name`, else `name`),
//!   `source_vm_tags`/`destination_vm_tags` (strings). Each Flow is one conversation without
//!   volume. Ids without details are refused with how to fetch them. Two fields outside the API
//!   that the project's own sample generator writes are also read: `count` (records folded into
//!   one; such a Flow counts as records, not as a conversation) and `source_port`.
//! - **vRNI's UI flow export** (CSV with display-name headers, see [`VRNI_CSV_COLUMNS`]): one
//!   conversation per line with its bytes and sessions where given; other columns are ignored.
//! - **microseg's CSV**, one flow per line, a header line first:
//!   `source_ip,source_port,destination_ip,port,protocol,source_vm,destination_vm,source_vm_tags,destination_vm_tags,count`.
//!   `port` is `443` or `1000-2000`; tags are separated by `;`; empty cells are unknown; only
//!   `source_ip`, `destination_ip` and `protocol` are required, and columns may come in any order;
//!   an unknown column is refused (a typo would silently drop data).
//! - **DFW packet-log lines** (reference §9): every `match` line is one flow (TERM lines are the
//!   end of a flow already counted and are skipped).
//! - **A SegmentationPolicy with status** (`kubectl get segpol NAME -o yaml`, or read from the
//!   cluster): its `status.monitor.flows`, unacknowledged ones only, with their direction.

use std::net::IpAddr;

use serde_json::Value;

use super::{Endpoint, Observation, Protocol, RecommendError, Volume, invalid};
use crate::api::SegmentationPolicy;

/// The CSV columns, in the order `microseg recommend` writes them.
pub const CSV_COLUMNS: [&str; 10] = [
    "source_ip",
    "source_port",
    "destination_ip",
    "port",
    "protocol",
    "source_vm",
    "destination_vm",
    "source_vm_tags",
    "destination_vm_tags",
    "count",
];

fn ip(v: &str, field: &str) -> Result<IpAddr, RecommendError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(field, format!("{v:?} is not an IP address")))
}

fn port_range(v: &str, field: &str) -> Result<(u16, u16), RecommendError> {
    let bad = || invalid(field, format!("{v:?} is not a port or a port range"));
    let (a, b) = v.split_once('-').unwrap_or((v, v));
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

fn proto(v: &str, field: &str) -> Result<Protocol, RecommendError> {
    Protocol::parse(v).ok_or_else(|| invalid(field, format!("{v:?} is not a protocol")))
}

/// What a JSON entry is.
enum Entry<'a> {
    /// A Flow object, with the time the envelope gives it (epoch seconds).
    Flow(&'a Value, Option<i64>, String),
    /// An id without details.
    Id(String),
}

fn entry<'a>(v: &'a Value, at: String) -> Result<Entry<'a>, RecommendError> {
    let Some(o) = v.as_object() else {
        return Err(invalid(at, "expected a Flow object"));
    };
    if let Some(entity) = o.get("entity").filter(|e| e.is_object()) {
        let time = o.get("time").and_then(Value::as_i64);
        return Ok(Entry::Flow(entity, time, format!("{at}.entity")));
    }
    if o.contains_key("source_ip") || o.contains_key("destination_ip") {
        return Ok(Entry::Flow(v, None, at));
    }
    if o.contains_key("entity_id") {
        return Ok(Entry::Id(at));
    }
    Err(invalid(
        at,
        "neither a Flow (source_ip, destination_ip, protocol) nor an /entities/fetch result (entity)",
    ))
}

/// Reads vRNI Flow JSON: one Flow (`GET /api/ni/entities/flows/{id}`), a list of Flows,
/// `{"results": [Flow, ...]}`, or the bulk fetch answer (`POST /api/ni/entities/fetch`:
/// `{"results": [{"entity_id", "entity_type", "time", "entity": Flow}]}`). A list of ids
/// (`GET /api/ni/entities/flows`, `POST /api/ni/search`) is refused with how to get details.
///
/// A Flow is one conversation (vRNI aggregates packets into flows), unless it carries `count`,
/// the number of records the project's own sample generator folds into one.
pub fn vrni_json(text: &str) -> Result<Vec<Observation>, RecommendError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| invalid("flows", format!("not JSON: {e}")))?;
    let entries: Vec<Entry<'_>> = match &value {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| entry(v, format!("flows[{i}]")))
            .collect::<Result<_, _>>()?,
        Value::Object(o) => match o.get("results") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| entry(v, format!("results[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("results", "not a list")),
            None => vec![entry(&value, "flow".into())?],
        },
        _ => {
            return Err(invalid(
                "flows",
                "expected a Flow, a list of Flows or {\"results\": [...]}",
            ));
        }
    };
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Id(at) => {
                return Err(invalid(
                    at,
                    "a flow id without details (what GET /api/ni/entities/flows and POST /api/ni/search return): \
                     fetch the Flows with POST /api/ni/entities/fetch {\"entity_ids\": [...]} and give that answer, \
                     or let microseg fetch them with --vrni-url",
                ));
            }
            Entry::Flow(f, time, at) => out.push(vrni_flow(f, time, &at)?),
        }
    }
    Ok(out)
}

fn vrni_flow(f: &Value, time: Option<i64>, at: &str) -> Result<Observation, RecommendError> {
    let field = |name: &str| format!("{at}.{name}");
    let address = |name: &str| -> Result<IpAddr, RecommendError> {
        let v = f
            .pointer(&format!("/{name}/ip_address"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(field(&format!("{name}.ip_address")), "missing"))?;
        ip(v, &field(&format!("{name}.ip_address")))
    };
    let vm = |name: &str| {
        f.get(name).and_then(|r| {
            r.get("entity_name")
                .or_else(|| r.get("name"))
                .and_then(Value::as_str)
                .map(String::from)
        })
    };
    let tags = |name: &str| -> Vec<String> {
        f.get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    let protocol = proto(
        f.get("protocol")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(field("protocol"), "missing"))?,
        &field("protocol"),
    )?;
    let port = match f.get("port") {
        None | Some(Value::Null) => None,
        Some(p) => {
            let n = |k: &str| -> Result<Option<u16>, RecommendError> {
                match p.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .map(Some)
                        .ok_or_else(|| invalid(field(&format!("port.{k}")), "not a port")),
                }
            };
            match (n("start")?, n("end")?) {
                (Some(a), Some(b)) if b >= a => Some((a, b)),
                (Some(a), None) => Some((a, a)),
                (Some(_), Some(_)) => {
                    return Err(invalid(field("port.end"), "below port.start"));
                }
                (None, _) => None,
            }
        }
    };
    let src_port = f
        .get("source_port")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok());
    let count = match f.get("count") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| invalid(field("count"), "not a count"))?,
        ),
    };
    let seen = match time {
        Some(t) => {
            let ts = jiff::Timestamp::from_second(t)
                .map_err(|e| invalid(format!("{at}: time"), e.to_string()))?;
            Some((ts.to_string(), ts.to_string()))
        }
        None => None,
    };
    Ok(Observation {
        src: Endpoint {
            ip: address("source_ip")?,
            vm: vm("source_vm"),
            tags: tags("source_vm_tags"),
        },
        dst: Endpoint {
            ip: address("destination_ip")?,
            vm: vm("destination_vm"),
            tags: tags("destination_vm_tags"),
        },
        protocol,
        src_port,
        port,
        count: count.unwrap_or(1),
        direction: None,
        seen,
        volume: match count {
            Some(_) => None,
            None => Some(Volume::default()),
        },
    })
}

/// The columns of vRNI's UI flow export that [`vrni_csv`] reads, by their display name
/// (matched without regard to case, spaces and underscores); other columns are ignored.
pub const VRNI_CSV_COLUMNS: [&str; 9] = [
    "Source IP Address",
    "Destination IP Address",
    "Port",
    "Protocol",
    "Source VM",
    "Destination VM",
    "Bytes (In Bytes)",
    "Bytes",
    "Session Count",
];

fn header_key(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when the CSV's header is vRNI's UI export (display names), not microseg's columns.
pub fn is_vrni_csv(text: &str) -> bool {
    records(text).is_ok_and(|r| {
        r.first()
            .is_some_and(|(_, h)| h.iter().any(|c| header_key(c) == "sourceipaddress"))
    })
}

/// A volume cell: an integer or Java float notation (`6.06971876E8`); empty is unknown.
fn volume_cell(v: &str, field: &str) -> Result<u64, RecommendError> {
    let bad = || invalid(field, format!("{v:?} is not a volume"));
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    let f: f64 = v.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 || f > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(f.round() as u64)
}

/// A port cell of the UI export: `443`, `443 [https]`, `1000-2000`; empty is none.
fn port_cell(v: &str, field: &str) -> Result<(u16, u16), RecommendError> {
    let number = v.split('[').next().unwrap_or(v).trim();
    port_range(number, field)
}

/// Reads vRNI's UI flow export (CSV with display-name headers): one conversation per line.
pub fn vrni_csv(text: &str) -> Result<Vec<Observation>, RecommendError> {
    let mut lines = records(text)?.into_iter();
    let Some((_, header)) = lines.next() else {
        return Err(invalid("line 1", "empty: no header line"));
    };
    let keys: Vec<String> = header.iter().map(|h| header_key(h)).collect();
    let col = |names: &[&str]| names.iter().find_map(|n| keys.iter().position(|k| k == n));
    let required = |names: &[&str], display: &str| {
        col(names).ok_or_else(|| {
            invalid(
                "line 1",
                format!("column {display:?} is missing (this is read as vRNI's flow export)"),
            )
        })
    };
    let src_col = required(&["sourceipaddress"], "Source IP Address")?;
    let dst_col = required(&["destinationipaddress"], "Destination IP Address")?;
    let proto_col = required(&["protocol"], "Protocol")?;
    let port_col = col(&["port"]);
    let src_vm_col = col(&["sourcevm"]);
    let dst_vm_col = col(&["destinationvm"]);
    let bytes_col = col(&["bytes(inbytes)", "bytes"]);
    let sessions_col = col(&["sessioncount"]);
    let mut out = Vec::new();
    for (line_no, fields) in lines {
        if fields.len() != keys.len() {
            return Err(invalid(
                format!("line {line_no}"),
                format!("{} fields, the header has {}", fields.len(), keys.len()),
            ));
        }
        let get = |c: Option<usize>| {
            c.map(|i| fields[i].trim())
                .filter(|v| !v.is_empty() && *v != "N/A")
        };
        let field = |name: &str| format!("line {line_no}: {name}");
        let need = |c: usize, name: &str| get(Some(c)).ok_or_else(|| invalid(field(name), "empty"));
        out.push(Observation {
            src: Endpoint {
                ip: ip(
                    need(src_col, "Source IP Address")?,
                    &field("Source IP Address"),
                )?,
                vm: get(src_vm_col).map(String::from),
                tags: Vec::new(),
            },
            dst: Endpoint {
                ip: ip(
                    need(dst_col, "Destination IP Address")?,
                    &field("Destination IP Address"),
                )?,
                vm: get(dst_vm_col).map(String::from),
                tags: Vec::new(),
            },
            protocol: proto(need(proto_col, "Protocol")?, &field("Protocol"))?,
            src_port: None,
            port: get(port_col)
                .map(|v| port_cell(v, &field("Port")))
                .transpose()?,
            count: 1,
            direction: None,
            seen: None,
            volume: Some(Volume {
                bytes: get(bytes_col)
                    .map(|v| volume_cell(v, &field("Bytes")))
                    .transpose()?,
                sessions: get(sessions_col)
                    .map(|v| volume_cell(v, &field("Session Count")))
                    .transpose()?,
            }),
        });
    }
    if out.is_empty() {
        return Err(invalid("flows", "no flow lines after the header"));
    }
    Ok(out)
}

/// The records of a CSV text (RFC 4180: a quoted field may hold commas, quotes and line
/// breaks), each with the line it starts on; blank lines are skipped.
fn records(text: &str) -> Result<Vec<(u64, Vec<String>)>, RecommendError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, ::csv::Position::line);
            invalid(format!("line {line}"), e.to_string())
        })?;
        if record.len() <= 1 && record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        // The reader's position is where the previous record ended: blank lines it skipped
        // before this record come after it.
        let (byte, line) = record.position().map_or((0, 1), |p| (p.byte(), p.line()));
        let skipped = usize::try_from(byte)
            .ok()
            .and_then(|b| text.as_bytes().get(b..))
            .unwrap_or_default()
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .filter(|b| **b == b'\n')
            .count();
        out.push((
            line + skipped as u64,
            record.iter().map(String::from).collect(),
        ));
    }
    Ok(out)
}

/// Reads the CSV form.
pub fn csv(text: &str) -> Result<Vec<Observation>, RecommendError> {
    let mut lines = records(text)?.into_iter();
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    for h in &header {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(invalid(
                "line 1",
                format!(
                    "unknown column {h:?}; columns are {}",
                    CSV_COLUMNS.join(",")
                ),
            ));
        }
    }
    for required in ["source_ip", "destination_ip", "protocol"] {
        if !header.iter().any(|h| h == required) {
            return Err(invalid("line 1", format!("column {required} is missing")));
        }
    }
    let mut out = Vec::new();
    for (line_no, fields) in lines {
        if fields.len() != header.len() {
            return Err(invalid(
                format!("line {line_no}"),
                format!("{} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        let get = |name: &str| -> Option<&str> {
            header
                .iter()
                .position(|h| h == name)
                .map(|i| fields[i].trim())
                .filter(|v| !v.is_empty())
        };
        let field = |name: &str| format!("line {line_no}: {name}");
        let tags = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(';')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let required = |name: &str| get(name).ok_or_else(|| invalid(field(name), "empty"));
        out.push(Observation {
            src: Endpoint {
                ip: ip(required("source_ip")?, &field("source_ip"))?,
                vm: get("source_vm").map(String::from),
                tags: tags("source_vm_tags"),
            },
            dst: Endpoint {
                ip: ip(required("destination_ip")?, &field("destination_ip"))?,
                vm: get("destination_vm").map(String::from),
                tags: tags("destination_vm_tags"),
            },
            protocol: proto(required("protocol")?, &field("protocol"))?,
            src_port: get("source_port")
                .map(|v| {
                    v.parse::<u16>()
                        .map_err(|_| invalid(field("source_port"), format!("{v:?} is not a port")))
                })
                .transpose()?,
            port: get("port")
                .map(|v| port_range(v, &field("port")))
                .transpose()?,
            count: get("count")
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| invalid(field("count"), format!("{v:?} is not a count")))
                })
                .transpose()?
                .unwrap_or(1),
            direction: None,
            seen: None,
            volume: None,
        });
    }
    Ok(out)
}

/// Writes flows in the CSV form (the inverse of [`csv`]).
pub fn to_csv(flows: &[Observation]) -> String {
    let mut writer = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut rows = vec![CSV_COLUMNS.map(String::from)];
    for f in flows {
        let port = f
            .port
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .unwrap_or_default();
        rows.push([
            f.src.ip.to_string(),
            f.src_port.map(|p| p.to_string()).unwrap_or_default(),
            f.dst.ip.to_string(),
            port,
            f.protocol.to_string(),
            f.src.vm.clone().unwrap_or_default(),
            f.dst.vm.clone().unwrap_or_default(),
            f.src.tags.join(";"),
            f.dst.tags.join(";"),
            f.count.to_string(),
        ]);
    }
    // Writing into memory cannot fail; a row that did would be left out.
    for row in rows {
        let _ = writer.write_record(row);
    }
    writer
        .into_inner()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// What [`dfw_log`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRead {
    /// One flow per `match` line.
    pub flows: Vec<Observation>,
    /// Lines that did not parse: (line number, reason).
    pub unparsed: Vec<(usize, String)>,
}

/// Reads DFW packet-log lines.
pub fn dfw_log(text: &str) -> LogRead {
    use crate::monitor::parse::{Reason, parse_line};
    let mut read = LogRead::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(r) if r.reason == Reason::Match => {
                let protocol = r
                    .protocol
                    .number()
                    .map_or(r.protocol, Protocol::from_number);
                read.flows.push(Observation {
                    src: Endpoint::ip(r.src),
                    dst: Endpoint::ip(r.dst),
                    protocol,
                    src_port: r.src_port,
                    port: r.dst_port.map(|p| (p, p)),
                    count: 1,
                    direction: None,
                    seen: r.timestamp.map(|t| (t.to_string(), t.to_string())),
                    volume: None,
                });
            }
            Ok(_) => {}
            Err(e) => read
                .unparsed
                .push((i + 1, format!("{}: {}", e.field.as_str(), e.reason))),
        }
    }
    read
}

/// Reads a SegmentationPolicy with status (YAML or JSON) and its unacknowledged monitor flows.
pub fn policy_flows(text: &str) -> Result<(SegmentationPolicy, Vec<Observation>), RecommendError> {
    let policy: SegmentationPolicy = serde_yaml::from_str(text)
        .map_err(|e| invalid("policy", format!("not a SegmentationPolicy: {e}")))?;
    let flows = policy
        .status
        .as_ref()
        .and_then(|s| s.monitor.as_ref())
        .map(|m| m.flows.as_slice())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        if f.acknowledged.is_some() {
            continue;
        }
        let field = |n: &str| format!("status.monitor.flows[{i}].{n}");
        let port = f
            .port
            .map(|p| {
                u16::try_from(p)
                    .map(|p| (p, p))
                    .map_err(|_| invalid(field("port"), format!("{p} is not a port")))
            })
            .transpose()?;
        out.push(Observation {
            src: Endpoint::ip(ip(&f.source, &field("source"))?),
            dst: Endpoint::ip(ip(&f.destination, &field("destination"))?),
            protocol: proto(&f.protocol, &field("protocol"))?,
            src_port: None,
            port,
            count: u64::try_from(f.count).unwrap_or(0),
            direction: Some(f.direction),
            seen: Some((f.first_seen.0.to_string(), f.last_seen.0.to_string())),
            volume: None,
        });
    }
    Ok((policy, out))
}
