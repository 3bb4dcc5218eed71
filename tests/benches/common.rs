//! What the bench targets share: section selection and percentiles.
// Each bench target includes this file and uses a part of it.
#![allow(dead_code)]

use cairn::durable::StepEnv;
use cairn::ingest::IncomingEvent;
use cairn::store::DEFAULT_TENANT;
use cairn_tests::{DAY, Host};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The environment of step `step` of a benchmark run at `now`: run 1,
/// started at [`cairn_tests::T0`], with the default limits.
pub fn step_env(step: u32, now: u64, ceiling_at: u64) -> StepEnv {
    StepEnv {
        run_id: 1,
        step,
        user_id: "bench".into(),
        started_at: cairn_tests::T0,
        ceiling_at,
        now,
        seed: 7,
        gate: cairn::delivery::OpenGate::shared(),
        limits: Default::default(),
    }
}

/// The host a benchmark measures: SQLite, or Postgres (a local cluster with
/// default durability) when `CAIRN_BENCH_DB=postgres`.
pub async fn bench_host() -> cairn_tests::Host {
    match std::env::var("CAIRN_BENCH_DB").as_deref() {
        Ok("postgres") => {
            let url = cairn_tests::postgres::durable_database().await;
            cairn_tests::Host::at(&url, tempfile::tempdir().unwrap()).await
        }
        _ => cairn_tests::Host::new().await,
    }
}

/// Runs a benchmark's async sections on a multi-threaded tokio runtime.
pub fn block_on<F: std::future::Future>(sections: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(sections)
}

/// Creates `n` runs of the looper journey (`{"n":1000}`: a thousand
/// one-minute sleeps), for users `user-0`.., starting at `at`.
pub async fn create_loopers(host: &Host, journey: &str, n: usize, at: u64) {
    for i in 0..n {
        host.runtime
            .store
            .create_run(
                DEFAULT_TENANT,
                journey,
                &format!("user-{i}"),
                r#"{"n":1000}"#,
                at,
            )
            .await
            .unwrap();
    }
}

/// Whether to run `section`: every section whose names contain one of the
/// arguments (`cargo bench -p cairn-tests --bench core -- throughput`), or
/// all of them when there is none.
pub fn selected(section: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    args.is_empty() || args.iter().any(|a| section.contains(a.as_str()))
}

/// Samples, sorted, for percentiles.
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Stats(samples)
    }

    pub fn pct(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }

    pub fn p50(&self) -> Duration {
        self.pct(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.pct(0.99)
    }

    pub fn max(&self) -> Duration {
        *self.0.last().expect("at least one sample")
    }
}

/// Microseconds, one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn event(user: String, name: &str) -> IncomingEvent {
    IncomingEvent {
        user_id: user,
        name: name.into(),
        properties: None,
        timestamp: None,
        idempotency_key: None,
    }
}

/// Signs up users `from..to` in batches of 1,000; their run ids in order.
pub async fn sign_up(host: &Host, from: usize, to: usize) -> Vec<i64> {
    let mut runs = Vec::with_capacity(to - from);
    let mut start = from;
    while start < to {
        let end = (start + 1_000).min(to);
        let batch = (start..end)
            .map(|i| event(format!("user-{i}"), "signed_up"))
            .collect();
        for outcome in host
            .runtime
            .ingest_events(DEFAULT_TENANT, batch)
            .await
            .unwrap()
        {
            runs.extend(outcome.enrolled);
        }
        start = end;
    }
    runs
}

/// This process's CPU time and thread switches so far (all threads).
#[derive(Clone, Copy)]
pub struct Usage {
    pub cpu: Duration,
    pub switches: u64,
}

impl Usage {
    pub fn now() -> Usage {
        // SAFETY: getrusage only writes the struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Usage {
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
            switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
        }
    }

    /// What was used since `earlier`, per one of `n` things.
    pub fn per(self, earlier: Usage, n: usize) -> (Duration, f64) {
        (
            (self.cpu - earlier.cpu) / n as u32,
            (self.switches - earlier.switches) as f64 / n as f64,
        )
    }
}

/// What [`event_to_resume`] measured.
pub struct EventToResume {
    /// From the ingest call to the commit of the step the event woke.
    pub latency: Stats,
    /// The ingest call alone (event stored, wait resolved, caller answered).
    pub ingest: Stats,
    /// From the first event sent to the last.
    pub elapsed: Duration,
    /// CPU time (all threads) per event, from the first event to the last resume.
    pub cpu_per_event: Duration,
    /// Thread switches (voluntary and not) per event, likewise.
    pub switches_per_event: f64,
}

/// Event-to-resume latency at a sustained `rate`: `users` users of the
/// welcome series wait for "purchased", and concurrent producers send each
/// one's purchase on schedule, to the hosts in turn (their schedulers
/// running meanwhile).
pub async fn event_to_resume(hosts: &[Host], users: usize, rate: u64) -> EventToResume {
    let first = &hosts[0];
    first.deploy("welcome_series").await;
    let runs = sign_up(first, 0, users).await;
    first.drain().await;
    first.advance(DAY).await; // everyone now waits for "purchased"
    let user_of: HashMap<i64, usize> = runs.iter().enumerate().map(|(i, r)| (*r, i)).collect();

    let mut running = Running::start(hosts);
    let usage = Usage::now();
    let start = Instant::now();
    let sender = {
        let runtimes: Vec<_> = hosts.iter().map(|h| h.runtime.clone()).collect();
        tokio::spawn(async move {
            let mut sent = Vec::with_capacity(users);
            let mut calls = Vec::with_capacity(users);
            for i in 0..users {
                tokio::time::sleep_until(
                    (start + Duration::from_micros(i as u64 * 1_000_000 / rate)).into(),
                )
                .await;
                let at = Instant::now();
                sent.push(at);
                let runtime = runtimes[i % runtimes.len()].clone();
                calls.push(tokio::spawn(async move {
                    let outcome = runtime
                        .ingest_events(
                            DEFAULT_TENANT,
                            vec![event(format!("user-{i}"), "purchased")],
                        )
                        .await;
                    assert_eq!(outcome.unwrap()[0].resumed.len(), 1);
                    at.elapsed()
                }));
            }
            let mut ingest = Vec::with_capacity(users);
            for call in calls {
                ingest.push(call.await.unwrap());
            }
            (sent, ingest)
        })
    };
    let mut resumed_at = vec![None; users];
    let mut seen = 0;
    while seen < users {
        let (runs, at) = running.next_commit().await;
        for run in runs.iter() {
            if let Some(&user) = user_of.get(run)
                && resumed_at[user].is_none()
            {
                resumed_at[user] = Some(at);
                seen += 1;
            }
        }
    }
    let (sent, ingest) = sender.await.unwrap();
    let (cpu_per_event, switches_per_event) = Usage::now().per(usage, users);
    drop(running);
    EventToResume {
        latency: Stats::of(
            sent.iter()
                .zip(&resumed_at)
                .map(|(s, r)| r.unwrap().duration_since(*s))
                .collect(),
        ),
        ingest: Stats::of(ingest),
        elapsed: sent.last().unwrap().duration_since(start),
        cpu_per_event,
        switches_per_event,
    }
}

/// The hosts' schedulers running, and every commit any of them makes.
///
/// Commits carry the moment they landed, so they are collected by polling
/// every few milliseconds: a listener woken by each commit would put a
/// thread switch of the benchmark's own on every event's way.
pub struct Running {
    commits: Vec<tokio::sync::broadcast::Receiver<cairn::scheduler::Committed>>,
    arrived: std::collections::VecDeque<cairn::scheduler::Committed>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts each host's scheduler; their commits come through [`Running::next_commit`].
    pub fn start(hosts: &[Host]) -> Running {
        let mut commits = Vec::new();
        let mut tasks = Vec::new();
        for host in hosts {
            commits.push(host.runtime.committed.subscribe());
            tasks.push(tokio::spawn(host.scheduler.clone().run()));
        }
        Running {
            commits,
            arrived: Default::default(),
            tasks,
        }
    }

    /// The runs of the next group commit on any host, and when it landed.
    pub async fn next_commit(&mut self) -> (std::sync::Arc<[i64]>, Instant) {
        use tokio::sync::broadcast::error::TryRecvError;
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(commit) = self.arrived.pop_front() {
                return (commit.runs, commit.at);
            }
            for commits in &mut self.commits {
                loop {
                    match commits.try_recv() {
                        Ok(commit) => self.arrived.push_back(commit),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(n)) => {
                            panic!("the benchmark missed {n} commits: poll more often")
                        }
                        Err(TryRecvError::Closed) => panic!("a host stopped"),
                    }
                }
            }
            if self.arrived.is_empty() {
                assert!(Instant::now() < give_up, "steps stopped committing");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
