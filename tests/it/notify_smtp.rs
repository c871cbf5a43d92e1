//! The e-mail channel against a real SMTP server on 127.0.0.1 (aiosmtpd, started from
//! `tests/support/smtp_sink.py`; install it with `bash tests/support/setup.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::servers;

use std::time::Duration;

use microseg::notify::config::{RetryPolicy, Secret, SmtpAuth, SmtpConfig, SmtpTls, WebhookConfig};
use microseg::notify::render::{self, RenderOptions};
use microseg::notify::smtp::SmtpNotifier;
use microseg::notify::webhook::WebhookNotifier;
use microseg::notify::{Channels, Error, Notice, Notifier, examples};
use servers::SmtpSink;

fn email_only(mut n: Notice) -> Notice {
    n.owner.webhook = None;
    n
}

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    }
}

fn channels(smtp: &SmtpConfig, attempts: u32) -> Channels {
    let options = RenderOptions::default();
    Channels::new(
        Some(SmtpNotifier::new(smtp, options.clone()).unwrap()),
        WebhookNotifier::new(&WebhookConfig::default(), options).unwrap(),
        retry(attempts),
    )
}

fn plaintext(sink: &SmtpSink) -> SmtpConfig {
    let mut c = SmtpConfig::new(
        "127.0.0.1",
        SmtpTls::InsecurePlaintext,
        "microseg <microseg@example.com>",
    );
    c.port = sink.port;
    c.timeout = Duration::from_secs(10);
    c
}

#[tokio::test]
async fn each_notice_kind_arrives_once_with_subject_body_and_message_id() {
    let sink = SmtpSink::start("smtp-kinds", &["--auth", "bot:pa55-w0rd"]);
    let mut config = plaintext(&sink);
    config.auth = Some(SmtpAuth {
        username: "bot".to_string(),
        password: Secret::new("pa55-w0rd"),
    });
    let channels = channels(&config, 1);
    let notices: Vec<Notice> = examples::all().into_iter().map(email_only).collect();
    for n in &notices {
        let deliveries = channels.send(n).await.unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].channel, "email");
    }
    let got = sink.wait_for(notices.len());
    assert_eq!(got.len(), notices.len(), "one message per notice, no more");
    for (n, m) in notices.iter().zip(&got) {
        let want = render::render(n).unwrap();
        let h = &m["headers"];
        assert_eq!(h["subject"], want.subject.as_str());
        assert_eq!(h["message-id"], format!("<{}>", n.message_id).as_str());
        assert_eq!(h["to"], "Web Team <web-team@example.com>");
        assert_eq!(h["from"], "microseg <microseg@example.com>");
        assert_eq!(m["rcpt_tos"][0], "web-team@example.com");
        assert_eq!(m["mail_from"], "microseg@example.com");
        assert_eq!(m["content_type"], "multipart/alternative");
        let text = m["text"].as_str().unwrap().replace("\r\n", "\n");
        assert_eq!(
            text.trim_end(),
            want.text.trim_end(),
            "{:?} text body",
            n.kind
        );
        let html = m["html"].as_str().unwrap();
        assert!(html.contains("Shop web frontend") && html.contains(&n.message_id));
    }
    let mut ids: Vec<&str> = got
        .iter()
        .map(|m| m["headers"]["message-id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        notices.len(),
        "message ids are distinct per notice"
    );
    assert_eq!(sink.log("auth.log"), vec!["ok bot"; notices.len()]);
}

#[tokio::test]
async fn a_refused_delivery_fails_after_the_bounded_retries() {
    let sink = SmtpSink::start("smtp-refuse", &["--refuse-rcpt"]);
    let channels = channels(&plaintext(&sink), 3);
    let notice = email_only(examples::notice(microseg::notify::NoticeKind::Scheduled));
    let err = channels.send(&notice).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Smtp { .. }), "{err:?}");
    assert_eq!(err.category(), "SmtpFailed");
    assert!(
        text.starts_with("e-mail to web-team@example.com: "),
        "{text}"
    );
    assert!(text.contains("550"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert_eq!(sink.log("rcpt.log").len(), 3, "three tries, no more");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn starttls_requires_a_trusted_certificate() {
    let certs = servers::temp_dir("smtp-certs");
    let (ca, cert, key) = servers::make_certificates(certs.path());
    let sink = SmtpSink::start(
        "smtp-starttls",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let notice = email_only(examples::notice(microseg::notify::NoticeKind::Reminder));
    let mut config = SmtpConfig::new("127.0.0.1", SmtpTls::StartTls, "microseg@example.com");
    config.port = sink.port;
    config.timeout = Duration::from_secs(10);

    // Verification is on by default: the test CA is not among the built-in roots.
    let err = channels(&config, 1).send(&notice).await.unwrap_err();
    assert!(matches!(err, Error::Smtp { .. }), "{err:?}");
    assert!(
        sink.messages().is_empty(),
        "nothing sent to an unverified server"
    );

    config.ca_bundle = Some(ca.clone());
    channels(&config, 1).send(&notice).await.unwrap();
    let got = sink.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["headers"]["message-id"],
        format!("<{}>", notice.message_id).as_str()
    );
    std::fs::remove_dir_all(&certs).unwrap();
}

#[tokio::test]
async fn implicit_tls_delivers_with_the_configured_ca() {
    let certs = servers::temp_dir("smtp-certs");
    let (ca, cert, key) = servers::make_certificates(certs.path());
    let sink = SmtpSink::start(
        "smtp-tls",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--implicit-tls",
        ],
    );
    let mut config = SmtpConfig::new("127.0.0.1", SmtpTls::Implicit, "microseg@example.com");
    config.port = sink.port;
    config.ca_bundle = Some(ca);
    let notice = email_only(examples::notice(microseg::notify::NoticeKind::Completed));
    let deliveries = channels(&config, 1).send(&notice).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(sink.wait_for(1).len(), 1);
    std::fs::remove_dir_all(&certs).unwrap();
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out() {
    // Accepts connections and never says a word (not even the 220 greeting).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = SmtpConfig::new(
        "127.0.0.1",
        SmtpTls::InsecurePlaintext,
        "microseg@example.com",
    );
    config.port = port;
    config.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let notice = email_only(examples::notice(microseg::notify::NoticeKind::Enforced));
    let err = channels(&config, 2).send(&notice).await.unwrap_err();
    assert!(err.to_string().contains("no answer within 300ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}
