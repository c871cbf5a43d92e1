use super::*;
use crate::notify::{NoticeKind, examples};

fn format(url: &str, rules: &[FormatRule]) -> WebhookFormat {
    detect_format(&Url::parse(url).unwrap(), rules).unwrap()
}

#[test]
fn format_follows_fragment_then_config_then_builtin_rules() {
    let rules =
        FormatRule::parse_list("chat.example.com=slack, *.teams.example.com=teams").unwrap();
    let cases = [
        (
            "https://hooks.slack.com/services/T/B/X",
            WebhookFormat::Slack,
        ),
        (
            "https://contoso.webhook.office.com/webhookb2/abc",
            WebhookFormat::Teams,
        ),
        (
            "https://prod-01.westeurope.logic.azure.com/workflows/x",
            WebhookFormat::Teams,
        ),
        ("https://webhook.office.com/x", WebhookFormat::Generic),
        ("https://chat.example.com/hook", WebhookFormat::Slack),
        ("https://a.teams.example.com/hook", WebhookFormat::Teams),
        ("https://teams.example.com/hook", WebhookFormat::Generic),
        (
            "https://hooks.slack.com/x#microseg-format=generic",
            WebhookFormat::Generic,
        ),
        (
            "https://alerts.example.com/in#microseg-format=teams",
            WebhookFormat::Teams,
        ),
        ("http://127.0.0.1:8080/anything", WebhookFormat::Generic),
    ];
    for (url, want) in cases {
        assert_eq!(format(url, &rules), want, "{url}");
    }
    assert!(
        detect_format(
            &Url::parse("https://x.example.com/#microseg-format=irc").unwrap(),
            &[]
        )
        .is_err()
    );
    assert!(FormatRule::parse_list("nohost").is_err());
}

#[test]
fn redacted_urls_keep_only_scheme_host_and_port() {
    assert_eq!(
        redact_url("https://hooks.slack.com/services/T000/B000/SECRET?x=1"),
        "https://hooks.slack.com/…"
    );
    assert_eq!(
        redact_url("http://127.0.0.1:9000/tok"),
        "http://127.0.0.1:9000/…"
    );
    assert_eq!(redact_url("not a url SECRET"), "<invalid url>");
}

#[test]
fn payloads_have_the_documented_shapes() {
    let options = RenderOptions::default();
    let n = examples::notice(NoticeKind::AlertDigest);
    let r = render::render_with(&n, &options).unwrap();
    let g = generic_payload(&n, &r, &options);
    assert_eq!(g["schema"], GENERIC_SCHEMA);
    assert_eq!(g["kind"], "AlertDigest");
    assert_eq!(g["messageId"], n.message_id);
    assert_eq!(g["enforceAt"], "2027-02-16T09:00:00Z");
    assert_eq!(g["flows"][0]["port"], 8443);
    assert_eq!(g["flows"][0]["direction"], "Inbound");
    let s = slack_payload(&n, &r, &options);
    assert!(s["text"].as_str().unwrap().contains("Shop web frontend"));
    assert_eq!(s["blocks"][0]["type"], "header");
    let t = teams_payload(&n, &r, &options);
    assert_eq!(t["type"], "message");
    assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard");
}

#[test]
fn slack_text_escapes_control_characters() {
    let mut n = examples::notice(NoticeKind::Postponed);
    n.application = "<!channel> & <http://evil|click>".to_string();
    let options = RenderOptions::default();
    let r = render::render_with(&n, &options).unwrap();
    let s = slack_payload(&n, &r, &options);
    // `text` and mrkdwn blocks are parsed by Slack; the header is plain_text.
    for text in [&s["text"], &s["blocks"][1]["text"]["text"]] {
        let text = text.as_str().unwrap();
        assert!(
            !text.contains("<!channel>") && !text.contains("<http://evil"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt; &amp;"), "{text}");
    }
}

#[test]
fn only_short_error_codes_from_receivers_are_kept() {
    assert_eq!(
        error_code("invalid_token\n").as_deref(),
        Some("invalid_token")
    );
    assert_eq!(error_code("<html>root:x:0:0</html>"), None);
    assert_eq!(error_code(&"a".repeat(101)), None);
    assert_eq!(error_code(""), None);
}

#[tokio::test]
async fn hosts_outside_the_allow_list_are_refused_without_a_request() {
    let config = WebhookConfig {
        allowed_hosts: vec!["hooks.slack.com".to_string(), "*.example.com".to_string()],
        ..WebhookConfig::default()
    };
    let notifier = WebhookNotifier::new(&config, RenderOptions::default()).unwrap();
    let mut n = examples::notice(NoticeKind::Enforced);
    n.owner.webhook = Some("http://169.254.169.254/latest/meta-data/TOKEN".to_string());
    let e = notifier.send(&n).await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("\"169.254.169.254\" is not in MICROSEG_WEBHOOK_ALLOWED_HOSTS"),
        "{e}"
    );
    assert!(!e.to_string().contains("TOKEN"));
}

#[tokio::test]
async fn internal_and_http_targets_are_refused_without_a_request() {
    let notifier =
        WebhookNotifier::new(&WebhookConfig::default(), RenderOptions::default()).unwrap();
    let mut n = examples::notice(NoticeKind::Enforced);
    for (url, says) in [
        ("http://hooks.example.com/x/TOKEN", "only https webhooks"),
        ("https://127.0.0.1:9/x/TOKEN", "127.0.0.1 is a loopback"),
        ("https://[::1]:9/x/TOKEN", "::1 is a loopback"),
        (
            "https://169.254.169.254/x/TOKEN",
            "169.254.169.254 is a loopback",
        ),
        ("https://10.1.2.3/x/TOKEN", "10.1.2.3 is a loopback"),
    ] {
        n.owner.webhook = Some(url.to_string());
        let e = notifier.send(&n).await.unwrap_err();
        assert!(e.to_string().contains(says), "{url}: {e}");
        assert!(!e.to_string().contains("TOKEN"), "{e}");
    }
    // A name that resolves to loopback is refused after resolution.
    n.owner.webhook = Some("https://localhost:9/x/TOKEN".to_string());
    let e = notifier.send(&n).await.unwrap_err();
    assert!(e.to_string().contains("resolves only to loopback"), "{e}");
}

#[test]
fn internal_addresses_pass_only_when_allowed() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    for internal in [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(!target_allowed(ip(internal), &[]), "{internal}");
    }
    assert!(target_allowed(ip("8.8.8.8"), &[]));
    assert!(target_allowed(ip("2001:4860::8888"), &[]));
    let lab = ["10.0.0.0/8".parse().unwrap()];
    assert!(target_allowed(ip("10.9.9.9"), &lab));
    assert!(!target_allowed(ip("127.0.0.1"), &lab));
}

#[test]
fn scrub_removes_path_and_query() {
    let url = Url::parse("https://h.example.com/services/SECRET?token=ALSO").unwrap();
    let s = scrub(
        "error for https://h.example.com/services/SECRET?token=ALSO and /services/SECRET",
        &url,
    );
    assert!(!s.contains("SECRET") && !s.contains("ALSO"), "{s}");
}
