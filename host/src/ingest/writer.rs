//! Group commit for ingest: one task applies every event queued by
//! concurrent callers in one transaction, plans them against the journeys
//! once per group, and answers each caller with its own outcomes. Under load
//! the groups grow by themselves; alone, an event commits at once.

use super::{EventOutcome, NewEvent, plan};
use crate::clock::Clock;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// The most events one group commit takes.
const MAX_GROUP: usize = 2_000;

type Reply = oneshot::Sender<Result<Vec<EventOutcome>, String>>;

struct Request {
    events: Vec<NewEvent>,
    reply: Reply,
}

/// The handle callers queue events through.
#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Request>,
}

impl IngestWriter {
    /// Starts the writer task (on the current tokio runtime). `work` is
    /// notified when an event enrolled or resumed a run.
    pub fn spawn(store: Store, clock: Arc<dyn Clock>, work: Arc<Notify>) -> Self {
        let (queue, requests) = mpsc::channel(4_096);
        tokio::spawn(run(store, clock, work, requests));
        IngestWriter { queue }
    }

    /// Applies `events` (already validated) and returns their outcomes, in order.
    ///
    /// # Errors
    /// Why the group's transaction failed (the database), or that the writer stopped.
    pub async fn apply(&self, events: Vec<NewEvent>) -> Result<Vec<EventOutcome>, String> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Request { events, reply })
            .await
            .map_err(|_| "the ingest writer stopped".to_string())?;
        outcome
            .await
            .map_err(|_| "the ingest writer stopped".to_string())?
    }
}

async fn run(
    store: Store,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    mut requests: mpsc::Receiver<Request>,
) {
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
        let applied = apply(&store, clock.now(), &group).await;
        match applied {
            Ok(outcomes) => {
                if outcomes
                    .iter()
                    .any(|o| !o.enrolled.is_empty() || !o.resumed.is_empty())
                {
                    work.notify_one();
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

async fn apply(store: &Store, now: u64, group: &[Request]) -> Result<Vec<EventOutcome>, String> {
    let journeys = store.active_journeys().await.map_err(|e| e.to_string())?;
    let planned: Vec<_> = group
        .iter()
        .flat_map(|r| r.events.iter())
        .map(|event| (event.clone(), plan(event, &journeys)))
        .collect();
    store
        .apply_events(&planned, now)
        .await
        .map_err(|e| e.to_string())
}
