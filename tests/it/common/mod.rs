//! Helpers shared by the end-to-end tests: the local control plane (a real kube-apiserver with
//! embedded etcd, from `tests/control-plane/`), kubectl, and per-test namespaces.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub mod e2e;
pub mod servers;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running control plane; stopped (SIGTERM) when dropped, and it exits by itself when the test
/// process goes away.
pub struct ControlPlane {
    child: Child,
    pub kubeconfig: PathBuf,
    pub url: String,
    dir: PathBuf,
}

/// Removes the data directories (etcd, ~200 MB each) of control planes whose test process has
/// ended: the shared control plane lives in a static, so its process cannot remove its own
/// directory; the next test binary that starts one does.
fn remove_stale_data_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("microseg-cp-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl ControlPlane {
    /// Builds the control plane if needed and starts one on 127.0.0.1.
    pub fn start() -> ControlPlane {
        let script = repo().join("tests/control-plane/run.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("build")
            .status()
            .expect("run.sh build");
        assert!(status.success(), "building the control plane failed");
        remove_stale_data_dirs();
        let dir = std::env::temp_dir().join(format!(
            "microseg-cp-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let log = std::fs::File::create(dir.join("control-plane.log")).unwrap();
        let started = Instant::now();
        let mut child = Command::new(repo().join("tests/control-plane/bin/control-plane"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start control plane");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY ") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                panic!(
                    "control plane not ready; see {}",
                    dir.join("control-plane.log").display()
                )
            });
        let url = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        eprintln!(
            "control plane ready at {url} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        ControlPlane {
            child,
            kubeconfig,
            url,
            dir,
        }
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// A client that impersonates a ServiceAccount (for RBAC tests).
    pub async fn client_as(&self, user: &str) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        config.auth_info.impersonate = Some(user.to_string());
        kube::Client::try_from(config).unwrap()
    }

    /// Runs kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl")
    }

    /// Runs kubectl with a manifest on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the CRDs from `crds/` and waits until they are established.
    pub fn install_crds(&self) {
        let crds = repo().join("crds");
        self.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
        for crd in [
            "crd/segmentationpolicies.microseg.io",
            "crd/enforcementwindows.microseg.io",
        ] {
            self.wait_established(crd);
        }
    }

    /// Waits until a CRD is Established. `kubectl wait --for=condition=Established` fails
    /// instead of waiting while a new CRD has no status yet (a loaded API server shows that).
    pub fn wait_established(&self, crd: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.kubectl_ok(&[
                "get",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ]);
            if status == "True" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{crd} not Established within 60 s (status {status:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a fresh namespace for one test.
    pub fn namespace(&self, prefix: &str) -> String {
        let ns = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xffffff);
        self.kubectl_ok(&["create", "namespace", &ns]);
        ns
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One control plane per test binary, started on first use. It exits by itself when the test
/// process ends (it watches our pid).
pub fn shared() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        let cp = ControlPlane::start();
        cp.install_crds();
        cp
    })
}
