//! No credential appears in any log line at any level: logs are captured at TRACE (every
//! crate, reqwest/hyper/rustls included) through a session login over TLS, calls, a session
//! expiry and renewal, a logout, basic authentication, and a refused password; then the
//! captured text is searched for the password, its basic-auth encoding, and every session
//! cookie and XSRF token the simulator handed out.

#![allow(clippy::panic, clippy::unwrap_used)]

use crate::nsx_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use microseg::nsx::{Client, NsxApi};
use microseg::nsxsim;
use nsx_support::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_credential_appears_in_any_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This thread's default (the test's runtime is single-threaded, so the client and the
    // simulator log here), not the process's: the other tests of the binary log too.
    let _capture = tracing::subscriber::set_default(subscriber);

    let password = "S3cret-Pa55word!";
    let sim = nsxsim::spawn(nsxsim::Config {
        tls: true,
        session_timeout: Duration::from_millis(300),
        users: [("admin".to_string(), password.to_string())].into(),
        ..nsxsim::Config::default()
    })
    .await
    .unwrap();
    let creds = credential_files(password);
    let ca = creds.0.with_file_name("ca.pem");
    std::fs::write(&ca, sim.ca_pem.as_ref().unwrap()).unwrap();
    // A callsite another test registered while this capture was being set up can keep
    // tracing's cached "nobody listens" (see notify_secrets): asked again now.
    tracing::callsite::rebuild_interest_cache();

    let mut cfg = sim_client_config(&sim.url, &creds, true);
    cfg.ca_bundle = Some(ca.clone());
    tracing::info!(config = ?cfg, "Client configuration");
    let client = Client::new(cfg).unwrap();
    tracing::info!(client = ?client, "Client");
    client.list_groups("default").await.unwrap();
    client
        .patch_infra(&application("default", "logged-app", 2))
        .await
        .unwrap();
    client.get_policy("default", "logged-app").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Expired on the manager: 403, new login, retried call.
    client.get_policy("default", "logged-app").await.unwrap();
    client.logout().await.unwrap();

    let mut basic = sim_client_config(&sim.url, &creds, false);
    basic.ca_bundle = Some(ca.clone());
    Client::new(basic)
        .unwrap()
        .get_group("default", "logged-app")
        .await
        .unwrap();

    let wrong = credential_files("wrong-password-xyz");
    let mut bad = sim_client_config(&sim.url, &wrong, true);
    bad.ca_bundle = Some(ca);
    let err = Client::new(bad)
        .unwrap()
        .list_groups("default")
        .await
        .unwrap_err();
    tracing::error!(error = %err, debug = ?err, "Expected failure");

    let tokens = sim.sim.issued_session_tokens();
    assert!(
        tokens.len() >= 2,
        "expected a login and a renewal: {tokens:?}"
    );
    sim.shutdown().await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("TRACE"), "capture is not at TRACE level");
    assert!(logs.contains("Created NSX session"));
    assert!(logs.contains("NSX session refused, logging in again"));
    let basic_auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
    let mut secrets = vec![
        password.to_string(),
        basic_auth,
        "wrong-password-xyz".to_string(),
    ];
    for (cookie, xsrf) in tokens {
        secrets.push(cookie);
        secrets.push(xsrf);
    }
    for secret in secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(&secret)) {
            panic!("a credential leaked into the logs: {line}");
        }
    }
}
