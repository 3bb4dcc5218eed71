//! `cairn simulate`: runs one journey for one user in virtual time, on the
//! real engine and an in-memory store, and prints a readable timeline.
//! Days of waits pass in milliseconds; every wait goes through a snapshot.

use crate::clock::{Clock, ManualClock, SystemClock};
use crate::engine::{Engine, EngineConfig};
use crate::runtime::Runtime;
use crate::scheduler::Scheduler;
use crate::store::{DEFAULT_TENANT, Store};
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The journey component (.wasm).
    component: PathBuf,
    /// The user as JSON: `id` names the user, the whole object is the run's input.
    #[arg(long, default_value = r#"{"id":"sim-user"}"#)]
    user: String,
    /// A JSON file of scripted events: `[{"at": "2d", "name": "purchased", "properties": {}}]`.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Templates to register (`NAME.jinja` files), as `serve --templates`.
    /// A template the journey declares but no directory has is simulated
    /// with a stand-in.
    #[arg(long)]
    templates: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct ScriptedEvent {
    /// When, after the start: milliseconds, or `90s`, `15m`, `36h`, `2d`.
    at: Value,
    name: String,
    #[serde(default)]
    properties: Option<Value>,
}

/// Parses `90s`, `15m`, `36h`, `2d`, `500ms` or a number of milliseconds.
fn parse_offset(at: &Value) -> anyhow::Result<u64> {
    if let Some(ms) = at.as_u64() {
        return Ok(ms);
    }
    let text = at
        .as_str()
        .context("`at` must be milliseconds or a string like \"2d\"")?;
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("bad offset {text:?}"))?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("unknown unit {other:?} in {text:?}: use ms, s, m, h or d"),
    };
    Ok(n * scale)
}

fn relative(ms: u64) -> String {
    let (d, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (h, m, s) = (
        rest / 3_600_000,
        rest % 3_600_000 / 60_000,
        rest % 60_000 / 1000,
    );
    if d > 0 {
        format!("+{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("+{h:02}:{m:02}:{s:02}")
    }
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let user: Value = serde_json::from_str(&args.user).context("--user is not JSON")?;
    let user_id = user["id"].as_str().unwrap_or("sim-user").to_string();
    let mut script: Vec<(u64, ScriptedEvent)> = match &args.events {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let events: Vec<ScriptedEvent> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON list of events", path.display()))?;
            events
                .into_iter()
                .map(|e| Ok((parse_offset(&e.at)?, e)))
                .collect::<anyhow::Result<_>>()?
        }
        None => Vec::new(),
    };
    script.sort_by_key(|(at, _)| *at);
    let mut script = script.into_iter().peekable();

    let start = SystemClock.now() / 1000 * 1000;
    let clock = ManualClock::new(start);
    let engine = Engine::new(EngineConfig::default())?;
    let store = Store::open("sqlite::memory:").await?;
    let runtime = Runtime::new(engine, store, clock.clone());
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    for dir in &args.templates {
        crate::hotload::register_templates(&runtime, DEFAULT_TENANT, dir)
            .await
            .with_context(|| format!("registering the templates in {}", dir.display()))?;
    }
    let (bytes, journey) = runtime.compile(bytes).await?;
    let missing = runtime
        .store
        .missing_templates(DEFAULT_TENANT, &journey.meta.templates)
        .await?;
    for name in missing {
        println!("note: template {name:?} is not in --templates; simulating with a stand-in");
        let stand_in = format!(
            "{{% block subject %}}[{name}]{{% endblock %}}{{% block text %}}[{name}] for {{{{ cairn.user_id }}}}{{% endblock %}}"
        );
        runtime
            .store
            .put_template(DEFAULT_TENANT, &name, &stand_in, start)
            .await?;
    }
    let deployed = runtime.register(DEFAULT_TENANT, &bytes, journey).await?;
    let run = runtime
        .start_run(
            DEFAULT_TENANT,
            &deployed.journey_id,
            &user_id,
            &user.to_string(),
        )
        .await?;
    let scheduler = Scheduler::new(runtime.clone());
    println!(
        "simulating {} for user {user_id} (virtual time from {})",
        deployed.journey_id,
        crate::clock::format(start)
    );
    scheduler.drain(clock.now()).await?;
    for _ in 0..100_000 {
        let current = runtime
            .store
            .run(run.id)
            .await?
            .context("the run vanished")?;
        if current.status.is_terminal() {
            break;
        }
        let due = current.due_at.unwrap_or(u64::MAX);
        match script.peek() {
            Some((at, _)) if start + at <= due => {
                let (at, event) = script.next().expect("peeked");
                clock.advance_to(start + at);
                let outcome = runtime
                    .ingest_events(
                        DEFAULT_TENANT,
                        vec![crate::ingest::IncomingEvent {
                            user_id: user_id.clone(),
                            name: event.name.clone(),
                            properties: event.properties,
                            timestamp: None,
                            idempotency_key: None,
                        }],
                    )
                    .await?
                    .remove(0);
                if outcome.resumed.is_empty() {
                    println!(
                        "{:<14} event {} (no run was waiting for it)",
                        relative(at),
                        event.name
                    );
                }
            }
            _ if due == u64::MAX => bail!("the run is waiting with no deadline"),
            _ => {
                clock.advance_to(due);
            }
        }
        scheduler.drain(clock.now()).await?;
    }
    for entry in runtime.store.timeline(run.id).await? {
        println!(
            "{:<14} {:<14} {}",
            relative(entry.at.saturating_sub(start)),
            entry.kind,
            describe(&entry.detail, start)
        );
    }
    let run = runtime
        .store
        .run(run.id)
        .await?
        .context("the run vanished")?;
    let outbox = runtime
        .store
        .outbox(
            DEFAULT_TENANT,
            &crate::store::OutboxFilter {
                run_id: Some(run.id),
                ..Default::default()
            },
        )
        .await?;
    println!(
        "\nfinal: {} after {} steps; {} message(s) in the outbox{}",
        run.status.as_str(),
        run.step,
        outbox.len(),
        run.failure
            .map(|f| format!("; failure: {f}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn describe(detail: &Value, start: u64) -> String {
    let until = || {
        relative(
            detail["deadline"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(start),
        )
    };
    let snapshot = || format!("(snapshot {} B)", detail["snapshot_bytes"]);
    match detail["kind"].as_str() {
        Some("timer") => format!("sleep until {} {}", until(), snapshot()),
        Some("event") => format!(
            "wait for {} until {} {}",
            detail["name"].as_str().unwrap_or("?"),
            until(),
            snapshot()
        ),
        None if detail.get("by").is_some() => match detail["event_id"].as_i64() {
            Some(id) => format!("by {} (event {id})", detail["by"].as_str().unwrap_or("?")),
            None => format!("by {}", detail["by"].as_str().unwrap_or("?")),
        },
        None if detail.get("version").is_some() => format!(
            "version {} with input {}",
            detail["version"]
                .as_str()
                .map_or("?", |v| &v[..v.len().min(12)]),
            detail["input"].as_str().unwrap_or("{}")
        ),
        Some("checkpoint") => detail["label"].as_str().unwrap_or("").to_string(),
        Some("send") => format!(
            "{} ({}): {}",
            detail["template"].as_str().unwrap_or("?"),
            detail["key"].as_str().unwrap_or(""),
            detail["status"].as_str().unwrap_or("queued")
        ),
        Some("log") => format!(
            "[{}] {}",
            detail["level"].as_str().unwrap_or(""),
            detail["message"].as_str().unwrap_or("")
        ),
        _ => {
            let text = detail.to_string();
            if text == "{}" { String::new() } else { text }
        }
    }
}
