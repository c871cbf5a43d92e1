//! The dashboard's routes and views, served on 127.0.0.1 over stores filled by hand.

use std::sync::Arc;

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use reqwest::StatusCode;
use serde_json::Value;

use super::api::{self, AckRequest, AlertQuery, AlertState, Filter};
use super::pages::{LOGIN_HTML, SHELL_HTML};
use super::*;

const TOKEN: &str = "t0ken-Sup3r-secret-value";

const WINDOWS: &str = r#"
- apiVersion: microseg.io/v1alpha1
  kind: EnforcementWindow
  metadata: {name: wave-1, namespace: shop, resourceVersion: "1"}
  spec:
    notifyAt: "2027-02-01T09:00:00Z"
    monitorFrom: "2027-02-01T09:00:00Z"
    enforceAt: "2027-02-16T09:00:00Z"
    postEnforcementMonitoring: 336h
- apiVersion: microseg.io/v1alpha1
  kind: EnforcementWindow
  metadata: {name: wave-critical, namespace: shop, resourceVersion: "2"}
  spec:
    notifyAt: "2027-03-15T09:00:00Z"
    monitorFrom: "2027-03-15T09:00:00Z"
    enforceAt: "2027-04-05T09:00:00Z"
    cleanupAt: "2027-04-19T09:00:00Z"
"#;

const POLICIES: &str = r#"
- apiVersion: microseg.io/v1alpha1
  kind: SegmentationPolicy
  metadata: {name: web, namespace: shop, resourceVersion: "10"}
  spec:
    application: Shop web frontend
    owners:
      - {name: Web team, email: web-team@example.com, webhook: "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"}
    criticality: Medium
    window: {name: wave-1}
    members: [{vmTag: {scope: app, tag: shop-web}}]
    rules:
      - name: https-from-anywhere
        direction: Inbound
        peers: [{any: true}]
        ports: [{protocol: TCP, port: 443}]
  status:
    phase: Monitoring
    nsx: {policyPath: /infra/domains/default/security-policies/ms_e2e_shop_web, ruleIds: {https-from-anywhere: 1001, catchall_in: 1002}}
    monitor:
      unmatchedTotal: 12
      openAlerts: 2
      flows:
        - {id: aaa111, source: 10.20.30.40, destination: 10.1.0.5, protocol: TCP, port: 8443, direction: Inbound, action: PASS, count: 2, firstSeen: "2027-02-02T10:00:00Z", lastSeen: "2027-02-03T10:00:00Z"}
        - {id: bbb222, source: 10.20.30.41, destination: 10.1.0.5, protocol: TCP, port: 22, direction: Inbound, action: PASS, count: 9, firstSeen: "2027-02-02T10:00:00Z", lastSeen: "2027-02-03T10:00:00Z"}
        - {id: ccc333, source: 10.20.30.42, destination: 10.1.0.5, protocol: UDP, port: 161, direction: Inbound, action: PASS, count: 1, firstSeen: "2027-02-02T10:00:00Z", lastSeen: "2027-02-04T10:00:00Z", acknowledged: {by: alice, at: "2027-02-04T11:00:00Z", comment: "SNMP poller, rule coming"}}
      series:
        - {start: "2027-02-03T10:00:00Z", unmatched: 11, dropped: 0}
- apiVersion: microseg.io/v1alpha1
  kind: SegmentationPolicy
  metadata: {name: dns, namespace: shop, resourceVersion: "11"}
  spec:
    application: Corporate DNS
    owners: [{name: Infra team, email: infra@example.com}]
    criticality: Critical
    window: {name: wave-critical}
    members: [{ipAddress: 10.9.0.53}]
- apiVersion: microseg.io/v1alpha1
  kind: SegmentationPolicy
  metadata: {name: lost, namespace: other, resourceVersion: "12"}
  spec:
    owners: [{name: Nobody, email: nobody@example.com}]
    criticality: Low
    window: {name: missing}
    members: [{ipAddress: 10.9.0.99}]
"#;

fn stores() -> (Store<SegmentationPolicy>, Store<EnforcementWindow>) {
    let (policies, mut pw) = reflector::store();
    for p in serde_yaml::from_str::<Vec<SegmentationPolicy>>(POLICIES).unwrap() {
        pw.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let (windows, mut ww) = reflector::store();
    for w in serde_yaml::from_str::<Vec<EnforcementWindow>>(WINDOWS).unwrap() {
        ww.apply_watcher_event(&watcher::Event::Apply(w));
    }
    (policies, windows)
}

/// The generation of the stores' change signal when a test server starts.
const GENERATION: u64 = 0x2a;

const PROXY_SECRET: &str = "proxy-secret-0123456789";

fn config(token: Option<&str>, header: Option<&str>) -> DashboardConfig {
    DashboardConfig {
        token: token.map(SecretString::from),
        user_header: header.map(str::to_string),
        proxy_secret: header.map(|_| SecretString::from(PROXY_SECRET)),
        ..DashboardConfig::default()
    }
}

struct Server {
    url: String,
    /// The stores' change signal.
    changes: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(config: DashboardConfig) -> Server {
    let (policies, windows) = stores();
    let (changes, receiver) = tokio::sync::watch::channel(GENERATION);
    let app = router(DashboardState {
        policies,
        windows,
        changes: receiver,
        recorder: None,
        client: None,
        config,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, changes, task }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const API_GETS: [&str; 5] = [
    "/api/v1",
    "/api/v1/programme",
    "/api/v1/alerts",
    "/api/v1/applications/shop/web",
    "/api/v1/events",
];

#[tokio::test]
async fn without_token_or_user_header_the_dashboard_is_not_served() {
    let s = serve(config(None, None)).await;
    for path in API_GETS
        .iter()
        .chain(["/ui/", "/ui/alerts", "/ui/login"].iter())
    {
        let r = client()
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("--dashboard-token-file"), "{path}: {text}");
    }
}

#[tokio::test]
async fn the_api_refuses_requests_without_the_token() {
    let s = serve(config(Some(TOKEN), None)).await;
    for path in API_GETS {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dG9rZW4="),
            Some(TOKEN),
        ] {
            let mut req = client().get(format!("{}{path}", s.url));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
            assert!(r.headers().contains_key("www-authenticate"));
            let body: Value = r.json().await.unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("authorization:"),
                "{body}"
            );
        }
    }
    let r = client()
        .post(format!("{}/api/v1/alerts/acknowledge", s.url))
        .json(&serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["aaa111"], "comment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A page without a session goes to the login form and comes back afterwards.
    let r = client()
        .get(format!("{}/ui/alerts", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/ui/login?next=/ui/alerts"
    );
}

#[tokio::test]
async fn with_the_token_every_api_answers_json_without_secrets() {
    let s = serve(config(Some(TOKEN), None)).await;
    for path in &API_GETS[..4] {
        let r = client()
            .get(format!("{}{path}", s.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let text = r.text().await.unwrap();
        assert!(!text.contains(TOKEN), "{path} shows the token");
        assert!(
            !text.contains("hooks.slack.com"),
            "{path} shows a webhook URL"
        );
        serde_json::from_str::<Value>(&text).unwrap();
    }
    let r = client()
        .get(format!("{}/api/v1/applications/shop/nope", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "segmentationpolicy shop/nope: not found");
}

#[tokio::test]
async fn programme_groups_applications_by_wave_and_filters() {
    let s = serve(config(Some(TOKEN), None)).await;
    let get = |q: &'static str| {
        let url = format!("{}/api/v1/programme{q}", s.url);
        async move {
            client()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let all = get("").await;
    let waves: Vec<&str> = all["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(waves, ["wave-1", "wave-critical", "missing"]);
    assert_eq!(all["applications"], 3);
    assert_eq!(all["openAlerts"], 2);
    let w1 = &all["waves"][0];
    assert_eq!(w1["schedule"]["cleanupAt"], "2027-03-02T09:00:00Z");
    assert_eq!(w1["applications"][0]["application"], "Shop web frontend");
    assert_eq!(w1["applications"][0]["phase"], "Monitoring");
    assert_eq!(w1["phases"]["Monitoring"], 1);
    assert_eq!(all["waves"][2]["found"], false);
    assert_eq!(
        all["choices"]["namespaces"],
        serde_json::json!(["other", "shop"])
    );

    let critical = get("?criticality=critical").await;
    assert_eq!(critical["applications"], 1);
    assert_eq!(critical["waves"][0]["applications"][0]["name"], "dns");
    let search = get("?q=WEB%20TEAM").await;
    assert_eq!(search["applications"], 1);
    assert_eq!(search["waves"][0]["name"], "wave-1");
    let ns = get("?namespace=other&phase=pending").await;
    assert_eq!(ns["applications"], 1);
    assert_eq!(ns["waves"][0]["name"], "missing");
    let none = get("?phase=Enforcing").await;
    assert_eq!(none["applications"], 0);
    assert_eq!(none["waves"], serde_json::json!([]));
}

#[test]
fn alert_queue_is_newest_then_loudest_with_a_logged_rule_suggestion() {
    let (policies, _) = stores();
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let q = api::alerts(&policies.state(), &AlertQuery::default(), now);
    let ids: Vec<&str> = q.alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        ["bbb222", "aaa111"],
        "open only, same lastSeen: loudest first"
    );
    assert_eq!(q.open, 2);
    let rule = &q.alerts[1].suggested_rule;
    assert!(
        rule.contains("- name: allow-in-tcp-8443-from-10-20-30-40"),
        "{rule}"
    );
    assert!(rule.contains("logged: true"), "{rule}");
    let parsed: Vec<PolicyRuleCheck> = serde_yaml::from_str(rule).unwrap();
    assert_eq!(parsed.len(), 1);

    let all = api::alerts(
        &policies.state(),
        &AlertQuery {
            state: AlertState::All,
            filter: Filter::default(),
        },
        now,
    );
    assert_eq!(all.alerts[0].id, "ccc333", "newest first");
    let acked = api::alerts(
        &policies.state(),
        &AlertQuery {
            state: AlertState::Acknowledged,
            filter: Filter::default(),
        },
        now,
    );
    assert_eq!(acked.alerts.len(), 1);
    assert_eq!(acked.alerts[0].acknowledged.as_ref().unwrap().by, "alice");
}

/// The suggestion parses as a `spec.rules` entry.
type PolicyRuleCheck = crate::api::PolicyRule;

#[test]
fn application_view_has_rules_ids_and_no_webhook_url() {
    let (policies, windows) = stores();
    let web = policies
        .state()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("web"))
        .unwrap();
    let w = windows.state().into_iter().next();
    let v = api::application(&web, w.as_deref(), jiff::Timestamp::UNIX_EPOCH);
    assert!(v.owners[0].webhook);
    let json = serde_json::to_string(&v).unwrap();
    assert!(!json.contains("hooks.slack.com"));
    assert_eq!(v.rules[0].name, "https-from-anywhere");
    assert_eq!(v.nsx.as_ref().unwrap().rule_ids["catchall_in"], 1002);
    // Open first, then acknowledged.
    assert!(v.alerts.last().unwrap().acknowledged.is_some());
    assert_eq!(v.monitor.series.len(), 1);
}

#[tokio::test]
async fn login_form_sets_an_httponly_strict_cookie_that_is_not_the_token() {
    let s = serve(config(Some(TOKEN), None)).await;
    let r = client()
        .post(format!("{}/ui/login", s.url))
        .form(&[("token", "nope"), ("next", "/ui/alerts")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("token: not accepted"));

    let r = client()
        .post(format!("{}/ui/login", s.url))
        .form(&[("token", TOKEN), ("next", "/ui/alerts")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/ui/alerts");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure")
            && cookie.contains("Max-Age="),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = client()
        .get(format!("{}/api/v1/alerts", s.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client()
        .get(format!("{}/ui/", s.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("data-page=\"programme\"") && page.contains("/ui/assets/app.js"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );

    // No open redirect.
    let r = client()
        .post(format!("{}/ui/login", s.url))
        .form(&[("token", TOKEN), ("next", "//evil.example.com/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    // A forged cookie does not pass.
    let r = client()
        .get(format!("{}/api/v1/alerts", s.url))
        .header("cookie", format!("{SESSION_COOKIE}={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_proxy_user_header_is_accepted_when_configured_only() {
    let with = serve(config(None, Some("X-Forwarded-User"))).await;
    let r = client()
        .get(format!("{}/api/v1/alerts", with.url))
        .header("x-forwarded-user", "alice@example.com")
        .header(PROXY_SECRET_HEADER, PROXY_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Without the proxy's secret (or with a wrong one) the header is anyone's: ignored.
    for secret in [None, Some("wrong-secret-0123456789")] {
        let mut req = client()
            .get(format!("{}/api/v1/alerts", with.url))
            .header("x-forwarded-user", "alice@example.com");
        if let Some(x) = secret {
            req = req.header(PROXY_SECRET_HEADER, x);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "secret {secret:?}");
    }
    let r = client()
        .get(format!("{}/api/v1/alerts", with.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let without = serve(config(Some(TOKEN), None)).await;
    let r = client()
        .get(format!("{}/api/v1/alerts", without.url))
        .header("x-forwarded-user", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The proxy's user is recorded; a token user's own name is marked as such.
    let req = AckRequest {
        by: Some("mallory".into()),
        ..Default::default()
    };
    let proxy = User {
        name: Some("alice@example.com".into()),
        ..User::default()
    };
    assert_eq!(api::recorded_by(&proxy, &req), "alice@example.com");
    assert_eq!(
        api::recorded_by(&User::default(), &req),
        "mallory (dashboard token)"
    );
    assert_eq!(
        api::recorded_by(&User::default(), &AckRequest::default()),
        "dashboard"
    );
}

#[tokio::test]
async fn acknowledge_names_the_wrong_field_and_needs_a_recorder() {
    let s = serve(config(Some(TOKEN), None)).await;
    let post = |body: Value| {
        let url = format!("{}/api/v1/alerts/acknowledge", s.url);
        async move {
            let r = client()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let (st, e) = post(serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["aaa111"], "comment": "  "})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.starts_with("comment: required"), "{e}");
    let (st, e) =
        post(serde_json::json!({"namespace": "shop", "name": "web", "comment": "ok"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.starts_with("flowIds:"), "{e}");
    let (st, e) = post(serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["a"], "all": true, "comment": "ok"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.starts_with("flowIds:"), "{e}");
    let (st, e) = post(serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["a"], "comment": "ok", "extra": 1})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e.starts_with("body:") && e.contains("extra"), "{e}");
    let (st, e) = post(
        serde_json::json!({"namespace": "shop", "name": "nope", "flowIds": ["a"], "comment": "ok"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(e, "segmentationpolicy shop/nope: not found");
    let (st, e) = post(serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["aaa111"], "comment": "known"})).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.starts_with("acknowledge:"), "{e}");
    let long = "x".repeat(api::COMMENT_MAX + 1);
    let (st, e) =
        post(serde_json::json!({"namespace": "shop", "name": "web", "all": true, "comment": long}))
            .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.starts_with("comment: longer"), "{e}");
}

#[tokio::test]
async fn events_announce_the_current_version_at_once_and_each_store_change() {
    let s = serve(config(Some(TOKEN), None)).await;
    let mut r = client()
        .get(format!("{}/api/v1/events", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut next = async || {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&chunk).into_owned()
    };
    let text = next().await;
    assert!(text.contains("event: change"), "{text}");
    assert!(text.contains(&format!("{GENERATION:016x}")), "{text}");
    s.changes.send_modify(|g| *g += 1);
    let text = next().await;
    assert!(text.contains("event: change"), "{text}");
    assert!(text.contains(&format!("{:016x}", GENERATION + 1)), "{text}");
}

/// Time is paused in these tests: it moves on only when every task waits, to the next timer.
mod stream {
    use std::time::Duration;

    use futures::StreamExt;
    use tokio::sync::watch;
    use tokio::time::timeout;

    use super::api::{EVENTS_MIN_GAP, EVENTS_SETTLE, versions};

    const LIFETIME: Duration = Duration::from_secs(25);

    #[tokio::test(start_paused = true)]
    async fn the_stream_wakes_on_a_store_event() {
        let (tx, rx) = watch::channel(7);
        let mut stream = std::pin::pin!(versions(rx, LIFETIME));
        assert_eq!(stream.next().await, Some(7), "the current version at once");
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send_modify(|g| *g += 1);
        let woke = timeout(EVENTS_SETTLE + Duration::from_millis(10), stream.next()).await;
        assert_eq!(woke, Ok(Some(8)), "announced once the change settled");
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_sends_nothing_while_nothing_changes() {
        let (tx, rx) = watch::channel(7);
        let mut stream = std::pin::pin!(versions(rx, LIFETIME));
        assert_eq!(stream.next().await, Some(7));
        // Setting the same value again is no change of the stores.
        tx.send_if_modified(|_| false);
        assert!(
            timeout(LIFETIME - Duration::from_secs(1), stream.next())
                .await
                .is_err(),
            "nothing sent"
        );
        assert_eq!(
            stream.next().await,
            None,
            "the stream ends after its lifetime"
        );
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_of_events_sends_a_few_updates_with_the_latest_version() {
        let (tx, rx) = watch::channel(0);
        let mut stream = std::pin::pin!(versions(rx, LIFETIME));
        assert_eq!(stream.next().await, Some(0));
        // A thousand store events over two seconds.
        let wave = tokio::spawn(async move {
            for _ in 0..1_000 {
                tx.send_modify(|g| *g += 1);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tx
        });
        let mut sent = Vec::new();
        while let Ok(Some(v)) = timeout(Duration::from_secs(3), stream.next()).await {
            sent.push(v);
        }
        let _tx = wave.await.unwrap();
        let most = (2_000 / EVENTS_MIN_GAP.as_millis() + 2) as usize;
        assert!(
            (1..=most).contains(&sent.len()),
            "{} updates: {sent:?}",
            sent.len()
        );
        assert_eq!(sent.last(), Some(&1_000), "{sent:?}");
    }
}

#[test]
fn session_values_are_random_and_the_config_hides_its_secrets() {
    let v = new_session_id();
    assert_eq!(v.len(), 64);
    assert_ne!(v, new_session_id());
    assert!(!format!("{:?}", config(Some(TOKEN), None)).contains(TOKEN));
}

#[test]
fn assets_are_self_contained() {
    for (name, text) in [
        ("shell.html", SHELL_HTML),
        ("login.html", LOGIN_HTML),
        ("app.js", APP_JS),
        ("style.css", STYLE_CSS),
    ] {
        for remote in ["http://", "https://", "//cdn", "@import"] {
            let allowed = name == "app.js" && text.contains("http://www.w3.org/2000/svg");
            let hits = text.matches(remote).count() - usize::from(allowed && remote == "http://");
            assert_eq!(hits, 0, "{name} loads {remote}");
        }
        assert!(!text.contains("<script>"), "{name}: inline script");
    }
    assert!(SHELL_HTML.contains("lang=\"en\"") && LOGIN_HTML.contains("<label for=\"token\">"));
}

#[tokio::test]
async fn sessions_are_random_end_at_logout_and_failed_sign_ins_are_limited() {
    let s = serve(config(Some(TOKEN), None)).await;
    let sign_in = || async {
        let r = client()
            .post(format!("{}/ui/login", s.url))
            .form(&[("token", TOKEN), ("next", "/ui/")])
            .send()
            .await
            .unwrap();
        let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
        c.split(';').next().unwrap().to_string()
    };
    let (a, b) = (sign_in().await, sign_in().await);
    assert_ne!(a, b, "each sign-in gets its own session");
    let alerts = |cookie: String| {
        let url = format!("{}/api/v1/alerts", s.url);
        async move {
            client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(alerts(a.clone()).await, StatusCode::OK);
    let r = client()
        .post(format!("{}/ui/logout", s.url))
        .header("cookie", &a)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    let removal = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        removal.starts_with(&format!("{SESSION_COOKIE}=;"))
            && removal.contains("Max-Age=0")
            && removal.contains("HttpOnly"),
        "the browser drops the cookie: {removal}"
    );
    assert_eq!(
        alerts(a).await,
        StatusCode::UNAUTHORIZED,
        "a signed-out session is gone"
    );
    assert_eq!(alerts(b).await, StatusCode::OK, "other sessions stay");

    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = client()
            .post(format!("{}/ui/login", s.url))
            .form(&[("token", "wrong-token-0123456789"), ("next", "/ui/")])
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(&codes[..10], &[401; 10], "{codes:?}");
    assert_eq!(codes[11], 429, "{codes:?}");
    // Blocked even with the right token until the minute is over.
    let r = client()
        .post(format!("{}/ui/login", s.url))
        .form(&[("token", TOKEN), ("next", "/ui/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

#[test]
fn a_proxy_proves_itself_by_every_proof_configured() {
    let shared = |secret: Option<&str>, cidrs: &[&str]| {
        let (policies, windows) = stores();
        Shared {
            state: DashboardState {
                policies,
                windows,
                changes: tokio::sync::watch::channel(0).1,
                recorder: None,
                client: None,
                config: DashboardConfig {
                    user_header: Some("X-Forwarded-User".into()),
                    proxy_secret: secret.map(SecretString::from),
                    proxy_sources: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
                    ..DashboardConfig::default()
                },
            },
            sessions: std::sync::Mutex::default(),
            failures: std::sync::Mutex::default(),
        }
    };
    let mut with_secret = HeaderMap::new();
    with_secret.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    with_secret.insert(
        PROXY_SECRET_HEADER,
        HeaderValue::from_static("s3cret-0123456789"),
    );
    let mut bare = HeaderMap::new();
    bare.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    let proxy: Option<std::net::IpAddr> = Some("10.9.1.2".parse().unwrap());
    let other: Option<std::net::IpAddr> = Some("10.8.1.2".parse().unwrap());
    let alice = Some(User {
        name: Some("alice".into()),
        ..User::default()
    });

    let s = shared(None, &[]);
    assert_eq!(
        s.identify(&with_secret, proxy),
        None,
        "no proof configured: never"
    );
    let s = shared(Some("s3cret-0123456789"), &[]);
    assert_eq!(s.identify(&with_secret, other), alice);
    assert_eq!(s.identify(&bare, proxy), None);
    let s = shared(None, &["10.9.0.0/16"]);
    assert_eq!(s.identify(&bare, proxy), alice);
    assert_eq!(s.identify(&bare, other), None);
    assert_eq!(s.identify(&bare, None), None);
    let s = shared(Some("s3cret-0123456789"), &["10.9.0.0/16"]);
    assert_eq!(s.identify(&with_secret, proxy), alice);
    assert_eq!(
        s.identify(&with_secret, other),
        None,
        "both proofs must hold"
    );
    assert_eq!(s.identify(&bare, proxy), None, "both proofs must hold");
    let mut long = with_secret.clone();
    long.insert(
        "x-forwarded-user",
        HeaderValue::from_str(&"u".repeat(254)).unwrap(),
    );
    assert_eq!(
        s.identify(&long, proxy),
        None,
        "over the CRD's 253 characters"
    );
}

#[test]
fn the_application_page_lists_the_recorded_flows_enforcement_would_drop() {
    let (policies, _) = stores();
    let all: Vec<SegmentationPolicy> = policies.state().iter().map(|p| (**p).clone()).collect();
    let mut web = all
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web"))
        .unwrap()
        .clone();
    // Every recorded flow reached the catch-all: all three would drop, acknowledged or not.
    let drops = api::would_drop(&web, &all);
    assert_eq!(drops.len(), 3, "{drops:?}");
    let ssh = drops.iter().find(|d| d.flow.ends_with(":22")).unwrap();
    assert_eq!(ssh.flow, "TCP 10.20.30.41 -> 10.1.0.5:22");
    assert_eq!(ssh.count, 9);
    assert_eq!(ssh.by, "shop/web catchall_in");
    // A rule for 8443 in the spec takes that flow off the list.
    web.spec.rules.push(
        serde_yaml::from_str(
            "{name: app-port, direction: Inbound, peers: [{cidr: 10.20.30.0/24}], ports: [{protocol: TCP, port: 8443}]}",
        )
        .unwrap(),
    );
    let drops = api::would_drop(&web, &all);
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert!(drops.iter().all(|d| !d.flow.ends_with(":8443")));
}

#[test]
fn the_timeline_has_the_canary_steps_of_a_wave() {
    let (policies, windows) = stores();
    let mut ws: Vec<Arc<EnforcementWindow>> = windows.state();
    let mut w = (*ws[0]).clone();
    w.spec.canary = Some(
        serde_yaml::from_str("{steps: [{members: 1, for: 24h}, {percent: 50, for: 48h}]}").unwrap(),
    );
    ws[0] = Arc::new(w.clone());
    let p = api::programme(
        &policies.state(),
        &ws,
        &Filter::default(),
        jiff::Timestamp::UNIX_EPOCH,
    );
    let wave = p
        .waves
        .iter()
        .find(|x| x.name == w.metadata.name.clone().unwrap())
        .unwrap();
    let canary = &wave.schedule.as_ref().unwrap().canary;
    assert_eq!(canary.len(), 2);
    assert_eq!(canary[0].covers, "1 VM");
    assert_eq!(canary[0].from, w.spec.enforce_at);
    assert_eq!(
        canary[1].until.0,
        w.spec.enforce_at.0 + jiff::SignedDuration::from_hours(72)
    );
    assert_eq!(canary[1].covers, "50% of the VMs");
}
