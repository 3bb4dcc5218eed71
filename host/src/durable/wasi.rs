//! The resource-free corner of WASI 0.2, for components whose toolchain
//! imports it by default: wall clock, monotonic clock (`now` and
//! `resolution` only), random, insecure random and the insecure seed.
//!
//! Each behaves like its cairn counterpart, so such components still
//! snapshot and re-run correctly: clocks read the step's logical time (the
//! same on a re-run, never going back), and random values are derived from
//! the run's seed, the step and the call index. Everything else in WASI hands
//! out resources (streams, files, sockets, pollables) that a snapshot cannot
//! carry, and is refused at deploy (see `engine/validate.rs`).

use super::StepState;
use serde_json::json;
use wasmtime::component::{ComponentType, Linker, Lower};

/// The WASI version defined; the linker serves imports of any 0.2.x up to it.
const VERSION: &str = "0.2.8";

/// The interfaces a journey may import from WASI.
pub const INTERFACES: [&str; 5] = [
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The most bytes one `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

impl StepState {
    /// The step's logical time in milliseconds, as a counted, journaled call.
    fn wasi_now_ms(&mut self, import: &str) -> wasmtime::Result<u64> {
        let call = self.call_index()?;
        let now = self.env.now;
        self.journal(call, import, json!(now));
        Ok(now)
    }

    fn wasi_random_bytes(&mut self, import: &str, len: u64) -> wasmtime::Result<Vec<u8>> {
        let call = self.call_index()?;
        if len > MAX_RANDOM_BYTES {
            let why =
                format!("{import} asked for {len} bytes; at most {MAX_RANDOM_BYTES} per call");
            self.limiter.hit = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        let bytes: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|chunk| {
                super::host::derive_random_chunk(self.env.seed, self.env.step, call, chunk)
                    .to_le_bytes()
            })
            .take(len as usize)
            .collect();
        self.journal(call, import, json!({ "bytes": len }));
        Ok(bytes)
    }

    fn wasi_random_u64(&mut self, import: &str) -> wasmtime::Result<u64> {
        let call = self.call_index()?;
        let value = super::host::derive_random_chunk(self.env.seed, self.env.step, call, 0);
        self.journal(call, import, json!(value));
        Ok(value)
    }
}

fn datetime(ms: u64) -> Datetime {
    Datetime {
        seconds: ms / 1000,
        nanoseconds: ((ms % 1000) * 1_000_000) as u32,
    }
}

/// Defines the resource-free WASI functions in `linker`.
///
/// # Errors
/// The definitions clash with others in the linker.
pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    let mut wall = linker.instance(&format!("wasi:clocks/wall-clock@{VERSION}"))?;
    wall.func_wrap("now", |mut store, (): ()| {
        let ms = store.data_mut().wasi_now_ms("wasi:clocks/wall-clock.now")?;
        Ok((datetime(ms),))
    })?;
    wall.func_wrap("resolution", |_store, (): ()| Ok((datetime(1),)))?;

    let mut monotonic = linker.instance(&format!("wasi:clocks/monotonic-clock@{VERSION}"))?;
    monotonic.func_wrap("now", |mut store, (): ()| {
        let ms = store
            .data_mut()
            .wasi_now_ms("wasi:clocks/monotonic-clock.now")?;
        // Nanoseconds of logical time: it never goes back, across steps too.
        Ok((ms.saturating_mul(1_000_000),))
    })?;
    monotonic.func_wrap("resolution", |_store, (): ()| Ok((1_000_000u64,)))?;

    let mut random = linker.instance(&format!("wasi:random/random@{VERSION}"))?;
    random.func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
        let bytes = store
            .data_mut()
            .wasi_random_bytes("wasi:random/random.get-random-bytes", len)?;
        Ok((bytes,))
    })?;
    random.func_wrap("get-random-u64", |mut store, (): ()| {
        let value = store
            .data_mut()
            .wasi_random_u64("wasi:random/random.get-random-u64")?;
        Ok((value,))
    })?;

    let mut insecure = linker.instance(&format!("wasi:random/insecure@{VERSION}"))?;
    insecure.func_wrap("get-insecure-random-bytes", |mut store, (len,): (u64,)| {
        let bytes = store
            .data_mut()
            .wasi_random_bytes("wasi:random/insecure.get-insecure-random-bytes", len)?;
        Ok((bytes,))
    })?;
    insecure.func_wrap("get-insecure-random-u64", |mut store, (): ()| {
        let value = store
            .data_mut()
            .wasi_random_u64("wasi:random/insecure.get-insecure-random-u64")?;
        Ok((value,))
    })?;

    let mut seed = linker.instance(&format!("wasi:random/insecure-seed@{VERSION}"))?;
    seed.func_wrap("insecure-seed", |mut store, (): ()| {
        let bytes = store
            .data_mut()
            .wasi_random_bytes("wasi:random/insecure-seed.insecure-seed", 16)?;
        let half = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[range].try_into().expect("8 bytes"))
        };
        Ok(((half(0..8), half(8..16)),))
    })?;
    Ok(())
}
