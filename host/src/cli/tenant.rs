//! `cairn tenant` and `cairn key`: operator commands that work on the
//! database directly (a host need not be running).

use crate::clock::{Clock, SystemClock};
use crate::store::Store;
use anyhow::Context;

#[derive(clap::Args)]
pub(super) struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
    /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "CAIRN_DB",
        default_value = "sqlite://cairn.db",
        global = true
    )]
    db: String,
}

#[derive(clap::Subcommand)]
enum TenantCommand {
    /// Create a tenant, or update its name and limits.
    Create {
        /// 1-64 letters, digits, '-' or '_'.
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Per-run limits as JSON, e.g. '{"max_memory_bytes": 33554432,
        /// "max_step_cpu_ms": 100}'; fields left out keep the defaults.
        #[arg(long, default_value = "{}")]
        limits: String,
    },
    /// Set a tenant's delivery settings (providers, sender, policy): JSON,
    /// or @FILE. Running hosts pick them up within 10 seconds.
    Delivery {
        id: String,
        /// e.g. '{"providers": {"email": {"kind": "smtp", "host": "smtp.example.com",
        /// "username": "cairn", "password_env": "SMTP_PASSWORD"}}, "from": "Acme <hi@acme.test>"}'
        settings: String,
    },
    /// List tenants with their limits and key counts.
    List,
}

#[derive(clap::Args)]
pub(super) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
    /// The database: `sqlite://FILE` or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "CAIRN_DB",
        default_value = "sqlite://cairn.db",
        global = true
    )]
    db: String,
}

#[derive(clap::Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant; it is printed once and stored hashed.
    Create {
        #[arg(long)]
        tenant: String,
        /// A name to revoke it by later.
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// Revoke a tenant's keys with this label.
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        label: String,
    },
}

async fn open(db: &str) -> anyhow::Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("opening {db}"))
}

pub(super) async fn tenant(args: TenantArgs) -> anyhow::Result<()> {
    let store = open(&args.db).await?;
    match args.command {
        TenantCommand::Create { id, name, limits } => {
            let name = name.unwrap_or_else(|| id.clone());
            store
                .upsert_tenant(&id, &name, &limits, SystemClock.now())
                .await?;
            println!("tenant {id} saved");
        }
        TenantCommand::Delivery { id, settings } => {
            let json = match settings.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
                }
                None => settings,
            };
            let config = store.set_delivery_config(&id, &json).await?;
            println!(
                "delivery settings of {id} saved:\n{}",
                serde_json::to_string_pretty(&config).expect("settings serialize")
            );
        }
        TenantCommand::List => {
            for t in store.tenants().await? {
                println!(
                    "{}\t{}\tkeys: {}\tlimits: {}",
                    t.id, t.name, t.keys, t.limits
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn key(args: KeyArgs) -> anyhow::Result<()> {
    let store = open(&args.db).await?;
    match args.command {
        KeyCommand::Create { tenant, label } => {
            let key = store
                .create_api_key(&tenant, &label, SystemClock.now())
                .await?;
            eprintln!("API key for tenant {tenant} (shown once; store it now):");
            println!("{key}");
        }
        KeyCommand::Revoke { tenant, label } => {
            let revoked = store
                .revoke_api_keys(&tenant, &label, SystemClock.now())
                .await?;
            println!("revoked {revoked} key(s)");
        }
    }
    Ok(())
}
