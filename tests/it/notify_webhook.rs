//! The webhook channel against a real HTTP receiver (axum on 127.0.0.1): generic, Slack and
//! Teams payloads arrive once each with the Idempotency-Key header; a failing receiver gets
//! bounded retries and then an error that does not show the URL's secret path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::servers;

use std::time::Duration;

use axum::http::StatusCode;
use microseg::notify::config::{RetryPolicy, WebhookConfig};
use microseg::notify::render::RenderOptions;
use microseg::notify::webhook::{FormatRule, WebhookFormat, WebhookNotifier};
use microseg::notify::{Channels, Error, Notice, NoticeKind, Notifier, examples};
use servers::WebhookReceiver;

fn channels(attempts: u32) -> Channels {
    let config = WebhookConfig {
        timeout: Duration::from_secs(5),
        format_rules: vec![FormatRule::new("localhost", WebhookFormat::Teams)],
        allowed_hosts: vec!["127.0.0.1".to_string(), "localhost".to_string()],
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        allow_http: true,
        ..WebhookConfig::default()
    };
    Channels::new(
        None,
        WebhookNotifier::new(&config, RenderOptions::default()).unwrap(),
        RetryPolicy {
            attempts,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    )
}

fn to_webhook(kind: NoticeKind, url: String) -> Notice {
    let mut n = examples::notice(kind);
    n.owner.email = None;
    n.owner.webhook = Some(url);
    n
}

#[tokio::test]
async fn generic_slack_and_teams_payloads_arrive_once_with_idempotency_key() {
    let rx = WebhookReceiver::start(StatusCode::OK).await;
    let port = rx.addr.port();
    let channels = channels(3);
    let generic = to_webhook(
        NoticeKind::AlertDigest,
        format!("http://127.0.0.1:{port}/hooks/generic/T0KEN-G"),
    );
    let slack = to_webhook(
        NoticeKind::Scheduled,
        format!("http://127.0.0.1:{port}/services/T0/B0/T0KEN-S#microseg-format=slack"),
    );
    let teams = to_webhook(
        NoticeKind::Postponed,
        format!("http://localhost:{port}/webhookb2/T0KEN-T"),
    );
    for n in [&generic, &slack, &teams] {
        let d = channels.send(n).await.unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].channel, "webhook");
    }
    let got = rx.received();
    assert_eq!(got.len(), 3, "each notice once: {got:#?}");
    for (n, r) in [&generic, &slack, &teams].iter().zip(&got) {
        assert_eq!(r.idempotency_key.as_deref(), Some(n.message_id.as_str()));
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    let g = &got[0];
    assert_eq!(g.path, "/hooks/generic/T0KEN-G");
    assert_eq!(g.body["schema"], "microseg.io/notice/v1");
    assert_eq!(g.body["kind"], "AlertDigest");
    assert_eq!(g.body["application"], "Shop web frontend");
    assert_eq!(g.body["namespace"], "wave-1");
    assert_eq!(g.body["name"], "shop-web");
    assert_eq!(g.body["phase"], "Monitoring");
    assert_eq!(g.body["messageId"], generic.message_id.as_str());
    assert_eq!(g.body["enforceAt"], "2027-02-16T09:00:00Z");
    assert_eq!(g.body["flows"].as_array().unwrap().len(), 3);
    assert_eq!(g.body["flows"][0]["count"], 1284);
    assert!(
        g.body["flows"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("cidr: 10.20.30.40/32")
    );

    let s = &got[1];
    assert_eq!(s.path, "/services/T0/B0/T0KEN-S", "fragment not sent");
    assert!(
        s.body["text"]
            .as_str()
            .unwrap()
            .contains("enforcement scheduled for 2027-02-16 09:00 UTC")
    );
    let blocks = s.body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks.iter().all(|b| b["type"].is_string()));

    let t = &got[2];
    assert_eq!(t.body["type"], "message");
    let card = &t.body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    let facts = card["content"]["body"][2]["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["title"] == "Reason"));
    assert!(
        card["content"]["body"][0]["text"]
            .as_str()
            .unwrap()
            .contains("postponed to 2027-02-23 09:00 UTC")
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_bounded_retries_then_an_error_without_the_token() {
    let rx = WebhookReceiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let url = format!(
        "http://127.0.0.1:{}/hooks/T0KEN-SECRET-PATH?sig=QUERYSECRET",
        rx.addr.port()
    );
    let notice = to_webhook(NoticeKind::Enforced, url);
    let err = channels(3).send(&notice).await.unwrap_err();
    assert!(matches!(err, Error::Webhook { .. }), "{err:?}");
    assert_eq!(err.category(), "WebhookFailed");
    let got = rx.received();
    assert_eq!(got.len(), 3, "three tries, no more");
    assert!(
        got.iter()
            .all(|r| r.idempotency_key.as_deref() == Some(notice.message_id.as_str()))
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains("HTTP 500"), "{text}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert!(
            text.contains(&format!("http://127.0.0.1:{}/…", rx.addr.port())),
            "{text}"
        );
        assert!(
            !text.contains("T0KEN") && !text.contains("QUERYSECRET"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_webhook_fails_without_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let notice = to_webhook(
        NoticeKind::Completed,
        format!("http://127.0.0.1:{port}/hooks/T0KEN-UNREACHABLE"),
    );
    let err = channels(2).send(&notice).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("could not connect"), "{text}");
    assert!(!text.contains("T0KEN"), "{text}");
}

#[tokio::test]
async fn https_webhooks_verify_the_certificate_against_the_configured_ca() {
    let certs = servers::temp_dir("webhook-certs");
    let (ca, cert, key) = servers::make_certificates(certs.path());
    let rx = servers::HttpsSink::start(&cert, &key);
    let notice = to_webhook(
        NoticeKind::Reminder,
        format!("https://127.0.0.1:{}/hooks/T0KEN-TLS", rx.port),
    );
    let retry = RetryPolicy {
        attempts: 1,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let with = |ca_bundle| {
        let config = WebhookConfig {
            ca_bundle,
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            ..WebhookConfig::default()
        };
        Channels::new(
            None,
            WebhookNotifier::new(&config, RenderOptions::default()).unwrap(),
            retry,
        )
    };

    // Verification is on by default: the test CA is not among the built-in roots.
    let err = with(None).send(&notice).await.unwrap_err();
    assert!(matches!(err, Error::Webhook { .. }), "{err:?}");
    assert!(!err.to_string().contains("T0KEN"), "{err}");
    assert!(
        rx.received().is_empty(),
        "nothing sent to an unverified server"
    );

    with(Some(ca)).send(&notice).await.unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["path"], "/hooks/T0KEN-TLS");
    assert_eq!(got[0]["idempotency_key"], notice.message_id.as_str());
    assert_eq!(got[0]["body"]["kind"], "Reminder");
    std::fs::remove_dir_all(&certs).unwrap();
}

/// Issue 16: an owner's webhook is written in the CR spec, so by default the controller posts
/// only to https and never to loopback, private or link-local addresses (checked after name
/// resolution); a site allow-lists the internal networks it means.
#[tokio::test]
async fn webhooks_to_loopback_are_refused_by_default_and_nothing_is_posted() {
    let rx = WebhookReceiver::start(StatusCode::OK).await;
    let port = rx.addr.port();
    let retry = RetryPolicy {
        attempts: 1,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let default = Channels::new(
        None,
        WebhookNotifier::new(&WebhookConfig::default(), RenderOptions::default()).unwrap(),
        retry,
    );
    for url in [
        format!("http://127.0.0.1:{port}/hooks/T0KEN"),
        format!("https://127.0.0.1:{port}/hooks/T0KEN"),
        format!("https://localhost:{port}/hooks/T0KEN"),
    ] {
        let e = default
            .send(&to_webhook(NoticeKind::Enforced, url.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only https") || e.contains("loopback"),
            "{url}: {e}"
        );
        assert!(!e.contains("T0KEN"), "{e}");
    }
    assert!(rx.received().is_empty(), "a refused webhook was posted");
    // Allow-listed (and http allowed for the lab), the same receiver gets the notice.
    let lab = Channels::new(
        None,
        WebhookNotifier::new(
            &WebhookConfig {
                allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
                allow_http: true,
                ..WebhookConfig::default()
            },
            RenderOptions::default(),
        )
        .unwrap(),
        retry,
    );
    lab.send(&to_webhook(
        NoticeKind::Enforced,
        format!("http://localhost:{port}/hooks/T0KEN"),
    ))
    .await
    .unwrap();
    assert_eq!(rx.received().len(), 1);
}
