//! Helpers shared by the end-to-end tests: where the journeys built from
//! source are, and how to start the host binary.

use std::path::PathBuf;

/// The component built from `sample-journeys/<name>` or `tests/journeys/<name>`
/// (`name` with underscores, e.g. `welcome_series`).
pub fn component_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CAIRN_TEST_COMPONENTS")).join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The bytes of a built journey component.
pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).expect("reading a built component")
}

/// The names of every sample journey (sample-journeys/*).
pub const SAMPLES: [&str; 3] = ["welcome_series", "trial_expiry", "ceiling_probe"];

use cairn::clock::ManualClock;
use cairn::engine::{Engine, EngineConfig};
use cairn::runtime::Runtime;
use cairn::scheduler::Scheduler;
use cairn::store::{RunRow, Store};
use std::sync::Arc;

/// A fixed start time for virtual clocks: 2026-05-28T20:26:40Z.
pub const T0: u64 = 1_780_000_000_000;
/// One day in milliseconds.
pub const DAY: u64 = 86_400_000;

/// A whole host in one process: the real engine, a real SQLite file in a
/// temporary directory, a virtual clock, and the scheduler driven by hand.
pub struct Host {
    pub clock: Arc<ManualClock>,
    pub runtime: Runtime,
    pub scheduler: Scheduler,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub async fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let engine = Engine::new(
            EngineConfig {
                max_instances: 32,
                ..EngineConfig::default()
            },
            clock.clone(),
        )
        .unwrap();
        let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
        let store = Store::open(&url).await.unwrap();
        let runtime = Runtime::new(engine, store);
        let scheduler = Scheduler::new(runtime.clone());
        Host {
            clock,
            runtime,
            scheduler,
            dir,
        }
    }

    /// Deploys a built journey; its journey id.
    pub async fn deploy(&self, name: &str) -> String {
        self.runtime
            .deploy(component(name))
            .await
            .unwrap()
            .journey_id
    }

    /// Starts a run and executes its first step.
    pub async fn start(&self, journey: &str, user: &str, input: &str) -> RunRow {
        let run = self.runtime.start_run(journey, user, input).await.unwrap();
        self.drain().await;
        self.run(run.id).await
    }

    /// Executes everything due now.
    pub async fn drain(&self) -> usize {
        self.scheduler.drain(self.clock.now_ms()).await.unwrap()
    }

    /// Moves virtual time forward and executes what came due.
    pub async fn advance(&self, ms: u64) -> usize {
        self.clock.advance(ms);
        self.drain().await
    }

    pub async fn run(&self, id: i64) -> RunRow {
        self.runtime.store.run(id).await.unwrap().unwrap()
    }
}

/// Reads the clock (a helper so tests need not import the trait).
pub trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        cairn::clock::Clock::now(self)
    }
}
