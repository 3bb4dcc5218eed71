//! Per-step resource limits and the limiter that reports which one was hit.

use wasmtime::ResourceLimiter;

const DAY_MS: u64 = 86_400_000;

/// Limits applied to every run of a tenant. Defaults: 64 MiB of linear
/// memory per memory, 1 s of CPU per step, 10,000 host calls per step,
/// 64 KiB per message, 16 KiB per log line or checkpoint label, 256 KiB of
/// logs per step, 4 MiB per compressed snapshot, an execution ceiling of 30
/// days that a journey may lower, or raise up to 365 days.
///
/// Serialized as the `limits` of a tenant; fields left out keep their defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_memory_bytes: usize,
    pub max_step_cpu_ms: u64,
    pub max_import_calls: u32,
    pub max_message_bytes: usize,
    pub max_text_bytes: usize,
    pub max_step_log_bytes: usize,
    /// The largest snapshot (compressed) a run may store at a wait.
    pub max_snapshot_bytes: usize,
    /// The execution ceiling of journeys that do not declare one.
    pub default_ceiling_ms: u64,
    /// The longest execution ceiling a journey may declare.
    pub max_ceiling_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            max_step_cpu_ms: 1_000,
            max_import_calls: 10_000,
            max_message_bytes: 64 << 10,
            max_text_bytes: 16 << 10,
            max_step_log_bytes: 256 << 10,
            max_snapshot_bytes: 4 << 20,
            default_ceiling_ms: 30 * DAY_MS,
            max_ceiling_ms: 365 * DAY_MS,
        }
    }
}

/// A size in the largest binary unit that keeps it whole-ish: `64 KiB`, `8 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Refuses memory growth past the limit and remembers that it did, so a
/// run that then traps fails with the limit's name rather than `unreachable`.
pub struct StepLimiter {
    max_memory: usize,
    pub hit: Option<String>,
}

impl StepLimiter {
    pub fn new(limits: &Limits) -> Self {
        StepLimiter {
            max_memory: limits.max_memory_bytes,
            hit: None,
        }
    }
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = Some(format!(
                "memory limit exceeded: the journey asked for {}, the limit is {}",
                human_bytes(desired as u64),
                human_bytes(self.max_memory as u64)
            ));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
