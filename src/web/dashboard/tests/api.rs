//! The JSON API: who may call it, the programme, the alert queue, the application view and
//! acknowledging.

use reqwest::StatusCode;
use serde_json::Value;

use super::*;
use crate::web::dashboard::api::{self, AlertQuery, AlertState, Filter};

#[tokio::test]
async fn without_token_or_user_header_the_dashboard_is_not_served() {
    let s = serve(config(None, None)).await;
    for path in API_GETS
        .iter()
        .chain(["/ui/", "/ui/alerts", "/ui/login"].iter())
    {
        let r = s.get(path, &[]).await;
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
            let r = s
                .get(path, auth.map(|a| ("authorization", a)).as_slice())
                .await;
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
    let body = serde_json::json!({"namespace": "shop", "name": "web", "flowIds": ["aaa111"], "comment": "x"});
    let r = s.post("/api/v1/alerts/acknowledge", &[], Some(&body)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A page without a session goes to the login form and comes back afterwards.
    let r = s.get("/ui/alerts", &[]).await;
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
        let r = s.get_with_token(path).await;
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
    let r = s.get_with_token("/api/v1/applications/shop/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "segmentationpolicy shop/nope: not found");
}

#[tokio::test]
async fn programme_groups_applications_by_wave_and_filters() {
    let s = serve(config(Some(TOKEN), None)).await;
    let get = async |q: &str| {
        let r = s.get_with_token(&format!("/api/v1/programme{q}")).await;
        r.json::<Value>().await.unwrap()
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
async fn acknowledge_names_the_wrong_field_and_needs_a_recorder() {
    let s = serve(config(Some(TOKEN), None)).await;
    let bearer = format!("Bearer {TOKEN}");
    let post = async |body: Value| {
        let auth = [("authorization", bearer.as_str())];
        let r = s
            .post("/api/v1/alerts/acknowledge", &auth, Some(&body))
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default().to_string();
        (status, error)
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
