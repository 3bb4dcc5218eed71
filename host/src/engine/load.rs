//! Deploy pipeline: validate, instrument, compile (cached on disk by content
//! hash), pre-instantiate, read the pristine image and `meta` once.

use super::bindings::JourneyIndices;
use super::meta::JourneyMeta;
use super::{ENGINE_TAG, Engine, epoch_ticks};
use crate::durable::{Limits, StepEnv, StepState, human_bytes};
use crate::snapshot::{self, Binding, Pristine, StateAccess};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

/// Why a component was refused at deploy.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot instrument the component for snapshots: {0}")]
    Instrument(#[from] snapshot::InstrumentError),
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error("the component does not match the cairn:journey/journey world: {0}")]
    World(String),
    #[error("the journey's meta is invalid: {0}")]
    Meta(String),
    #[error(
        "the component is not deterministic at instantiation (two fresh instances differ), so it cannot be snapshotted"
    )]
    Nondeterministic,
    #[error("the component trapped while starting: {0}")]
    Trap(String),
}

/// The CPU (epoch time) a deploy may spend running the component's own code.
const DEPLOY_CPU_MS: u64 = 10_000;

/// A deployed journey version, ready to run steps.
pub struct LoadedJourney {
    /// sha-256 of the component as deployed (before instrumentation).
    pub hash: [u8; 32],
    pub meta: JourneyMeta,
    pub(super) instance_pre: InstancePre<StepState>,
    pub(super) indices: JourneyIndices,
    pub(super) access: StateAccess,
    pub(super) pristine: Arc<Pristine>,
    pub(super) binding: Binding,
    /// The largest initial size of any memory it declares, in bytes.
    pub declared_memory: u64,
}

impl LoadedJourney {
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// Bytes of linear memory a fresh instance has.
    pub fn pristine_bytes(&self) -> usize {
        self.pristine.memories.iter().map(Vec::len).sum()
    }

    /// The image of a fresh instance that snapshots are diffed against.
    pub fn pristine(&self) -> &Arc<Pristine> {
        &self.pristine
    }

    pub fn binding(&self) -> &Binding {
        &self.binding
    }
}

/// What deploy learned about a component besides its artifact.
#[derive(serde::Serialize, serde::Deserialize)]
struct Prepared {
    layout: snapshot::Layout,
    /// The largest initial size of any memory it declares, in bytes.
    largest_initial_memory: u64,
}

/// Why a component whose memory starts larger than `limit` is refused.
pub fn memory_refusal(declared: u64, limit: u64) -> String {
    format!(
        "the component declares a memory of {} at instantiation, above the memory limit of {}",
        human_bytes(declared),
        human_bytes(limit)
    )
}

/// sha-256 of a component.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Engine {
    /// Validates and prepares a component for running.
    ///
    /// # Errors
    /// [`DeployError`], naming what is wrong with the component.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedJourney, DeployError> {
        let _span = tracing::info_span!("cairn.engine.load", bytes = bytes.len()).entered();
        let max_memory = self.limits().max_memory_bytes as u64;
        let fits = |declared: u64| {
            if declared > max_memory {
                return Err(DeployError::Invalid(memory_refusal(declared, max_memory)));
            }
            Ok(())
        };
        let hash = content_hash(bytes);
        let (component, prepared) = match self.cached(&hash) {
            Some(cached) => cached,
            None => {
                let checked = super::validate::check(bytes).map_err(DeployError::Invalid)?;
                // Before compiling: the pool could not hold such a memory.
                fits(checked.largest_initial_memory)?;
                let instrumented = snapshot::instrument(bytes)?;
                let prepared = Prepared {
                    layout: instrumented.layout,
                    largest_initial_memory: checked.largest_initial_memory,
                };
                (
                    self.compile(&hash, &instrumented.bytes, &prepared)?,
                    prepared,
                )
            }
        };
        fits(prepared.largest_initial_memory)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| DeployError::World(format!("{e:#}")))?;
        let indices =
            JourneyIndices::new(&instance_pre).map_err(|e| DeployError::World(format!("{e:#}")))?;
        let access = StateAccess::resolve(&component, &prepared.layout)
            .map_err(|e| DeployError::Compile(e.to_string()))?;
        let binding = Binding::new(ENGINE_TAG, hash, &prepared.layout);

        let env = StepEnv {
            run_id: 0,
            step: 0,
            user_id: String::new(),
            started_at: 0,
            ceiling_at: 0,
            now: 0,
            seed: 0,
            gate: crate::delivery::OpenGate::shared(),
            limits: Arc::new(Limits {
                // Instantiating a 19 MB interpreter twice and calling `meta`
                // is bounded too, but by more than one step's CPU: a busy
                // host must not refuse a good component for being slow.
                max_step_cpu_ms: self.limits().max_step_cpu_ms.max(DEPLOY_CPU_MS),
                ..self.limits().clone()
            }),
        };
        let fresh = || -> Result<(Store<StepState>, wasmtime::component::Instance), DeployError> {
            let mut store = self.new_store(env.clone());
            let instance = instance_pre
                .instantiate(&mut store)
                .map_err(|e| DeployError::Trap(format!("{e:#}")))?;
            Ok((store, instance))
        };
        let (mut first, first_instance) = fresh()?;
        let pristine = access
            .pristine(&mut first, &first_instance)
            .map_err(|e| DeployError::Trap(e.to_string()))?;
        let (mut second, second_instance) = fresh()?;
        let again = access
            .pristine(&mut second, &second_instance)
            .map_err(|e| DeployError::Trap(e.to_string()))?;
        if again != pristine {
            return Err(DeployError::Nondeterministic);
        }
        let journey = indices
            .load(&mut second, &second_instance)
            .map_err(|e| DeployError::World(format!("{e:#}")))?;
        let meta = journey
            .call_meta(&mut second)
            .map_err(|e| DeployError::Trap(format!("meta: {e:#}")))?;
        let meta = JourneyMeta::from_wit(meta, self.limits()).map_err(DeployError::Meta)?;
        Ok(LoadedJourney {
            hash,
            meta,
            instance_pre,
            indices,
            access,
            pristine: Arc::new(pristine),
            binding,
            declared_memory: prepared.largest_initial_memory,
        })
    }

    /// Where the artifact (`.cwasm`) and what deploy learned (`.json`) of
    /// the component with content hash `hash` are cached.
    fn cache_paths(&self, hash: &[u8; 32]) -> Option<(PathBuf, PathBuf)> {
        let dir = self.config.cache_dir.as_ref()?;
        let key = format!(
            "{}-{ENGINE_TAG}-i{}",
            hex::encode(&hash[..16]),
            snapshot::instrument::INSTRUMENT_VERSION
        );
        Some((
            dir.join(format!("{key}.cwasm")),
            dir.join(format!("{key}.json")),
        ))
    }

    /// The compiled artifact and layout cached for a component that passed
    /// validation before: no validating, instrumenting or compiling again.
    fn cached(&self, hash: &[u8; 32]) -> Option<(Component, Prepared)> {
        let (artifact, prepared) = self.cache_paths(hash)?;
        let prepared: Prepared = serde_json::from_slice(&std::fs::read(&prepared).ok()?).ok()?;
        // SAFETY: the artifact was written by `precompile_component` of this
        // engine version into the host's own cache directory; a corrupt or
        // foreign file fails deserialization, and the component is prepared
        // again from its bytes.
        match unsafe { Component::deserialize_file(&self.inner, &artifact) } {
            Ok(component) => {
                tracing::debug!(artifact = %artifact.display(), "using the cached compiled artifact");
                Some((component, prepared))
            }
            Err(err) => {
                tracing::warn!(path = %artifact.display(), "recompiling: cached artifact unusable: {err:#}");
                None
            }
        }
    }

    /// Compiles an instrumented component and caches the artifact and what
    /// deploy learned under the original component's hash.
    fn compile(
        &self,
        hash: &[u8; 32],
        instrumented: &[u8],
        prepared: &Prepared,
    ) -> Result<Component, DeployError> {
        let Some((path, sidecar)) = self.cache_paths(hash) else {
            return Component::new(&self.inner, instrumented)
                .map_err(|e| DeployError::Compile(format!("{e:#}")));
        };
        let dir = path.parent().expect("a cache file has a directory");
        let started = std::time::Instant::now();
        let artifact = self
            .inner
            .precompile_component(instrumented)
            .map_err(|e| DeployError::Compile(format!("{e:#}")))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            artifact = %path.display(),
            "compiled a component"
        );
        // The artifact first: a layout without its artifact is never used.
        let written = write_atomically(dir, &path, &artifact).and_then(|()| {
            let json = serde_json::to_vec(prepared).expect("a layout serializes");
            write_atomically(dir, &sidecar, &json)
        });
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), "could not cache the compiled artifact: {err}");
        }
        // SAFETY: `artifact` was produced by this engine a moment ago.
        unsafe { Component::deserialize(&self.inner, &artifact) }
            .map_err(|e| DeployError::Compile(format!("{e:#}")))
    }

    pub(crate) fn new_store(&self, env: StepEnv) -> Store<StepState> {
        let ticks = epoch_ticks(env.limits.max_step_cpu_ms);
        let state = StepState::new(env);
        let mut store = Store::new(&self.inner, state);
        store.limiter(|s| &mut s.limiter);
        if self.config.cpu_limit {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        store
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    // Unique per process and write: two compiles of one component may race.
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
