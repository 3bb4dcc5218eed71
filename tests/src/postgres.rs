//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary
//! directory, `postgres` listening on a loopback port, one fresh database
//! per test. The server dies with the test process (PR_SET_PDEATHSIG), a
//! later run removes the directories dead runs left behind, and
//! runs as the `postgres` user when the tests run as root (initdb refuses
//! root). The binaries come from PATH or `/usr/lib/postgresql/*/bin`
//! (`.ci/run` installs Debian's `postgresql` package if they are missing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Cluster {
    port: u16,
    _dir: tempfile::TempDir,
    _server: Mutex<Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// Where a PostgreSQL program lives.
fn program(name: &str) -> PathBuf {
    let on_path = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return PathBuf::from(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().filter(|p| p.exists()).unwrap_or_else(|| {
        panic!("{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    })
}

/// The uid and gid of `postgres`, when we are root and must drop to it.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        assert!(
            out.status.success(),
            "running as root needs a postgres user"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// `program` as `user`; with `die_with_parent`, it gets SIGINT (Postgres'
/// fast shutdown) when the thread that spawned it exits.
fn command(program: &Path, user: Option<(u32, u32)>, die_with_parent: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid, which clears the parent-death signal.
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            }
            Ok(())
        });
    }
    cmd
}

/// The prefix of the clusters' directories in the temporary directory.
const DIR_PREFIX: &str = "cairn-pg-";

/// Removes the directories of clusters whose test process is gone (a test
/// binary exits without dropping statics, so they stay behind).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let owner: Option<i32> = std::fs::read_to_string(entry.path().join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start(durable: bool) -> Cluster {
    remove_stale_clusters();
    let dir = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string()).unwrap();
    let user = run_as();
    let data = dir.path().join("data");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    let out = command(&program("initdb"), user, false)
        .args([
            "--auth=trust",
            "--username=postgres",
            "--no-sync",
            "--encoding=UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
    let mut server = command(&program("postgres"), user, true);
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(dir.path())
        // Throwaway data: durability buys nothing in tests (benchmarks keep it).
        .args(if durable {
            &[][..]
        } else {
            &[
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ][..]
        })
        .args(["-c", "max_connections=300"])
        .stdout(Stdio::null())
        .stderr(log);
    // Spawned from a thread that lives as long as the process: the server
    // gets its parent-death signal when the test process exits, not when
    // the test that happened to start it finishes.
    let (spawned, child) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        spawned.send(server.spawn()).unwrap();
        loop {
            std::thread::park();
        }
    });
    let server = child.recv().unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "postgres did not start; see its log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Cluster {
        port,
        _dir: dir,
        _server: Mutex::new(server),
    }
}

/// A new, empty database on the shared cluster (fsync off); its URL.
pub async fn database() -> String {
    database_on(false).await
}

/// A new database on a cluster with Postgres' default durability, for
/// benchmarks. (One cluster per process: the first call decides.)
pub async fn durable_database() -> String {
    database_on(true).await
}

async fn database_on(durable: bool) -> String {
    let cluster = CLUSTER.get_or_init(|| start(durable));
    let name = format!(
        "cairn_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    // The server may still be starting up behind its open port.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::postgres::PgPool::connect(&admin).await {
            Ok(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot reach the test cluster: {e}"),
        }
    }
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}
