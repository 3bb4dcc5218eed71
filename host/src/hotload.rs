//! Hot-loading: a directory of components that deploys itself, and a
//! directory of templates that registers itself. Every `.wasm` (`.jinja`)
//! in it is deployed (registered) at start, and a new or changed file as
//! soon as it settles, without a restart. A component that is refused (malformed,
//! importing WASI, invalid meta, ...) is logged with the reason and changes
//! nothing: the journey's previous version keeps serving (a template that
//! does not compile likewise). Removing a file undeploys nothing; runs in flight always finish on their own version.
//!
//! Write files atomically (write elsewhere, then rename into the directory)
//! to spare the log a refusal of a half-written file; a half-written file is
//! harmless either way, because the complete file deploys when it lands.

use crate::runtime::{Deployed, Runtime, RuntimeError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a file must be quiet before it is deployed.
const SETTLE: Duration = Duration::from_millis(200);

/// Deploys one file, logging the outcome; the version, if it deployed.
async fn deploy_file(runtime: &Runtime, tenant: &str, path: &Path) -> Option<Deployed> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(path = %path.display(), "cannot read the component: {err}");
            return None;
        }
    };
    match runtime.deploy(tenant, bytes).await {
        Ok(deployed) => {
            tracing::info!(
                path = %path.display(),
                journey = %deployed.journey_id,
                version = %deployed.version,
                new = deployed.new,
                "deployed from the journeys directory"
            );
            Some(deployed)
        }
        Err(RuntimeError::Deploy(why)) => {
            tracing::error!(
                path = %path.display(),
                "refused: {why}; the journey's previous version keeps serving"
            );
            None
        }
        Err(err) => {
            tracing::error!(path = %path.display(), "could not deploy: {err}");
            None
        }
    }
}

fn is_component(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm") && path.is_file()
}

/// Deploys every `.wasm` in `dir`, in name order.
///
/// # Errors
/// The directory cannot be read. Refused components are logged, not errors.
pub async fn deploy_dir(runtime: &Runtime, tenant: &str, dir: &Path) -> std::io::Result<usize> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_component(p))
        .collect();
    files.sort();
    let mut deployed = 0;
    for file in files {
        deployed += usize::from(deploy_file(runtime, tenant, &file).await.is_some());
    }
    Ok(deployed)
}

/// The template name of a `.jinja` file under `dir`: its path without the
/// extension, `/`-separated.
fn template_name(dir: &Path, path: &Path) -> Option<String> {
    if path.extension().is_none_or(|e| e != "jinja") || !path.is_file() {
        return None;
    }
    let relative = path.strip_prefix(dir).ok()?.with_extension("");
    Some(
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Registers one template file, logging a refusal. True if it registered.
///
/// # Errors
/// The file cannot be read, or the database failed.
async fn register_template(
    runtime: &Runtime,
    tenant: &str,
    name: &str,
    path: &Path,
) -> anyhow::Result<bool> {
    let source = std::fs::read_to_string(path)?;
    match runtime
        .store
        .put_template(tenant, name, &source, runtime.now())
        .await
    {
        Ok(_) => {
            tracing::info!(path = %path.display(), template = name, "registered a template");
            Ok(true)
        }
        Err(crate::store::StoreError::Invalid(why)) => {
            tracing::error!(path = %path.display(), "template refused: {why}; its previous version stays");
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

/// Registers every `NAME.jinja` under `dir` (subdirectories give names
/// with `/`) as a template of `tenant`. A template that does not compile is
/// logged and skipped; the others register. Returns how many registered.
///
/// # Errors
/// The directory cannot be read, or the database failed.
pub async fn register_templates(
    runtime: &Runtime,
    tenant: &str,
    dir: &Path,
) -> anyhow::Result<usize> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Some(name) = template_name(dir, &path) {
                files.push((name, path));
            }
        }
    }
    files.sort();
    let mut registered = 0;
    for (name, path) in files {
        registered += usize::from(register_template(runtime, tenant, &name, &path).await?);
    }
    Ok(registered)
}

/// Watches `dir` and yields the paths that changed (created or modified),
/// a batch at a time once the directory has been quiet for [`SETTLE`].
fn settled_changes(
    dir: &Path,
    mode: notify::RecursiveMode,
) -> notify::Result<(
    notify::RecommendedWatcher,
    mpsc::UnboundedReceiver<Vec<PathBuf>>,
)> {
    use notify::Watcher;
    let (changed, mut changes) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_create() || event.kind.is_modify() => {
                for path in event.paths {
                    let _ = changed.send(path);
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("watching a directory: {err}"),
        })?;
    watcher.watch(dir, mode)?;
    let (batches, settled) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(first) = changes.recv().await {
            let mut pending = HashSet::from([first]);
            while let Ok(Some(path)) = tokio::time::timeout(SETTLE, changes.recv()).await {
                pending.insert(path);
            }
            let mut pending: Vec<PathBuf> = pending.into_iter().collect();
            pending.sort();
            if batches.send(pending).is_err() {
                return;
            }
        }
    });
    Ok((watcher, settled))
}

/// Registers every template under `dir`, then watches it and registers each
/// new or changed `.jinja` once it settles. A template that no longer
/// compiles is refused and its previous version stays; deleting a file
/// unregisters nothing.
///
/// # Errors
/// The directory cannot be read or watched, or the database failed.
pub async fn watch_templates(
    runtime: Runtime,
    tenant: String,
    dir: PathBuf,
) -> anyhow::Result<usize> {
    // Watch first, then scan: a file that lands in between is registered twice, never missed.
    let (watcher, mut batches) = settled_changes(&dir, notify::RecursiveMode::Recursive)?;
    let registered = register_templates(&runtime, &tenant, &dir).await?;
    tokio::spawn(async move {
        let _watcher = watcher;
        while let Some(batch) = batches.recv().await {
            for path in batch {
                if let Some(name) = template_name(&dir, &path)
                    && let Err(err) = register_template(&runtime, &tenant, &name, &path).await
                {
                    tracing::error!(path = %path.display(), "could not register the template: {err}");
                }
            }
        }
    });
    Ok(registered)
}

/// Deploys every component in `dir`, then watches it and deploys each new
/// or changed `.wasm` once it settles, for as long as the runtime lives.
///
/// # Errors
/// The directory cannot be read or watched.
pub async fn watch(runtime: Runtime, tenant: String, dir: PathBuf) -> notify::Result<()> {
    // Watch first, then scan: a file that lands in between is seen twice,
    // never missed (deploying the same bytes again changes nothing).
    let (watcher, mut batches) = settled_changes(&dir, notify::RecursiveMode::NonRecursive)?;
    deploy_dir(&runtime, &tenant, &dir).await?;
    tracing::info!(dir = %dir.display(), tenant, "watching for journey components");
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut deployed_hash: HashMap<PathBuf, [u8; 32]> = HashMap::new();
        while let Some(batch) = batches.recv().await {
            for path in batch.into_iter().filter(|p| is_component(p)) {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let hash = crate::engine::content_hash(&bytes);
                if deployed_hash.get(&path) == Some(&hash) {
                    continue;
                }
                if deploy_file(&runtime, &tenant, &path).await.is_some() {
                    deployed_hash.insert(path, hash);
                }
            }
        }
    });
    Ok(())
}
