//! cairn: a durable journey runtime on WebAssembly components.
pub mod clock;
pub mod durable;
pub mod engine;
pub mod snapshot;
