//! The test oracle: the same capture as [`super::capture`], read through
//! wasmtime's debug API instead of the instrumented accessors.
//!
//! Only works on an engine with `Config::guest_debug(true)`, which costs ~3x
//! guest CPU and a private code copy per store, so production never uses it.
//! Tests assert both routes give byte-identical snapshots.

use super::capture::{Pristine, ScanBuffer};
use super::{MemoryDiff, Snapshot, SnapshotError};
use std::sync::Arc;
use wasmtime::{ExternType, Mutability, Store, Val};

/// Captures every defined memory and mutable global of every core instance in
/// `store`, except the last instance (the accessor that instrumentation appended).
///
/// # Errors
/// [`SnapshotError::Mismatch`] if the engine has no debug support or a global has an unexpected type.
pub fn capture_via_debug_api<T>(
    store: &mut Store<T>,
    pristine: &Arc<Pristine>,
) -> Result<Snapshot, SnapshotError> {
    let mut instances = store.debug_all_instances();
    if instances.pop().is_none() {
        return Err(SnapshotError::Mismatch(
            "the debug API lists no instances; is guest_debug on?".into(),
        ));
    }
    let mut buffer = ScanBuffer::Diff {
        pristine: pristine.clone(),
        memories: Vec::new(),
    };
    let mut sizes = Vec::new();
    let mut globals = Vec::new();
    for instance in instances {
        let module = instance.module(&mut *store).clone();
        let imported_memories = module
            .imports()
            .filter(|i| matches!(i.ty(), ExternType::Memory(_)))
            .count() as u32;
        let imported_globals = module
            .imports()
            .filter(|i| matches!(i.ty(), ExternType::Global(_)))
            .count() as u32;
        let mut index = imported_memories;
        while let Some(memory) = instance.debug_memory(&mut *store, index) {
            let m = sizes.len() as u32;
            buffer.absorb(m, 0, memory.data(&*store));
            sizes.push((memory.data_size(&*store) / 65_536) as u32);
            index += 1;
        }
        let mut index = imported_globals;
        while let Some(global) = instance.debug_global(&mut *store, index) {
            index += 1;
            if global.ty(&*store).mutability() != Mutability::Var {
                continue;
            }
            globals.push(match global.get(&mut *store) {
                Val::I32(v) => u64::from(v as u32),
                Val::I64(v) => v as u64,
                Val::F32(bits) => u64::from(bits),
                Val::F64(bits) => bits,
                other => {
                    return Err(SnapshotError::Mismatch(format!(
                        "unsupported global value {other:?}"
                    )));
                }
            });
        }
    }
    let ScanBuffer::Diff { mut memories, .. } = buffer else {
        unreachable!("the buffer was built as a diff")
    };
    memories.resize_with(sizes.len(), MemoryDiff::default);
    for (diff, pages) in memories.iter_mut().zip(sizes) {
        diff.wasm_pages = pages;
    }
    Ok(Snapshot { memories, globals })
}
