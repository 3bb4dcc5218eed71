//! Writes a snapshot into a fresh instance: grow each memory to its saved
//! size, copy the dirty pages in batches, then set the globals.

use super::capture::StateAccess;
use super::{Snapshot, SnapshotError};
use wasmtime::AsContextMut;
use wasmtime::component::Instance;

/// Pages per `write-pages` call: keeps the accessor's scratch memory at 256 KiB.
const BATCH_PAGES: usize = 64;

/// Restores `snapshot` into `instance`, which must be fresh (pristine).
///
/// # Errors
/// [`SnapshotError::Mismatch`] if the snapshot's shape does not fit the
/// component, [`SnapshotError::Grow`] if a memory cannot grow to its saved size.
pub fn restore<T: 'static>(
    access: &StateAccess,
    mut store: impl AsContextMut<Data = T>,
    instance: &Instance,
    snapshot: &Snapshot,
) -> Result<(), SnapshotError> {
    if snapshot.memories.len() != access.memory_count() {
        return Err(SnapshotError::Mismatch(format!(
            "{} memories saved, {} in the component",
            snapshot.memories.len(),
            access.memory_count()
        )));
    }
    if snapshot.globals.len() != access.layout().globals.len() {
        return Err(SnapshotError::Mismatch(format!(
            "{} globals saved, {} in the component",
            snapshot.globals.len(),
            access.layout().globals.len()
        )));
    }
    for (m, diff) in snapshot.memories.iter().enumerate() {
        let current = access.size(&mut store, instance, m)?;
        if diff.wasm_pages > current
            && access.grow(&mut store, instance, m, diff.wasm_pages - current)? < 0
        {
            return Err(SnapshotError::Grow {
                memory: m,
                pages: diff.wasm_pages,
            });
        }
        let page = super::accessor::PAGE as usize;
        for (pages, data) in diff
            .dirty
            .chunks(BATCH_PAGES)
            .zip(diff.data.chunks(BATCH_PAGES * page))
        {
            access.write_pages(&mut store, instance, m, pages, data)?;
        }
    }
    access.globals_set(&mut store, instance, &snapshot.globals)
}
