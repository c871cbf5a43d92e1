//! The dashboard's routes and views, served on 127.0.0.1 over stores filled by hand: the
//! fixtures and the test server here, the tests by what they exercise in the modules below.

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;

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

/// The dashboard over the fixtures with no recorder and no API server.
fn state(config: DashboardConfig) -> DashboardState {
    let (policies, windows) = stores();
    DashboardState {
        policies,
        windows,
        changes: tokio::sync::watch::channel(GENERATION).1,
        recorder: None,
        client: None,
        config,
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
    let (changes, receiver) = tokio::sync::watch::channel(GENERATION);
    let app = router(DashboardState {
        changes: receiver,
        ..state(config)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, changes, task }
}

impl Server {
    /// `GET path` with `headers`.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send(client().get(format!("{}{path}", self.url)), headers)
            .await
    }

    /// `GET path` with the dashboard token.
    async fn get_with_token(&self, path: &str) -> reqwest::Response {
        let bearer = format!("Bearer {TOKEN}");
        self.get(path, &[("authorization", &bearer)]).await
    }

    /// `POST path` with `headers` and, if any, a JSON body.
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = client().post(format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req, headers).await
    }

    async fn send(
        &self,
        mut req: reqwest::RequestBuilder,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap()
    }

    /// Sends the login form with `token`, to come back to `next`.
    async fn login(&self, token: &str, next: &str) -> reqwest::Response {
        client()
            .post(format!("{}/ui/login", self.url))
            .form(&[("token", token), ("next", next)])
            .send()
            .await
            .unwrap()
    }

    /// Signs in with the token; the session cookie's `name=value`.
    async fn sign_in(&self) -> String {
        let r = self.login(TOKEN, "/ui/").await;
        session_pair(&r)
    }
}

/// The `name=value` of the cookie an answer sets.
fn session_pair(r: &reqwest::Response) -> String {
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
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

mod api;
mod pages;
mod stream;
