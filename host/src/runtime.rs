//! The host's one entry point for everything that changes journeys and runs:
//! deploy a component, start a run, ingest an event. The API, the CLI and
//! `simulate` all go through it; the [`crate::scheduler`] executes the steps.

use crate::clock::{Clock, SystemClock};
use crate::delivery::{DeliveryConfig, SendGate, StoreGate};
use crate::durable::Limits;
use crate::engine::{DeployError, Engine, LoadedJourney};
use crate::ingest::{EventOutcome, Handoff, Identify, IncomingEvent, IngestWriter};
use crate::store::{NewVersion, RunRow, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a tenant's settings are reused before they are read again.
pub const SETTINGS_TTL: Duration = Duration::from_secs(10);

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("version {0} is not in the database")]
    UnknownVersion(String),
    #[error("no tenant {0:?}")]
    UnknownTenant(String),
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

/// What a tenant configured, as its runs and deliveries use it.
pub struct TenantSettings {
    pub limits: Arc<Limits>,
    pub delivery: Arc<DeliveryConfig>,
    /// The delivery policy its steps' sends go through.
    pub gate: Arc<dyn SendGate>,
}

/// A tenant's settings and when they were read.
type CachedSettings = (Arc<TenantSettings>, Instant);

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
    /// How long this host's claims on runs hold before it renews them.
    lease_ms: u64,
    /// Loaded versions by content hash (the same bytes load the same for every tenant).
    loaded: Arc<RwLock<HashMap<String, Arc<LoadedJourney>>>>,
    /// Tenants' settings, as last read.
    settings: Arc<RwLock<HashMap<String, CachedSettings>>>,
    unsubscribe_secret: Arc<tokio::sync::OnceCell<Arc<[u8]>>>,
    /// Woken when messages may have become deliverable (a step sent, a retry).
    pub deliveries: Arc<Notify>,
    /// Woken whenever work may have come due (a new run, an event, a clock move).
    pub work: Arc<Notify>,
    /// Each group commit's applied steps, for whoever listens.
    pub committed: tokio::sync::broadcast::Sender<crate::scheduler::Committed>,
    ingest: IngestWriter,
    /// Runs that events resumed, already leased to this host: the scheduler
    /// executes them before it claims anything else.
    pub(crate) handoff: Handoff,
    /// Bumped when journeys' trigger and exit rules may have changed.
    rules: Arc<AtomicU64>,
}

impl Runtime {
    /// The runtime over `store`; starts the ingest writer, so it must be
    /// called inside a tokio runtime.
    pub fn new(engine: Engine, store: Store, clock: Arc<dyn Clock>) -> Self {
        let work = Arc::new(Notify::new());
        let rules = Arc::new(AtomicU64::new(0));
        let handoff = Handoff::default();
        let ingest = IngestWriter::spawn(
            store.clone(),
            clock.clone(),
            work.clone(),
            rules.clone(),
            handoff.clone(),
        );
        Runtime {
            engine,
            store,
            clock,
            lease_clock: Arc::new(SystemClock),
            host_id: "local".into(),
            lease_ms: crate::store::LEASE_MS,
            loaded: Arc::default(),
            settings: Arc::default(),
            unsubscribe_secret: Arc::default(),
            deliveries: Arc::new(Notify::new()),
            work,
            committed: tokio::sync::broadcast::channel(1024).0,
            ingest,
            handoff,
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

    /// How long this host's claims on runs hold (default [`crate::store::LEASE_MS`]):
    /// a host that stops renewing them (it died, or it is paused) loses its
    /// runs to another host this long after its last renewal.
    pub fn with_lease_ms(mut self, lease_ms: u64) -> Self {
        self.lease_ms = lease_ms.max(1);
        self
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    /// A lease for this host on runs, taken now.
    pub fn lease(&self) -> crate::store::Lease {
        crate::store::Lease::new(&self.host_id, self.lease_now(), self.lease_ms)
    }

    /// System time for leases.
    pub fn lease_now(&self) -> u64 {
        self.lease_clock.now()
    }

    /// A tenant's limits (within what the engine allows), delivery settings
    /// and send gate, as read at most [`SETTINGS_TTL`] ago.
    ///
    /// # Errors
    /// [`RuntimeError::UnknownTenant`], or a database failure.
    pub async fn settings(&self, tenant: &str) -> Result<Arc<TenantSettings>, RuntimeError> {
        if let Some((settings, read_at)) = self.settings.read().expect("settings lock").get(tenant)
            && read_at.elapsed() < SETTINGS_TTL
        {
            return Ok(settings.clone());
        }
        let unknown = || RuntimeError::UnknownTenant(tenant.to_string());
        let mut limits = self
            .store
            .tenant_limits(tenant)
            .await?
            .ok_or_else(unknown)?;
        let delivery = Arc::new(
            self.store
                .delivery_config(tenant)
                .await?
                .ok_or_else(unknown)?,
        );
        // A pooled memory slot is only as large as the engine's limit.
        let host = self.engine.limits();
        limits.max_memory_bytes = limits.max_memory_bytes.min(host.max_memory_bytes);
        limits.max_ceiling_ms = limits.max_ceiling_ms.min(host.max_ceiling_ms);
        let settings = Arc::new(TenantSettings {
            limits: Arc::new(limits),
            gate: Arc::new(StoreGate::new(tenant, delivery.clone(), self.store.clone())),
            delivery,
        });
        self.settings
            .write()
            .expect("settings lock")
            .insert(tenant.to_string(), (settings.clone(), Instant::now()));
        Ok(settings)
    }

    /// The limits of a tenant's runs.
    ///
    /// # Errors
    /// See [`Runtime::settings`].
    pub async fn limits(&self, tenant: &str) -> Result<Arc<Limits>, RuntimeError> {
        Ok(self.settings(tenant).await?.limits.clone())
    }

    /// Drops this host's copy of a tenant's settings after they changed.
    pub fn forget_settings(&self, tenant: &str) {
        self.settings.write().expect("settings lock").remove(tenant);
    }

    /// The key that signs unsubscribe links, shared by every host of the database.
    ///
    /// # Errors
    /// A database failure.
    pub async fn unsubscribe_secret(&self) -> Result<Arc<[u8]>, RuntimeError> {
        Ok(self
            .unsubscribe_secret
            .get_or_try_init(|| async {
                self.store
                    .host_secret("unsubscribe-links")
                    .await
                    .map(Arc::from)
            })
            .await?
            .clone())
    }

    /// Validates, compiles and registers a component for a tenant; new runs
    /// of its journey use it at once, runs in flight stay on their version.
    ///
    /// # Errors
    /// [`RuntimeError::Deploy`] naming what is wrong with the component.
    pub async fn deploy(&self, tenant: &str, bytes: Vec<u8>) -> Result<Deployed, RuntimeError> {
        let (bytes, journey) = self.compile(bytes).await?;
        self.register(tenant, &bytes, journey).await
    }

    /// Validates and compiles a component (off the async threads), for [`Runtime::register`].
    ///
    /// # Errors
    /// [`RuntimeError::Deploy`] naming what is wrong with the component.
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<(Vec<u8>, LoadedJourney), RuntimeError> {
        let engine = self.engine.clone();
        let (bytes, journey) = tokio::task::spawn_blocking(move || {
            let loaded = engine.load(&bytes);
            (bytes, loaded)
        })
        .await
        .expect("the deploy task panicked");
        Ok((bytes, journey?))
    }

    /// Registers a compiled component for a tenant, after checking it
    /// against the tenant's limits and templates.
    ///
    /// # Errors
    /// [`RuntimeError::Deploy`] naming what the tenant refuses; a database failure.
    pub async fn register(
        &self,
        tenant: &str,
        bytes: &[u8],
        journey: LoadedJourney,
    ) -> Result<Deployed, RuntimeError> {
        let limits = self.limits(tenant).await?;
        if journey.declared_memory > limits.max_memory_bytes as u64 {
            return Err(DeployError::Invalid(crate::engine::memory_refusal(
                journey.declared_memory,
                limits.max_memory_bytes as u64,
            ))
            .into());
        }
        if journey.meta.execution_timeout_ms > limits.max_ceiling_ms {
            return Err(DeployError::Meta(format!(
                "execution timeout of {} days is above the tenant's maximum of {} days",
                journey.meta.execution_timeout_ms / 86_400_000,
                limits.max_ceiling_ms / 86_400_000
            ))
            .into());
        }
        let missing = self
            .store
            .missing_templates(tenant, &journey.meta.templates)
            .await?;
        if !missing.is_empty() {
            return Err(DeployError::Meta(format!(
                "journey {:?} declares template(s) {} that the tenant has not registered: \
                 register them first (PUT /v1/templates/NAME, or `serve --templates DIR`)",
                journey.meta.id,
                missing.join(", ")
            ))
            .into());
        }
        let version = journey.hash_hex();
        let new = self
            .store
            .deploy_version(
                tenant,
                NewVersion {
                    hash: &version,
                    meta: &journey.meta,
                    component: bytes,
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
        tracing::info!(tenant, journey = %journey_id, %version, new, "deployed");
        Ok(Deployed {
            journey_id,
            version,
            new,
        })
    }

    /// A tenant's loaded version, compiling it from the database on first use.
    ///
    /// # Errors
    /// The version is unknown or no longer loads.
    pub async fn journey(
        &self,
        tenant: &str,
        version: &str,
    ) -> Result<Arc<LoadedJourney>, RuntimeError> {
        if let Some(j) = self.loaded.read().expect("journey cache lock").get(version) {
            return Ok(j.clone());
        }
        let bytes = self
            .store
            .version_component(tenant, version)
            .await?
            .filter(|bytes| !bytes.is_empty())
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
        tenant: &str,
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
            .create_run(tenant, journey_id, user_id, input, self.now())
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
        tenant: &str,
        events: Vec<IncomingEvent>,
    ) -> Result<Vec<EventOutcome>, RuntimeError> {
        let now = self.now();
        let many = events.len() > 1;
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                e.validate(tenant, now).map_err(|why| {
                    RuntimeError::Invalid(if many {
                        format!("event {i}: {why}")
                    } else {
                        why
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.ingest
            .apply(events, self.lease())
            .await
            .map_err(RuntimeError::Ingest)
    }

    /// Creates or updates a contact.
    ///
    /// # Errors
    /// A bad field, a deleted contact, or a database failure.
    pub async fn identify(
        &self,
        tenant: &str,
        contact: Identify,
    ) -> Result<serde_json::Value, RuntimeError> {
        contact.validate().map_err(RuntimeError::Invalid)?;
        Ok(self.store.identify(tenant, &contact, self.now()).await?)
    }

    /// Deletes a contact (GDPR): their runs exit, no new run starts. Returns the exited runs.
    ///
    /// # Errors
    /// A database failure.
    pub async fn delete_user(&self, tenant: &str, user_id: &str) -> Result<Vec<i64>, RuntimeError> {
        Ok(self
            .store
            .delete_contact(tenant, user_id, self.now())
            .await?)
    }

    /// One of a tenant's runs; another tenant's run is as unknown as a missing one.
    ///
    /// # Errors
    /// [`StoreError::UnknownRun`], or a database failure.
    pub async fn run(&self, tenant: &str, id: i64) -> Result<RunRow, RuntimeError> {
        self.store
            .run(id)
            .await?
            .filter(|run| run.tenant_id == tenant)
            .ok_or_else(|| StoreError::UnknownRun(id).into())
    }

    /// Cancels a run: it exits at once.
    ///
    /// # Errors
    /// An unknown or already ended run, or a database failure.
    pub async fn cancel_run(&self, tenant: &str, id: i64) -> Result<RunRow, RuntimeError> {
        Ok(self.store.cancel_run(tenant, id, self.now()).await?)
    }

    /// Turns enrollment on or off for a journey.
    ///
    /// # Errors
    /// An unknown journey, or a database failure.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        journey_id: &str,
        enabled: bool,
    ) -> Result<(), RuntimeError> {
        self.store
            .set_enabled(tenant, journey_id, enabled, self.now())
            .await?;
        self.rules.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Makes an earlier version of a journey the active one (a rollback).
    ///
    /// # Errors
    /// An unknown or retired version, or a database failure.
    pub async fn activate(
        &self,
        tenant: &str,
        journey_id: &str,
        version: &str,
    ) -> Result<(), RuntimeError> {
        self.store
            .activate(tenant, journey_id, version, self.now())
            .await?;
        self.rules.fetch_add(1, Ordering::Release);
        tracing::info!(tenant, journey = journey_id, version, "activated");
        Ok(())
    }

    /// Retires a version no run uses and that is not active.
    ///
    /// # Errors
    /// The version is active or has live runs, or a database failure.
    pub async fn retire(
        &self,
        tenant: &str,
        journey_id: &str,
        version: &str,
    ) -> Result<(), RuntimeError> {
        self.store
            .retire(tenant, journey_id, version, self.now())
            .await?;
        // Another tenant that deployed the same bytes loads it again on use.
        self.loaded
            .write()
            .expect("journey cache lock")
            .remove(version);
        tracing::info!(tenant, journey = journey_id, version, "retired");
        Ok(())
    }
}
