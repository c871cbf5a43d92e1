//! No secret (SMTP password, webhook URL path and query) appears in any log line (captured at
//! TRACE, `log` records included), in any error's Display or Debug, or in the Debug output of
//! the configuration and the channels, whether delivery succeeds or fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::servers;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use microseg::notify::config::{NotifyConfig, RetryPolicy, WebhookConfig};
use microseg::notify::{Channels, NoticeKind, Notifier, examples};
use servers::{SmtpSink, WebhookReceiver};

const PASSWORD: &str = "Pw-9f8e7d6c-NOT-FOR-LOGS";
const TOKEN: &str = "B0T0KEN-a1b2c3d4";
const QUERY_SECRET: &str = "SIG-5e6f7a8b";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn lookup(vars: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn no_secret_in_logs_errors_or_debug_output() {
    use tracing_subscriber::util::SubscriberInitExt;
    let capture = Capture::default();
    // This thread's default (the test's runtime is single-threaded, so every task of the test
    // logs here), not the process's: the other tests of the binary log too.
    let _capture = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish()
        .set_default();

    let good = SmtpSink::start("secrets-ok", &["--auth", &format!("bot:{PASSWORD}")]);
    let wrong = SmtpSink::start("secrets-wrong", &["--auth", "bot:another-password"]);
    let hook_ok = WebhookReceiver::start(StatusCode::OK).await;
    let hook_bad = WebhookReceiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    // The other tests of the binary, on other threads, hit the same log lines (the retry
    // warnings) while this capture was being set up; a callsite registered during that moment
    // can keep tracing's cached "nobody listens" (it did when only the notify_* tests ran).
    // Every callsite's interest is asked again now that this capture exists.
    tracing::callsite::rebuild_interest_cache();

    let pw_dir = servers::temp_dir("secrets-pw");
    let pw_file = pw_dir.path().join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    let config_for = |port: u16| {
        let vars = vec![
            ("MICROSEG_SMTP_HOST".to_string(), "127.0.0.1".to_string()),
            ("MICROSEG_SMTP_PORT".to_string(), port.to_string()),
            (
                "MICROSEG_SMTP_TLS".to_string(),
                "insecure-plaintext".to_string(),
            ),
            (
                "MICROSEG_SMTP_FROM".to_string(),
                "microseg@example.com".to_string(),
            ),
            ("MICROSEG_SMTP_USERNAME".to_string(), "bot".to_string()),
            (
                "MICROSEG_SMTP_PASSWORD_FILE".to_string(),
                pw_file.to_str().unwrap().to_string(),
            ),
            (
                "MICROSEG_NOTIFY_RETRY_ATTEMPTS".to_string(),
                "2".to_string(),
            ),
            (
                "MICROSEG_NOTIFY_RETRY_BACKOFF".to_string(),
                "20ms".to_string(),
            ),
            // The receivers are on loopback over http: allowed for this test only.
            (
                "MICROSEG_WEBHOOK_ALLOWED_NETWORKS".to_string(),
                "127.0.0.0/8".to_string(),
            ),
            (
                "MICROSEG_WEBHOOK_INSECURE_ALLOW_HTTP".to_string(),
                "true".to_string(),
            ),
        ];
        NotifyConfig::from_lookup(&lookup(vars)).unwrap()
    };
    let mut texts = Vec::new();

    let ok_config = config_for(good.port);
    assert_eq!(
        ok_config
            .smtp
            .as_ref()
            .unwrap()
            .auth
            .as_ref()
            .unwrap()
            .password
            .expose(),
        PASSWORD
    );
    texts.push(format!("{ok_config:?}"));
    let ok = Channels::from_config(&ok_config).unwrap();
    texts.push(format!("{ok:?}"));

    let mut notice = examples::notice(NoticeKind::Scheduled);
    notice.owner.webhook = Some(format!(
        "http://127.0.0.1:{}/services/{TOKEN}?sig={QUERY_SECRET}",
        hook_ok.addr.port()
    ));
    let deliveries = ok.send(&notice).await.unwrap();
    assert_eq!(deliveries.len(), 2, "e-mail and webhook");
    assert_eq!(good.wait_for(1).len(), 1);
    assert_eq!(hook_ok.received().len(), 1);

    // Failures: wrong password on the server side, a 500-ing webhook, an unreachable webhook.
    let bad = Channels::from_config(&config_for(wrong.port)).unwrap();
    notice.owner.webhook = Some(format!(
        "http://127.0.0.1:{}/services/{TOKEN}?sig={QUERY_SECRET}",
        hook_bad.addr.port()
    ));
    for r in bad.send_each(&notice).await {
        let e = r.result.unwrap_err();
        texts.push(format!("{e} {e:?}"));
    }
    notice.owner.email = None;
    notice.owner.webhook = Some(format!(
        "http://127.0.0.1:1/services/{TOKEN}?sig={QUERY_SECRET}"
    ));
    let webhook_only = Channels::new(
        None,
        microseg::notify::webhook::WebhookNotifier::new(
            &WebhookConfig {
                timeout: Duration::from_secs(2),
                allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
                allow_http: true,
                ..WebhookConfig::default()
            },
            Default::default(),
        )
        .unwrap(),
        RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        },
    );
    let e = webhook_only.send(&notice).await.unwrap_err();
    texts.push(format!("{e} {e:?}"));

    // A configuration error around the password.
    let e = NotifyConfig::from_lookup(&lookup(vec![
        (
            "MICROSEG_SMTP_HOST".to_string(),
            "mail.example.com".to_string(),
        ),
        (
            "MICROSEG_SMTP_FROM".to_string(),
            "a@example.com".to_string(),
        ),
        ("MICROSEG_SMTP_PASSWORD".to_string(), PASSWORD.to_string()),
    ]))
    .unwrap_err();
    texts.push(format!("{e} {e:?}"));

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Sent owner notice"), "capture works:\n{log}");
    assert!(log.contains("Owner notice failed, retrying"), "{log}");
    assert!(
        log.contains(" TRACE "),
        "captured at TRACE, dependencies included:\n{log}"
    );
    texts.push(log);
    for text in &texts {
        for secret in [PASSWORD, TOKEN, QUERY_SECRET] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
    assert_eq!(
        wrong.log("auth.log"),
        vec!["bad bot"; 2],
        "the wrong password was tried twice"
    );
}
