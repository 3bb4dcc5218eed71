//! End-to-end tests: real components built from source, the real engine,
//! a real SQLite file, the real `cairn` binary.

mod api;
mod backends;
mod ceiling;
mod cli;
mod delivery;
mod events;
mod failures;
mod hostile;
mod hosts;
mod hotload;
mod languages;
mod policy;
mod process;
mod runs;
mod snapshots;
mod soak;
mod tenants;
mod validation;
mod versions;
mod wasi;
