//! Real servers on 127.0.0.1 for the notification tests: an SMTP sink (Python's aiosmtpd, run
//! from `tests/support/smtp_sink.py`) and an HTTP webhook receiver (axum). Both stop when
//! dropped. Nothing is skipped: a missing aiosmtpd fails the test with the command to run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

use super::repo;

/// The Python that has aiosmtpd: `$MICROSEG_TEST_PYTHON`, else `.tmp/venv/bin/python` made by
/// `tests/support/setup.sh`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MICROSEG_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".tmp/venv/bin/python");
    assert!(
        venv.exists(),
        "aiosmtpd is not installed: run `bash tests/support/setup.sh` (creates .tmp/venv), \
         or set MICROSEG_TEST_PYTHON to a python with aiosmtpd"
    );
    venv
}

/// A fresh empty directory in the system's temp dir (`microseg-<name>-*`), removed when the
/// returned value is dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("microseg-{name}-"))
        .tempdir()
        .unwrap()
}

/// Starts a Python sink script from `tests/support/` with `dir` and `args`, and waits for its
/// `PORT <n>` line.
fn spawn_sink(script: &str, dir: &Path, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(python())
        .arg(repo().join("tests/support").join(script))
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("sink.stderr")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("start tests/support/{script}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok());
    let Some(port) = port else {
        let status = child.try_wait().ok().flatten();
        let _ = child.kill();
        let _ = child.wait();
        let stderr = std::fs::read_to_string(dir.join("sink.stderr")).unwrap_or_default();
        panic!(
            "{script} did not start (exit {status:?}, said {line:?}, stderr {stderr:?}); \
             is aiosmtpd installed? run `bash tests/support/setup.sh`"
        );
    };
    (child, port)
}

/// Decoded JSON files (`NNNN.json`) of a sink directory, in order.
fn json_files(dir: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// A running HTTPS receiver (`https_sink.py`) with a certificate for 127.0.0.1.
pub struct HttpsSink {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Where it writes the requests (removed on drop).
    pub dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpsSink {
    /// Starts the receiver with this certificate and key.
    pub fn start(cert: &Path, key: &Path) -> HttpsSink {
        let tmp = temp_dir("https-sink");
        let (child, port) = spawn_sink(
            "https_sink.py",
            tmp.path(),
            &[cert.to_str().unwrap(), key.to_str().unwrap()],
        );
        HttpsSink {
            child,
            port,
            dir: tmp.path().to_path_buf(),
            _dir: tmp,
        }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        json_files(&self.dir)
    }
}

impl Drop for HttpsSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running aiosmtpd sink.
pub struct SmtpSink {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Where it writes the messages (removed on drop).
    pub dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts `smtp_sink.py` with extra arguments and waits until it listens.
    pub fn start(name: &str, args: &[&str]) -> SmtpSink {
        let tmp = temp_dir(name);
        let (child, port) = spawn_sink("smtp_sink.py", tmp.path(), args);
        SmtpSink {
            child,
            port,
            dir: tmp.path().to_path_buf(),
            _dir: tmp,
        }
    }

    /// The decoded messages received so far (NNNN.json), in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        json_files(&self.dir)
    }

    /// Waits until at least `n` messages arrived (10 s at most), then returns all of them.
    pub fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lines of a log file the sink writes (`rcpt.log`, `auth.log`).
    pub fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// JSON body.
    pub body: serde_json::Value,
}

#[derive(Clone)]
struct ReceiverState {
    status: StatusCode,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A real HTTP server on 127.0.0.1 that records every request and answers `status`.
pub struct WebhookReceiver {
    /// `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts the receiver; every request gets `status`.
    pub async fn start(status: StatusCode) -> WebhookReceiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            status,
            received: received.clone(),
        };
        async fn record(
            State(state): State<ReceiverState>,
            uri: Uri,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, &'static str) {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            state.received.lock().unwrap().push(Received {
                path: uri.path().to_string(),
                idempotency_key: header("idempotency-key"),
                content_type: header("content-type"),
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            });
            let text = if state.status.is_success() {
                "ok"
            } else {
                "receiver failure"
            };
            (state.status, text)
        }
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            addr,
            received,
            task,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates a CA and a server certificate for 127.0.0.1 signed by it, with the openssl CLI.
/// Returns (ca.pem, server.pem, server.key).
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed for the TLS tests (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=microseg test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
