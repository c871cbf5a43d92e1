//! Renders a [`Notice`] into a subject, a plain-text body and an HTML body from the templates
//! under `src/notify/templates/` (embedded at build time, minijinja), and builds the YAML rule
//! that would allow an unmatched flow.
//!
//! PURE: no IO, no clock, no network. Every timestamp comes from the notice. HTML templates
//! auto-escape every value, so application names, reasons and flow fields from users or logs
//! cannot inject markup; plain-text subjects lose control characters (no header injection).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::LazyLock;

use k8s_openapi::jiff::Timestamp;
use minijinja::{AutoEscape, Environment, Value, value::Serde};
use serde::Serialize;

use super::{Notice, NoticeKind};
use crate::api::{Direction, FlowSummary, Phase};

/// Subject prefix of every notice.
pub const SUBJECT_PREFIX: &str = "[microseg]";

/// Text of the `contact` when the configuration names nobody.
pub const DEFAULT_CONTACT: &str = "the network security team (reply to this message)";

/// Settings of the rendering that come from configuration, not from the notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Whom owners contact with questions (a team, an address, a chat channel).
    pub contact: String,
    /// Link to the microseg dashboard, if there is one.
    pub dashboard_url: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            contact: DEFAULT_CONTACT.to_string(),
            dashboard_url: None,
        }
    }
}

/// A rendered notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// One line, no control characters; names the application and the date.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (a whole document with inline styles, as mail clients need).
    pub html: String,
}

/// A template failed to load or render. The templates are embedded and every kind is rendered
/// by the tests, so this means a broken build rather than bad input.
#[derive(Debug, thiserror::Error)]
#[error("notice template {template}: {reason}")]
pub struct RenderError {
    /// Template name.
    pub template: String,
    /// What went wrong.
    pub reason: String,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("dates.html", include_str!("templates/dates.html")),
    ("dates.txt", include_str!("templates/dates.txt")),
    ("footer.txt", include_str!("templates/footer.txt")),
    ("scheduled.txt", include_str!("templates/scheduled.txt")),
    ("scheduled.html", include_str!("templates/scheduled.html")),
    ("reminder.txt", include_str!("templates/reminder.txt")),
    ("reminder.html", include_str!("templates/reminder.html")),
    ("enforced.txt", include_str!("templates/enforced.txt")),
    ("enforced.html", include_str!("templates/enforced.html")),
    ("completed.txt", include_str!("templates/completed.txt")),
    ("completed.html", include_str!("templates/completed.html")),
    ("postponed.txt", include_str!("templates/postponed.txt")),
    ("postponed.html", include_str!("templates/postponed.html")),
    ("rolled_back.txt", include_str!("templates/rolled_back.txt")),
    (
        "rolled_back.html",
        include_str!("templates/rolled_back.html"),
    ),
    (
        "alert_digest.txt",
        include_str!("templates/alert_digest.txt"),
    ),
    (
        "alert_digest.html",
        include_str!("templates/alert_digest.html"),
    ),
];

static ENV: LazyLock<Result<Environment<'static>, RenderError>> = LazyLock::new(environment);

fn environment() -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| RenderError {
            template: "(syntax)".to_string(),
            reason: e.to_string(),
        })?;
    env.set_syntax(syntax);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source).map_err(|e| RenderError {
            template: (*name).to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(env)
}

/// The template base name of a kind (`<base>.txt`, `<base>.html`).
pub fn template_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Scheduled => "scheduled",
        NoticeKind::Reminder => "reminder",
        NoticeKind::Enforced => "enforced",
        NoticeKind::Completed => "completed",
        NoticeKind::Postponed => "postponed",
        NoticeKind::RolledBack => "rolled_back",
        NoticeKind::AlertDigest => "alert_digest",
    }
}

/// Formats an instant the way notices show it: `2027-02-16 09:00 UTC`.
pub fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Replaces control characters (CR, LF, tabs, ...) with spaces and trims: for one-line fields.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The subject of a notice: `[microseg] <application>: <what> <date>`.
pub fn subject(notice: &Notice) -> String {
    let app = one_line(&notice.application);
    let enforce = format_time(notice.enforce_at);
    let what = match notice.kind {
        NoticeKind::Scheduled => format!("enforcement scheduled for {enforce}"),
        NoticeKind::Reminder => format!("reminder, enforcement on {enforce}"),
        NoticeKind::Enforced => format!("enforcement active since {enforce}"),
        NoticeKind::Completed => format!(
            "microsegmentation complete on {}",
            format_time(notice.cleanup_at)
        ),
        NoticeKind::Postponed => format!("enforcement postponed to {enforce}"),
        NoticeKind::RolledBack => format!("enforcement of {enforce} rolled back to monitor mode"),
        NoticeKind::AlertDigest => {
            let n = notice.flows.len();
            let plural = if n == 1 { "" } else { "s" };
            if enforcing(notice.phase) {
                format!("{n} dropped flow{plural} since enforcement on {enforce}")
            } else {
                format!("{n} unmatched flow{plural} to review before enforcement on {enforce}")
            }
        }
    };
    format!("{SUBJECT_PREFIX} {app}: {what}")
}

/// A few sentences for chat messages (Slack, Teams, the generic webhook's `summary`): what
/// happens to which application and when. Plain text, one paragraph.
pub fn summary(notice: &Notice, options: &RenderOptions) -> String {
    let app = one_line(&notice.application);
    let m = format_time(notice.monitor_from);
    let e = format_time(notice.enforce_at);
    let c = format_time(notice.cleanup_at);
    let reason = notice
        .reason
        .as_deref()
        .map(one_line)
        .unwrap_or_else(|| "no reason was recorded".to_string());
    let contact = one_line(&options.contact);
    match notice.kind {
        NoticeKind::Scheduled => format!(
            "\"{app}\" will be microsegmented. Monitor mode from {m}: a catch-all rule passes and logs traffic that no rule matched, nothing is blocked. Enforcement at {e}: the catch-all turns from PASS to DROP. Clean-up at {c}. Questions: {contact}."
        ),
        NoticeKind::Reminder => format!(
            "Enforcement for \"{app}\" starts at {e}: traffic that no rule allows will be dropped. Add missing rules before then, or contact {contact}."
        ),
        NoticeKind::Enforced => format!(
            "Enforcement for \"{app}\" is active since {e}: the catch-all drops and logs traffic that no rule allows. Monitoring goes on until {c}. To roll back, contact {contact}."
        ),
        NoticeKind::Completed => format!(
            "Microsegmentation of \"{app}\" is complete as of {c}. Nothing more is needed from you."
        ),
        NoticeKind::Postponed => format!(
            "Enforcement for \"{app}\" has been postponed to {e}. Why: {reason}. Monitor mode goes on until then; nothing is blocked."
        ),
        NoticeKind::RolledBack => format!(
            "Enforcement for \"{app}\" (since {e}) has been rolled back to monitor mode. Why: {reason}. Nothing is blocked now; contact {contact} about a new date."
        ),
        NoticeKind::AlertDigest => {
            let n = notice.flows.len();
            let plural = if n == 1 { "" } else { "s" };
            if enforcing(notice.phase) {
                format!(
                    "\"{app}\" has {n} flow{plural} that no rule matched; they are dropped until a rule allows them."
                )
            } else {
                format!(
                    "\"{app}\" has {n} flow{plural} that no rule matched; they will be blocked from {e} unless a rule allows them."
                )
            }
        }
    }
}

fn enforcing(phase: Phase) -> bool {
    matches!(phase, Phase::Enforcing | Phase::Completed)
}

fn kind_title(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Scheduled => "Enforcement scheduled",
        NoticeKind::Reminder => "Reminder",
        NoticeKind::Enforced => "Enforced",
        NoticeKind::Completed => "Completed",
        NoticeKind::Postponed => "Postponed",
        NoticeKind::RolledBack => "Rolled back",
        NoticeKind::AlertDigest => "Alert digest",
    }
}

fn accent(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Scheduled | NoticeKind::Reminder => "#2f5d8a",
        NoticeKind::Enforced => "#8a5a00",
        NoticeKind::Completed => "#2e7d32",
        NoticeKind::Postponed => "#6a4c93",
        NoticeKind::RolledBack | NoticeKind::AlertDigest => "#b03a2e",
    }
}

/// What the template of a flow shows.
#[derive(Serialize)]
struct FlowView {
    source: String,
    destination: String,
    service: String,
    direction: &'static str,
    count: i64,
    first_seen: String,
    last_seen: String,
    rule: String,
}

/// Everything a template can use; every string is escaped by the HTML templates.
#[derive(Serialize)]
struct View {
    subject: String,
    kind_title: &'static str,
    accent: &'static str,
    app: String,
    namespace: String,
    name: String,
    owner: String,
    monitor_from: String,
    enforce_at: String,
    cleanup_at: String,
    reason: String,
    contact: String,
    dashboard_url: Option<String>,
    message_id: String,
    phase_text: &'static str,
    consequence: String,
    flows: Vec<FlowView>,
    rules_yaml: String,
    canary: Option<CanaryView>,
}

#[derive(Serialize)]
struct CanaryView {
    vms: String,
    count: usize,
    members: usize,
    steps: Vec<CanaryStepView>,
}

#[derive(Serialize)]
struct CanaryStepView {
    covers: String,
    widens_at: String,
}

fn view(notice: &Notice, options: &RenderOptions) -> View {
    let enforce_at = format_time(notice.enforce_at);
    let (phase_text, consequence) = if enforcing(notice.phase) {
        (
            "enforcing: it is dropped and logged",
            "dropped until a rule allows it".to_string(),
        )
    } else {
        (
            "monitor mode: it is passed and logged",
            format!("blocked from {enforce_at} unless a rule allows it"),
        )
    };
    View {
        subject: subject(notice),
        kind_title: kind_title(notice.kind),
        accent: accent(notice.kind),
        app: one_line(&notice.application),
        namespace: notice.namespace.clone(),
        name: notice.name.clone(),
        owner: one_line(&notice.owner.name),
        monitor_from: format_time(notice.monitor_from),
        enforce_at,
        cleanup_at: format_time(notice.cleanup_at),
        reason: notice
            .reason
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "no reason was recorded".to_string()),
        contact: one_line(&options.contact),
        dashboard_url: options.dashboard_url.as_deref().map(one_line),
        message_id: notice.message_id.clone(),
        phase_text,
        consequence,
        flows: notice
            .flows
            .iter()
            .map(|f| FlowView {
                source: one_line(&f.source),
                destination: one_line(&f.destination),
                service: service(f),
                direction: match f.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
                count: f.count,
                first_seen: format_time(f.first_seen.0),
                last_seen: format_time(f.last_seen.0),
                rule: rule_entry(f),
            })
            .collect(),
        rules_yaml: rules_yaml(&notice.flows),
        canary: notice.canary.as_ref().map(|c| CanaryView {
            vms: c
                .vms
                .iter()
                .map(|v| one_line(v))
                .collect::<Vec<_>>()
                .join(", "),
            count: c.vms.len(),
            members: c.members,
            steps: c
                .steps
                .iter()
                .map(|s| CanaryStepView {
                    covers: one_line(&s.covers),
                    widens_at: format_time(s.widens_at),
                })
                .collect(),
        }),
    }
}

fn render_one(env: &Environment<'_>, name: &str, ctx: &Value) -> Result<String, RenderError> {
    env.get_template(name)
        .and_then(|t| t.render(ctx.clone()))
        .map_err(|e| RenderError {
            template: name.to_string(),
            reason: e.to_string(),
        })
}

/// Renders a notice with the default [`RenderOptions`].
pub fn render(notice: &Notice) -> Result<Rendered, RenderError> {
    render_with(notice, &RenderOptions::default())
}

/// Renders a notice: subject, plain text and HTML.
pub fn render_with(notice: &Notice, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let env = ENV.as_ref().map_err(|e| RenderError {
        template: e.template.clone(),
        reason: e.reason.clone(),
    })?;
    let view = view(notice, options);
    let subject = view.subject.clone();
    let ctx = Value::from(Serde(view));
    let base = template_name(notice.kind);
    Ok(Rendered {
        subject,
        text: render_one(env, &format!("{base}.txt"), &ctx)?,
        html: render_one(env, &format!("{base}.html"), &ctx)?,
    })
}

/// `TCP/8443`, `UDP`, `ICMP`, `PROTO 47`: what a flow used.
pub fn service(flow: &FlowSummary) -> String {
    let protocol = one_line(&flow.protocol);
    match flow.port {
        Some(port) => format!("{protocol}/{port}"),
        None => protocol,
    }
}

/// The address at the other end of a flow, from the application's point of view.
fn peer(flow: &FlowSummary) -> &str {
    match flow.direction {
        Direction::Inbound => flow.source.trim(),
        Direction::Outbound => flow.destination.trim(),
    }
}

/// The protocol of a flow as the SegmentationPolicy schema spells it, when it has one.
fn schema_protocol(protocol: &str) -> Option<&'static str> {
    match protocol.trim().to_ascii_uppercase().as_str() {
        "TCP" => Some("TCP"),
        "UDP" => Some("UDP"),
        "ICMP" => Some("ICMP"),
        "ICMPV6" | "IPV6-ICMP" => Some("ICMPv6"),
        _ => None,
    }
}

/// The stable rule name for a flow: `allow-in-tcp-8443-from-10-20-30-40` (a DNS label of at
/// most 63 characters, as `spec.rules[].name` requires).
pub fn rule_name(flow: &FlowSummary) -> String {
    let (dir, word) = match flow.direction {
        Direction::Inbound => ("in", "from"),
        Direction::Outbound => ("out", "to"),
    };
    let protocol = schema_protocol(&flow.protocol)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "proto".to_string());
    let port = match (schema_protocol(&flow.protocol), flow.port) {
        (Some("TCP" | "UDP"), Some(p)) => format!("-{p}"),
        _ => String::new(),
    };
    let peer: String = peer(flow)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("allow-{dir}-{protocol}{port}-{word}-{peer}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// One `spec.rules` entry (a YAML list item, two-space indented keys) that would allow the flow,
/// or a YAML comment saying why none can be written (the peer is not an IP address). The rule is
/// `logged`, so that NSX keeps logging the flow and monitor mode counts it as healthy traffic.
pub fn rule_entry(flow: &FlowSummary) -> String {
    let Ok(ip) = peer(flow).parse::<IpAddr>() else {
        return format!(
            "# {:?} is not an IP address: write this rule by hand",
            one_line(peer(flow))
        );
    };
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let direction = match flow.direction {
        Direction::Inbound => "Inbound",
        Direction::Outbound => "Outbound",
    };
    let mut out = String::new();
    let ports = match (schema_protocol(&flow.protocol), flow.port) {
        (Some(p @ ("TCP" | "UDP")), Some(port)) if (1..=65535).contains(&port) => {
            format!("[{{protocol: {p}, port: {port}}}]")
        }
        (Some(p), _) => format!("[{{protocol: {p}}}]"),
        (None, _) => {
            let _ = writeln!(
                out,
                "# {} has no protocol in the schema: choose an NSX service",
                one_line(&flow.protocol)
            );
            "[{nsxService: /infra/services/CHOOSE-A-SERVICE}]".to_string()
        }
    };
    let _ = write!(
        out,
        "- name: {}\n  direction: {direction}\n  peers: [{{cidr: {ip}/{prefix}}}]\n  ports: {ports}\n  logged: true",
        rule_name(flow)
    );
    out
}

/// A `rules:` block with one entry per distinct rule of the flows (duplicates dropped: equal
/// names mean equal rules), ready to paste into `spec`.
pub fn rules_yaml(flows: &[FlowSummary]) -> String {
    let mut seen = BTreeSet::new();
    let mut out = String::from("rules:");
    for flow in flows {
        let entry = rule_entry(flow);
        if !seen.insert(entry.clone()) {
            continue;
        }
        for line in entry.lines() {
            out.push_str("\n  ");
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PolicyRule;
    use crate::notify::examples;

    #[test]
    fn every_kind_renders_with_application_and_date_in_subject() {
        for notice in examples::all() {
            let r = render(&notice).unwrap();
            assert!(
                r.subject.starts_with("[microseg] Shop web frontend: "),
                "{}",
                r.subject
            );
            assert!(r.subject.contains(" UTC"), "{}", r.subject);
            assert!(r.text.contains("Shop web frontend"));
            assert!(r.html.contains("Shop web frontend"));
            assert!(r.text.contains(&notice.message_id));
            assert!(!r.text.contains("{{") && !r.html.contains("{{"));
        }
    }

    #[test]
    fn a_canary_notice_names_the_canary_vms_and_the_date_each_step_widens() {
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let mut n = examples::notice(NoticeKind::Enforced);
        n.canary = Some(crate::notify::CanaryPlan {
            vms: vec!["shop-web-03".into()],
            members: 12,
            steps: vec![
                crate::notify::CanaryStepPlan {
                    covers: "1 VM".into(),
                    widens_at: at("2027-02-17T09:00:00Z"),
                },
                crate::notify::CanaryStepPlan {
                    covers: "50% of the VMs".into(),
                    widens_at: at("2027-02-18T09:00:00Z"),
                },
            ],
        });
        let r = render(&n).unwrap();
        for text in [&r.text, &r.html] {
            assert!(text.contains("1 of 12 VMs only"), "{text}");
            assert!(text.contains("shop-web-03"), "{text}");
            assert!(text.contains("2027-02-17 09:00 UTC"), "{text}");
            assert!(text.contains("50% of the VMs"), "{text}");
            assert!(text.contains("2027-02-18 09:00 UTC"), "{text}");
        }
        let mut s = examples::notice(NoticeKind::Scheduled);
        s.canary = n.canary.clone().map(|mut c| {
            c.vms.clear();
            c
        });
        let r = render(&s).unwrap();
        assert!(
            r.text.contains("canary: DROP for 1 VM first, the rest PASS; widens no earlier than 2027-02-17 09:00 UTC"),
            "{}",
            r.text
        );
        // Without a canary the notice says nothing about one.
        let plain = render(&examples::notice(NoticeKind::Enforced)).unwrap();
        assert!(!plain.text.contains("canary"), "{}", plain.text);
    }

    #[test]
    fn scheduled_explains_monitor_mode_dates_and_contact() {
        let r = render_with(
            &examples::notice(NoticeKind::Scheduled),
            &RenderOptions {
                contact: "netsec@example.com".to_string(),
                dashboard_url: Some("https://microseg.example.com/".to_string()),
            },
        )
        .unwrap();
        assert_eq!(
            r.subject,
            "[microseg] Shop web frontend: enforcement scheduled for 2027-02-16 09:00 UTC"
        );
        for s in [
            "2027-02-01 09:00 UTC",
            "2027-02-16 09:00 UTC",
            "2027-03-02 09:00 UTC",
            "passes\n  traffic that no rule matched and logs it",
            "PASS to DROP",
            "netsec@example.com",
            "https://microseg.example.com/",
        ] {
            assert!(r.text.contains(s), "missing {s:?} in\n{}", r.text);
        }
    }

    #[test]
    fn postponed_and_rolled_back_carry_the_reason() {
        let p = render(&examples::notice(NoticeKind::Postponed)).unwrap();
        assert!(p.subject.ends_with("postponed to 2027-02-23 09:00 UTC"));
        assert!(p.text.contains("< 24h before enforcement"));
        assert!(p.html.contains("&lt; 24h before enforcement"));
        let r = render(&examples::notice(NoticeKind::RolledBack)).unwrap();
        assert!(r.text.contains("412 dropped flows"));
    }

    #[test]
    fn html_escapes_every_user_supplied_string() {
        let mut n = examples::notice(NoticeKind::AlertDigest);
        n.application = "<script>alert(1)</script> & co".to_string();
        n.owner.name = "<b>owner</b>".to_string();
        n.reason = Some("\"quoted\" <img src=x>".to_string());
        n.flows[0].source = "<i>10.0.0.1</i>".into();
        n.flows[0].protocol = "<u>TCP</u>".into();
        let r = render(&n).unwrap();
        for raw in ["<script>", "<b>owner", "<i>10.0.0.1", "<u>TCP"] {
            assert!(!r.html.contains(raw), "{raw} unescaped in HTML");
        }
        assert!(
            r.html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; co")
        );
        let p = render(&{
            let mut p = examples::notice(NoticeKind::Postponed);
            p.reason = Some("<img src=x onerror=alert(1)>".to_string());
            p
        })
        .unwrap();
        assert!(!p.html.contains("<img"));
    }

    #[test]
    fn subject_has_no_line_breaks() {
        let mut n = examples::notice(NoticeKind::Enforced);
        n.application = "App\r\nBcc: victim@example.com".to_string();
        let s = subject(&n);
        assert!(!s.contains('\r') && !s.contains('\n'), "{s:?}");
    }

    #[test]
    fn alert_digest_lists_flows_with_counts_times_and_rules() {
        let r = render(&examples::notice(NoticeKind::AlertDigest)).unwrap();
        assert_eq!(
            r.subject,
            "[microseg] Shop web frontend: 3 unmatched flows to review before enforcement on 2027-02-16 09:00 UTC"
        );
        for s in [
            "10.20.30.40 -> 10.1.0.11 TCP/8443 (inbound)",
            "seen 1284 times, first 2027-02-03 08:12 UTC, last 2027-02-09 17:55 UTC",
            "- name: allow-in-tcp-8443-from-10-20-30-40",
            "peers: [{cidr: 10.20.30.40/32}]",
            "ports: [{protocol: TCP, port: 8443}]",
            "- name: allow-out-udp-514-to-10-9-8-7",
            "direction: Outbound",
            "ports: [{protocol: ICMP}]",
        ] {
            assert!(r.text.contains(s), "missing {s:?} in\n{}", r.text);
        }
    }

    #[test]
    fn rule_snippets_parse_as_segmentation_policy_rules() {
        let mut flows = examples::flows();
        let mut v6 = flows[0].clone();
        v6.source = "2001:db8::1234:5678:9abc:def0".into();
        flows.push(v6);
        let mut gre = flows[0].clone();
        gre.protocol = "PROTO 47".into();
        gre.port = None;
        flows.push(gre);
        flows.push(flows[0].clone());
        let yaml = rules_yaml(&flows);
        #[derive(serde::Deserialize)]
        struct Spec {
            rules: Vec<PolicyRule>,
        }
        let spec: Spec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(spec.rules.len(), 5, "duplicate flow dropped:\n{yaml}");
        let re = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
        for rule in &spec.rules {
            assert!(
                rule.name.len() <= 63 && re.is_match(&rule.name),
                "{}",
                rule.name
            );
        }
        assert_eq!(
            spec.rules[0].peers[0].cidr.as_deref(),
            Some("10.20.30.40/32")
        );
        assert_eq!(spec.rules[0].ports[0].port, Some(8443));
        assert!(
            spec.rules.iter().all(|r| r.logged),
            "a suggested rule is logged, so the flow keeps being counted:\n{yaml}"
        );
        assert_eq!(spec.rules[1].peers[0].cidr.as_deref(), Some("10.9.8.7/32"));
        assert_eq!(
            spec.rules[3].peers[0].cidr.as_deref(),
            Some("2001:db8::1234:5678:9abc:def0/128")
        );
        assert!(spec.rules[4].ports[0].nsx_service.is_some());
    }

    #[test]
    fn a_peer_that_is_not_an_ip_gets_a_comment_not_a_rule() {
        let mut f = examples::flows()[0].clone();
        f.source = "evil\n- name: x".into();
        let entry = rule_entry(&f);
        assert!(entry.starts_with('#') && !entry.contains('\n'), "{entry}");
    }

    #[test]
    fn render_is_pure() {
        let src = include_str!("render.rs");
        let code = src.split("#[cfg(test)]").next().unwrap_or_default();
        for forbidden in [
            "Timestamp::now",
            "std::fs",
            "tokio",
            "reqwest",
            "lettre",
            "SystemTime",
        ] {
            assert!(!code.contains(forbidden), "render.rs uses {forbidden}");
        }
    }
}
