//! Helpers shared by the end-to-end tests: where the journeys built from
//! source are, and how to start the host binary.

pub mod postgres;
pub mod sinks;

use std::path::{Path, PathBuf};

/// The component built from `sample-journeys/<name>` or `tests/journeys/<name>`
/// (`name` with underscores, e.g. `welcome_series`).
pub fn component_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CAIRN_TEST_COMPONENTS")).join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Where compiled artifacts are cached across test runs: the JavaScript and
/// Python components take seconds to compile.
pub fn artifact_cache() -> PathBuf {
    PathBuf::from(env!("CAIRN_TEST_CACHE"))
}

/// The bytes of a built journey component.
pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).expect("reading a built component")
}

/// The names of every sample journey (sample-journeys/*).
pub const SAMPLES: [&str; 4] = [
    "welcome_series",
    "trial_expiry",
    "ceiling_probe",
    "abandoned_cart",
];

use cairn::clock::ManualClock;
use cairn::engine::{Engine, EngineConfig};
use cairn::ingest::{EventOutcome, IncomingEvent};
use cairn::runtime::Runtime;
use cairn::scheduler::Scheduler;
use cairn::store::{Backend, DEFAULT_TENANT, RunRow, Store};
use std::sync::Arc;

/// The templates the sample and test journeys send: register them for a
/// tenant before its journeys deploy.
pub fn template_dirs() -> [PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    [
        root.join("sample-journeys/templates"),
        root.join("tests/templates"),
    ]
}

/// A fixed start time for virtual clocks: 2026-05-28T20:26:40Z.
pub const T0: u64 = 1_780_000_000_000;
/// One day in milliseconds.
pub const DAY: u64 = 86_400_000;

/// A whole host in one process: the real engine, a real SQLite file in a
/// temporary directory, a virtual clock, and the scheduler driven by hand.
pub struct Host {
    pub clock: Arc<ManualClock>,
    pub runtime: Runtime,
    pub scheduler: Scheduler,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub async fn new() -> Host {
        Host::on(Backend::Sqlite).await
    }

    /// A host on a fresh database of `backend` (Postgres: a new database on
    /// the tests' throwaway cluster).
    pub async fn on(backend: Backend) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("cairn.db").display()),
            Backend::Postgres => postgres::database().await,
        };
        Host::at(&url, dir).await
    }

    /// A host on the database at `url`, keeping `dir` for its lifetime.
    pub async fn at(url: &str, dir: tempfile::TempDir) -> Host {
        Host::sharing(url, dir, ManualClock::new(T0), "local").await
    }

    /// `n` hosts on the database at `url` (`host-0`, `host-1`, ...), each
    /// with its own pool, engine and scheduler, on one virtual clock.
    pub async fn cluster(url: &str, n: usize) -> Vec<Host> {
        let clock = ManualClock::new(T0);
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            hosts.push(Host::sharing(url, dir, clock.clone(), &format!("host-{i}")).await);
        }
        hosts
    }

    async fn sharing(
        url: &str,
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        host_id: &str,
    ) -> Host {
        let engine = Engine::new(EngineConfig {
            max_instances: 32,
            cache_dir: Some(artifact_cache()),
            ..EngineConfig::default()
        })
        .unwrap();
        let store = Store::open(url).await.unwrap();
        let runtime = Runtime::new(engine, store, clock.clone()).with_host_id(host_id);
        for dir in template_dirs() {
            cairn::hotload::register_templates(&runtime, DEFAULT_TENANT, &dir)
                .await
                .unwrap();
        }
        let scheduler = Scheduler::new(runtime.clone());
        Host {
            clock,
            runtime,
            scheduler,
            dir,
        }
    }

    /// Deploys a built journey; its journey id.
    pub async fn deploy(&self, name: &str) -> String {
        self.runtime
            .deploy(DEFAULT_TENANT, component(name))
            .await
            .unwrap()
            .journey_id
    }

    /// Starts a run and executes its first step.
    pub async fn start(&self, journey: &str, user: &str, input: &str) -> RunRow {
        let run = self
            .runtime
            .start_run(DEFAULT_TENANT, journey, user, input)
            .await
            .unwrap();
        self.drain().await;
        self.run(run.id).await
    }

    /// Replaces the default tenant's delivery settings; they apply at once.
    pub async fn set_delivery(&self, settings: serde_json::Value) {
        self.runtime
            .store
            .set_delivery_config(DEFAULT_TENANT, &settings.to_string())
            .await
            .unwrap();
        self.runtime.forget_settings(DEFAULT_TENANT);
    }

    /// Executes everything due now.
    pub async fn drain(&self) -> usize {
        self.scheduler.drain(self.clock.now_ms()).await.unwrap()
    }

    /// Moves virtual time forward and executes what came due.
    pub async fn advance(&self, ms: u64) -> usize {
        self.clock.advance(ms);
        self.drain().await
    }

    pub async fn run(&self, id: i64) -> RunRow {
        self.runtime.store.run(id).await.unwrap().unwrap()
    }

    /// A user's runs (default tenant), newest first.
    pub async fn runs_of(&self, user: &str) -> Vec<RunRow> {
        let filter = cairn::store::RunFilter {
            user_id: Some(user.to_string()),
            ..Default::default()
        };
        self.runtime
            .store
            .runs(DEFAULT_TENANT, &filter)
            .await
            .unwrap()
    }

    /// A run's outbox rows (default tenant), oldest first.
    pub async fn outbox(&self, run: i64) -> Vec<cairn::store::OutboxRow> {
        self.runtime
            .store
            .outbox(
                DEFAULT_TENANT,
                &cairn::store::OutboxFilter {
                    run_id: Some(run),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    /// Ingests one event for `user`.
    pub async fn event(
        &self,
        user: &str,
        name: &str,
        properties: serde_json::Value,
    ) -> EventOutcome {
        self.event_with_key(user, name, properties, None).await
    }

    /// Ingests one event with an idempotency key.
    pub async fn event_with_key(
        &self,
        user: &str,
        name: &str,
        properties: serde_json::Value,
        key: Option<&str>,
    ) -> EventOutcome {
        let event = IncomingEvent {
            user_id: user.into(),
            name: name.into(),
            properties: Some(properties),
            timestamp: None,
            idempotency_key: key.map(str::to_string),
        };
        self.runtime
            .ingest_events(DEFAULT_TENANT, vec![event])
            .await
            .unwrap()
            .remove(0)
    }
}

/// Reads the clock (a helper so tests need not import the trait).
pub trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        cairn::clock::Clock::now(self)
    }
}

/// Where a server's log goes: `<db>.log`, appended across restarts.
fn log_file(path: &std::path::Path) -> std::process::Stdio {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => file.into(),
        Err(_) => std::process::Stdio::null(),
    }
}

/// Runs `cairn migrate --db URL` (`binary` as for [`Server::start`]) and
/// checks that it succeeded: a shared Postgres is migrated once, explicitly.
pub fn migrate(binary: &str, url: &str) {
    let out = std::process::Command::new(binary)
        .args(["migrate", "--db", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cairn migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `cairn serve` child process on a loopback port, on a virtual clock.
/// It derefs to an [`Api`] client without a key.
pub struct Server {
    child: std::process::Child,
    api: Api,
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// An HTTP client of one server, with or without an API key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
    key: Option<String>,
}

impl Server {
    /// Starts `cairn serve --virtual-clock` on `db` and waits until it
    /// accepts connections. `binary` is the test's
    /// `env!("CARGO_BIN_EXE_cairn-under-test")` (only integration tests see it).
    pub fn start(binary: &str, db: &std::path::Path, cache: &std::path::Path) -> Server {
        Server::start_with(binary, db, cache, &[])
    }

    /// Like [`Server::start`], with more arguments for `cairn serve`.
    pub fn start_with(
        binary: &str,
        db: &std::path::Path,
        cache: &std::path::Path,
        extra: &[&str],
    ) -> Server {
        let url = format!("sqlite://{}", db.display());
        Server::launch(binary, &url, &db.with_extension("log"), cache, extra)
    }

    /// `cairn serve --virtual-clock` on the database at `url` (e.g. Postgres),
    /// logging into `dir`.
    pub fn start_on(binary: &str, url: &str, dir: &std::path::Path, extra: &[&str]) -> Server {
        Server::launch(
            binary,
            url,
            &dir.join("cairn.log"),
            &dir.join("cache"),
            extra,
        )
    }

    fn launch(
        binary: &str,
        url: &str,
        log: &std::path::Path,
        cache: &std::path::Path,
        extra: &[&str],
    ) -> Server {
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(binary)
            .args([
                "serve",
                "--virtual-clock",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--db")
            .arg(url)
            .arg("--cache-dir")
            .arg(cache)
            .args(
                template_dirs()
                    .iter()
                    .flat_map(|d| [std::ffi::OsStr::new("--templates"), d.as_os_str()]),
            )
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log_file(log))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cairn serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            api: Api {
                base: format!("http://127.0.0.1:{port}"),
                client: reqwest::Client::new(),
                key: None,
            },
        }
    }

    /// A client that sends `key` as its bearer token.
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            key: Some(key.to_string()),
            ..self.api.clone()
        }
    }

    /// Kills the process with SIGKILL: no graceful shutdown.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Freezes the process (SIGSTOP): it holds its connections and leases
    /// but does nothing, like a host stalled by its machine.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused process (SIGCONT); it goes on where it stopped.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and waits for it.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// GET `path`, as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.get_status(path).await.1
    }

    /// GET `path`: the status and the JSON answer.
    pub async fn get_status(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// DELETE `path`: the status and the JSON answer.
    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// POST a JSON body to `path`; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// POST raw bytes with a content type; the status and the body as text.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Registers every template of [`template_dirs`] for this client's tenant.
    pub async fn register_templates(&self) {
        for dir in template_dirs() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap().to_string();
                let source = std::fs::read_to_string(&path).unwrap();
                let (status, body) = self
                    .put_text(&format!("/v1/templates/{name}"), &source)
                    .await;
                assert_eq!(status, 200, "{name}: {body}");
            }
        }
    }

    /// GET `path`; the status and the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// PUT a text body; the status and the JSON answer (or the text as a JSON string).
    pub async fn put_text(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::PUT, path)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// POST raw bytes (a component) to `path`.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Polls GET `path` until `check` holds (20 s at most).
    pub async fn until(
        &self,
        path: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let body = self.get(path).await;
            if check(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting on {path}: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
