//! The wasmtime side of cairn: engine configuration, deploy-time validation,
//! compilation with an on-disk artifact cache, and running one step.
//!
//! - [`Engine`] owns the wasmtime engine (pooling allocator, epoch
//!   interruption for CPU limits) and the linker, which defines exactly the
//!   cairn interfaces plus the snapshot sink: nothing else can be imported.
//! - [`load`] turns component bytes into a [`LoadedJourney`]: validated,
//!   instrumented, compiled, its pristine image and `meta` read once.
//! - [`step`] runs `start` or `resume` on a fresh instance restored from a
//!   snapshot, and snapshots it again at the next wait.

pub mod bindings;
mod load;
mod meta;
pub mod step;
mod validate;

pub use load::{DeployError, LoadedJourney, content_hash, memory_refusal};
pub use meta::{EntryLimit, EventRule, JourneyMeta};

/// The deploy-time checks on imports, exports and code that need no
/// compilation (`cairn build` runs them on what it wrote).
///
/// # Errors
/// What deploy would refuse, in words.
pub fn check_component(bytes: &[u8]) -> Result<(), String> {
    validate::check(bytes).map(drop)
}
pub use step::{Session, StepCall, StepOutcome, StepResult};

use crate::durable::{Limits, StepState};
use crate::snapshot::capture::HasScan;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, WasmList};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The engine tag snapshots and compiled artifacts are bound to.
pub const ENGINE_TAG: &str = "wasmtime-48.0.8";

/// Bytes of each pooled memory and table kept resident between instances.
const KEEP_RESIDENT: usize = 1 << 20;

/// How often the epoch ticks; CPU limits are whole multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine settings. Defaults: pooling for 256 concurrent instances, the
/// default [`Limits`], no artifact cache directory.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where compiled artifacts are cached by content hash (`None`: no disk cache).
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Instances that may be alive at once.
    pub max_instances: u32,
    /// Use wasmtime's debug API (test oracle only: ~3x slower guests).
    pub guest_debug: bool,
    /// Interrupt steps that exceed their CPU limit (epoch interruption).
    /// Off only to measure what the limit costs: a step could then run forever.
    pub cpu_limit: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            limits: Limits::default(),
            max_instances: 256,
            guest_debug: false,
            cpu_limit: true,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not configure the wasm engine: {0:#}")]
pub struct EngineError(wasmtime::Error);

/// The wasmtime engine and linker shared by every journey.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    linker: Arc<Linker<StepState>>,
    config: Arc<EngineConfig>,
}

impl Engine {
    /// Creates the engine and starts its epoch ticker.
    ///
    /// # Errors
    /// [`EngineError`] if wasmtime rejects the configuration (e.g. the pool cannot be reserved).
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(config.cpu_limit);
        // Explicit bounds checks instead of guard pages and signal handlers.
        // A step is mostly instantiate + restore + snapshot, not guest code,
        // and with guard pages a reused pool slot whose memory grew is
        // re-protected on every instantiation: mprotect calls, TLB-shootdown
        // IPIs and mmap-lock contention between step workers. Without them
        // a slot keeps its high-water mark and steps make no memory syscalls.
        wasm.signals_based_traps(false)
            .memory_guard_size(0)
            .guard_before_linear_memory(false);
        if config.guest_debug {
            wasm.guest_debug(true);
        } else {
            let n = config.max_instances;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                // componentize-py output links ~40 core instances (libpython,
                // libc, ... dynamically); Rust and JavaScript need 2-4.
                .total_core_instances(n * 48)
                // Instrumentation adds one memory (scratch) per instance.
                .total_memories(n * 3)
                .total_tables(n * 8)
                .max_memory_size(config.limits.max_memory_bytes.max(1 << 20))
                // Every step reads the whole memory of a fresh instance (the
                // snapshot diff) and writes its dirty pages: reset reused
                // slots with memset rather than madvise, so the first MiB is
                // not page-faulted in again on every step.
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let inner = wasmtime::Engine::new(&wasm).map_err(EngineError)?;
        let mut linker = Linker::new(&inner);
        bindings::Journey::add_to_linker::<StepState, wasmtime::component::HasSelf<StepState>>(
            &mut linker,
            |state| state,
        )
        .map_err(EngineError)?;
        crate::durable::wasi::add_to_linker(&mut linker).map_err(EngineError)?;
        linker
            .root()
            .func_wrap(
                crate::snapshot::instrument::SINK_IMPORT,
                |mut store, (memory, offset, data): (u32, u32, WasmList<u8>)| {
                    let mut buffer = std::mem::take(store.data_mut().scan_buffer());
                    buffer.absorb(memory, offset, data.as_le_slice(&store));
                    *store.data_mut().scan_buffer() = buffer;
                    Ok(())
                },
            )
            .map_err(EngineError)?;
        spawn_epoch_ticker(&inner);
        Ok(Engine {
            inner,
            linker: Arc::new(linker),
            config: Arc::new(config),
        })
    }

    /// The host's limits: the defaults for tenants and the most any tenant may have.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }
}

/// Epoch ticks a step may run before it is interrupted.
fn epoch_ticks(max_step_cpu_ms: u64) -> u64 {
    (max_step_cpu_ms / EPOCH_TICK.as_millis() as u64).max(1)
}

/// Ticks the engine's epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("cairn-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
