//! DFW packet-log line parser (pure).
//!
//! Owns the grammar of one NSX distributed-firewall packet-log line, in every layout of
//! `nsx-policy-api.md` §9:
//!
//! ```text
//! [<syslog-hdr>] [<ts>] [<syslog-hdr>] [<filter-hash>] <AF> <reason> [<action>]
//!     [<ruleset>/]<rule_id> <dir> [<len>] <proto> [<close-reason>]
//!     <src>[/<sport>]-><dst>[/<dport>]
//!     [<tcp-flags> | <pkts_in>/<pkts_out> <bytes_in>/<bytes_out>] [<extra>...] [<rule-tag>]
//! ```
//!
//! Syslog headers recognised: none (the plain `dfwpktlogs.log` line), RFC 3164 with an ISO
//! timestamp (`<182>2024-05-02T10:15:31.204Z esx01 dfwpktlogs: ...`, also without `<pri>`, as Log
//! Insight shows it), the ESXi 8 local form (`... No(13) FIREWALL-PKTLOG[1069031]: ...`), and
//! RFC 5424 (`<14>1 <ts> <host> <app> <procid> <msgid> <sd> ...`, nil values `-`, structured data
//! kept as one raw slice).
//!
//! **The message body alone.** DFW lines are also met without a timestamp: quoted in KB articles
//! and admin guides, in Log Insight's `text` field, and from relays that strip the syslog header.
//! Accepted, each with or without the filter hash:
//! - the bare body: `2d4b6e2d INET match PASS 3081 OUT 60 TCP a/p->b/q S`, `INET TERM ...`;
//! - an RFC 3164 header without its timestamp, `[<pri>][<host>] [<Sev>(<n>)] <app>[\[<pid>\]]:
//!   body`, and `<pri>` glued directly to the body;
//! - RFC 5424 with the nil TIMESTAMP: `<14>1 - <host> <app> <procid> <msgid> <sd> body`.
//!
//! **Where the time comes from** ([`TimeSource`], in [`LogRecord::time_source`]): the line's own
//! leading timestamp ([`TimeSource::Line`]), the syslog header's ([`TimeSource::SyslogHeader`]);
//! for a line without one, the envelope it came in (a Log Insight message's `timestamp`,
//! [`TimeSource::Envelope`]), else the time microseg received it ([`TimeSource::Receipt`]). The
//! caller says both in an [`Arrival`] ([`parse_line_with`]); [`parse_line`] has neither and refuses
//! a line without a timestamp (field `timestamp`), so a record's `time` is always a real instant.
//!
//! It must not do IO, read the clock or allocate: [`parse_line`] returns a [`LogRecord`] of `&str`
//! slices into the line and small `Copy` values, or a [`ParseError`] naming the field, the byte
//! offset of the offending token and why.
//!
//! **Rule tag versus extras** (the one real ambiguity of the grammar). After the endpoints come,
//! in order: TCP flags (only on TCP lines whose reason is not `TERM`, only when the first token
//! consists of the flag letters `SAPUFREWC`), counters (two `<n>/<n>` tokens), then free tokens.
//! The **last** free token is the rule tag when it looks like an NSX rule tag: only
//! `[A-Za-z0-9_-]`, at most 64 characters, and not an L7 App-ID (`APP_` followed by upper-case
//! letters, digits or `_`, such as `APP_DNS`). Every other free token is an extra (FQDN
//! annotation `www.example.com(<uuid>)`, App-ID, anything else). Consequences, by design: a tag
//! spelled like an App-ID (`APP_FOO`) is reported as an extra, and an extra that looks like a tag
//! and comes last is reported as the tag. NSX 4 rule tags are free text of at most 32 characters
//! in the API; the ones seen in practice (`DR-Allow`, `web-deny`) fit the pattern.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The protocol of a line (`TCP`, `UDP`, `ICMP`, `PROTO <n>` as written; never `ICMPv6` or
/// `OTHER`).
pub use crate::net::Protocol;

/// Longest rule tag accepted (terraform's limit; the NSX API truncates at 32).
pub const MAX_RULE_TAG_LEN: usize = 64;

/// The field a [`ParseError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The line as a whole (empty, or ends early).
    Line,
    /// The syslog header (`<pri>`, version, host, app, ...).
    SyslogHeader,
    /// The ISO-8601 timestamp.
    Timestamp,
    /// The filter hash (hex id of the vNIC filter).
    FilterHash,
    /// `INET` or `INET6`.
    AddressFamily,
    /// `match`, `TERM`, ...
    Reason,
    /// `[ruleset/]rule_id`.
    Rule,
    /// `IN` or `OUT`.
    Direction,
    /// `TCP`, `UDP`, `ICMP` or `PROTO <n>`.
    Protocol,
    /// `src[/sport]->dst[/dport]`.
    Endpoints,
    /// `<pkts_in>/<pkts_out> <bytes_in>/<bytes_out>`.
    Counters,
}

impl Field {
    /// Stable snake_case name, used in summaries and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Line => "line",
            Field::SyslogHeader => "syslog_header",
            Field::Timestamp => "timestamp",
            Field::FilterHash => "filter_hash",
            Field::AddressFamily => "af",
            Field::Reason => "reason",
            Field::Rule => "rule",
            Field::Direction => "direction",
            Field::Protocol => "protocol",
            Field::Endpoints => "endpoints",
            Field::Counters => "counters",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a line is not a DFW packet-log line: which field, where, and why.
///
/// `start..end` is the byte range of the offending token in the line (empty at the end of the
/// line); [`ParseError::token`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} (byte {start}): {reason}")]
pub struct ParseError {
    /// The field being parsed.
    pub field: Field,
    /// Byte offset of the offending token.
    pub start: usize,
    /// Byte offset just past the offending token.
    pub end: usize,
    /// Why it was refused.
    pub reason: &'static str,
}

impl ParseError {
    /// The offending token, cut out of the line that was parsed.
    pub fn token<'l>(&self, line: &'l str) -> &'l str {
        line.get(self.start..self.end).unwrap_or("")
    }
}

/// `INET` or `INET6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
}

impl AddressFamily {
    /// The log token.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Inet => "INET",
            AddressFamily::Inet6 => "INET6",
        }
    }
}

macro_rules! token_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }
        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];
            /// The log token.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
            /// Parses the exact log token.
            pub fn from_token(t: &str) -> Option<Self> {
                match t { $($s => Some($name::$v),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

token_enum! {
    /// Why the line was logged (field 4 of §9).
    Reason {
        /// A rule matched the first packet of a session.
        Match = "match",
        /// Bad offset.
        BadOffset = "bad-offset",
        /// Fragment.
        Fragment = "fragment",
        /// Short packet.
        Short = "short",
        /// Normalisation.
        Normalize = "normalize",
        /// Out of memory.
        Memory = "memory",
        /// Bad timestamp.
        BadTimestamp = "bad-timestamp",
        /// Protocol checksum.
        ProtoCksum = "proto-cksum",
        /// State mismatch.
        StateMismatch = "state-mismatch",
        /// State insert failure.
        StateInsert = "state-insert",
        /// State table limit.
        StateLimit = "state-limit",
        /// SpoofGuard.
        SpoofGuard = "SpoofGuard",
        /// Session end, with counters.
        Term = "TERM",
    }
}

token_enum! {
    /// What the datapath did (field 5 of §9; DFW ALLOW is `PASS`).
    Action {
        /// Allowed.
        Pass = "PASS",
        /// Dropped.
        Drop = "DROP",
        /// Rejected.
        Reject = "REJECT",
        /// NAT.
        Nat = "NAT",
        /// No NAT.
        Nonat = "NONAT",
        /// Redirect (RDR).
        Rdr = "RDR",
        /// No redirect.
        Nordr = "NORDR",
        /// Punted.
        Punt = "PUNT",
        /// Redirected.
        Redirect = "REDIRECT",
        /// Copied.
        Copy = "COPY",
    }
}

token_enum! {
    /// `IN` or `OUT`, from the vNIC's point of view.
    Direction {
        /// Into the vNIC.
        In = "IN",
        /// Out of the vNIC.
        Out = "OUT",
    }
}

token_enum! {
    /// How a session ended (TERM lines).
    CloseReason {
        /// TCP reset.
        Rst = "RST",
        /// TCP FIN.
        Fin = "FIN",
        /// Idle timeout.
        Timeout = "TIMEOUT",
    }
}

/// `<pkts_in>/<pkts_out> <bytes_in>/<bytes_out>` of a TERM line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Packets in.
    pub pkts_in: u64,
    /// Packets out.
    pub pkts_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
}

/// The syslog framing in front of (or around) the timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogHeader<'a> {
    /// RFC 3164 with an ISO timestamp: `[<pri>]<ts> [<host>] [<Sev>(<n>)] <app>[\[<procid>\]]:`.
    /// Also the ESXi 8 local form `<ts> No(13) FIREWALL-PKTLOG[1069031]:` and the Log Insight
    /// `text` form `<ts> esx01 dfwpktlogs:`.
    Rfc3164 {
        /// `<pri>` glued to the timestamp, when present.
        pri: Option<u8>,
        /// Host name.
        host: Option<&'a str>,
        /// ESXi 8 severity token such as `No(13)`, kept verbatim.
        severity: Option<&'a str>,
        /// Program name (`dfwpktlogs`, `FIREWALL_PKTLOG`, `FIREWALL-PKTLOG`); absent when
        /// `<pri><ts>` is followed directly by the message.
        app: Option<&'a str>,
        /// `[pid]` after the program name.
        procid: Option<&'a str>,
    },
    /// RFC 5424: `<pri>1 <ts> <host> <app> <procid> <msgid> <sd>`; `-` is `None`.
    Rfc5424 {
        /// PRI.
        pri: u8,
        /// HOSTNAME.
        host: Option<&'a str>,
        /// APP-NAME.
        app: Option<&'a str>,
        /// PROCID.
        procid: Option<&'a str>,
        /// MSGID.
        msgid: Option<&'a str>,
        /// STRUCTURED-DATA, raw (`[id k="v"]...`).
        structured_data: Option<&'a str>,
    },
}

impl<'a> SyslogHeader<'a> {
    /// The host name, if the header carries one.
    pub fn host(&self) -> Option<&'a str> {
        match *self {
            SyslogHeader::Rfc3164 { host, .. } | SyslogHeader::Rfc5424 { host, .. } => host,
        }
    }

    /// The program name, if the header carries one.
    pub fn app(&self) -> Option<&'a str> {
        match *self {
            SyslogHeader::Rfc3164 { app, .. } | SyslogHeader::Rfc5424 { app, .. } => app,
        }
    }
}

/// Extra annotations (FQDN, App-ID, ...): one slice of the line, tokens separated by spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Extras<'a>(pub &'a str);

impl<'a> Extras<'a> {
    /// The tokens.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.0.split(' ').filter(|t| !t.is_empty())
    }

    /// No extras.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a record's [`LogRecord::time`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeSource {
    /// The line's own leading timestamp (the plain `dfwpktlogs.log` line).
    Line,
    /// The timestamp of the line's syslog header (RFC 3164, ESXi 8 local form, RFC 5424).
    SyslogHeader,
    /// The envelope the line came in (a Log Insight message's `timestamp`): the line has none.
    Envelope,
    /// The time microseg received the line: neither the line nor an envelope had one.
    Receipt,
}

impl TimeSource {
    /// Every value.
    pub const ALL: &'static [TimeSource] = &[
        TimeSource::Line,
        TimeSource::SyslogHeader,
        TimeSource::Envelope,
        TimeSource::Receipt,
    ];

    /// Stable snake_case name (JSON, summaries).
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeSource::Line => "line",
            TimeSource::SyslogHeader => "syslog_header",
            TimeSource::Envelope => "envelope",
            TimeSource::Receipt => "receipt",
        }
    }

    /// The source of a timestamp written in a line with this framing.
    pub const fn written(syslog: Option<SyslogHeader<'_>>) -> Self {
        match syslog {
            None => TimeSource::Line,
            Some(_) => TimeSource::SyslogHeader,
        }
    }
}

impl fmt::Display for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a line reached us: the times that stand in when the line carries no timestamp.
///
/// The parser reads no clock; the caller (the ingestion endpoint, `parse-log`) passes the time it
/// received the line, and the envelope's time when the line came in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arrival {
    /// The envelope's time (Log Insight message `timestamp`), when it has one.
    pub envelope: Option<jiff::Timestamp>,
    /// When microseg received the line; `None` offline (no receipt to speak of).
    pub received: Option<jiff::Timestamp>,
}

impl Arrival {
    /// No envelope and no receipt time: a line must carry its own timestamp.
    pub const NONE: Arrival = Arrival {
        envelope: None,
        received: None,
    };

    /// Received at `at`, no envelope.
    pub const fn received(at: jiff::Timestamp) -> Self {
        Arrival {
            envelope: None,
            received: Some(at),
        }
    }

    /// The same, in an envelope with (or without) a time of its own.
    pub const fn with_envelope(self, envelope: Option<jiff::Timestamp>) -> Self {
        Arrival { envelope, ..self }
    }
}

/// One parsed DFW packet-log line; fields as named in `nsx-policy-api.md` §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// Syslog framing, when the line has one.
    pub syslog: Option<SyslogHeader<'a>>,
    /// The timestamp as written; `None` when the line has none (the message body alone, RFC 5424
    /// nil TIMESTAMP).
    pub timestamp: Option<&'a str>,
    /// When the packet was logged: the written timestamp, else the envelope's or receipt time.
    pub time: jiff::Timestamp,
    /// Where [`LogRecord::time`] came from.
    pub time_source: TimeSource,
    /// Filter hash (vNIC), absent in some RFC 5424 forwards.
    pub filter_hash: Option<&'a str>,
    /// `INET` or `INET6`.
    pub af: AddressFamily,
    /// Why the line was logged.
    pub reason: Reason,
    /// What the datapath did; absent on 3.x TERM lines.
    pub action: Option<Action>,
    /// Ruleset prefix (`mainrs`, `domain-c7`), when written.
    pub ruleset: Option<&'a str>,
    /// NSX `rule_id`.
    pub rule_id: u32,
    /// `IN` or `OUT`.
    pub direction: Direction,
    /// IP length; absent on TERM lines.
    pub length: Option<u32>,
    /// Protocol.
    pub protocol: Protocol,
    /// Close reason (TERM lines).
    pub close_reason: Option<CloseReason>,
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// TCP flags of match lines (`S`, `SA`, `SEW`).
    pub tcp_flags: Option<&'a str>,
    /// Packet and byte counters (TERM lines).
    pub counters: Option<Counters>,
    /// Extra annotations.
    pub extras: Extras<'a>,
    /// Rule tag, the last token when the rule has one.
    pub rule_tag: Option<&'a str>,
}

impl<'a> LogRecord<'a> {
    /// Host name from the syslog header.
    pub fn host(&self) -> Option<&'a str> {
        self.syslog.and_then(|h| h.host())
    }
}

/// Space-separated token cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        let b = self.s.as_bytes();
        while self.pos < b.len() && (b[self.pos] == b' ' || b[self.pos] == b'\t') {
            self.pos += 1;
        }
    }

    /// Next token and its start offset, without consuming it.
    fn peek(&self) -> Option<(usize, &'a str)> {
        let b = self.s.as_bytes();
        let mut start = self.pos;
        while start < b.len() && (b[start] == b' ' || b[start] == b'\t') {
            start += 1;
        }
        if start >= b.len() {
            return None;
        }
        let end = b[start..]
            .iter()
            .position(|&c| c == b' ' || c == b'\t')
            .map_or(b.len(), |n| start + n);
        Some((start, self.s.get(start..end).unwrap_or("")))
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let t = self.peek()?;
        self.pos = t.0 + t.1.len();
        Some(t)
    }

    fn err(&self, field: Field, reason: &'static str) -> ParseError {
        ParseError {
            field,
            start: self.s.len(),
            end: self.s.len(),
            reason,
        }
    }

    /// Next token or an "ends early" error for `field`.
    fn expect(
        &mut self,
        field: Field,
        reason: &'static str,
    ) -> Result<(usize, &'a str), ParseError> {
        self.next().ok_or_else(|| self.err(field, reason))
    }
}

fn tok_err(field: Field, (start, t): (usize, &str), reason: &'static str) -> ParseError {
    ParseError {
        field,
        start,
        end: start + t.len(),
        reason,
    }
}

fn is_af(t: &str) -> bool {
    t == "INET" || t == "INET6"
}

fn is_hex(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|c| c.is_ascii_hexdigit())
}

fn is_filter_hash(t: &str) -> bool {
    is_hex(t) && t.len() <= 16
}

/// ESXi 8 severity token: two letters then `(<digits>)`, e.g. `No(13)`, `In(182)`.
fn is_esxi_severity(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 5
        && b.len() <= 7
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_lowercase()
        && b[2] == b'('
        && b[b.len() - 1] == b')'
        && b[3..b.len() - 1].iter().all(u8::is_ascii_digit)
}

/// TCP flag letters: `S A P U F R E W C`, at most 9.
pub fn is_tcp_flags(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 9
        && t.bytes().all(|c| {
            matches!(
                c,
                b'S' | b'A' | b'P' | b'U' | b'F' | b'R' | b'E' | b'W' | b'C'
            )
        })
}

/// L7 App-ID such as `APP_DNS`.
pub fn is_app_id(t: &str) -> bool {
    t.len() > 4
        && t.starts_with("APP_")
        && t.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// Whether a token would be read as a rule tag when it comes last (see the module docs).
pub fn is_rule_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_RULE_TAG_LEN
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        && !is_app_id(t)
}

fn parse_u8_dec(t: &str) -> Option<u8> {
    if t.is_empty() || t.len() > 3 || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn all_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())
}

/// `<n>/<n>` counter pair.
fn counter_pair(t: &str) -> Option<(u64, u64)> {
    let (a, b) = t.split_once('/')?;
    if !all_digits(a) || !all_digits(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `<pri>` at the start of the line: returns (pri, bytes consumed).
fn syslog_pri(line: &str) -> Result<Option<(u8, usize)>, ParseError> {
    let b = line.as_bytes();
    if b.first() != Some(&b'<') {
        return Ok(None);
    }
    let close = b.iter().take(5).position(|&c| c == b'>');
    let err = |reason| ParseError {
        field: Field::SyslogHeader,
        start: 0,
        end: close.map_or(b.len().min(5), |c| c + 1),
        reason,
    };
    let Some(close) = close else {
        return Err(err("<pri> is not closed by '>' within 3 digits"));
    };
    let pri = parse_u8_dec(line.get(1..close).unwrap_or(""))
        .filter(|p| *p <= 191)
        .ok_or_else(|| err("<pri> must be a number from 0 to 191"))?;
    Ok(Some((pri, close + 1)))
}

fn nil(t: &str) -> Option<&str> {
    if t == "-" { None } else { Some(t) }
}

/// Whether a token is meant as a timestamp: an RFC 3164 month name (refused below) or four
/// digits and `-` (ISO-8601, checked below). Filter hashes, host names and `INET` are not.
fn is_timestamp_like(t: &str) -> bool {
    let b = t.as_bytes();
    MONTHS.contains(&t) || (b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn timestamp(tok: (usize, &str)) -> Result<(&str, jiff::Timestamp), ParseError> {
    let t = tok.1;
    // Cheap shape check first so that random text fails fast and clearly.
    let b = t.as_bytes();
    if MONTHS.contains(&t) {
        return Err(tok_err(
            Field::Timestamp,
            tok,
            "RFC 3164 BSD timestamp (no year, no zone) is not supported; send ISO-8601 (ESXi does) or RFC 5424",
        ));
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return Err(tok_err(
            Field::Timestamp,
            tok,
            "expected an ISO-8601 timestamp with offset, like 2018-07-03T19:44:09.749Z",
        ));
    }
    if let Some(time) = fast_utc_millis(b) {
        return Ok((t, time));
    }
    let time = t.parse::<jiff::Timestamp>().map_err(|_| {
        tok_err(
            Field::Timestamp,
            tok,
            "not a valid ISO-8601 instant (date, time and Z or offset)",
        )
    })?;
    Ok((t, time))
}

/// Fast path for the form DFW logs use, `YYYY-MM-DDTHH:MM:SS.mmmZ`; anything else (or an invalid
/// date) goes to jiff's full ISO-8601 parser.
fn fast_utc_millis(b: &[u8]) -> Option<jiff::Timestamp> {
    if b.len() != 24 || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        let mut n = 0i32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i32::from(c - b'0');
        }
        Some(n)
    };
    let dt = jiff::civil::DateTime::new(
        i16::try_from(num(0..4)?).ok()?,
        i8::try_from(num(5..7)?).ok()?,
        i8::try_from(num(8..10)?).ok()?,
        i8::try_from(num(11..13)?).ok()?,
        i8::try_from(num(14..16)?).ok()?,
        i8::try_from(num(17..19)?).ok()?,
        num(20..23)? * 1_000_000,
    )
    .ok()?;
    jiff::tz::Offset::UTC.to_timestamp(dt).ok()
}

/// RFC 5424 STRUCTURED-DATA: `-` or one or more `[...]` elements (quoted values may hold spaces,
/// `\]` and `\"`). Returns the raw slice, advancing the cursor.
fn structured_data<'a>(c: &mut Cursor<'a>) -> Result<Option<&'a str>, ParseError> {
    c.skip_spaces();
    let start = c.pos;
    let b = c.s.as_bytes();
    match b.get(start) {
        None => {
            return Err(c.err(
                Field::SyslogHeader,
                "RFC 5424 header ends before STRUCTURED-DATA",
            ));
        }
        Some(b'-') if matches!(b.get(start + 1), None | Some(b' ') | Some(b'\t')) => {
            c.pos = start + 1;
            return Ok(None);
        }
        Some(b'[') => {}
        Some(_) => {
            let tok = c.peek().unwrap_or((start, ""));
            return Err(tok_err(
                Field::SyslogHeader,
                tok,
                "RFC 5424 STRUCTURED-DATA must be '-' or start with '['",
            ));
        }
    }
    let mut i = start;
    let mut in_quotes = false;
    loop {
        // At the start of an element.
        if b.get(i) != Some(&b'[') {
            break;
        }
        i += 1;
        loop {
            match b.get(i) {
                None => {
                    return Err(ParseError {
                        field: Field::SyslogHeader,
                        start,
                        end: b.len(),
                        reason: "RFC 5424 STRUCTURED-DATA element is not closed by ']'",
                    });
                }
                Some(b'\\') if in_quotes => i += 2,
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                Some(b']') if !in_quotes => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    let end = i.min(b.len());
    if !matches!(b.get(end), None | Some(b' ') | Some(b'\t')) {
        return Err(ParseError {
            field: Field::SyslogHeader,
            start,
            end,
            reason: "RFC 5424 STRUCTURED-DATA must be followed by a space",
        });
    }
    c.pos = end;
    Ok(c.s.get(start..end))
}

/// `app[procid]:` → (app, procid).
fn rfc3164_tag(tok: (usize, &str)) -> Result<(&str, Option<&str>), ParseError> {
    let t = tok.1;
    let Some(body) = t.strip_suffix(':') else {
        return Err(tok_err(
            Field::SyslogHeader,
            tok,
            "expected the syslog tag 'app:' or 'app[pid]:'",
        ));
    };
    let (app, procid) = match body.strip_suffix(']') {
        Some(inner) => match inner.split_once('[') {
            Some((app, pid)) if !pid.is_empty() && !pid.contains(['[', ']']) => (app, Some(pid)),
            _ => {
                return Err(tok_err(
                    Field::SyslogHeader,
                    tok,
                    "syslog tag has an unbalanced '[pid]'",
                ));
            }
        },
        None => (body, None),
    };
    if app.is_empty() || app.contains(['[', ']']) {
        return Err(tok_err(
            Field::SyslogHeader,
            tok,
            "syslog tag has an empty or malformed program name",
        ));
    }
    Ok((app, procid))
}

/// Parses one DFW packet-log line that carries its own timestamp (trailing spaces, tabs, `\r` and
/// `\n` ignored). A line without one (the message body alone) is refused with field `timestamp`:
/// use [`parse_line_with`] and say when the line arrived. Never panics.
pub fn parse_line(line: &str) -> Result<LogRecord<'_>, ParseError> {
    parse_line_with(line, Arrival::NONE)
}

/// Whether `line` is a DFW packet-log line, with or without a timestamp of its own.
pub fn is_dfw_line(line: &str) -> bool {
    parse_line_with(line, Arrival::received(jiff::Timestamp::UNIX_EPOCH)).is_ok()
}

/// Parses one DFW packet-log line, with or without a timestamp (see the module docs); a line
/// without one takes its time from `arrival` (the envelope's, else the receipt time) and is
/// refused, with field `timestamp`, only when `arrival` has neither. Trailing spaces, tabs, `\r`
/// and `\n` are ignored. Never panics.
pub fn parse_line_with(line: &str, arrival: Arrival) -> Result<LogRecord<'_>, ParseError> {
    let line = line.trim_end_matches([' ', '\t', '\n', '\r']);
    let pri = syslog_pri(line)?;
    let mut c = Cursor {
        s: line,
        pos: pri.map_or(0, |p| p.1),
    };
    let (ts_tok, mut syslog) = header_start(line, &mut c, pri)?;
    let written = ts_tok.map(timestamp).transpose()?;

    if syslog.is_none() {
        syslog = rfc3164_header(line, &mut c, pri, written.is_some())?;
    }
    let message_start = c.peek().map_or(line.len(), |t| t.0);

    // [filter-hash] AF
    let mut tok = c.expect(Field::FilterHash, "line ends before the filter hash")?;
    let mut filter_hash = None;
    if !is_af(tok.1) {
        if !is_filter_hash(tok.1) {
            return Err(tok_err(
                Field::FilterHash,
                tok,
                "expected up to 16 hex digits or INET/INET6",
            ));
        }
        filter_hash = Some(tok.1);
        tok = c.expect(Field::AddressFamily, "line ends before INET/INET6")?;
    }
    let af = match tok.1 {
        "INET" => AddressFamily::Inet,
        "INET6" => AddressFamily::Inet6,
        _ => return Err(tok_err(Field::AddressFamily, tok, "expected INET or INET6")),
    };

    let tok = c.expect(Field::Reason, "line ends before the reason")?;
    let reason = Reason::from_token(tok.1).ok_or_else(|| {
        tok_err(
            Field::Reason,
            tok,
            "expected match, TERM or another DFW reason code",
        )
    })?;

    let (action, ruleset, rule_id) = rule(&mut c)?;

    let tok = c.expect(Field::Direction, "line ends before the direction")?;
    let direction = Direction::from_token(tok.1)
        .ok_or_else(|| tok_err(Field::Direction, tok, "expected IN or OUT"))?;

    let (length, protocol) = length_and_protocol(&mut c)?;

    let mut tok = c.expect(Field::Endpoints, "line ends before the endpoints")?;
    let close_reason = CloseReason::from_token(tok.1);
    if close_reason.is_some() {
        tok = c.expect(Field::Endpoints, "line ends before the endpoints")?;
    }
    let (src, src_port, dst, dst_port) = endpoints(tok, af)?;

    let (tcp_flags, counters) = flags_and_counters(&mut c, protocol, reason)?;

    let (extras, rule_tag) = extras_and_tag(line, &mut c);

    let (timestamp, (time, time_source)) = time_of(written, syslog, arrival, message_start)?;

    Ok(LogRecord {
        syslog,
        timestamp,
        time,
        time_source,
        filter_hash,
        af,
        reason,
        action,
        ruleset,
        rule_id,
        direction,
        length,
        protocol,
        close_reason,
        src,
        src_port,
        dst,
        dst_port,
        tcp_flags,
        counters,
        extras: Extras(extras),
        rule_tag,
    })
}

/// The RFC 5424 header, or the timestamp token that starts a line without one: the timestamp
/// token (if any) and the syslog header read so far.
#[allow(clippy::type_complexity)]
fn header_start<'a>(
    line: &'a str,
    c: &mut Cursor<'a>,
    pri: Option<(u8, usize)>,
) -> Result<(Option<(usize, &'a str)>, Option<SyslogHeader<'a>>), ParseError> {
    let mut ts_tok = None;
    let mut syslog = None;
    let rfc5424 = pri.is_some() && line.as_bytes().get(c.pos..c.pos + 2) == Some(b"1 ");
    if let (true, Some((pri, _))) = (rfc5424, pri) {
        c.pos += 1;
        let ts = c.expect(Field::Timestamp, "RFC 5424 header ends before TIMESTAMP")?;
        // `-`: the nil TIMESTAMP (a relay that does not know the time).
        ts_tok = (ts.1 != "-").then_some(ts);
        let host = c.expect(Field::SyslogHeader, "RFC 5424 header ends before HOSTNAME")?;
        let app = c.expect(Field::SyslogHeader, "RFC 5424 header ends before APP-NAME")?;
        let procid = c.expect(Field::SyslogHeader, "RFC 5424 header ends before PROCID")?;
        let msgid = c.expect(Field::SyslogHeader, "RFC 5424 header ends before MSGID")?;
        let sd = structured_data(c)?;
        // An optional UTF-8 BOM starts MSG.
        c.skip_spaces();
        if line.get(c.pos..).is_some_and(|r| r.starts_with('\u{feff}')) {
            c.pos += '\u{feff}'.len_utf8();
        }
        syslog = Some(SyslogHeader::Rfc5424 {
            pri,
            host: nil(host.1),
            app: nil(app.1),
            procid: nil(procid.1),
            msgid: nil(msgid.1),
            structured_data: sd,
        });
    } else {
        if pri.is_some() && line.as_bytes().get(c.pos) == Some(&b' ') {
            return Err(ParseError {
                field: Field::Timestamp,
                start: c.pos,
                end: c.pos + 1,
                reason: "RFC 3164 timestamp or header must follow <pri> directly",
            });
        }
        let first = c.peek().ok_or_else(|| {
            c.err(
                Field::Line,
                if pri.is_some() {
                    "line ends after <pri>"
                } else {
                    "empty line"
                },
            )
        })?;
        if is_timestamp_like(first.1) {
            c.next();
            ts_tok = Some(first);
        }
    }
    Ok((ts_tok, syslog))
}

/// RFC 3164-style tokens between the timestamp and the message: `[host] [Sev(n)] app[pid]:`
/// (none when the message starts right away).
fn rfc3164_header<'a>(
    line: &'a str,
    c: &mut Cursor<'a>,
    pri: Option<(u8, usize)>,
    has_timestamp: bool,
) -> Result<Option<SyslogHeader<'a>>, ParseError> {
    let mut syslog = None;
    {
        let t1 = c.peek().ok_or_else(|| {
            c.err(
                Field::Line,
                if has_timestamp {
                    "line ends after the timestamp"
                } else {
                    "line ends after <pri>"
                },
            )
        })?;
        let t2_is_af = {
            let mut look = Cursor {
                s: line,
                pos: t1.0 + t1.1.len(),
            };
            look.next().is_some_and(|t| is_af(t.1))
        };
        let message_starts_here = is_af(t1.1) || (t2_is_af && !t1.1.ends_with(':'));
        if message_starts_here {
            if let Some((pri, _)) = pri {
                syslog = Some(SyslogHeader::Rfc3164 {
                    pri: Some(pri),
                    host: None,
                    severity: None,
                    app: None,
                    procid: None,
                });
            }
        } else {
            if is_filter_hash(t1.1) {
                let mut look = Cursor {
                    s: line,
                    pos: t1.0 + t1.1.len(),
                };
                if let Some(t2) = look.next()
                    && !t2.1.ends_with(':')
                    && !is_esxi_severity(t2.1)
                {
                    return Err(tok_err(
                        Field::AddressFamily,
                        t2,
                        "expected INET or INET6 after the filter hash",
                    ));
                }
            }
            if !has_timestamp {
                // No timestamp: a header is only taken as one when its tag comes within three
                // tokens ([host] [Sev(n)] app[pid]:); anything else is not a DFW line at all.
                let mut look = Cursor {
                    s: line,
                    pos: c.pos,
                };
                let has_tag = (0..3).any(|_| look.next().is_some_and(|t| t.1.ends_with(':')));
                if !has_tag {
                    return Err(tok_err(
                        Field::Timestamp,
                        t1,
                        "expected an ISO-8601 timestamp, a syslog header (host app[pid]:) or the \
                         DFW message (filter hash, then INET or INET6)",
                    ));
                }
            }
            let mut host = None;
            let mut severity = None;
            let mut tok = c.expect(Field::SyslogHeader, "line ends in the syslog header")?;
            if !tok.1.ends_with(':') && !is_esxi_severity(tok.1) {
                host = Some(tok.1);
                tok = c.expect(Field::SyslogHeader, "line ends in the syslog header")?;
            }
            if is_esxi_severity(tok.1) {
                severity = Some(tok.1);
                tok = c.expect(Field::SyslogHeader, "line ends in the syslog header")?;
            }
            let (app, procid) = rfc3164_tag(tok)?;
            syslog = Some(SyslogHeader::Rfc3164 {
                pri: pri.map(|p| p.0),
                host,
                severity,
                app: Some(app),
                procid,
            });
        }
    }
    Ok(syslog)
}

/// `[action] [ruleset/]rule-id`.
fn rule<'a>(c: &mut Cursor<'a>) -> Result<(Option<Action>, Option<&'a str>, u32), ParseError> {
    let mut tok = c.expect(Field::Rule, "line ends before the rule")?;
    let action = Action::from_token(tok.1);
    if action.is_some() {
        tok = c.expect(Field::Rule, "line ends before the rule")?;
    }
    let (ruleset, id) = match tok.1.rsplit_once('/') {
        Some((rs, id)) if !rs.is_empty() => (Some(rs), id),
        Some(_) => return Err(tok_err(Field::Rule, tok, "empty ruleset before '/'")),
        None => (None, tok.1),
    };
    if !all_digits(id) {
        return Err(tok_err(
            Field::Rule,
            tok,
            "expected an action (PASS, DROP, ...) or a rule id like 1024 or mainrs/1024",
        ));
    }
    let rule_id: u32 = id
        .parse()
        .map_err(|_| tok_err(Field::Rule, tok, "rule id does not fit in 32 bits"))?;

    Ok((action, ruleset, rule_id))
}

/// `[length] protocol` (`PROTO <n>` for any other protocol).
fn length_and_protocol(c: &mut Cursor<'_>) -> Result<(Option<u32>, Protocol), ParseError> {
    let mut tok = c.expect(Field::Protocol, "line ends before the protocol")?;
    let mut length = None;
    if all_digits(tok.1) {
        length = Some(tok.1.parse::<u32>().map_err(|_| {
            tok_err(
                Field::Protocol,
                tok,
                "packet length does not fit in 32 bits",
            )
        })?);
        tok = c.expect(Field::Protocol, "line ends before the protocol")?;
    }
    let protocol = match tok.1 {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "ICMP" => Protocol::Icmp,
        "PROTO" => {
            let n = c.expect(Field::Protocol, "line ends after PROTO")?;
            Protocol::Other(parse_u8_dec(n.1).ok_or_else(|| {
                tok_err(
                    Field::Protocol,
                    n,
                    "PROTO must be followed by a number from 0 to 255",
                )
            })?)
        }
        _ => {
            return Err(tok_err(
                Field::Protocol,
                tok,
                "expected a packet length, TCP, UDP, ICMP or PROTO <n>",
            ));
        }
    };

    Ok((length, protocol))
}

/// TCP flags (not on a TERM line) and the packet and byte counters, when present.
fn flags_and_counters<'a>(
    c: &mut Cursor<'a>,
    protocol: Protocol,
    reason: Reason,
) -> Result<(Option<&'a str>, Option<Counters>), ParseError> {
    let mut tcp_flags = None;
    let mut counters = None;
    if protocol == Protocol::Tcp
        && reason != Reason::Term
        && let Some(t) = c.peek()
        && is_tcp_flags(t.1)
    {
        tcp_flags = Some(t.1);
        c.next();
    }
    if let Some(first) = c.peek()
        && let Some((pkts_in, pkts_out)) = counter_pair(first.1)
    {
        c.next();
        let second = c.expect(Field::Counters, "packet counters without byte counters")?;
        let (bytes_in, bytes_out) = counter_pair(second.1)
            .ok_or_else(|| tok_err(Field::Counters, second, "expected <bytes_in>/<bytes_out>"))?;
        counters = Some(Counters {
            pkts_in,
            pkts_out,
            bytes_in,
            bytes_out,
        });
    }

    Ok((tcp_flags, counters))
}

/// Free tokens: extras, then the rule tag when the last one looks like a tag.
fn extras_and_tag<'a>(line: &'a str, c: &mut Cursor<'a>) -> (&'a str, Option<&'a str>) {
    c.skip_spaces();
    let rest = line
        .get(c.pos..)
        .unwrap_or("")
        .trim_end_matches([' ', '\t']);
    match rest.rfind([' ', '\t']) {
        None if rest.is_empty() => ("", None),
        None if is_rule_tag(rest) => ("", Some(rest)),
        None => (rest, None),
        Some(i) => {
            let last = rest.get(i + 1..).unwrap_or("");
            if is_rule_tag(last) {
                (
                    rest.get(..i).unwrap_or("").trim_end_matches([' ', '\t']),
                    Some(last),
                )
            } else {
                (rest, None)
            }
        }
    }
}

/// The line's time: written in it, else the envelope's, else the receipt time.
#[allow(clippy::type_complexity)]
fn time_of<'a>(
    written: Option<(&'a str, jiff::Timestamp)>,
    syslog: Option<SyslogHeader<'_>>,
    arrival: Arrival,
    message_start: usize,
) -> Result<(Option<&'a str>, (jiff::Timestamp, TimeSource)), ParseError> {
    Ok(match written {
        Some((text, time)) => (Some(text), (time, TimeSource::written(syslog))),
        None => (
            None,
            match (arrival.envelope, arrival.received) {
                (Some(t), _) => (t, TimeSource::Envelope),
                (None, Some(t)) => (t, TimeSource::Receipt),
                (None, None) => {
                    return Err(ParseError {
                        field: Field::Timestamp,
                        start: message_start,
                        end: message_start,
                        reason: "the line has no timestamp (the message body alone) and no \
                                 envelope or receipt time was given",
                    });
                }
            },
        ),
    })
}

/// `src[/sport]->dst[/dport]`.
fn endpoints(
    tok: (usize, &str),
    af: AddressFamily,
) -> Result<(IpAddr, Option<u16>, IpAddr, Option<u16>), ParseError> {
    let Some((s, d)) = tok.1.split_once("->") else {
        return Err(tok_err(
            Field::Endpoints,
            tok,
            "expected src[/port]->dst[/port]",
        ));
    };
    let (src, sport) = endpoint(s, af).map_err(|r| tok_err(Field::Endpoints, tok, r))?;
    let (dst, dport) = endpoint(d, af).map_err(|r| tok_err(Field::Endpoints, tok, r))?;
    Ok((src, sport, dst, dport))
}

fn endpoint(t: &str, af: AddressFamily) -> Result<(IpAddr, Option<u16>), &'static str> {
    let (ip, port) = match t.split_once('/') {
        Some((ip, port)) => {
            if !all_digits(port) {
                return Err("port is not a number");
            }
            (
                ip,
                Some(port.parse::<u16>().map_err(|_| "port is above 65535")?),
            )
        }
        None => (t, None),
    };
    let ip = match af {
        AddressFamily::Inet => IpAddr::V4(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| "not an IPv4 address (line says INET)")?,
        ),
        AddressFamily::Inet6 => IpAddr::V6(
            ip.parse::<Ipv6Addr>()
                .map_err(|_| "not an IPv6 address (line says INET6)")?,
        ),
    };
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamp_path_agrees_with_jiff() {
        for t in [
            "2018-07-03T19:44:09.749Z",
            "2024-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "2026-03-03t00:02:11.678Z",
        ] {
            let fast = fast_utc_millis(t.as_bytes());
            assert_eq!(fast, Some(t.parse::<jiff::Timestamp>().unwrap()), "{t}");
        }
        // Invalid or out of range: the fast path declines, and jiff refuses too.
        for t in [
            "2023-02-29T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            assert_eq!(fast_utc_millis(t.as_bytes()), None, "{t}");
            assert!(t.parse::<jiff::Timestamp>().is_err(), "{t}");
        }
        // Other forms go to jiff.
        assert_eq!(fast_utc_millis(b"2024-01-01T00:00:00.000z"), None);
    }

    #[test]
    fn rule_tag_rule_excludes_app_ids_and_non_tag_characters() {
        assert!(is_rule_tag("DR-Allow"));
        assert!(is_rule_tag("web_allow-https"));
        assert!(!is_rule_tag("APP_DNS"));
        assert!(!is_rule_tag("www.example.com(uuid)"));
        assert!(!is_rule_tag(&"x".repeat(MAX_RULE_TAG_LEN + 1)));
        assert!(is_tcp_flags("SEW") && !is_tcp_flags("SYN"));
    }
}
