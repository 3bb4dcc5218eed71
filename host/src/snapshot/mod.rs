//! Instance state <-> bytes: every memory and mutable global of every core
//! instance of a journey, captured at a wait point and restored into a fresh
//! instance.
//!
//! The stages, one file each:
//! - [`instrument`] (deploy time): rewrite the component to export readers and
//!   writers of its state through the hidden instance `cairn:snapshot/state`;
//! - [`capture`]: read the state of a quiescent instance and diff it against
//!   the pristine image of a fresh one, in 4 KiB pages;
//! - [`encode`]: the binary format, zstd-compressed, bound to the component
//!   hash, the engine version and the state layout;
//! - [`restore`]: write the pages and globals back into a fresh instance;
//! - [`oracle`]: the same capture through wasmtime's debug API, for tests.
//!
//! A snapshot is only taken after an export returned: no wasm frame is live,
//! so linear memory plus globals is the complete guest state.

pub mod accessor;
pub mod capture;
pub mod encode;
pub mod instrument;
pub mod oracle;
pub mod restore;

pub use capture::{Pristine, ScanBuffer, StateAccess};
pub use encode::{Binding, DecodeError};
pub use instrument::{InstrumentError, Instrumented, Layout, instrument};

/// The state of one instance as the difference from its pristine image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// One entry per defined memory, in layout order.
    pub memories: Vec<MemoryDiff>,
    /// Every mutable global as a u64 bit pattern, in layout order.
    pub globals: Vec<u64>,
}

/// The pages of one memory that differ from the pristine image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryDiff {
    /// The memory's size in 64 KiB wasm pages.
    pub wasm_pages: u32,
    /// Indices of the 4 KiB pages that differ, ascending.
    pub dirty: Vec<u32>,
    /// Their contents, 4096 bytes each, in the order of `dirty`.
    pub data: Vec<u8>,
}

impl Snapshot {
    /// Bytes of dirty pages, before compression.
    pub fn dirty_bytes(&self) -> usize {
        self.memories.iter().map(|m| m.data.len()).sum()
    }
}

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the component does not export the snapshot accessors: {0}")]
    NotInstrumented(String),
    #[error("calling the snapshot accessor {function} failed: {source:#}")]
    Accessor {
        function: String,
        source: wasmtime::Error,
    },
    #[error("memory {memory} could not grow to {pages} pages for the restore")]
    Grow { memory: usize, pages: u32 },
    #[error("the snapshot does not fit this component: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}
