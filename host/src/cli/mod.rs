//! The `cairn` command: arguments -> configuration -> dispatch, exit codes.
//! No business rules here; everything goes through [`crate::runtime`].

mod simulate;

use crate::api::{AppState, router};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::engine::{Engine, EngineConfig};
use crate::runtime::Runtime;
use crate::scheduler::Scheduler;
use crate::store::Store;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Durable journeys on WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run the scheduler.
    Serve(ServeArgs),
    /// Deploy a component to a running host.
    Deploy {
        /// The component (.wasm).
        component: PathBuf,
        /// The host's base URL.
        #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Build a Rust journey crate (or workspace) into components.
    Build {
        /// The crate or workspace directory.
        dir: PathBuf,
        /// Where to write the components (default: <dir>/target/journeys).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a journey in virtual time and print its timeline.
    Simulate(simulate::SimulateArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The database (`sqlite://FILE`).
    #[arg(long, env = "CAIRN_DB", default_value = "sqlite://cairn.db")]
    db: String,
    /// Address to listen on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Deploy every .wasm in this directory at start.
    #[arg(long)]
    journeys: Option<PathBuf>,
    /// Keep a virtual clock that only `POST /v1/clock/advance` moves.
    #[arg(long)]
    virtual_clock: bool,
    /// Where compiled artifacts are cached.
    #[arg(long, env = "CAIRN_CACHE_DIR", default_value = ".cairn/cache")]
    cache_dir: PathBuf,
    /// The largest JSON request body accepted, in bytes.
    #[arg(long, env = "CAIRN_MAX_BODY_BYTES", default_value_t = crate::api::MAX_JSON_BYTES)]
    max_body_bytes: usize,
    /// This host's name as a lease owner; keep it stable across restarts.
    #[arg(long, env = "CAIRN_HOST_ID", default_value = "local")]
    host_id: String,
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Deploy { component, server } => deploy(&component, &server).await,
            Command::Build { dir, out } => build(&dir, out),
            Command::Simulate(args) => simulate::simulate(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.db)
        .await
        .with_context(|| format!("opening {}", args.db))?;
    // A virtual clock resumes where the database left off: time never goes back.
    let virtual_clock = if args.virtual_clock {
        let resume_at = SystemClock.now().max(store.latest_time().await?);
        Some(ManualClock::new(resume_at))
    } else {
        None
    };
    let clock: Arc<dyn Clock> = match &virtual_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let engine = Engine::new(EngineConfig {
        cache_dir: Some(args.cache_dir.clone()),
        ..EngineConfig::default()
    })?;
    let runtime = Runtime::new(engine, store, clock).with_host_id(&args.host_id);
    // Claims a previous life of this host left behind are ours to retake.
    let released = runtime.store.release_leases(runtime.host_id()).await?;
    if released > 0 {
        tracing::info!(
            "released {released} lease(s) left by a previous run of host {}",
            args.host_id
        );
    }
    if let Some(dir) = &args.journeys {
        deploy_dir(&runtime, dir).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "cairn listening on http://{} (db {}, {} clock)",
        listener.local_addr()?,
        args.db,
        if virtual_clock.is_some() {
            "virtual"
        } else {
            "system"
        }
    );
    let scheduler = tokio::spawn(Scheduler::new(runtime.clone()).run());
    let app = router(AppState {
        runtime: runtime.clone(),
        virtual_clock,
        max_json_bytes: args.max_body_bytes,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    scheduler.abort();
    // Hand back what this host had claimed, so nothing waits for a lease to expire.
    let _ = scheduler.await;
    runtime.store.release_leases(runtime.host_id()).await?;
    tracing::info!("cairn stopped");
    Ok(())
}

async fn deploy_dir(runtime: &Runtime, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    for file in files {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        match runtime.deploy(bytes).await {
            Ok(d) => tracing::info!(
                "deployed {} as {} ({})",
                file.display(),
                d.journey_id,
                &d.version[..12]
            ),
            Err(err) => tracing::error!("refused {}: {err}", file.display()),
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn deploy(component: &Path, server: &str) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let url = format!("{}/v1/journeys", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("reaching {url}; is `cairn serve` running?"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{} refused the component: {}",
            server,
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    println!(
        "deployed {} as journey {} version {}",
        component.display(),
        body["journey_id"].as_str().unwrap_or("?"),
        body["version"].as_str().unwrap_or("?")
    );
    Ok(())
}

fn build(dir: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let out_dir = out.unwrap_or_else(|| dir.join("target").join("journeys"));
    eprintln!("building {} for {} ...", dir.display(), cairn_build::TARGET);
    let built = cairn_build::build(&cairn_build::BuildRequest {
        source: dir.to_path_buf(),
        out_dir,
        target_dir: None,
        show_progress: true,
    })?;
    for b in built {
        println!("{} ({} KiB)", b.path.display(), b.size / 1024);
    }
    Ok(())
}
