//! What runs next: [`Scheduler::tick`] executes one batch of the steps due at
//! a given time and group-commits them; [`Scheduler::drain`] does that until
//! nothing is due, claiming and executing the next batch while the previous
//! one commits; [`Scheduler::run`] is the thin loop around `drain` that sleeps
//! until the next deadline or until new work arrives.
//!
//! Runs an event resumed arrive already leased from ingest (the handoff)
//! and go first; everything else due is claimed from the store with leases.
//! While runs wait in the handoff or execute, a heartbeat renews their
//! leases, so only a host that stopped (died, or was paused) loses them.
//!
//! A batch's steps execute on the step workers, one per core (each step on
//! a fresh instance restored from its snapshot; see [`workers`]), and
//! commit in one transaction.
//! Every commit is guarded by the run's status and step, so a step whose run
//! moved on meanwhile (an exit, another worker) is discarded.

mod workers;

use crate::durable::{StepEnv, StepRecord, WaitKind};
use crate::engine::step::Wake;
use crate::engine::{Engine, LoadedJourney, Session, StepCall, StepResult};
use crate::runtime::{Runtime, RuntimeError, TenantSettings};
use crate::store::{DueRun, RunStatus, StepCommit, StepEnd, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workers::StepWorkers;

/// Executes due steps. Defaults: 256 steps per tick, one worker per core.
#[derive(Clone)]
pub struct Scheduler {
    runtime: Runtime,
    batch: u32,
    parallelism: usize,
    workers: Arc<StepWorkers>,
    /// Runs claimed and not yet committed: the heartbeat renews their leases.
    executing: Arc<Mutex<HashSet<i64>>>,
    /// When the store was last asked for due runs.
    asked_store: Arc<Mutex<Option<Instant>>>,
    /// The earliest deadline this host's commits registered since the
    /// run loop last looked: the loop asks the store for the next deadline
    /// at most every [`STORE_CHECK_EVERY`], and learns its own from here.
    committed_deadline: Arc<Mutex<Option<u64>>>,
}

/// A claimed batch whose steps are executing.
struct Batch {
    execution: tokio::task::JoinHandle<Vec<Executed>>,
}

/// What a step worker hands back.
enum Executed {
    Commit(Box<StepCommit>),
    /// The host failed during the step (its database did not answer): the
    /// step is not committed, and the run's lease is extended briefly so it
    /// runs again from the same snapshot, on this host or another.
    Deferred {
        run_id: i64,
        step: u32,
        reason: String,
    },
}

/// How often, at most, the store is asked for due runs while ingest keeps
/// handing runs over, or for the next deadline while work keeps arriving
/// (timers then start up to this much late). Each question is a read on
/// the way of every event.
const STORE_CHECK_EVERY: Duration = Duration::from_millis(10);

/// How long a deferred step waits before it may be claimed again.
const DEFER_MS: u64 = 1_000;

/// A group commit, as [`Runtime::committed`] announces it.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The runs whose steps it applied.
    pub runs: Arc<[i64]>,
    /// When it landed (listeners may read it later).
    pub at: Instant,
}

/// What one tick did, and where its time went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Steps executed and committed.
    pub committed: usize,
    /// Steps discarded because their run had moved on.
    pub discarded: usize,
    /// Finding the due runs and loading their snapshots.
    pub claim: Duration,
    /// Running the steps (restore, call, snapshot).
    pub execute: Duration,
    /// The group commit.
    pub commit: Duration,
    /// Runs the commit made due again at once (an event was already waiting).
    pub redelivered: usize,
    /// Steps the host could not finish (its database failed), to run again.
    pub deferred: usize,
}

impl Scheduler {
    pub fn new(runtime: Runtime) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, usize::from);
        Scheduler {
            runtime,
            batch: 256,
            parallelism,
            workers: StepWorkers::start(parallelism),
            executing: Arc::default(),
            asked_store: Arc::default(),
            committed_deadline: Arc::default(),
        }
    }

    /// Step workers that execute a tick's steps (default: one per core).
    pub fn with_parallelism(mut self, workers: usize) -> Self {
        self.parallelism = workers.max(1);
        self.workers = StepWorkers::start(self.parallelism);
        self
    }

    /// Executes every step due at `now` (up to one batch) and commits them.
    ///
    /// # Errors
    /// A database failure; no step of the tick was committed and all stay due.
    pub async fn tick(&self, now: u64) -> Result<TickReport, StoreError> {
        let started = Instant::now();
        let Some(batch) = self.claim(now).await? else {
            return Ok(TickReport::default());
        };
        let claim = started.elapsed();
        let started = Instant::now();
        let commits = batch.execution.await.expect("a step worker panicked");
        let execute = started.elapsed();
        let mut report = self.commit(commits).await?;
        report.claim = claim;
        report.execute = execute;
        Ok(report)
    }

    /// Executes everything due at `now`, pipelined: the next batch is claimed
    /// and executed while the previous one commits. Returns the steps committed.
    ///
    /// # Errors
    /// A database failure; what was not committed stays due.
    pub async fn drain(&self, now: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        let Some(mut current) = self.claim(now).await? else {
            return Ok(0);
        };
        loop {
            let commits = current.execution.await.expect("a step worker panicked");
            // Leased runs are not claimed again: the next batch is other runs.
            let next = self.claim(now).await?;
            let again = due_again(&commits, now);
            let report = self.commit(commits).await?;
            total += report.committed;
            match next {
                Some(batch) => current = batch,
                // The commit made runs due again: an event was already there,
                // or a step's next timer is already past.
                None if report.redelivered > 0 || again => match self.claim(now).await? {
                    Some(batch) => current = batch,
                    None => return Ok(total),
                },
                None => return Ok(total),
            }
        }
    }

    /// Takes up to one batch of runs to execute: those ingest handed over
    /// (already leased) and due runs leased now, and starts them on the step
    /// workers. Handed runs fill at most three quarters of a batch, so timers
    /// that came due are claimed even while events keep arriving.
    async fn claim(&self, now: u64) -> Result<Option<Batch>, StoreError> {
        let lease = self.runtime.lease();
        let owner = lease.owner.clone();
        let batch = self.batch as usize;
        let mut due: Vec<DueRun> = {
            let mut handoff = self.runtime.handoff.lock().expect("handoff lock");
            let n = handoff.len().min(batch - batch / 4);
            handoff.drain(..n).collect()
        };
        // While events keep handing runs over, the store is asked for due
        // timers at most every few milliseconds: each question is a read on
        // the way of every event.
        let handed = !due.is_empty();
        let asked_lately = self
            .asked_store
            .lock()
            .expect("asked lock")
            .is_some_and(|at| at.elapsed() < STORE_CHECK_EVERY);
        if !(handed && asked_lately) {
            let room = (batch - due.len()) as u32;
            due.extend(self.runtime.store.claim_due(&lease, now, room).await?);
            *self.asked_store.lock().expect("asked lock") = Some(Instant::now());
        }
        if due.is_empty() {
            return Ok(None);
        }
        self.executing
            .lock()
            .expect("executing lock")
            .extend(due.iter().map(|d| d.run.id));
        let mut work = Vec::with_capacity(due.len());
        for run in due {
            let journey = match self.runtime.settings(&run.run.tenant_id).await {
                Ok(settings) => self
                    .runtime
                    .journey(&run.run.tenant_id, &run.run.version)
                    .await
                    .map(|journey| (journey, settings)),
                Err(err) => Err(err),
            };
            work.push((run, journey));
        }
        // Each step worker runs its share of the steps in turn.
        let workers = self.parallelism.min(work.len());
        let per_worker = work.len().div_ceil(workers);
        let mut handles = Vec::with_capacity(workers);
        while !work.is_empty() {
            let chunk: Vec<_> = work.drain(..per_worker.min(work.len())).collect();
            let engine = self.runtime.engine.clone();
            let owner = owner.clone();
            handles.push(self.workers.run(move || {
                chunk
                    .into_iter()
                    .map(|(run, journey)| execute(&engine, run, journey, &owner, now))
                    .collect::<Vec<_>>()
            }));
        }
        let execution = tokio::spawn(async move {
            let mut commits = Vec::new();
            for handle in handles {
                match handle
                    .await
                    .expect("the step workers outlive their batches")
                {
                    Ok(executed) => commits.extend(executed),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            commits
        });
        Ok(Some(Batch { execution }))
    }

    /// Commits a batch; its runs' leases are no longer renewed, whether the
    /// commit succeeds or not (after a failure they run out and the steps
    /// run again).
    async fn commit(&self, executed: Vec<Executed>) -> Result<TickReport, StoreError> {
        let runs: Vec<i64> = executed
            .iter()
            .map(|e| match e {
                Executed::Commit(commit) => commit.run_id,
                Executed::Deferred { run_id, .. } => *run_id,
            })
            .collect();
        let report = self.commit_executed(executed).await;
        let mut executing = self.executing.lock().expect("executing lock");
        for run in runs {
            executing.remove(&run);
        }
        report
    }

    async fn commit_executed(&self, executed: Vec<Executed>) -> Result<TickReport, StoreError> {
        let started = Instant::now();
        let mut commits = Vec::with_capacity(executed.len());
        let mut deferred = Vec::new();
        for step in executed {
            match step {
                Executed::Commit(commit) => commits.push(*commit),
                Executed::Deferred {
                    run_id,
                    step,
                    reason,
                } => {
                    tracing::warn!(run = run_id, step, "step deferred, it runs again: {reason}");
                    deferred.push((run_id, step));
                }
            }
        }
        if !deferred.is_empty() {
            self.runtime
                .store
                .defer_steps(
                    self.runtime.host_id(),
                    &deferred,
                    self.runtime.lease_now() + DEFER_MS,
                )
                .await?;
        }
        let result = self.runtime.store.commit_steps(&commits).await?;
        let applied = result.applied;
        let committed = applied.iter().filter(|a| **a).count();
        if committed < applied.len() {
            tracing::info!(
                discarded = applied.len() - committed,
                "steps discarded: their runs moved on (an exit, a cancel, or another host took the lease)"
            );
        }
        let earliest = commits
            .iter()
            .zip(&applied)
            .filter_map(|(c, applied)| match &c.end {
                StepEnd::Waiting { wait, .. } if *applied => Some(wait.deadline),
                _ => None,
            })
            .min();
        if earliest.is_some() {
            let mut deadline = self.committed_deadline.lock().expect("deadline lock");
            *deadline = self::earliest(*deadline, earliest);
        }
        if commits.iter().any(|c| !c.record.outbox.is_empty()) {
            self.runtime.deliveries.notify_one();
        }
        if self.runtime.committed.receiver_count() > 0 {
            let runs: Arc<[i64]> = commits
                .iter()
                .zip(&applied)
                .filter(|(_, applied)| **applied)
                .map(|(c, _)| c.run_id)
                .collect();
            let _ = self.runtime.committed.send(Committed {
                runs,
                at: Instant::now(),
            });
        }
        Ok(TickReport {
            committed,
            discarded: applied.len() - committed,
            commit: started.elapsed(),
            redelivered: result.redelivered,
            deferred: deferred.len(),
            ..TickReport::default()
        })
    }

    /// Renews the leases on the runs this host holds (handed over by ingest,
    /// or claimed and executing), every third of the lease.
    async fn heartbeat(self) {
        let every = Duration::from_millis((self.runtime.lease_ms() / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            let mut held: Vec<i64> = self
                .executing
                .lock()
                .expect("executing lock")
                .iter()
                .copied()
                .collect();
            held.extend(
                self.runtime
                    .handoff
                    .lock()
                    .expect("handoff lock")
                    .iter()
                    .map(|d| d.run.id),
            );
            if held.is_empty() {
                continue;
            }
            let lease = self.runtime.lease();
            if let Err(err) = self
                .runtime
                .store
                .renew_leases(&lease.owner, &held, lease.until)
                .await
            {
                tracing::warn!("renewing {} lease(s) failed: {err}", held.len());
            }
        }
    }

    /// Runs forever: ticks whenever work is due or arrives, and renews the
    /// leases it holds meanwhile (the heartbeat stops when this future is dropped).
    ///
    /// Between ticks it sleeps until the next deadline (at most a second,
    /// for deadlines other hosts register) or until work arrives.
    pub async fn run(self) {
        let mut heartbeat = tokio::task::JoinSet::new();
        heartbeat.spawn(self.clone().heartbeat());
        let mut next_due: Option<u64> = None;
        let mut asked: Option<Instant> = None;
        loop {
            let now = self.runtime.now();
            if let Err(err) = self.drain(now).await {
                tracing::error!("scheduler failed, retrying: {err}");
            }
            // Asked recently, the store knows no deadline but those this
            // host's own commits reported since (ingest and the API notify).
            let committed = self
                .committed_deadline
                .lock()
                .expect("deadline lock")
                .take();
            if asked.is_none_or(|at| at.elapsed() >= STORE_CHECK_EVERY) {
                let lease_now = self.runtime.lease_now();
                next_due = match self.runtime.store.next_due_at(lease_now).await {
                    Ok(at) => at,
                    Err(err) => {
                        tracing::warn!("reading the next deadline failed: {err}");
                        None
                    }
                };
                asked = Some(Instant::now());
            }
            next_due = earliest(next_due, committed);
            let now = self.runtime.now();
            let wait = match next_due {
                // Drained already: the store is asked again soon.
                Some(at) if at <= now => {
                    STORE_CHECK_EVERY.saturating_sub(asked.map_or(Duration::ZERO, |a| a.elapsed()))
                }
                Some(at) => Duration::from_millis((at - now).min(1_000)),
                None => Duration::from_secs(1),
            };
            let _ = tokio::time::timeout(wait, self.runtime.work.notified()).await;
        }
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a committed step's next wait is already due at `now`.
fn due_again(executed: &[Executed], now: u64) -> bool {
    executed.iter().any(|e| {
        matches!(e, Executed::Commit(c) if matches!(&c.end, StepEnd::Waiting { wait, .. } if wait.deadline <= now))
    })
}

/// Runs one due step into the commit that records it.
fn execute(
    engine: &Engine,
    due: DueRun,
    journey: Result<(Arc<LoadedJourney>, Arc<TenantSettings>), RuntimeError>,
    lease_owner: &str,
    now: u64,
) -> Executed {
    let run = due.run;
    let (call, woken_by) = match (run.status, &run.pending_event, &run.wait) {
        (RunStatus::Active, _, _) => (
            StepCall::Start {
                input: run.input.clone(),
            },
            "started".to_string(),
        ),
        (_, Some(event), _) => (
            StepCall::Resume(Wake::Event {
                name: event.name.clone(),
                properties: event.properties.to_string(),
                timestamp: event.timestamp,
            }),
            format!("event:{}", event.name),
        ),
        (_, None, Some(wait)) if matches!(wait.kind, WaitKind::Event { .. }) => {
            (StepCall::Resume(Wake::TimedOut), "timed-out".to_string())
        }
        _ => (
            StepCall::Resume(Wake::TimerFired),
            "timer-fired".to_string(),
        ),
    };
    // The step's logical time: when it came due, not when a worker got to it.
    let step_time = run.due_at.unwrap_or(now);
    let (end, record) = match journey {
        Ok((journey, settings)) => {
            let env = StepEnv {
                run_id: run.id,
                step: run.step,
                user_id: run.user_id.clone(),
                started_at: run.started_at,
                ceiling_at: run.ceiling_at,
                now: step_time,
                seed: run.seed,
                limits: settings.limits.clone(),
                gate: settings.gate.clone(),
            };
            match Session::run_step(engine, &journey, env, due.snapshot.as_deref(), call) {
                Ok(outcome) => {
                    let end = match outcome.result {
                        StepResult::Waiting(wait) => StepEnd::Waiting {
                            wait,
                            snapshot: outcome.snapshot.unwrap_or_default(),
                        },
                        StepResult::Done => StepEnd::Completed,
                        StepResult::Failed(reason) => StepEnd::Failed(reason),
                        StepResult::Deferred(reason) => {
                            return Executed::Deferred {
                                run_id: run.id,
                                step: run.step,
                                reason,
                            };
                        }
                    };
                    (end, outcome.record)
                }
                Err(err) => (
                    StepEnd::Failed(format!("cannot restore the run: {err}")),
                    StepRecord::default(),
                ),
            }
        }
        Err(err) => (
            StepEnd::Failed(format!("cannot load version {}: {err}", run.version)),
            StepRecord::default(),
        ),
    };
    // The ceiling is also enforced on the run as a whole.
    let end = match end {
        StepEnd::Waiting { .. } if run.ceiling_at <= now => {
            StepEnd::Failed("execution ceiling reached".into())
        }
        end => end,
    };
    Executed::Commit(Box::new(StepCommit {
        run_id: run.id,
        tenant_id: run.tenant_id,
        user_id: run.user_id,
        expected_status: run.status,
        expected_step: run.step,
        end,
        record,
        woken_by,
        event_id: run.pending_event.map(|e| e.event_id),
        at: step_time,
        event_watermark: due.watermark,
        lease_owner: lease_owner.to_string(),
        now,
    }))
}
