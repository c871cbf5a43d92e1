//! DFW packet-log line formatter (pure): the inverse of [`super::parse`].
//!
//! Owns writing a [`LogRecord`] back into the §9 layout it describes. The layout variant is part
//! of the record itself: the syslog header kind ([`SyslogHeader`]; `None` for the plain
//! `dfwpktlogs.log` line), the ruleset prefix, the optional action on TERM lines, the length,
//! flags, counters, extras and rule tag. [`builder`] helps the simulator and tests assemble
//! records for each NSX version's layout.
//!
//! It must not do IO or read the clock. For every record the parser can produce,
//! `parse_line_with(&format_line(r), arrival) == Ok(r)` for the
//! [`Arrival`](super::parse::Arrival) it was parsed with (only a record without a written
//! timestamp depends on it): the property test in `tests/it/monitor_roundtrip.rs`.
//! IPv6 addresses are written as NSX writes them: eight hex groups, no `::` compression.

use std::fmt;
use std::net::IpAddr;

use super::parse::{LogRecord, SyslogHeader};

/// Formats a record as one log line (no trailing newline).
pub fn format_line(r: &LogRecord<'_>) -> String {
    let mut s = String::with_capacity(160);
    // Writing into a String cannot fail.
    let _ = write_line(r, &mut s);
    s
}

/// Writes a record as one log line (no trailing newline) into any `fmt::Write`. A record without
/// a written timestamp (`timestamp: None`) is written without one: the message body alone, or its
/// RFC 3164 header without the timestamp, or RFC 5424 with the nil TIMESTAMP `-`.
pub fn write_line(r: &LogRecord<'_>, w: &mut impl fmt::Write) -> fmt::Result {
    // `<pri>` is glued to what follows; every other token is preceded by a space but the first.
    let mut t = Tokens { w, started: false };
    match r.syslog {
        None => t.opt(r.timestamp)?,
        Some(SyslogHeader::Rfc3164 {
            pri,
            host,
            severity,
            app,
            procid,
        }) => {
            if let Some(pri) = pri {
                write!(t.w, "<{pri}>")?;
            }
            t.opt(r.timestamp)?;
            t.opt(host)?;
            t.opt(severity)?;
            if let Some(app) = app {
                match procid {
                    Some(pid) => t.tok(format_args!("{app}[{pid}]:"))?,
                    None => t.tok(format_args!("{app}:"))?,
                }
            }
        }
        Some(SyslogHeader::Rfc5424 {
            pri,
            host,
            app,
            procid,
            msgid,
            structured_data,
        }) => {
            t.tok(format_args!("<{pri}>1"))?;
            t.tok(r.timestamp.unwrap_or("-"))?;
            for v in [host, app, procid, msgid, structured_data] {
                t.tok(v.unwrap_or("-"))?;
            }
        }
    }
    t.opt(r.filter_hash)?;
    t.tok(r.af.as_str())?;
    let w = t.w;
    write!(w, " {}", r.reason)?;
    if let Some(a) = r.action {
        write!(w, " {a}")?;
    }
    match r.ruleset {
        Some(rs) => write!(w, " {rs}/{}", r.rule_id)?,
        None => write!(w, " {}", r.rule_id)?,
    }
    write!(w, " {}", r.direction)?;
    if let Some(len) = r.length {
        write!(w, " {len}")?;
    }
    write!(w, " {}", r.protocol)?;
    if let Some(c) = r.close_reason {
        write!(w, " {c}")?;
    }
    w.write_char(' ')?;
    write_endpoint(w, r.src, r.src_port)?;
    w.write_str("->")?;
    write_endpoint(w, r.dst, r.dst_port)?;
    if let Some(f) = r.tcp_flags {
        write!(w, " {f}")?;
    }
    if let Some(c) = r.counters {
        write!(
            w,
            " {}/{} {}/{}",
            c.pkts_in, c.pkts_out, c.bytes_in, c.bytes_out
        )?;
    }
    if !r.extras.is_empty() {
        write!(w, " {}", r.extras.0)?;
    }
    if let Some(t) = r.rule_tag {
        write!(w, " {t}")?;
    }
    Ok(())
}

/// Writes an address the way NSX does (IPv6 uncompressed: `fe80:0:0:0:68c2:8472:2364:9be`).
pub fn write_ip(w: &mut impl fmt::Write, ip: IpAddr) -> fmt::Result {
    match ip {
        IpAddr::V4(v4) => write!(w, "{v4}"),
        IpAddr::V6(v6) => {
            for (i, seg) in v6.segments().iter().enumerate() {
                if i > 0 {
                    w.write_char(':')?;
                }
                write!(w, "{seg:x}")?;
            }
            Ok(())
        }
    }
}

/// Space-separated tokens.
struct Tokens<'w, W> {
    w: &'w mut W,
    started: bool,
}

impl<W: fmt::Write> Tokens<'_, W> {
    fn tok(&mut self, t: impl fmt::Display) -> fmt::Result {
        if self.started {
            self.w.write_char(' ')?;
        }
        self.started = true;
        write!(self.w, "{t}")
    }

    fn opt(&mut self, t: Option<&str>) -> fmt::Result {
        match t {
            Some(t) => self.tok(t),
            None => Ok(()),
        }
    }
}

fn write_endpoint(w: &mut impl fmt::Write, ip: IpAddr, port: Option<u16>) -> fmt::Result {
    write_ip(w, ip)?;
    if let Some(p) = port {
        write!(w, "/{p}")?;
    }
    Ok(())
}

/// Builders for records in each NSX layout, for the simulator and tests.
pub mod builder {
    use std::net::IpAddr;

    use crate::monitor::parse::{
        Action, AddressFamily, Counters, Direction, Extras, LogRecord, Protocol, Reason,
        SyslogHeader, TimeSource,
    };

    /// Which syslog framing to put around a line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Framing<'a> {
        /// The plain `dfwpktlogs.log` line.
        Plain,
        /// `<pri><ts> <host> dfwpktlogs: ...` (ESXi 6.x/7.x forwarding).
        EsxiSyslog {
            /// Host name.
            host: &'a str,
        },
        /// `<ts> No(13) FIREWALL-PKTLOG[<pid>]: ...` (ESXi 8 local file).
        Esxi8Local {
            /// Process id.
            pid: &'a str,
        },
        /// `<14>1 <ts> <host> FIREWALL-PKTLOG <pid> - - ...` (ESXi 8 / NSX 4 RFC 5424).
        Rfc5424 {
            /// Host name.
            host: &'a str,
            /// Process id.
            pid: &'a str,
        },
    }

    impl<'a> Framing<'a> {
        /// The header for this framing.
        pub fn header(self) -> Option<SyslogHeader<'a>> {
            match self {
                Framing::Plain => None,
                Framing::EsxiSyslog { host } => Some(SyslogHeader::Rfc3164 {
                    pri: Some(182),
                    host: Some(host),
                    severity: None,
                    app: Some("dfwpktlogs"),
                    procid: None,
                }),
                Framing::Esxi8Local { pid } => Some(SyslogHeader::Rfc3164 {
                    pri: None,
                    host: None,
                    severity: Some("No(13)"),
                    app: Some("FIREWALL-PKTLOG"),
                    procid: Some(pid),
                }),
                Framing::Rfc5424 { host, pid } => Some(SyslogHeader::Rfc5424 {
                    pri: 14,
                    host: Some(host),
                    app: Some("FIREWALL-PKTLOG"),
                    procid: Some(pid),
                    msgid: None,
                    structured_data: None,
                }),
            }
        }
    }

    /// A `match` line for the first packet of a session. `timestamp` must be the RFC 3339 form
    /// of `time` with milliseconds (see [`timestamp_string`]).
    #[allow(clippy::too_many_arguments)]
    pub fn match_line<'a>(
        framing: Framing<'a>,
        timestamp: &'a str,
        time: jiff::Timestamp,
        filter_hash: &'a str,
        action: Action,
        rule_id: u32,
        direction: Direction,
        protocol: Protocol,
        (src, src_port): (IpAddr, Option<u16>),
        (dst, dst_port): (IpAddr, Option<u16>),
        rule_tag: Option<&'a str>,
    ) -> LogRecord<'a> {
        let af = if src.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let tcp = protocol == Protocol::Tcp;
        let syslog = framing.header();
        LogRecord {
            syslog,
            timestamp: Some(timestamp),
            time,
            time_source: TimeSource::written(syslog),
            filter_hash: Some(filter_hash),
            af,
            reason: Reason::Match,
            action: Some(action),
            ruleset: None,
            rule_id,
            direction,
            length: Some(if tcp { 60 } else { 84 }),
            protocol,
            close_reason: None,
            src,
            src_port,
            dst,
            dst_port,
            tcp_flags: tcp.then_some("S"),
            counters: None,
            extras: Extras(""),
            rule_tag,
        }
    }

    /// The TERM line ending the session that `first` opened (NSX 4 layout: action kept).
    pub fn term_line<'a>(
        first: &LogRecord<'a>,
        timestamp: &'a str,
        time: jiff::Timestamp,
        counters: Counters,
    ) -> LogRecord<'a> {
        use crate::monitor::parse::CloseReason;
        LogRecord {
            timestamp: Some(timestamp),
            time,
            time_source: TimeSource::written(first.syslog),
            reason: Reason::Term,
            length: None,
            close_reason: Some(if first.protocol == Protocol::Tcp {
                CloseReason::Fin
            } else {
                CloseReason::Timeout
            }),
            tcp_flags: None,
            counters: Some(counters),
            ..*first
        }
    }

    /// `2024-05-02T10:15:31.204Z`: the timestamp form DFW logs use (UTC, milliseconds).
    pub fn timestamp_string(time: jiff::Timestamp) -> String {
        time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}
