//! Log Insight / Aria Operations for Logs alert webhook payloads (pure).
//!
//! Owns the JSON of `nsx-policy-api.md` §10: the legacy shape (`AlertName`, `messages[]` with
//! `text`, `timestamp` and `fields[{name, content}]`, `NumHits`, ...), the UI test alert (empty
//! `messages`) and the templated "user-defined" shape of Aria Operations for Logs cloud, from
//! which it extracts whatever log text or message objects it carries. Each message becomes an
//! [`Entry`]: a DFW line parsed from `text`; when `text` is missing or does not parse, a
//! [`FieldRecord`] from the NSX content-pack fields (`vmw_nsxt_firewall_*`, protocol under
//! either `vmw_nsxt_firewall_protocol` or `vmw_nsx_firewall_protocol`); otherwise an
//! [`Entry::Unusable`] saying why. Nothing is dropped silently.
//!
//! **Time.** A `text` with a timestamp of its own keeps it; the message body alone (Log Insight
//! may hold just `2d4b6e2d INET match ...`) takes the message's `timestamp` (epoch ms; `0` or
//! absent means none), else the receipt time the caller passes to [`Alert::entries`]. The record
//! says which ([`TimeSource`](super::parse::TimeSource)).
//!
//! **What an alert is** ([`Alert::kind`]) and **what to do with it** ([`Alert::disposition`]): the
//! UI's "Send Test Alert" and Log Insight system notifications are acknowledged with nothing to
//! record; an alert with at least one usable message is recorded; an alert none of whose
//! messages is usable (a query that does not select DFW packet logs, an aggregate query) is
//! refused with a message saying what to change. The webhook endpoint and `microseg parse-log
//! --format loginsight` both follow it.
//!
//! It must not do IO or read the clock; the HTTP endpoint, authentication and aggregation are
//! elsewhere. Errors name the JSON field (`messages[2].fields[0].name: expected a string`).

use std::net::IpAddr;

use serde_json::Value;

use super::parse::{
    Action, Arrival, LogRecord, ParseError, Protocol, TimeSource, is_dfw_line, parse_line_with,
};

/// Content-pack field: action (`PASS`, `DROP`, `REJECT`; `ALLOW` accepted).
pub const FIELD_ACTION: &str = "vmw_nsxt_firewall_action";
/// Content-pack field: rule id.
pub const FIELD_RULE_ID: &str = "vmw_nsxt_firewall_ruleid";
/// Content-pack field: source address.
pub const FIELD_SRC: &str = "vmw_nsxt_firewall_src";
/// Content-pack field: source port.
pub const FIELD_SRC_PORT: &str = "vmw_nsxt_firewall_src_port";
/// Content-pack field: destination address.
pub const FIELD_DST: &str = "vmw_nsxt_firewall_dst";
/// Content-pack field: destination port.
pub const FIELD_DST_PORT: &str = "vmw_nsxt_firewall_dst_port";
/// Content-pack field: `<dst>/<dport>`, used when the separate fields are missing.
pub const FIELD_DST_IP_PORT: &str = "vmw_nsxt_firewall_dst_ip_port";
/// Content-pack field: protocol, as the CLI tools and analyzers name it.
pub const FIELD_PROTOCOL: &str = "vmw_nsxt_firewall_protocol";
/// Content-pack field: protocol, as a webhook consumer names it.
pub const FIELD_PROTOCOL_ALT: &str = "vmw_nsx_firewall_protocol";
/// Generic field: host name.
pub const FIELD_HOSTNAME: &str = "hostname";

/// Keys whose string values are taken as log text in a user-defined payload.
const TEXT_KEYS: &[&str] = &[
    "text", "message", "messages", "msg", "log", "logs", "line", "lines", "event", "events", "raw",
    "_raw",
];

/// Deepest nesting walked in a user-defined payload.
const MAX_DEPTH: usize = 16;

/// A payload that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not JSON.
    #[error("body: not JSON ({reason}) at line {line} column {column}")]
    Json {
        /// serde_json's message.
        reason: String,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// A field has the wrong type or value.
    #[error("{field}: {reason}")]
    Field {
        /// JSON path of the field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A user-defined payload with no log text or message objects in it.
    #[error(
        "body: user-defined payload (keys: {keys}) has no messages[], text or log-line field; \
         send the legacy alert shape or include the log text"
    )]
    NoLogLines {
        /// Top-level keys seen.
        keys: String,
    },
    /// More messages than one batch may hold.
    #[error(
        "body: more than {limit} log messages in one payload (--ingest-burst-lines); \
         send smaller batches"
    )]
    TooManyMessages {
        /// The most accepted.
        limit: usize,
    },
}

/// Longest object key copied into a message's path.
const KEY_MAX: usize = 64;

/// A key as it appears in a path: at most [`KEY_MAX`] characters (a long key is not copied
/// into every message found under it).
fn path_key(k: &str) -> std::borrow::Cow<'_, str> {
    match k.char_indices().nth(KEY_MAX) {
        None => std::borrow::Cow::Borrowed(k),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}...", k.get(..cut).unwrap_or_default()))
        }
    }
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Which shape the payload had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Legacy/on-prem shape with `messages[]`.
    Legacy,
    /// Templated payload (Aria Operations for Logs cloud), read as user-defined.
    UserDefined,
}

/// One message of the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// JSON path of the message (`messages[0]`, `$.results[1].text#2`).
    pub at: String,
    /// The raw log text, when present.
    pub text: Option<String>,
    /// Epoch milliseconds as sent (`0` means none; see [`Message::time`]).
    pub timestamp_ms: Option<i64>,
    /// `fields[{name, content}]`, in order.
    pub fields: Vec<(String, String)>,
}

impl Message {
    /// The message's time: `timestamp` in epoch milliseconds, `None` when absent, `0` (Log Insight
    /// sends it for "no time"), negative or out of range.
    pub fn time(&self) -> Option<jiff::Timestamp> {
        self.timestamp_ms
            .filter(|ms| *ms > 0)
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }
}

/// A parsed webhook payload; [`Alert::entries`] turns its messages into records.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Shape of the body.
    pub shape: Shape,
    /// `AlertName` (or `name` in a user-defined payload).
    pub name: Option<String>,
    /// `AlertType`: 1 message query, 2 aggregate query, absent for system notifications.
    pub alert_type: Option<i64>,
    /// `SearchPeriod` in milliseconds (every query alert has one; system notifications do not).
    pub search_period_ms: Option<i64>,
    /// `NumHits` (may exceed the number of messages).
    pub num_hits: Option<u64>,
    /// `HasMoreResults`.
    pub has_more_results: Option<bool>,
    /// `Url` (link to the results).
    pub url: Option<String>,
    /// The messages.
    pub messages: Vec<Message>,
}

/// What kind of payload an alert is (`nsx-policy-api.md` §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The UI's "Send Test Alert": a query alert with `messages: []` and `NumHits: 0`.
    TestAlert,
    /// A Log Insight system notification (`AlertName` and `messages` only; no `AlertType`, no
    /// `SearchPeriod`), e.g. " Admin Alert: Worker node has returned to service".
    SystemNotification,
    /// A message-query alert (`AlertType` 1, or another value): one message per log event.
    MessageQuery,
    /// An aggregate-query alert (`AlertType` 2): rows of group-by `fields`, no log text.
    AggregateQuery,
    /// A templated (user-defined) payload of Aria Operations for Logs.
    UserDefined,
}

impl Kind {
    /// Stable snake_case name (logs, `parse-log`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::TestAlert => "test_alert",
            Kind::SystemNotification => "system_notification",
            Kind::MessageQuery => "message_query",
            Kind::AggregateQuery => "aggregate_query",
            Kind::UserDefined => "user_defined",
        }
    }
}

/// What microseg does with an alert as a whole; the webhook's answer follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing to record, and nothing wrong: answered 200 with this note (a test alert, a system
    /// notification, an alert without messages).
    Acknowledge {
        /// What was received and why nothing is recorded.
        note: String,
    },
    /// At least one message is usable: record (answered 200 once recorded; unusable messages are
    /// counted as unparsed and quoted).
    Record,
    /// No message is usable: the alert is not about DFW packet logs. Answered 422 with this
    /// error, which says what to change in Log Insight.
    Refuse {
        /// Why, naming the alert and the fix.
        error: String,
    },
}

impl Disposition {
    /// The HTTP status the webhook answers with (`Record`: once recorded; rate limits and the
    /// status write can still answer 413, 429 or 503).
    pub const fn status(&self) -> u16 {
        match self {
            Disposition::Acknowledge { .. } | Disposition::Record => 200,
            Disposition::Refuse { .. } => 422,
        }
    }
}

impl Alert {
    /// What kind of payload this is. A legacy payload without `AlertType` and `SearchPeriod` is a
    /// system notification; a legacy payload without messages and hits is a test alert.
    pub fn kind(&self) -> Kind {
        match self.shape {
            Shape::UserDefined => Kind::UserDefined,
            Shape::Legacy if self.alert_type.is_none() && self.search_period_ms.is_none() => {
                Kind::SystemNotification
            }
            Shape::Legacy if self.messages.is_empty() && self.num_hits.unwrap_or(0) == 0 => {
                Kind::TestAlert
            }
            Shape::Legacy if self.alert_type == Some(2) => Kind::AggregateQuery,
            Shape::Legacy => Kind::MessageQuery,
        }
    }

    /// A UI "test alert": legacy shape, no messages, no hits.
    pub fn is_test(&self) -> bool {
        self.kind() == Kind::TestAlert
    }

    /// One entry per message: a parsed line, a field record, or why neither. A line without a
    /// timestamp takes the message's (`timestamp`), else `received`.
    pub fn entries(&self, received: jiff::Timestamp) -> impl Iterator<Item = Entry<'_>> {
        self.messages.iter().map(move |m| entry(m, received))
    }

    /// What to do with this alert, given its [`entries`](Alert::entries). Usable messages are
    /// always recorded, whatever the kind: nothing DFW is dropped.
    pub fn disposition(&self, entries: &[Entry<'_>]) -> Disposition {
        let usable = entries.iter().any(|e| !matches!(e, Entry::Unusable { .. }));
        self.disposition_of(usable, entries.len())
    }

    /// [`disposition`](Alert::disposition) from what its entries came to: whether any was usable,
    /// and how many there were (for a caller that folds the entries as they come, keeping none).
    pub fn disposition_of(&self, usable: bool, entries: usize) -> Disposition {
        let name = super::quote(self.name.as_deref().unwrap_or("").trim());
        if usable {
            return Disposition::Record;
        }
        let kind = self.kind();
        match kind {
            Kind::TestAlert => Disposition::Acknowledge {
                note: format!(
                    "Log Insight test alert {name} received: the webhook URL and credentials \
                     work; nothing to record"
                ),
            },
            Kind::SystemNotification => Disposition::Acknowledge {
                note: format!(
                    "Log Insight system notification {name} received: not a DFW alert, nothing \
                     recorded"
                ),
            },
            _ if entries == 0 => Disposition::Acknowledge {
                note: format!(
                    "alert {name} carries no messages (NumHits {}): nothing to record",
                    self.num_hits.unwrap_or(0)
                ),
            },
            Kind::AggregateQuery => Disposition::Refuse {
                error: format!(
                    "alert {name} is an aggregate-query alert (AlertType 2): its {} rows are \
                     group-by results, and none has the NSX content-pack field {FIELD_RULE_ID}; \
                     microseg needs a message-query alert over DFW packet logs",
                    entries
                ),
            },
            Kind::MessageQuery | Kind::UserDefined => Disposition::Refuse {
                error: format!(
                    "alert {name}: none of its {} messages is a DFW packet-log line or carries \
                     the NSX content-pack field {FIELD_RULE_ID}; the alert's query does not \
                     select DFW packet logs (appname dfwpktlogs or FIREWALL-PKTLOG, text \
                     \"INET match\"): point it at them, or remove microseg's webhook from it",
                    entries
                ),
            },
        }
    }
}

/// A flow record built from content-pack fields when the text is missing or unparseable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRecord<'a> {
    /// From the message's epoch-ms `timestamp` ([`Message::time`]); `None`: use the receipt time.
    pub time: Option<jiff::Timestamp>,
    /// `hostname`.
    pub host: Option<&'a str>,
    /// `vmw_nsxt_firewall_action`.
    pub action: Option<Action>,
    /// `vmw_nsxt_firewall_ruleid` (required).
    pub rule_id: u32,
    /// `vmw_nsxt_firewall_src`.
    pub src: Option<IpAddr>,
    /// `vmw_nsxt_firewall_src_port`.
    pub src_port: Option<u16>,
    /// `vmw_nsxt_firewall_dst` (or from `_dst_ip_port`).
    pub dst: Option<IpAddr>,
    /// `vmw_nsxt_firewall_dst_port` (or from `_dst_ip_port`).
    pub dst_port: Option<u16>,
    /// `vmw_nsxt_firewall_protocol` or `vmw_nsx_firewall_protocol`.
    pub protocol: Option<Protocol>,
}

impl FieldRecord<'_> {
    /// Where the time comes from: the envelope (the message's `timestamp`), else receipt.
    pub const fn time_source(&self) -> TimeSource {
        match self.time {
            Some(_) => TimeSource::Envelope,
            None => TimeSource::Receipt,
        }
    }
}

/// What one message yielded.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `text` parsed as a DFW packet-log line.
    Line {
        /// JSON path of the message.
        at: &'a str,
        /// The record.
        record: LogRecord<'a>,
    },
    /// Built from the content-pack fields.
    Fields {
        /// JSON path of the message.
        at: &'a str,
        /// The record.
        record: FieldRecord<'a>,
        /// Why `text` was not used (`None` when there was no text).
        text_error: Option<ParseError>,
    },
    /// Neither text nor fields were usable.
    Unusable {
        /// JSON path of the message.
        at: &'a str,
        /// Why, naming the field.
        reason: String,
    },
}

fn entry(m: &Message, received: jiff::Timestamp) -> Entry<'_> {
    let arrival = Arrival::received(received).with_envelope(m.time());
    let text_error = match m.text.as_deref() {
        Some(t) => match parse_line_with(t, arrival) {
            Ok(record) => {
                return Entry::Line { at: &m.at, record };
            }
            Err(e) => Some(e),
        },
        None => None,
    };
    match field_record(m) {
        Ok(record) => Entry::Fields {
            at: &m.at,
            record,
            text_error,
        },
        Err(why) => {
            let reason = match (text_error, m.text.as_deref()) {
                (Some(e), Some(t)) => {
                    format!("{}.text: {e}: {}; {why}", m.at, super::quote(e.token(t)))
                }
                _ => format!("{}.text: missing; {why}", m.at),
            };
            Entry::Unusable { at: &m.at, reason }
        }
    }
}

fn field_record(m: &Message) -> Result<FieldRecord<'_>, String> {
    let at = |name: &str| format!("{}.fields[{name}]", m.at);
    let Some(rule) = m.field(FIELD_RULE_ID) else {
        return Err(format!("{}.fields: no {FIELD_RULE_ID}", m.at));
    };
    let rule_id = rule.trim().parse::<u32>().map_err(|_| {
        format!(
            "{}: {} is not a rule id",
            at(FIELD_RULE_ID),
            super::quote(rule)
        )
    })?;
    let action = match m.field(FIELD_ACTION) {
        None => None,
        Some(a) => Some(match a.trim() {
            "ALLOW" => Action::Pass,
            t => Action::from_token(t).ok_or_else(|| {
                format!(
                    "{}: {} is not a DFW action",
                    at(FIELD_ACTION),
                    super::quote(a)
                )
            })?,
        }),
    };
    let ip = |name: &str| -> Result<Option<IpAddr>, String> {
        m.field(name)
            .map(|v| {
                v.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{}: {} is not an IP address", at(name), super::quote(v)))
            })
            .transpose()
    };
    let port = |name: &str| -> Result<Option<u16>, String> {
        m.field(name)
            .map(|v| {
                v.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{}: {} is not a port", at(name), super::quote(v)))
            })
            .transpose()
    };
    let mut dst = ip(FIELD_DST)?;
    let mut dst_port = port(FIELD_DST_PORT)?;
    if let Some(v) = m.field(FIELD_DST_IP_PORT)
        && (dst.is_none() || dst_port.is_none())
    {
        let bad = || {
            format!(
                "{}: {} is not <ip>/<port>",
                at(FIELD_DST_IP_PORT),
                super::quote(v)
            )
        };
        let (ip, p) = v.trim().rsplit_once('/').ok_or_else(bad)?;
        dst = dst.or(Some(ip.parse().map_err(|_| bad())?));
        dst_port = dst_port.or(Some(p.parse().map_err(|_| bad())?));
    }
    let (proto_name, proto) = match (m.field(FIELD_PROTOCOL), m.field(FIELD_PROTOCOL_ALT)) {
        (Some(p), _) => (FIELD_PROTOCOL, Some(p)),
        (None, Some(p)) => (FIELD_PROTOCOL_ALT, Some(p)),
        (None, None) => (FIELD_PROTOCOL, None),
    };
    let protocol = proto
        .map(|p| {
            protocol_value(p)
                .ok_or_else(|| format!("{}: {} is not a protocol", at(proto_name), super::quote(p)))
        })
        .transpose()?;
    Ok(FieldRecord {
        time: m.time(),
        host: m.field(FIELD_HOSTNAME),
        action,
        rule_id,
        src: ip(FIELD_SRC)?,
        src_port: port(FIELD_SRC_PORT)?,
        dst,
        dst_port,
        protocol,
    })
}

/// `TCP`, `udp`, `ICMP`, `PROTO 2`, `6`, ...
fn protocol_value(p: &str) -> Option<Protocol> {
    let p = p.trim();
    let n = if p.eq_ignore_ascii_case("tcp") {
        6
    } else if p.eq_ignore_ascii_case("udp") {
        17
    } else if p.eq_ignore_ascii_case("icmp") {
        1
    } else {
        let digits = p
            .strip_prefix("PROTO")
            .or_else(|| p.strip_prefix("proto"))
            .unwrap_or(p);
        digits.trim().parse::<u8>().ok()?
    };
    Some(match n {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        1 => Protocol::Icmp,
        n => Protocol::Other(n),
    })
}

mod payload;
pub use payload::{parse_payload, parse_payload_limited};
