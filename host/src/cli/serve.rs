//! `cairn serve`: open the store, start the scheduler, the delivery worker,
//! the journeys directory watcher and the HTTP API; hand leases back on
//! shutdown.

use crate::api::{Access, AppState, router};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::delivery::DeliveryWorker;
use crate::engine::{Engine, EngineConfig};
use crate::runtime::Runtime;
use crate::scheduler::Scheduler;
use crate::store::{DEFAULT_TENANT, Store};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub(super) struct ServeArgs {
    /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "CAIRN_DB", default_value = "sqlite://cairn.db")]
    db: String,
    /// Address to listen on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Deploy every .wasm in this directory, and each new or changed one while serving.
    #[arg(long, env = "CAIRN_JOURNEYS")]
    journeys: Option<PathBuf>,
    /// Register every `NAME.jinja` under this directory as template NAME
    /// (before the journeys deploy, so their declared templates are found),
    /// and each new or changed one while serving.
    /// May be given several times.
    #[arg(long, env = "CAIRN_TEMPLATES", value_delimiter = ',')]
    templates: Vec<PathBuf>,
    /// The tenant the journeys and templates directories are for.
    #[arg(long, default_value = DEFAULT_TENANT)]
    journeys_tenant: String,
    /// Where this host is reached from outside, for the unsubscribe links in
    /// emails (default: http://LISTEN).
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    public_url: Option<String>,
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
    /// How long this host's claim on a run holds, in ms. The host renews its
    /// claims every third of this while it works; a host that dies or is
    /// paused loses its runs to the other hosts this long after.
    #[arg(long, env = "CAIRN_LEASE_MS", default_value_t = crate::store::LEASE_MS,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    lease_ms: u64,
}

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // A SQLite file belongs to this host, which migrates it; a shared
    // Postgres is migrated once, explicitly (`cairn migrate`).
    let migrate = crate::store::Backend::of(&args.db)? == crate::store::Backend::Sqlite;
    let store = Store::connect(&args.db, migrate)
        .await
        .with_context(|| format!("opening {}", redact(&args.db)))?;
    // Key-free access is for a developer's own machine only.
    let access = if args.listen.ip().is_loopback() {
        Access::open_until_keys_exist()
    } else if store.api_keys_exist().await? {
        Access::keys_required()
    } else {
        bail!(
            "refusing to listen on {} without API keys: anyone who reaches it could deploy \
             code and read every user's data. Create a key first (`cairn tenant create <id>`, \
             then `cairn key create --tenant <id>`), or listen on 127.0.0.1",
            args.listen
        );
    };
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
    let runtime = Runtime::new(engine, store, clock)
        .with_host_id(&args.host_id)
        .with_lease_ms(args.lease_ms);
    // Claims a previous life of this host left behind are ours to retake.
    let released = runtime.store.release_leases(runtime.host_id()).await?;
    if released > 0 {
        tracing::info!(
            "released {released} lease(s) left by a previous run of host {}",
            args.host_id
        );
    }
    for dir in &args.templates {
        let count = crate::hotload::watch_templates(
            runtime.clone(),
            args.journeys_tenant.clone(),
            dir.clone(),
        )
        .await
        .with_context(|| format!("registering the templates in {}", dir.display()))?;
        tracing::info!("registered {count} template(s) from {}", dir.display());
    }
    if let Some(dir) = &args.journeys {
        crate::hotload::watch(runtime.clone(), args.journeys_tenant.clone(), dir.clone())
            .await
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "cairn listening on http://{} (db {}, {} clock)",
        listener.local_addr()?,
        redact(&args.db),
        if virtual_clock.is_some() {
            "virtual"
        } else {
            "system"
        }
    );
    let scheduler = tokio::spawn(Scheduler::new(runtime.clone()).run());
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let (stop_delivery, stop) = tokio::sync::watch::channel(false);
    let delivery = tokio::spawn(DeliveryWorker::new(runtime.clone(), &public_url).run(stop));
    let app = router(AppState {
        runtime: runtime.clone(),
        virtual_clock,
        max_json_bytes: args.max_body_bytes,
        access,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    scheduler.abort();
    // Messages being handed to a provider finish first: nothing is left
    // `sending`, which for SMTP would mean "outcome unknown".
    let _ = stop_delivery.send(true);
    let grace =
        std::time::Duration::from_millis(crate::delivery::worker::MAX_PROVIDER_TIMEOUT_MS + 5_000);
    if tokio::time::timeout(grace, delivery).await.is_err() {
        tracing::warn!(
            "deliveries still in flight at shutdown; they are recovered at the next start"
        );
    }
    // Hand back what this host had claimed, so nothing waits for a lease to expire.
    let _ = scheduler.await;
    runtime.store.release_leases(runtime.host_id()).await?;
    tracing::info!("cairn stopped");
    Ok(())
}

/// A database URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
