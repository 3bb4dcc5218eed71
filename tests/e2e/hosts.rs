//! Many hosts, one Postgres: three `cairn serve` processes share the work
//! of two thousand users going through the welcome series, while one host
//! is SIGKILLed mid-ingest, another is frozen (SIGSTOP) past its lease
//! while it drains and then thawed, and the first is killed again later.
//!
//! Events are posted to the live hosts in turn, and re-sent after a crash
//! as a real producer would (idempotency keys make that safe). At the end
//! every run completed exactly once on its expected branch, no step was
//! committed twice, no message was queued twice and no event was lost.
//! `CAIRN_SOAK_SEED` picks the crash points.

use crate::soak::{HOUR, Rng, batches_of};
use cairn_tests::{DAY, Server, component};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");
const USERS: usize = 2_000;
/// Short leases, so a frozen host loses its runs within the test.
const LEASE_MS: u64 = 1_500;

struct Cluster {
    url: String,
    dir: tempfile::TempDir,
    /// `None` while a host is down.
    hosts: [Option<Server>; 3],
    rng: Rng,
}

impl Cluster {
    fn start(&mut self, i: usize) {
        let dir = self.dir.path().join(format!("host-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let id = format!("host-{i}");
        let lease = LEASE_MS.to_string();
        self.hosts[i] = Some(Server::start_on(
            CAIRN,
            &self.url,
            &dir,
            &["--host-id", &id, "--lease-ms", &lease],
        ));
    }

    fn host(&self, i: usize) -> &Server {
        self.hosts[i].as_ref().expect("a running host")
    }

    fn live(&self) -> Vec<&Server> {
        self.hosts.iter().flatten().collect()
    }

    /// Puts every live host's virtual clock at `at`.
    async fn advance_to(&self, at: u64) {
        for host in self.live() {
            let (status, body) = host.post("/v1/clock/advance", &json!({ "to": at })).await;
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Posts the batches to the live hosts in turn; host `victim` is
    /// SIGKILLed after a random batch. Then everything is posted again to
    /// the survivors.
    async fn post_all_killing(&mut self, batches: &[Value], victim: usize) {
        let kill_after = self.rng.below(batches.len() as u64) as usize;
        for (i, batch) in batches.iter().enumerate() {
            let live = self.live();
            let (status, body) = live[i % live.len()].post("/v1/events", batch).await;
            assert_eq!(status, 202, "{body}");
            if i == kill_after {
                self.hosts[victim].take().expect("a running host").kill();
            }
        }
        for (i, batch) in batches.iter().enumerate() {
            let live = self.live();
            let (status, body) = live[i % live.len()].post("/v1/events", batch).await;
            assert_eq!(status, 202, "{body}");
        }
    }
}

/// User i's id, which is also their address (the journey sends to it).
fn address(i: usize) -> String {
    format!("user-{i}@example.com")
}

/// User i's number, in SQL.
const USER_NUMBER: &str = "CAST(split_part(substr(user_id, 6), '@', 1) AS INTEGER)";

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db)
        .await
        .unwrap()
}

async fn until(cluster: &Cluster, db: &PgPool, sql: &str, expected: i64) {
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = count(db, sql).await;
        if got == expected {
            eprintln!("{:>6} ms  {sql}", started.elapsed().as_millis());
            return;
        }
        if Instant::now() > deadline {
            use sqlx::Row;
            for table in ["runs", "outbox"] {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT status, lease_owner, COUNT(*) FROM {table} GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10"
                )))
                .fetch_all(db)
                .await
                .unwrap();
                for r in rows {
                    eprintln!(
                        "{table}: {} {:?}: {}",
                        r.get::<String, _>(0),
                        r.get::<Option<String>, _>(1),
                        r.get::<i64, _>(2)
                    );
                }
            }
            let errors: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT last_error FROM outbox WHERE last_error IS NOT NULL LIMIT 5",
            )
            .fetch_all(db)
            .await
            .unwrap();
            eprintln!("outbox errors: {errors:?}");
            for i in 0..3 {
                let log = cluster.dir.path().join(format!("host-{i}/cairn.log"));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- host-{i} log, last lines:");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            panic!("{sql}: {got}, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_the_work_through_a_kill_and_a_freeze_past_the_lease() {
    let seed = std::env::var("CAIRN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x3405);
    eprintln!("multi-host soak seed {seed} (CAIRN_SOAK_SEED)");
    let url = cairn_tests::postgres::database().await;
    cairn_tests::migrate(CAIRN, &url);
    let mut cluster = Cluster {
        url,
        dir: tempfile::tempdir().unwrap(),
        hosts: [None, None, None],
        rng: Rng(seed | 1),
    };
    eprintln!("host logs in {}", cluster.dir.path().display());
    for i in 0..3 {
        cluster.start(i);
    }
    let db = PgPool::connect(&cluster.url).await.unwrap();
    let (status, body) = cluster
        .host(0)
        .post_bytes("/v1/journeys", component("welcome_series"))
        .await;
    assert_eq!(status, 201, "{body}");
    // One virtual time for all three hosts.
    let mut t0 = 0;
    for host in cluster.live() {
        let (_, clock) = host.post("/v1/clock/advance", &json!({ "ms": 0 })).await;
        t0 = t0.max(clock["now"].as_u64().unwrap());
    }
    cluster.advance_to(t0).await;
    // Hosts read the journeys' trigger rules at most a second old.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // Everyone signs up through all three hosts; host 2 dies mid-ingest.
    // The runs it had taken wait out its lease, then the others run them.
    let signups = batches_of(
        "signed_up",
        0..USERS,
        address,
        |i| json!({ "name": format!("User {i}") }),
    );
    cluster.post_all_killing(&signups, 2).await;
    until(
        &cluster,
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND step = 1",
        USERS as i64,
    )
    .await;

    // A day later host 2 is back, and host 1 freezes while the three drain
    // the tips. Past its lease the other two take its runs; thawed, host 1
    // finds its leases gone and its commits refused.
    cluster.start(2);
    cluster.advance_to(t0 + DAY + HOUR).await;
    tokio::time::sleep(Duration::from_millis(cluster.rng.below(10))).await;
    cluster.host(1).pause();
    tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
    let frozen_while = count(
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND step = 2",
    )
    .await;
    cluster.host(1).resume();
    eprintln!("{frozen_while} of {USERS} runs moved on while host 1 was frozen");
    // (How many of host 1's steps were refused shows in its log, "steps discarded".)
    until(
        &cluster,
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND step = 2",
        USERS as i64,
    )
    .await;

    // Even users buy, through all hosts; host 0 dies mid-ingest and restarts.
    let purchases = batches_of(
        "purchased",
        (0..USERS).step_by(2),
        address,
        |i| json!({ "item": format!("item-{i}") }),
    );
    cluster.post_all_killing(&purchases, 0).await;
    cluster.start(0);
    cluster.advance_to(t0 + DAY + HOUR).await;
    until(
        &cluster,
        &db,
        "SELECT COUNT(*) FROM runs WHERE checkpoint = 'converted' AND status = 'completed'",
        (USERS / 2) as i64,
    )
    .await;

    // The others time out and get their reminders.
    cluster.advance_to(t0 + 5 * DAY).await;
    until(
        &cluster,
        &db,
        "SELECT COUNT(*) FROM runs WHERE status = 'completed'",
        USERS as i64,
    )
    .await;

    // Every run completed exactly once, on its expected branch.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs").await, USERS as i64);
    let wrong = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM runs WHERE checkpoint != CASE {USER_NUMBER} % 2
             WHEN 0 THEN 'converted' ELSE 'reminded' END"
        ),
    )
    .await;
    assert_eq!(wrong, 0, "a run took the wrong branch");
    let twice = count(
        &db,
        "SELECT COUNT(*) FROM (SELECT run_id, step FROM steps GROUP BY 1, 2 HAVING COUNT(*) > 1) AS d",
    )
    .await;
    assert_eq!(twice, 0, "a step was committed twice");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM steps").await,
        3 * USERS as i64
    );
    // No message was queued twice, and every one was delivered.
    let twice = count(
        &db,
        "SELECT COUNT(*) FROM (SELECT run_id, template FROM outbox GROUP BY 1, 2 HAVING COUNT(*) > 1) AS d",
    )
    .await;
    assert_eq!(twice, 0, "a message was queued twice");
    until(
        &cluster,
        &db,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
        3 * USERS as i64,
    )
    .await;
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
        &format!(
            "SELECT COUNT(*) FROM outbox o JOIN runs r ON r.id = o.run_id WHERE o.template = 'thank-you'
             AND o.props::json->>'item' != 'item-' || {}",
            USER_NUMBER.replace("user_id", "r.user_id")
        ),
    )
    .await;
    assert_eq!(mismatched, 0, "a purchase reached the wrong run");
    let log = std::fs::read_to_string(cluster.dir.path().join("host-1/cairn.log")).unwrap();
    eprintln!(
        "host 1 had {} batch(es) with steps refused after its freeze",
        log.matches("steps discarded").count()
    );
}
