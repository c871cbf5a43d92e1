//! Monitor mode: DFW packet logs and Log Insight alert webhooks in, unmatched flows out.
//!
//! This module owns the log-side of monitor mode:
//! - [`parse`]: the DFW packet-log line grammar (pure, borrows from the line, never panics);
//! - [`format`]: the inverse, writing a record back in any layout (pure);
//! - [`loginsight`]: the Log Insight / Aria Operations for Logs alert webhook payload (pure);
//! - the JSON form of a record (field names as in `nsx-policy-api.md` §9) and
//!   [`parse_log_cli`] / [`parse_loginsight_cli`], the body of `microseg parse-log` (DFW lines,
//!   or a saved Log Insight webhook payload with `--format loginsight`).
//!
//! - [`aggregate`]: attribution to applications and aggregation of unmatched flows (pure);
//! - [`attribution`]: the attribution index kept current from the policy watch;
//! - [`recorder`]: the group-commit writer of `status.monitor` (talks to Kubernetes).
//!
//! The parsing and aggregation modules do no IO and read no clock; the ingestion endpoints live
//! with the web server (`web::ingest`) and call into this module.

pub mod aggregate;
pub mod attribution;
pub mod format;
pub mod loginsight;
pub mod parse;
pub mod recorder;

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub use parse::{Arrival, LogRecord, ParseError, TimeSource, parse_line, parse_line_with};

/// Longest part of an unparsed line quoted in the summary.
pub const SAMPLE_LINE_MAX: usize = 300;

impl Serialize for parse::Extras<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for t in self.iter() {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

impl Serialize for parse::SyslogHeader<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match *self {
            parse::SyslogHeader::Rfc3164 {
                pri,
                host,
                severity,
                app,
                procid,
            } => {
                m.serialize_entry("format", "rfc3164")?;
                m.serialize_entry("pri", &pri)?;
                m.serialize_entry("host", &host)?;
                m.serialize_entry("severity", &severity)?;
                m.serialize_entry("app", &app)?;
                m.serialize_entry("procid", &procid)?;
            }
            parse::SyslogHeader::Rfc5424 {
                pri,
                host,
                app,
                procid,
                msgid,
                structured_data,
            } => {
                m.serialize_entry("format", "rfc5424")?;
                m.serialize_entry("pri", &pri)?;
                m.serialize_entry("host", &host)?;
                m.serialize_entry("app", &app)?;
                m.serialize_entry("procid", &procid)?;
                m.serialize_entry("msgid", &msgid)?;
                m.serialize_entry("structured_data", &structured_data)?;
            }
        }
        m.end()
    }
}

/// JSON form of a record: every field always present (`null` when absent), names as in §9.
impl Serialize for LogRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("timestamp", &self.timestamp)?;
        m.serialize_entry("time", &Rfc3339(self.time))?;
        m.serialize_entry("time_source", self.time_source.as_str())?;
        m.serialize_entry("host", &self.host())?;
        m.serialize_entry("syslog", &self.syslog)?;
        m.serialize_entry("filter_hash", &self.filter_hash)?;
        m.serialize_entry("af", self.af.as_str())?;
        m.serialize_entry("reason", self.reason.as_str())?;
        m.serialize_entry("action", &self.action.map(|a| a.as_str()))?;
        m.serialize_entry("ruleset", &self.ruleset)?;
        m.serialize_entry("rule_id", &self.rule_id)?;
        m.serialize_entry("direction", self.direction.as_str())?;
        m.serialize_entry("length", &self.length)?;
        m.serialize_entry("protocol", &ProtocolName(self.protocol))?;
        m.serialize_entry("protocol_number", &self.protocol.number())?;
        m.serialize_entry("close_reason", &self.close_reason.map(|c| c.as_str()))?;
        m.serialize_entry("src", &self.src)?;
        m.serialize_entry("src_port", &self.src_port)?;
        m.serialize_entry("dst", &self.dst)?;
        m.serialize_entry("dst_port", &self.dst_port)?;
        m.serialize_entry("tcp_flags", &self.tcp_flags)?;
        let c = self.counters;
        m.serialize_entry("pkts_in", &c.map(|c| c.pkts_in))?;
        m.serialize_entry("pkts_out", &c.map(|c| c.pkts_out))?;
        m.serialize_entry("bytes_in", &c.map(|c| c.bytes_in))?;
        m.serialize_entry("bytes_out", &c.map(|c| c.bytes_out))?;
        m.serialize_entry("extras", &self.extras)?;
        m.serialize_entry("rule_tag", &self.rule_tag)?;
        m.end()
    }
}

/// JSON form of a record built from Log Insight content-pack fields (the names of the line form
/// where they mean the same).
impl Serialize for loginsight::FieldRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("time", &self.time.map(Rfc3339))?;
        m.serialize_entry("time_source", self.time_source().as_str())?;
        m.serialize_entry("host", &self.host)?;
        m.serialize_entry("action", &self.action.map(|a| a.as_str()))?;
        m.serialize_entry("rule_id", &self.rule_id)?;
        m.serialize_entry("protocol", &self.protocol.map(ProtocolName))?;
        m.serialize_entry("protocol_number", &self.protocol.map(|p| p.number()))?;
        m.serialize_entry("src", &self.src)?;
        m.serialize_entry("src_port", &self.src_port)?;
        m.serialize_entry("dst", &self.dst)?;
        m.serialize_entry("dst_port", &self.dst_port)?;
        m.end()
    }
}

/// An instant as RFC 3339 text (`2024-05-02T10:15:31.204Z`).
struct Rfc3339(jiff::Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct ProtocolName(parse::Protocol);

impl Serialize for ProtocolName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// One unparsed line kept as a sample for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsedSample {
    /// 1-based line number.
    pub line_no: u64,
    /// Why (the parse error, or "not UTF-8").
    pub reason: String,
    /// The line, cut at [`SAMPLE_LINE_MAX`] bytes.
    pub text: String,
}

/// What `microseg parse-log` saw: every line read is parsed, blank or unparsed; nothing is
/// dropped without being counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Lines read.
    pub read: u64,
    /// Lines parsed into records.
    pub parsed: u64,
    /// Blank lines (skipped, counted).
    pub blank: u64,
    /// Lines that did not parse.
    pub unparsed: u64,
    /// Unparsed lines per field (`not_utf8` for invalid UTF-8).
    pub unparsed_by_field: BTreeMap<&'static str, u64>,
    /// The first unparsed lines.
    pub samples: Vec<UnparsedSample>,
}

impl ParseSummary {
    fn unparsed(
        &mut self,
        field: &'static str,
        line_no: u64,
        reason: String,
        text: &str,
        max: usize,
    ) {
        self.unparsed += 1;
        *self.unparsed_by_field.entry(field).or_default() += 1;
        if self.samples.len() < max {
            let mut cut = text.len().min(SAMPLE_LINE_MAX);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.samples.push(UnparsedSample {
                line_no,
                reason,
                text: text.get(..cut).unwrap_or("").to_owned(),
            });
        }
    }

    /// Writes the human summary (what `parse-log` prints on stderr).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(
            w,
            "parse-log: {} lines read, {} parsed, {} unparsed, {} blank",
            self.read, self.parsed, self.unparsed, self.blank
        )?;
        if self.unparsed > 0 {
            let by: Vec<String> = self
                .unparsed_by_field
                .iter()
                .map(|(f, n)| format!("{f}={n}"))
                .collect();
            writeln!(w, "unparsed by field: {}", by.join(", "))?;
            writeln!(
                w,
                "sample of unparsed lines ({} of {}):",
                self.samples.len(),
                self.unparsed
            )?;
            for s in &self.samples {
                writeln!(w, "  line {}: {}", s.line_no, s.reason)?;
                writeln!(w, "    {}", s.text)?;
            }
        }
        Ok(())
    }
}

/// `microseg parse-log`: reads DFW log lines from `input`, writes one JSON object per parsed line
/// to `out`, and the summary (counts and up to `max_samples` unparsed lines with their reasons)
/// to `err`. A line without a timestamp (the message body alone) takes `received`, the time the
/// command read it (`time_source: "receipt"`). Returns the summary.
pub fn parse_log_cli(
    mut input: impl BufRead,
    out: impl Write,
    mut err: impl Write,
    max_samples: usize,
    received: jiff::Timestamp,
) -> io::Result<ParseSummary> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut summary = ParseSummary::default();
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        summary.read += 1;
        let line_no = summary.read;
        let Ok(line) = std::str::from_utf8(&buf) else {
            let lossy = String::from_utf8_lossy(&buf);
            summary.unparsed(
                "not_utf8",
                line_no,
                "line is not valid UTF-8".to_owned(),
                lossy.trim_end(),
                max_samples,
            );
            continue;
        };
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            summary.blank += 1;
            continue;
        }
        match parse_line_with(line, Arrival::received(received)) {
            Ok(record) => {
                serde_json::to_writer(&mut out, &record).map_err(io::Error::other)?;
                out.write_all(b"\n")?;
                summary.parsed += 1;
            }
            Err(e) => {
                let token = e.token(line);
                let reason = if token.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}: {token:?}")
                };
                summary.unparsed(e.field.as_str(), line_no, reason, line, max_samples);
            }
        }
    }
    out.flush()?;
    summary.write_to(&mut err)?;
    Ok(summary)
}

/// What `microseg parse-log --format loginsight` made of a webhook payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInsightSummary {
    /// The HTTP status the webhook endpoint would answer (400: not a payload at all).
    pub status: u16,
    /// Messages read as DFW lines.
    pub lines: u64,
    /// Messages read from content-pack fields.
    pub fields: u64,
    /// Messages neither could read.
    pub unusable: u64,
}

impl LogInsightSummary {
    /// Whether Log Insight would see a delivery (2xx).
    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `microseg parse-log --format loginsight`: reads one Log Insight / Aria Operations for Logs
/// webhook body from `input`, writes one JSON object per message to `out` (`{"at", "entry":
/// "line"|"fields"|"unusable", "record" | "reason", ...}`), and to `err` what kind of alert it is
/// and what the webhook endpoint would answer and why. Lines without a timestamp take the
/// message's `timestamp`, else `received`.
pub fn parse_loginsight_cli(
    mut input: impl Read,
    out: impl Write,
    mut err: impl Write,
    received: jiff::Timestamp,
) -> io::Result<LogInsightSummary> {
    let mut body = Vec::new();
    input.read_to_end(&mut body)?;
    let mut summary = LogInsightSummary {
        status: 400,
        lines: 0,
        fields: 0,
        unusable: 0,
    };
    let alert = match loginsight::parse_payload(&body) {
        Ok(a) => a,
        Err(e) => {
            writeln!(err, "parse-log: not a Log Insight webhook payload")?;
            writeln!(err, "microseg would answer 400: {e}")?;
            return Ok(summary);
        }
    };
    let entries: Vec<loginsight::Entry<'_>> = alert.entries(received).collect();
    let mut out = io::BufWriter::new(out);
    // One entry per message, in order.
    for (m, e) in alert.messages.iter().zip(&entries) {
        let v = match e {
            loginsight::Entry::Line { at, record } => {
                summary.lines += 1;
                serde_json::json!({"at": at, "entry": "line", "record": record})
            }
            loginsight::Entry::Fields {
                at,
                record,
                text_error,
            } => {
                summary.fields += 1;
                let text = m.text.as_deref().unwrap_or("");
                let text_error = text_error.map(|e| format!("{e}: {:?}", e.token(text)));
                serde_json::json!({
                    "at": at, "entry": "fields", "record": record, "text_error": text_error,
                })
            }
            loginsight::Entry::Unusable { at, reason } => {
                summary.unusable += 1;
                serde_json::json!({"at": at, "entry": "unusable", "reason": reason})
            }
        };
        serde_json::to_writer(&mut out, &v).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let disposition = alert.disposition(&entries);
    summary.status = disposition.status();
    writeln!(
        err,
        "parse-log: Log Insight {} {:?} (AlertType {}, NumHits {}): {} messages: {} DFW lines, \
         {} from content-pack fields, {} unusable",
        alert.kind().as_str(),
        alert.name.as_deref().unwrap_or(""),
        alert
            .alert_type
            .map_or_else(|| "absent".to_owned(), |t| t.to_string()),
        alert
            .num_hits
            .map_or_else(|| "absent".to_owned(), |n| n.to_string()),
        entries.len(),
        summary.lines,
        summary.fields,
        summary.unusable,
    )?;
    match &disposition {
        loginsight::Disposition::Acknowledge { note } => {
            writeln!(err, "microseg would answer 200: {note}")?;
        }
        loginsight::Disposition::Record => writeln!(
            err,
            "microseg would answer 200 once recorded: {} usable messages{}",
            summary.lines + summary.fields,
            if summary.unusable > 0 {
                format!(", {} counted as unparsed", summary.unusable)
            } else {
                String::new()
            }
        )?,
        loginsight::Disposition::Refuse { error } => {
            writeln!(err, "microseg would answer 422: {error}")?;
        }
    }
    Ok(summary)
}

/// Longest piece of a sender's input quoted back in an answer or a log line.
pub const QUOTE_MAX: usize = 64;

/// `s` for an answer or a log: debug-quoted, at most [`QUOTE_MAX`] characters, then how long it
/// was (an offending token can be as long as the body).
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!(
            "{:?}... ({} bytes in all)",
            s.get(..cut).unwrap_or_default(),
            s.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pure parts stay pure (STYLE.md §3.1): no IO, no clock, no Kubernetes or HTTP client.
    #[test]
    fn summary_counts_every_line_and_keeps_bounded_samples() {
        let input = "x\n\n2018-07-03T19:44:09.749Z b6507827 INET match PASS 1 IN 52 UDP 1.1.1.1/1->1.1.1.2/2\ny\nz\n";
        let mut out = Vec::new();
        let mut err = Vec::new();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let s = parse_log_cli(input.as_bytes(), &mut out, &mut err, 2, now).unwrap();
        assert_eq!((s.read, s.parsed, s.blank, s.unparsed), (5, 1, 1, 3));
        assert_eq!(s.samples.len(), 2);
        assert_eq!(s.unparsed_by_field.get("timestamp"), Some(&3));
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
