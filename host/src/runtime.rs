//! The host's one entry point for everything that changes journeys and runs:
//! deploy a component, start a run, ingest an event. The API, the CLI and
//! `simulate` all go through it; the [`crate::scheduler`] executes the steps.

use crate::clock::Clock;
use crate::engine::{DeployError, Engine, LoadedJourney};
use crate::store::{EventOutcome, NewVersion, RunRow, Store, StoreError};
use std::collections::HashMap;
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
    loaded: Arc<RwLock<HashMap<String, Arc<LoadedJourney>>>>,
    /// Woken whenever work may have come due (a new run, an event, a clock move).
    pub work: Arc<Notify>,
}

impl Runtime {
    pub fn new(engine: Engine, store: Store, clock: Arc<dyn Clock>) -> Self {
        Runtime {
            engine,
            store,
            clock,
            loaded: Arc::default(),
            work: Arc::new(Notify::new()),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
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

    /// Stores an event and resumes the user's runs waiting for it.
    ///
    /// # Errors
    /// Properties that are not a JSON object, or a database failure.
    pub async fn ingest_event(
        &self,
        user_id: &str,
        name: &str,
        properties: serde_json::Value,
        timestamp: Option<u64>,
        idempotency_key: Option<&str>,
    ) -> Result<EventOutcome, RuntimeError> {
        if user_id.trim().is_empty() || name.trim().is_empty() {
            return Err(RuntimeError::Invalid(
                "user_id and name must not be empty".into(),
            ));
        }
        if !properties.is_object() {
            return Err(RuntimeError::Invalid(
                "properties must be a JSON object".into(),
            ));
        }
        let now = self.now();
        let outcome = self
            .store
            .ingest_event(
                user_id,
                name,
                &properties,
                timestamp.unwrap_or(now),
                idempotency_key,
                now,
            )
            .await?;
        if !outcome.resumed.is_empty() {
            self.work.notify_one();
        }
        Ok(outcome)
    }
}
