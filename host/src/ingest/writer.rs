//! Group commit for ingest: one task applies every event queued by
//! concurrent callers in one transaction, plans them against the journeys'
//! rules, and answers each caller with its own outcomes. Under load the
//! groups grow by themselves; alone, an event commits at once.
//!
//! The runs an event resumes are leased to this host in the same
//! transaction and handed straight to the scheduler ([`Handoff`]): an event's
//! step needs no separate claim, which is most of its way to running.

use super::{ActiveJourney, EventOutcome, NewEvent, plan};
use crate::clock::Clock;
use crate::store::{DueRun, Lease, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

/// The most events one group commit takes.
const MAX_GROUP: usize = 2_000;

/// How long the journeys' rules are reused before they are read again (a
/// deploy or an enable/disable through this process refreshes them at once).
const RULES_TTL: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<Vec<EventOutcome>, String>>;

/// Runs that ingest leased to this host, ready for the scheduler to execute.
pub type Handoff = Arc<Mutex<Vec<DueRun>>>;

struct Request {
    events: Vec<NewEvent>,
    /// The lease the runs these events resume are taken with.
    lease: Lease,
    reply: Reply,
}

/// The handle callers queue events through.
#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Request>,
}

impl IngestWriter {
    /// Starts the writer task on the current tokio runtime. `work` is
    /// notified when an event enrolled or resumed a run; `rules` is bumped
    /// whenever journeys are deployed, enabled or disabled.
    pub fn spawn(
        store: Store,
        clock: Arc<dyn Clock>,
        work: Arc<Notify>,
        rules: Arc<AtomicU64>,
        handoff: Handoff,
    ) -> Self {
        let (queue, requests) = mpsc::channel(4_096);
        let writer = Writer {
            store,
            clock,
            work,
            generation: rules,
            rules: None,
            handoff,
        };
        tokio::spawn(writer.run(requests));
        IngestWriter { queue }
    }

    /// Applies `events` (already validated) and returns their outcomes, in
    /// order; the runs they resume are taken with `lease`.
    ///
    /// # Errors
    /// Why the group's transaction failed (the database), or that the writer stopped.
    pub async fn apply(
        &self,
        events: Vec<NewEvent>,
        lease: Lease,
    ) -> Result<Vec<EventOutcome>, String> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Request {
                events,
                lease,
                reply,
            })
            .await
            .map_err(|_| "the ingest writer stopped".to_string())?;
        outcome
            .await
            .map_err(|_| "the ingest writer stopped".to_string())?
    }
}

/// The journeys' trigger and exit rules, as last read.
struct Rules {
    journeys: Vec<ActiveJourney>,
    generation: u64,
    read_at: Instant,
}

struct Writer {
    store: Store,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    generation: Arc<AtomicU64>,
    rules: Option<Rules>,
    handoff: Handoff,
}

impl Writer {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        while let Some(first) = requests.recv().await {
            let mut size = first.events.len();
            let mut group = vec![first];
            while size < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => {
                        size += request.events.len();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            match self.apply(&group).await {
                Ok(outcomes) => {
                    if outcomes
                        .iter()
                        .any(|o| !o.enrolled.is_empty() || !o.resumed.is_empty())
                    {
                        self.work.notify_one();
                    }
                    let mut outcomes = outcomes.into_iter();
                    for request in group {
                        let mine = outcomes.by_ref().take(request.events.len()).collect();
                        let _ = request.reply.send(Ok(mine));
                    }
                }
                Err(why) => {
                    for request in group {
                        let _ = request.reply.send(Err(why.clone()));
                    }
                }
            }
        }
    }

    async fn apply(&mut self, group: &[Request]) -> Result<Vec<EventOutcome>, String> {
        let current = self.generation.load(Ordering::Acquire);
        let stale = self
            .rules
            .as_ref()
            .is_none_or(|r| r.generation != current || r.read_at.elapsed() > RULES_TTL);
        if stale {
            self.rules = Some(Rules {
                journeys: self
                    .store
                    .active_journeys()
                    .await
                    .map_err(|e| e.to_string())?,
                generation: current,
                read_at: Instant::now(),
            });
        }
        let journeys = &self
            .rules
            .as_ref()
            .expect("the rules were just read")
            .journeys;
        let planned: Vec<_> = group
            .iter()
            .flat_map(|r| r.events.iter())
            .map(|event| (event.clone(), plan(event, journeys)))
            .collect();
        // Requests queue for moments at most: the first one's lease serves the group.
        let lease = &group[0].lease;
        let (outcomes, due) = self
            .store
            .apply_events(&planned, self.clock.now(), Some(lease))
            .await
            .map_err(|e| e.to_string())?;
        if !due.is_empty() {
            self.handoff.lock().expect("handoff lock").extend(due);
        }
        Ok(outcomes)
    }
}
