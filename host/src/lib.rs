//! cairn: a durable journey runtime on WebAssembly components.
//!
//! Module map:
//! - [`engine`]: wasmtime configuration, deploy-time validation, compile cache, one step;
//! - [`snapshot`]: instance state <-> bytes (instrument, capture, encode, restore);
//! - [`durable`]: the durable context the journey imports (`sleep`, `send`, ...);
//! - [`delivery`]: send policy, the outbox worker, providers, templates, unsubscribe links;
//! - [`store`]: everything persisted (SQLite via sqlx);
//! - [`runtime`]: deploy, start runs, ingest events, per-tenant limits;
//! - [`hotload`]: directories of components and templates that load themselves;
//! - [`scheduler`]: executes due steps and group-commits them;
//! - [`api`]: the HTTP API (axum);
//! - [`cli`]: the `cairn` command;
//! - [`clock`]: every "now" comes from here.

pub mod api;
pub mod cli;
pub mod clock;
pub mod delivery;
pub mod durable;
pub mod engine;
pub mod hotload;
pub mod ingest;
pub mod runtime;
pub mod scheduler;
pub mod snapshot;
pub mod store;
