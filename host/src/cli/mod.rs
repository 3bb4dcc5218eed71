//! The `cairn` command: arguments -> configuration -> dispatch, exit codes.
//! No business rules here; everything goes through [`crate::runtime`].

mod serve;
mod simulate;
mod tenant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    Serve(serve::ServeArgs),
    /// Deploy a component to a running host.
    Deploy {
        /// The component (.wasm).
        component: PathBuf,
        /// The host's base URL.
        #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The tenant's API key (not needed by a key-free local host).
        #[arg(long, env = "CAIRN_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Create, update and list tenants (in the database, not over HTTP).
    Tenant(tenant::TenantArgs),
    /// Create and revoke tenants' API keys (in the database).
    Key(tenant::KeyArgs),
    /// Build journey sources into components: a Rust crate or workspace
    /// (Cargo.toml), a JavaScript package (package.json), a Python module
    /// (pyproject.toml or a .py file) or C sources (.c files).
    Build {
        /// The journey's directory.
        dir: PathBuf,
        /// Where to write the components (default: <dir>/target/journeys).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The cairn SDKs (guest-sdk/) for JavaScript, Python and C journeys
        /// (default: this checkout's, when cairn runs from one).
        #[arg(long, env = "CAIRN_SDK")]
        sdk: Option<PathBuf>,
    },
    /// Run a journey in virtual time and print its timeline.
    Simulate(simulate::SimulateArgs),
    /// Write every table of a database as JSON lines (to move a deployment:
    /// `cairn export --db sqlite://cairn.db > cairn.jsonl`).
    Export {
        /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
        #[arg(long, env = "CAIRN_DB", default_value = "sqlite://cairn.db")]
        db: String,
        /// Where to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load an export into an empty database (`cairn import --db
    /// postgres://... --file cairn.jsonl`); waiting runs complete there.
    Import {
        /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
        #[arg(long, env = "CAIRN_DB")]
        db: String,
        /// The export (default: standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Create or upgrade the database's schema, then exit. (`serve` does this
    /// too; both refuse a database a newer cairn migrated.)
    Migrate {
        /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
        #[arg(long, env = "CAIRN_DB", default_value = "sqlite://cairn.db")]
        db: String,
    },
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
            Command::Serve(args) => serve::serve(args).await,
            Command::Deploy {
                component,
                server,
                api_key,
            } => deploy(&component, &server, api_key.as_deref()).await,
            Command::Tenant(args) => tenant::tenant(args).await,
            Command::Key(args) => tenant::key(args).await,
            Command::Build { dir, out, sdk } => build(&dir, out, sdk),
            Command::Simulate(args) => simulate::simulate(args).await,
            Command::Export { db, out } => {
                let store = crate::store::Store::open(&db).await?;
                let rows = match out {
                    Some(path) => {
                        let file = std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let mut writer = std::io::BufWriter::new(file);
                        let rows = store.export(&mut writer).await?;
                        std::io::Write::flush(&mut writer)?;
                        rows
                    }
                    None => store.export(&mut std::io::stdout().lock()).await?,
                };
                eprintln!("exported {rows} rows");
                Ok(())
            }
            Command::Import { db, file } => {
                let store = crate::store::Store::open(&db).await?;
                let rows = match file {
                    Some(path) => {
                        let file = std::fs::File::open(&path)
                            .with_context(|| format!("opening {}", path.display()))?;
                        store.import(std::io::BufReader::new(file)).await?
                    }
                    None => store.import(std::io::stdin().lock()).await?,
                };
                eprintln!("imported {rows} rows");
                Ok(())
            }
            Command::Migrate { db } => {
                crate::store::Store::open(&db)
                    .await
                    .with_context(|| format!("migrating {db}"))?;
                println!(
                    "{db} is at schema version {}",
                    crate::store::schema_version()
                );
                Ok(())
            }
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

async fn deploy(component: &Path, server: &str, api_key: Option<&str>) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let url = format!("{}/v1/journeys", server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&url).body(bytes);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request
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

fn build(dir: &Path, out: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    let out_dir = out.unwrap_or_else(|| dir.join("target").join("journeys"));
    // A cairn built from a checkout finds the checkout's SDKs.
    let sdk = sdk.or_else(|| {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        checkout.is_dir().then_some(checkout)
    });
    eprintln!("building {} ...", dir.display());
    let built = cairn_build::build(&cairn_build::BuildRequest {
        source: dir.to_path_buf(),
        out_dir,
        target_dir: None,
        show_progress: true,
        sdk,
        tools: cairn_build::Tools::default(),
    })?;
    for b in built {
        let bytes =
            std::fs::read(&b.path).with_context(|| format!("reading {}", b.path.display()))?;
        crate::engine::check_component(&bytes).map_err(|why| {
            anyhow::anyhow!("{} would be refused at deploy: {why}", b.path.display())
        })?;
        let reused = if b.rebuilt { "" } else { ", unchanged" };
        println!("{} ({} KiB{reused})", b.path.display(), b.size / 1024);
    }
    Ok(())
}
