//! The snapshot's binary format.
//!
//! ```text
//! "CRNS" | format version u8 | binding: engine tag (u8 len + bytes),
//! component sha-256 (32 bytes), layout fingerprint (u64 LE) | zstd frame of:
//!   memory count u32, then per memory: wasm pages u32, dirty count u32,
//!   dirty page indices u32[], page data; global count u32, globals u64[]
//! ```
//! All integers little-endian. A snapshot only restores into the exact
//! component, engine and layout it was taken from.

use super::instrument::Layout;
use super::{MemoryDiff, Snapshot};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"CRNS";
const FORMAT: u8 = 1;
/// zstd level 1: dirty pages are mostly zeros and repeated heap structure,
/// so the faster level costs little size and halves the time on the hot path.
const LEVEL: i32 = 1;

thread_local! {
    /// zstd contexts are reused per thread: creating one per snapshot costs more than compressing.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn compress(body: &[u8], out: &mut Vec<u8>) {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let compressor = c.get_or_insert_with(|| {
            zstd::bulk::Compressor::new(LEVEL).expect("a zstd context can be created")
        });
        let start = out.len();
        out.resize(start + zstd::zstd_safe::compress_bound(body.len()), 0);
        let written = compressor
            .compress_to_buffer(body, &mut out[start..])
            .expect("the buffer is sized to the compress bound");
        out.truncate(start + written);
    })
}

/// Decompresses a frame whose size is recorded in its header (zstd's bulk API writes it).
fn decompress(frame: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .ok_or(DecodeError::Corrupt)?;
    // A snapshot describes at most 4 GiB per memory; refuse absurd frames before allocating.
    if size > MAX_BODY {
        return Err(DecodeError::Corrupt);
    }
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let decompressor = d.get_or_insert_with(|| {
            zstd::bulk::Decompressor::new().expect("a zstd context can be created")
        });
        decompressor
            .decompress(frame, size as usize)
            .map_err(|_| DecodeError::Corrupt)
    })
}

/// The largest uncompressed body accepted: 1 GiB of dirty pages.
const MAX_BODY: u64 = 1 << 30;

/// What a snapshot is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The engine that produced the compiled code, e.g. `wasmtime-48.0.8`.
    pub engine: String,
    /// sha-256 of the journey component as deployed.
    pub component: [u8; 32],
    /// A fingerprint of the state layout.
    pub layout: u64,
}

impl Binding {
    pub fn new(engine: &str, component: [u8; 32], layout: &Layout) -> Self {
        Binding {
            engine: engine.to_string(),
            component,
            layout: fingerprint(layout),
        }
    }
}

fn fingerprint(layout: &Layout) -> u64 {
    let mut h = Sha256::new();
    for (instance, pages) in &layout.memories {
        h.update(instance.to_le_bytes());
        h.update(pages.to_le_bytes());
    }
    h.update([0xff]);
    for g in &layout.globals {
        h.update([*g as u8]);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Why bytes could not be read back as a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a cairn snapshot (bad magic or version)")]
    Format,
    #[error("snapshot is truncated or corrupt")]
    Corrupt,
    #[error("snapshot was taken by {found}, this host runs {expected}")]
    Engine { found: String, expected: String },
    #[error("snapshot belongs to another component (sha-256 {found})")]
    Component { found: String },
    #[error("snapshot layout does not match the component")]
    Layout,
}

/// Encodes and compresses a snapshot.
pub fn encode(snapshot: &Snapshot, binding: &Binding) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + snapshot.dirty_bytes());
    put_u32(&mut body, snapshot.memories.len() as u32);
    for m in &snapshot.memories {
        put_u32(&mut body, m.wasm_pages);
        put_u32(&mut body, m.dirty.len() as u32);
        for page in &m.dirty {
            put_u32(&mut body, *page);
        }
        body.extend_from_slice(&m.data);
    }
    put_u32(&mut body, snapshot.globals.len() as u32);
    for g in &snapshot.globals {
        body.extend_from_slice(&g.to_le_bytes());
    }
    let mut out = Vec::with_capacity(64 + body.len() / 4);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(binding.engine.len() as u8);
    out.extend_from_slice(binding.engine.as_bytes());
    out.extend_from_slice(&binding.component);
    out.extend_from_slice(&binding.layout.to_le_bytes());
    compress(&body, &mut out);
    out
}

/// Checks the binding and decodes a snapshot.
///
/// # Errors
/// [`DecodeError`] when the bytes are not a snapshot or belong elsewhere.
pub fn decode(bytes: &[u8], expected: &Binding) -> Result<Snapshot, DecodeError> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC || r.take(1)? != [FORMAT] {
        return Err(DecodeError::Format);
    }
    let engine_len = r.take(1)?[0] as usize;
    let engine = String::from_utf8_lossy(r.take(engine_len)?).into_owned();
    if engine != expected.engine {
        return Err(DecodeError::Engine {
            found: engine,
            expected: expected.engine.clone(),
        });
    }
    let component = r.take(32)?;
    if component != expected.component {
        return Err(DecodeError::Component {
            found: hex::encode(component),
        });
    }
    if r.u64()? != expected.layout {
        return Err(DecodeError::Layout);
    }
    let body = decompress(r.0)?;
    let mut r = Reader(&body);
    let memory_count = r.u32()? as usize;
    let mut memories = Vec::with_capacity(memory_count.min(64));
    for _ in 0..memory_count {
        let wasm_pages = r.u32()?;
        let dirty_count = r.u32()? as usize;
        let mut dirty = Vec::with_capacity(dirty_count.min(1 << 20));
        for _ in 0..dirty_count {
            dirty.push(r.u32()?);
        }
        let data_len = dirty_count
            .checked_mul(super::accessor::PAGE as usize)
            .ok_or(DecodeError::Corrupt)?;
        let data = r.take(data_len)?.to_vec();
        memories.push(MemoryDiff {
            wasm_pages,
            dirty,
            data,
        });
    }
    let global_count = r.u32()? as usize;
    let mut globals = Vec::with_capacity(global_count.min(1 << 16));
    for _ in 0..global_count {
        globals.push(r.u64()?);
    }
    if !r.0.is_empty() {
        return Err(DecodeError::Corrupt);
    }
    Ok(Snapshot { memories, globals })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Corrupt);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::instrument::GlobalKind;

    fn sample() -> (Snapshot, Binding) {
        let layout = Layout {
            memories: vec![(1, 17)],
            globals: vec![GlobalKind::I32, GlobalKind::F64],
        };
        let snapshot = Snapshot {
            memories: vec![MemoryDiff {
                wasm_pages: 18,
                dirty: vec![3, 70],
                data: (0..8192).map(|i| (i % 251) as u8).collect(),
            }],
            globals: vec![65536, f64::NAN.to_bits() | 1],
        };
        (snapshot, Binding::new("wasmtime-48.0.8", [7; 32], &layout))
    }

    #[test]
    fn a_snapshot_round_trips_bit_for_bit() {
        let (snapshot, binding) = sample();
        let bytes = encode(&snapshot, &binding);
        assert_eq!(decode(&bytes, &binding).unwrap(), snapshot);
    }

    #[test]
    fn a_snapshot_refuses_another_component_or_engine() {
        let (snapshot, binding) = sample();
        let bytes = encode(&snapshot, &binding);
        let other = Binding {
            component: [8; 32],
            ..binding.clone()
        };
        assert!(matches!(
            decode(&bytes, &other),
            Err(DecodeError::Component { .. })
        ));
        let newer = Binding {
            engine: "wasmtime-49.0.0".into(),
            ..binding.clone()
        };
        let err = decode(&bytes, &newer).unwrap_err();
        assert!(
            err.to_string().contains("taken by wasmtime-48.0.8"),
            "{err}"
        );
    }

    #[test]
    fn truncated_bytes_are_reported_not_panicked_on() {
        let (snapshot, binding) = sample();
        let bytes = encode(&snapshot, &binding);
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &binding).is_err());
        }
    }
}
