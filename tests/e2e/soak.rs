//! Crash soak: `cairn serve` as a child process, two thousand users driven
//! through the welcome series by events and virtual time, the host killed
//! with SIGKILL at random moments (mid-ingest, mid-drain) and restarted on
//! the same database. At the end every run reached its expected terminal
//! state, no message was queued twice and no event was lost.
//!
//! The client re-sends everything after a crash, as a real producer would:
//! idempotency keys make that safe. `CAIRN_SOAK_SEED` picks the kill points.

use cairn_tests::{DAY, Server, component_path};
use serde_json::{Value, json};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");
const USERS: usize = 2_000;
const BATCH: usize = 100;
pub(crate) const HOUR: u64 = 3_600_000;

/// A tiny deterministic generator (xorshift64*), so a failing seed reproduces.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

struct Soak {
    server: Option<Server>,
    db: PathBuf,
    cache: PathBuf,
    rng: Rng,
    kills: usize,
}

impl Soak {
    fn server(&self) -> &Server {
        self.server.as_ref().expect("a running server")
    }

    /// SIGKILL, then a new process on the same database, put back at virtual time `at`.
    async fn crash_and_restart(&mut self, at: u64) {
        self.server.take().expect("a running server").kill();
        self.kills += 1;
        self.server = Some(Server::start(CAIRN, &self.db, &self.cache));
        self.advance_to(at).await;
    }

    async fn advance_to(&self, at: u64) {
        let (status, body) = self
            .server()
            .post("/v1/clock/advance", &json!({ "to": at }))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Posts every batch, crashing after a random one, then posts them all
    /// again after the restart (already-seen keys change nothing).
    async fn post_all_with_a_crash(&mut self, batches: &[Value], at: u64) {
        let crash_after = self.rng.below(batches.len() as u64) as usize;
        for (i, batch) in batches.iter().enumerate() {
            let (status, body) = self.server().post("/v1/events", batch).await;
            assert_eq!(status, 202, "{body}");
            if i == crash_after {
                self.crash_and_restart(at).await;
            }
        }
        for batch in batches {
            let (status, body) = self.server().post("/v1/events", batch).await;
            assert_eq!(status, 202, "{body}");
        }
    }

    /// Moves virtual time to `at` and crashes while the host drains what came due.
    async fn advance_with_a_crash(&mut self, at: u64) {
        self.advance_to(at).await;
        tokio::time::sleep(Duration::from_millis(self.rng.below(40))).await;
        self.crash_and_restart(at).await;
    }
}

pub(crate) fn batches(
    name: &str,
    users: impl Iterator<Item = usize>,
    props: impl Fn(usize) -> Value,
) -> Vec<Value> {
    batches_of(name, users, |i| format!("user-{i}"), props)
}

/// Events named `name` for the users `user_id` names, in batches of [`BATCH`].
pub(crate) fn batches_of(
    name: &str,
    users: impl Iterator<Item = usize>,
    user_id: impl Fn(usize) -> String,
    props: impl Fn(usize) -> Value,
) -> Vec<Value> {
    let events: Vec<Value> = users
        .map(|i| {
            json!({
                "user_id": user_id(i),
                "name": name,
                "properties": props(i),
                "idempotency_key": format!("{name}-{i}"),
            })
        })
        .collect();
    events
        .chunks(BATCH)
        .map(|chunk| json!({ "batch": chunk }))
        .collect()
}

async fn count(db: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db)
        .await
        .unwrap()
}

async fn until(db: &SqlitePool, sql: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = count(db, sql).await;
        if got == expected {
            return;
        }
        if Instant::now() > deadline {
            dump_runs(db).await;
            panic!("{sql}: {got}, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the runs look like, for a failure message.
async fn dump_runs(db: &SqlitePool) {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT status, step, due_at, lease_owner, lease_until, pending_wake IS NOT NULL, COUNT(*)
         FROM runs GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 7 DESC LIMIT 20",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for r in rows {
        eprintln!(
            "{} step {} due {:?} lease {:?} until {:?} woken {}: {} runs",
            r.get::<String, _>(0),
            r.get::<i64, _>(1),
            r.get::<Option<i64>, _>(2),
            r.get::<Option<String>, _>(3),
            r.get::<Option<i64>, _>(4),
            r.get::<bool, _>(5),
            r.get::<i64, _>(6)
        );
    }
}

async fn read_only(path: &Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_repeated_sigkills_with_no_duplicate_send_and_no_lost_event() {
    let seed = std::env::var("CAIRN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x50a4);
    eprintln!("soak seed {seed} (CAIRN_SOAK_SEED)");
    let dir = tempfile::tempdir().unwrap();
    eprintln!("soak database and server log in {}", dir.path().display());
    let mut soak = Soak {
        server: None,
        db: dir.path().join("cairn.db"),
        cache: dir.path().join("cache"),
        rng: Rng(seed | 1),
        kills: 0,
    };
    soak.server = Some(Server::start(CAIRN, &soak.db, &soak.cache));
    let wasm = std::fs::read(component_path("welcome_series")).unwrap();
    assert_eq!(soak.server().post_bytes("/v1/journeys", wasm).await.0, 201);
    let (_, clock) = soak
        .server()
        .post("/v1/clock/advance", &json!({ "ms": 0 }))
        .await;
    let t0 = clock["now"].as_u64().unwrap();
    let db = read_only(&soak.db).await;

    // Everyone signs up; the host dies somewhere in the middle of ingest.
    let signups = batches(
        "signed_up",
        0..USERS,
        |i| json!({ "name": format!("User {i}") }),
    );
    soak.post_all_with_a_crash(&signups, t0).await;
    until(
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND step = 1",
        USERS as i64,
    )
    .await;

    // A day later everyone gets tips; the host dies while draining.
    // (Runs started a little after t0 across restarts: advance with a margin.)
    soak.advance_with_a_crash(t0 + DAY + HOUR).await;
    until(
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND step = 2",
        USERS as i64,
    )
    .await;

    // Even users buy; the host dies mid-ingest again.
    let purchases = batches(
        "purchased",
        (0..USERS).step_by(2),
        |i| json!({ "item": format!("item-{i}") }),
    );
    soak.post_all_with_a_crash(&purchases, t0 + DAY + HOUR)
        .await;
    until(
        &db,
        "SELECT COUNT(*) FROM runs WHERE checkpoint = 'converted' AND status = 'completed'",
        (USERS / 2) as i64,
    )
    .await;

    // The others time out; the host dies while draining the reminders.
    soak.advance_with_a_crash(t0 + 5 * DAY).await;
    until(
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'completed'",
        USERS as i64,
    )
    .await;
    assert!(soak.kills >= 4);

    // Every run reached its expected end.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs").await, USERS as i64);
    let wrong: i64 = count(
        &db,
        "SELECT COUNT(*) FROM runs WHERE checkpoint != CASE CAST(substr(user_id, 6) AS INTEGER) % 2
             WHEN 0 THEN 'converted' ELSE 'reminded' END",
    )
    .await;
    assert_eq!(wrong, 0, "a run took the wrong branch");
    // No message was queued twice: three per run, each kind once.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM outbox").await,
        3 * USERS as i64
    );
    let twice = count(&db, "SELECT COUNT(*) FROM (SELECT run_id, template FROM outbox GROUP BY 1, 2 HAVING COUNT(*) > 1)").await;
    assert_eq!(twice, 0, "a message was queued twice");
    // No event was lost or stored twice, and every purchase reached its run.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM events WHERE name = 'signed_up'").await,
        USERS as i64
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM events WHERE name = 'purchased'").await,
        (USERS / 2) as i64
    );
    let mismatched = count(
        &db,
        "SELECT COUNT(*) FROM outbox o JOIN runs r ON r.id = o.run_id WHERE o.template = 'thank-you'
         AND json_extract(o.props, '$.item') != 'item-' || substr(r.user_id, 6)",
    )
    .await;
    assert_eq!(mismatched, 0, "a purchase reached the wrong run");
    soak.server.take().unwrap().kill();
}
