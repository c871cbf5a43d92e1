//! An end-to-end environment per test: a namespace on the shared control plane, an NSX
//! simulator, a real SMTP server, a ServiceAccount with exactly the chart's RBAC, and the
//! controller as a separate process running with that identity.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::ControlPlane;
use super::servers;

pub struct Env {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub sim: microseg::nsxsim::Running,
    pub smtp: servers::SmtpSink,
    /// Credentials, notification settings and the controllers' logs; removed on drop unless the
    /// test failed (its message names the directory).
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    pub sa_kubeconfig: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("kept {} for the failed test", tmp.keep().display());
        }
    }
}

pub struct Controller {
    child: Child,
    pub log: PathBuf,
    /// Health, readiness and metrics.
    pub http: u16,
    /// Ingestion.
    pub ingest: u16,
    /// Dashboard.
    pub dashboard: u16,
}

/// The controller's three listeners.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    pub ingest: u16,
    pub dashboard: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            http: free_port(),
            ingest: free_port(),
            dashboard: free_port(),
        }
    }
}

impl Controller {
    /// Its ports (to start another controller on the same ones).
    pub fn ports(&self) -> Ports {
        Ports {
            http: self.http,
            ingest: self.ingest,
            dashboard: self.dashboard,
        }
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// The process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gates line of [`Env::window`].
pub const WAIVED: &str = "gates: {waive: [Blind, QuietPeriod]}";

/// The controllers' `--resync`: 20 s, or `MICROSEG_E2E_RESYNC` (e.g. `5m`, the default of the
/// real controller) for long idle measurements.
pub fn resync() -> Duration {
    std::env::var("MICROSEG_E2E_RESYNC")
        .ok()
        .map(|s| {
            s.parse::<microseg::api::duration::Duration>()
                .unwrap_or_else(|e| panic!("MICROSEG_E2E_RESYNC={s}: {e}"))
                .get()
                .unsigned_abs()
        })
        .unwrap_or(Duration::from_secs(20))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn at(offset_secs: i64) -> String {
    let t = Timestamp::now() + SignedDuration::from_secs(offset_secs);
    Timestamp::from_second(t.as_second()).unwrap().to_string()
}

impl Env {
    pub async fn new(prefix: &str) -> Env {
        let cp = super::shared();
        let ns = cp.namespace(prefix);
        let sim = microseg::nsxsim::spawn(microseg::nsxsim::Config::default())
            .await
            .unwrap();
        // The VMs of the example wave, so groups have effective members.
        let vms = std::fs::read(super::repo().join("deploy/nsxsim/example-vms.json")).unwrap();
        let status = reqwest::Client::new()
            .put(format!("{}/admin/vms", sim.url))
            .header("content-type", "application/json")
            .body(vms)
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status.is_success(),
            "loading VMs into the simulator: {status}"
        );
        let smtp = servers::SmtpSink::start(&format!("e2e-{prefix}"), &[]);
        let tmp = servers::temp_dir(&format!("e2e-{prefix}-env"));
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("nsx")).unwrap();
        std::fs::write(dir.join("nsx/username"), "admin").unwrap();
        std::fs::write(dir.join("nsx/password"), microseg::nsxsim::DEFAULT_PASSWORD).unwrap();
        std::fs::create_dir_all(dir.join("notify")).unwrap();
        for (k, v) in [
            ("smtp-host", "127.0.0.1".to_string()),
            ("smtp-port", smtp.port.to_string()),
            ("smtp-tls", "insecure-plaintext".to_string()),
            ("smtp-from", "microseg <microseg@example.com>".to_string()),
            ("notify-retry-attempts", "2".to_string()),
            ("notify-retry-backoff", "200ms".to_string()),
        ] {
            std::fs::write(dir.join("notify").join(k), v).unwrap();
        }
        let sa_kubeconfig = service_account(cp, &ns, &dir);
        Env {
            cp,
            ns,
            sim,
            smtp,
            dir,
            tmp: Some(tmp),
            sa_kubeconfig,
        }
    }

    /// Starts the controller as the ServiceAccount, watching only this namespace.
    pub fn controller(&self, name: &str, extra: &[&str]) -> Controller {
        self.controller_on(name, Ports::free(), extra)
    }

    /// Starts the controller with its listeners on these ports.
    pub fn controller_on(&self, name: &str, ports: Ports, extra: &[&str]) -> Controller {
        let log = self.dir.join(format!("controller-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_microseg"))
            .args(["controller", "--cluster", "e2e", "--namespace", &self.ns])
            .arg("--kubeconfig")
            .arg(&self.sa_kubeconfig)
            .args(["--nsx-url", &self.sim.url, "--nsx-auth", "session"])
            .arg("--nsx-insecure-allow-http")
            .arg("--nsx-credentials-dir")
            .arg(self.dir.join("nsx"))
            .arg("--notify-config-dir")
            .arg(self.dir.join("notify"))
            .args([
                "--resync",
                &format!("{}s", resync().as_secs()),
                "--reminder-before",
                "8s",
                "--notice-retry",
                "2s",
            ])
            .args(["--http-addr", &format!("127.0.0.1:{}", ports.http)])
            .args(["--ingest-addr", &format!("127.0.0.1:{}", ports.ingest)])
            .args([
                "--dashboard-addr",
                &format!("127.0.0.1:{}", ports.dashboard),
            ])
            .arg("--dashboard-insecure-cookie")
            .args(extra)
            .env("RUST_LOG", "info,microseg=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller {
            child,
            log,
            http: ports.http,
            ingest: ports.ingest,
            dashboard: ports.dashboard,
        }
    }

    pub fn apply(&self, yaml: &str) {
        let out = self
            .cp
            .kubectl_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An example policy from deploy/examples, moved to this namespace; webhooks removed.
    pub fn example(&self, file: &str) -> String {
        let text =
            std::fs::read_to_string(super::repo().join("deploy/examples").join(file)).unwrap();
        text.replace("namespace: shop", &format!("namespace: {}", self.ns))
            .lines()
            .filter(|l| !l.trim_start().starts_with("webhook:"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A window for tests that are not about the evidence gates: it waives Blind and
    /// QuietPeriod in writing (the defaults would hold a compressed schedule for 72 hours).
    /// Replace [`WAIVED`] to set other gates.
    pub fn window(
        &self,
        name: &str,
        notify: i64,
        monitor: i64,
        enforce: i64,
        cleanup: i64,
        notice: &str,
    ) -> String {
        format!(
            "apiVersion: microseg.io/v1alpha1\nkind: EnforcementWindow\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  notifyAt: \"{}\"\n  monitorFrom: \"{}\"\n  enforceAt: \"{}\"\n  cleanupAt: \"{}\"\n  minimumNotice: {notice}\n  postEnforcementMonitoring: 5s\n  {WAIVED}\n",
            at(notify),
            at(monitor),
            at(enforce),
            at(cleanup),
            ns = self.ns
        )
    }

    /// Approves the policy's current generation (`microseg.io/approved-generation`).
    pub fn approve(&self, name: &str) {
        let generation = self.policy(name)["metadata"]["generation"]
            .as_i64()
            .unwrap();
        self.cp.kubectl_ok(&[
            "annotate",
            "--overwrite",
            "segpol",
            "-n",
            &self.ns,
            name,
            &format!("microseg.io/approved-generation={generation}"),
            "microseg.io/approved-by=change-board",
        ]);
    }

    pub fn policy(&self, name: &str) -> Value {
        let out = self
            .cp
            .kubectl(&["get", "segpol", "-n", &self.ns, name, "-o", "json"]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn phase(&self, name: &str) -> String {
        self.policy(name)["status"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn condition(&self, name: &str, type_: &str) -> (String, String) {
        let p = self.policy(name);
        let empty = vec![];
        let c = p["status"]["conditions"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null);
        (
            c["status"].as_str().unwrap_or("").into(),
            c["reason"].as_str().unwrap_or("").into(),
        )
    }

    /// Polls until `check` holds or `timeout` passes.
    pub fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // What the API server holds, for the reader of the failure.
        let dump = self.cp.kubectl(&[
            "get",
            "segmentationpolicies,enforcementwindows",
            "-n",
            &self.ns,
            "-o",
            "yaml",
        ]);
        let _ = std::fs::write(self.dir.join("objects.yaml"), &dump.stdout);
        panic!(
            "{what}: not within {timeout:?} (namespace {}, logs in {})",
            self.ns,
            self.dir.display()
        );
    }

    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) {
        self.eventually(&format!("{name} reaches {phase}"), timeout, || {
            self.phase(name) == phase
        });
    }

    /// Total successful calls of one counter key of the simulator (e.g. "PATCH /infra").
    pub fn nsx_calls(&self, key: &str) -> u64 {
        self.sim
            .counters()
            .iter()
            .filter(|(k, _)| k.as_str() == key)
            .map(|(_, c)| c.ok())
            .sum()
    }

    /// An NSX client for reading what the simulator holds.
    pub fn nsx_client(&self) -> microseg::nsx::client::Client {
        use microseg::nsx::auth::{AuthConfig, Credentials};
        let creds = Credentials {
            username_file: Some(self.dir.join("nsx/username")),
            password_file: Some(self.dir.join("nsx/password")),
            ..Default::default()
        };
        microseg::nsx::client::Client::new(microseg::nsx::client::ClientConfig::new(
            self.sim.url.clone(),
            AuthConfig::Basic(creds),
        ))
        .unwrap()
    }

    /// The NSX object id (group and policy) of the policy `name` of this namespace.
    pub fn object_id(&self, name: &str) -> String {
        microseg::nsx::naming::Identity::new("e2e")
            .unwrap()
            .object_id(&self.ns, name)
    }

    /// The application's security policy as NSX holds it (there must be one).
    pub async fn nsx_policy(&self, name: &str) -> microseg::nsx::model::SecurityPolicy {
        use microseg::nsx::NsxApi;
        self.nsx_client()
            .get_policy("default", &self.object_id(name))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no security policy in NSX"))
    }

    /// Whether NSX holds the group `id` in the default domain.
    pub async fn nsx_group_exists(&self, id: &str) -> bool {
        use microseg::nsx::NsxApi;
        self.nsx_client()
            .get_group("default", id)
            .await
            .unwrap()
            .is_some()
    }

    /// The reasons of the namespace's events, one a line.
    pub fn event_reasons(&self) -> String {
        self.cp.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &self.ns,
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ])
    }

    /// The message of the policy's condition `type_` ("" when it has none).
    pub fn condition_message(&self, name: &str, type_: &str) -> String {
        self.policy(name)["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .map(|c| c["message"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// Writes `content` (a token) to `file` in the environment's directory; the path, for a
    /// controller flag.
    pub fn secret_file(&self, file: &str, content: &str) -> String {
        let path = self.dir.join(file);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    /// Replaces the simulator's VMs with the example wave's and `extra`.
    pub async fn put_vms(&self, extra: impl IntoIterator<Item = Value>) {
        let mut vms: Vec<Value> = serde_json::from_slice(
            &std::fs::read(super::repo().join("deploy/nsxsim/example-vms.json")).unwrap(),
        )
        .unwrap();
        vms.extend(extra);
        let put = reqwest::Client::new()
            .put(format!("{}/admin/vms", self.sim.url))
            .json(&vms)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "loading VMs: {}", put.status());
    }

    /// The DFW lines the simulator writes for one TCP flow from 10.0.0.10 to `ip`.
    pub async fn flow_lines(&self, ip: &str, port: u16) -> Vec<String> {
        crate::nsx_support::flow_lines(&self.sim.url, "10.0.0.10", ip, port).await
    }

    /// Subjects of the mail one address received, in order.
    pub fn subjects_to(&self, address: &str) -> Vec<String> {
        self.smtp
            .messages()
            .iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x == address))
            })
            .map(|m| m["headers"]["subject"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// A ServiceAccount bound to exactly the chart's rules (ClusterRole and leader-election Role),
/// and a kubeconfig with its token.
fn service_account(cp: &ControlPlane, ns: &str, dir: &std::path::Path) -> PathBuf {
    let rules = std::fs::read_to_string(
        super::repo().join("charts/microseg/files/rbac/clusterrole-rules.yaml"),
    )
    .unwrap();
    // The controller's default --lease-name.
    let lease_rules = std::fs::read_to_string(
        super::repo().join("charts/microseg/files/rbac/role-leader-election-rules.yaml"),
    )
    .unwrap()
    .replace("LEASE_NAME", "microseg-controller");
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: microseg, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: microseg-e2e-{ns}}}\nrules:\n{}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: microseg-e2e-{ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: microseg-e2e-{ns}}}\nsubjects: [{{kind: ServiceAccount, name: microseg, namespace: {ns}}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: microseg-leader-election, namespace: {ns}}}\nrules:\n{}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: microseg-leader-election, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: microseg-leader-election}}\nsubjects: [{{kind: ServiceAccount, name: microseg, namespace: {ns}}}]\n",
        indent(&rules),
        indent(&lease_rules)
    );
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    assert!(
        out.status.success(),
        "rbac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = cp.kubectl_ok(&["create", "token", "microseg", "-n", ns, "--duration", "2h"]);
    let ca = cp.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{}\", certificate-authority-data: \"{}\"}}\nusers:\n- name: microseg\n  user: {{token: \"{}\"}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: microseg, namespace: {ns}}}\ncurrent-context: e2e\n",
        cp.url,
        ca.trim(),
        token.trim()
    );
    let path = dir.join("sa-kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    path
}

/// The controller's `microseg_reconcile_total`, read from its metrics on `http`.
pub async fn reconcile_count(http: u16) -> f64 {
    metric_sum(http, "microseg_reconcile_total", &[]).await
}

/// The sum of the controller's samples of metric `name` (served on `http`) whose labels include
/// each of `labels` (e.g. `source="syslog_tcp"`).
pub async fn metric_sum(http: u16, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Posts DFW lines to the controller's ingestion on `port` with the bearer `token`; nothing
/// when there are none.
pub async fn ingest(port: u16, token: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/ingest/lines"))
        .bearer_auth(token)
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    let code = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(code.is_success(), "ingest: {code} {body}");
}

/// Evidence that logs arrive: every second, the DFW lines of one HTTPS flow from 10.0.0.10 to
/// each address in `ips`, posted to the controller's ingestion. Remove an address to stop.
pub struct Feeder {
    pub ips: Arc<Mutex<BTreeSet<&'static str>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Feeder {
    pub fn start(
        env: &Env,
        ingest_port: u16,
        token: &'static str,
        ips: impl IntoIterator<Item = &'static str>,
    ) -> Feeder {
        let feeding = Arc::new(Mutex::new(ips.into_iter().collect::<BTreeSet<_>>()));
        let task = {
            let feeding = feeding.clone();
            let sim = env.sim.url.clone();
            tokio::spawn(async move {
                loop {
                    let ips: Vec<&str> = feeding.lock().unwrap().iter().copied().collect();
                    let mut batch = Vec::new();
                    for ip in ips {
                        batch.extend(
                            crate::nsx_support::flow_lines(&sim, "10.0.0.10", ip, 443).await,
                        );
                    }
                    ingest(ingest_port, token, &batch).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        Feeder { ips: feeding, task }
    }

    /// Stops feeding `ip`.
    pub fn stop(&self, ip: &str) {
        self.ips.lock().unwrap().remove(ip);
    }

    /// Stops feeding altogether.
    pub fn abort(&self) {
        self.task.abort();
    }
}
