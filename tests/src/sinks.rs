//! Real receivers for delivery tests: an SMTP server (aiosmtpd, in its own
//! process) and an HTTP webhook receiver (axum, on loopback in the test).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tests/support/smtp_sink.py` listening on a loopback port.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message: headers and body.
    pub data: String,
}

impl Mail {
    /// A header's value (unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self
            .data
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .replace("\r\n ", " ");
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(&[])
    }

    /// With `--starttls CERT KEY` and/or `--auth USER PASSWORD`.
    pub fn start_with(options: &[&std::ffi::OsStr]) -> SmtpSink {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_sink.py");
        let mut child = std::process::Command::new(env!("CAIRN_TEST_SMTP_PYTHON"))
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .args(options)
            .stdout(std::process::Stdio::null())
            // Refused handshakes (a test's point) log tracebacks: keep them out of the test output.
            .stderr(std::fs::File::create(dir.path().join("sink.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP sink did not start");
            assert!(child.try_wait().unwrap().is_none(), "the SMTP sink exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink { port, dir, child }
    }

    /// Holds every later reply to DATA for `seconds` (after storing the message).
    pub fn delay_replies(&self, seconds: u32) {
        std::fs::write(self.dir.path().join("delay"), seconds.to_string()).unwrap();
    }

    /// The messages accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path.file_stem()?.to_str()?.parse().ok()?;
                (path.extension()? == "json").then_some((n, path))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                Mail {
                    from: v["from"].as_str().unwrap().to_string(),
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect(),
                    data: v["data"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }

    /// Waits (20 s at most) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} mails arrived",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hook {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Behaviour {
    received: Mutex<Vec<Hook>>,
    /// Answer 503 to this many more requests.
    fail_next: AtomicU32,
    /// Answer 400 to every request.
    reject: AtomicBool,
    /// Never answer (after recording the request).
    hang: AtomicBool,
}

/// An HTTP server on loopback that records every POST.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Behaviour>,
}

async fn receive(
    State(state): State<Arc<Behaviour>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    state.received.lock().unwrap().push(Hook { headers, body });
    if state.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if state.reject.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, "no such mailbox".into());
    }
    let failing = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later".into());
    }
    let n = state.received.lock().unwrap().len();
    (StatusCode::OK, format!("{{\"id\": \"hook-{n}\"}}"))
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let state = Arc::new(Behaviour::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .route(
                "/moved",
                axum::routing::post(|| async {
                    (
                        StatusCode::MOVED_PERMANENTLY,
                        [("location", "/hook")],
                        "moved",
                    )
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WebhookReceiver { url, state }
    }

    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn reject(&self, on: bool) {
        self.state.reject.store(on, Ordering::SeqCst);
    }

    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Hook> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (20 s at most) until `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Hook> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} webhook requests arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
