//! The host's one entry point for everything that changes journeys and runs:
//! deploy a component, start a run, ingest an event. The API, the CLI and
//! `simulate` all go through it; the [`crate::scheduler`] executes the steps.

use crate::clock::{Clock, SystemClock};
use crate::engine::{DeployError, Engine, LoadedJourney};
use crate::ingest::{EventOutcome, Identify, IncomingEvent, IngestWriter};
use crate::store::{NewVersion, RunRow, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("version {0} is not in the database")]
    UnknownVersion(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Storing events failed; a retry may help (a repeated idempotency key is safe).
    #[error("could not store the events (a retry with the same idempotency keys is safe): {0}")]
    Ingest(String),
}

/// A deployed version, as reported to callers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    pub journey_id: String,
    pub version: String,
    /// False if this exact component was deployed before.
    pub new: bool,
}

/// Engine, store, clock and the cache of loaded versions.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub store: Store,
    clock: Arc<dyn Clock>,
    /// The wall clock for leases, which must not follow a virtual run clock.
    lease_clock: Arc<dyn Clock>,
    /// This host's name as a lease owner; stable across restarts.
    host_id: Arc<str>,
    loaded: Arc<RwLock<HashMap<String, Arc<LoadedJourney>>>>,
    /// Woken whenever work may have come due (a new run, an event, a clock move).
    pub work: Arc<Notify>,
    /// The runs whose steps each group commit applied, for whoever listens.
    pub committed: tokio::sync::broadcast::Sender<Arc<[i64]>>,
    ingest: IngestWriter,
    /// Bumped when journeys' trigger and exit rules may have changed.
    rules: Arc<AtomicU64>,
}

impl Runtime {
    /// The runtime over `store`; starts the ingest writer, so it must be
    /// called inside a tokio runtime.
    pub fn new(engine: Engine, store: Store, clock: Arc<dyn Clock>) -> Self {
        let work = Arc::new(Notify::new());
        let rules = Arc::new(AtomicU64::new(0));
        let ingest = IngestWriter::spawn(store.clone(), clock.clone(), work.clone(), rules.clone());
        Runtime {
            engine,
            store,
            clock,
            lease_clock: Arc::new(SystemClock),
            host_id: "local".into(),
            loaded: Arc::default(),
            work,
            committed: tokio::sync::broadcast::channel(1024).0,
            ingest,
            rules,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Names this host as a lease owner (default `local`). Hosts sharing a
    /// database need distinct ids; one host keeps its id across restarts so
    /// it can release the leases its previous life held.
    pub fn with_host_id(mut self, host_id: &str) -> Self {
        self.host_id = host_id.into();
        self
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// System time for leases.
    pub fn lease_now(&self) -> u64 {
        self.lease_clock.now()
    }

    /// Validates, compiles and registers a component; new runs of its journey use it.
    ///
    /// # Errors
    /// [`RuntimeError::Deploy`] naming what is wrong with the component.
    pub async fn deploy(&self, bytes: Vec<u8>) -> Result<Deployed, RuntimeError> {
        let engine = self.engine.clone();
        let (bytes, journey) = tokio::task::spawn_blocking(move || {
            let loaded = engine.load(&bytes);
            (bytes, loaded)
        })
        .await
        .expect("the deploy task panicked");
        let journey = journey?;
        let version = journey.hash_hex();
        let new = self
            .store
            .deploy_version(
                NewVersion {
                    hash: &version,
                    meta: &journey.meta,
                    component: &bytes,
                },
                self.now(),
            )
            .await?;
        let journey_id = journey.meta.id.clone();
        self.rules.fetch_add(1, Ordering::Release);
        self.loaded
            .write()
            .expect("journey cache lock")
            .insert(version.clone(), Arc::new(journey));
        tracing::debug!(journey = %journey_id, %version, new, "deployed");
        Ok(Deployed {
            journey_id,
            version,
            new,
        })
    }

    /// The loaded version, compiling it from the database on first use.
    ///
    /// # Errors
    /// The version is unknown or no longer loads.
    pub async fn journey(&self, version: &str) -> Result<Arc<LoadedJourney>, RuntimeError> {
        if let Some(j) = self.loaded.read().expect("journey cache lock").get(version) {
            return Ok(j.clone());
        }
        let bytes = self
            .store
            .version_component(version)
            .await?
            .ok_or_else(|| RuntimeError::UnknownVersion(version.to_string()))?;
        let engine = self.engine.clone();
        let journey = tokio::task::spawn_blocking(move || engine.load(&bytes))
            .await
            .expect("the load task panicked")?;
        let journey = Arc::new(journey);
        self.loaded
            .write()
            .expect("journey cache lock")
            .insert(version.to_string(), journey.clone());
        Ok(journey)
    }

    /// Starts a run of `journey_id` for `user_id`; its first step runs at once.
    ///
    /// # Errors
    /// An unknown journey, input that is not JSON, or a database failure.
    pub async fn start_run(
        &self,
        journey_id: &str,
        user_id: &str,
        input: &str,
    ) -> Result<RunRow, RuntimeError> {
        if user_id.trim().is_empty() {
            return Err(RuntimeError::Invalid("user_id is empty".into()));
        }
        serde_json::from_str::<serde_json::Value>(input)
            .map_err(|e| RuntimeError::Invalid(format!("input is not JSON: {e}")))?;
        let run = self
            .store
            .create_run(journey_id, user_id, input, self.now())
            .await?;
        self.work.notify_one();
        Ok(run)
    }

    /// Ingests events in order, in one transaction: each enrolls, exits and
    /// resumes per the journeys' rules, once per idempotency key.
    ///
    /// # Errors
    /// [`RuntimeError::Invalid`] naming the first bad event (nothing is
    /// stored then), or a database failure.
    pub async fn ingest_events(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Result<Vec<EventOutcome>, RuntimeError> {
        let now = self.now();
        let many = events.len() > 1;
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                e.validate(now).map_err(|why| {
                    RuntimeError::Invalid(if many {
                        format!("event {i}: {why}")
                    } else {
                        why
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.ingest
            .apply(events)
            .await
            .map_err(RuntimeError::Ingest)
    }

    /// Creates or updates a contact.
    ///
    /// # Errors
    /// A bad field, a deleted contact, or a database failure.
    pub async fn identify(&self, contact: Identify) -> Result<serde_json::Value, RuntimeError> {
        contact.validate().map_err(RuntimeError::Invalid)?;
        Ok(self.store.identify(&contact, self.now()).await?)
    }

    /// Deletes a contact (GDPR): their runs exit, no new run starts. Returns the exited runs.
    ///
    /// # Errors
    /// A database failure.
    pub async fn delete_user(&self, user_id: &str) -> Result<Vec<i64>, RuntimeError> {
        Ok(self.store.delete_contact(user_id, self.now()).await?)
    }

    /// Cancels a run: it exits at once.
    ///
    /// # Errors
    /// An unknown or already ended run, or a database failure.
    pub async fn cancel_run(&self, id: i64) -> Result<RunRow, RuntimeError> {
        Ok(self.store.cancel_run(id, self.now()).await?)
    }

    /// Turns enrollment on or off for a journey.
    ///
    /// # Errors
    /// An unknown journey, or a database failure.
    pub async fn set_enabled(&self, journey_id: &str, enabled: bool) -> Result<(), RuntimeError> {
        self.store
            .set_enabled(journey_id, enabled, self.now())
            .await?;
        self.rules.fetch_add(1, Ordering::Release);
        Ok(())
    }
}
