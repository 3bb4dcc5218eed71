//! Reads a quiescent instance's state through the accessor exports and diffs
//! it against the pristine image, page by page.
//!
//! Memory is read without a copy: `m<N>-scan` makes the accessor call the host
//! sink with a list lowered against the guest memory itself, and
//! [`ScanBuffer::absorb`] compares that slice in place.

use super::accessor::{self, PAGE};
use super::instrument::{Layout, STATE_INSTANCE};
use super::{MemoryDiff, Snapshot, SnapshotError};
use std::sync::Arc;
use wasmtime::AsContextMut;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

const WASM_PAGE: u64 = 65_536;
static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

/// The state of a fresh instance: what snapshots are diffed against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pristine {
    /// Full contents of each memory.
    pub memories: Vec<Vec<u8>>,
    pub globals: Vec<u64>,
}

/// What the host sink does with the memory ranges the accessor hands it.
#[derive(Default)]
pub enum ScanBuffer {
    /// Not scanning: the sink was called outside a capture.
    #[default]
    Idle,
    /// Copy whole memories (to build the pristine image).
    Full(Vec<Vec<u8>>),
    /// Keep only pages that differ from the pristine image.
    Diff {
        pristine: Arc<Pristine>,
        memories: Vec<MemoryDiff>,
    },
}

impl ScanBuffer {
    /// Called by the host sink with guest memory `memory` from byte `offset`.
    pub fn absorb(&mut self, memory: u32, offset: u32, bytes: &[u8]) {
        let m = memory as usize;
        match self {
            ScanBuffer::Idle => {}
            ScanBuffer::Full(out) => {
                if out.len() <= m {
                    out.resize_with(m + 1, Vec::new);
                }
                out[m].extend_from_slice(bytes);
            }
            ScanBuffer::Diff { pristine, memories } => {
                if memories.len() <= m {
                    memories.resize_with(m + 1, MemoryDiff::default);
                }
                let base = pristine.memories.get(m).map(Vec::as_slice).unwrap_or(&[]);
                let diff = &mut memories[m];
                let first_page = offset / PAGE;
                for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
                    let start = (offset as usize) + i * PAGE as usize;
                    let before = base
                        .get(start..start + page.len())
                        .unwrap_or(&ZERO_PAGE[..page.len()]);
                    if page != before {
                        diff.dirty.push(first_page + i as u32);
                        diff.data.extend_from_slice(page);
                        // A final partial page cannot occur: memories are 64 KiB multiples.
                    }
                }
            }
        }
    }
}

/// Store data that can hold a [`ScanBuffer`] for the host sink.
pub trait HasScan {
    fn scan_buffer(&mut self) -> &mut ScanBuffer;
}

#[derive(Clone)]
struct MemoryFns {
    size: ComponentExportIndex,
    grow: ComponentExportIndex,
    scan: ComponentExportIndex,
    write_pages: ComponentExportIndex,
}

/// The accessor exports of one instrumented component, resolved once.
#[derive(Clone)]
pub struct StateAccess {
    memories: Vec<MemoryFns>,
    globals_get: ComponentExportIndex,
    globals_set: ComponentExportIndex,
    layout: Layout,
}

fn export(
    component: &Component,
    instance: &ComponentExportIndex,
    name: &str,
) -> Result<ComponentExportIndex, SnapshotError> {
    component
        .get_export_index(Some(instance), name)
        .ok_or_else(|| SnapshotError::NotInstrumented(format!("missing {name}")))
}

fn call_failed(function: &str) -> impl FnOnce(wasmtime::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Accessor {
        function: function.to_string(),
        source,
    }
}

impl StateAccess {
    /// Resolves the accessors of an instrumented component with this layout.
    ///
    /// # Errors
    /// [`SnapshotError::NotInstrumented`] if an accessor is missing.
    pub fn resolve(component: &Component, layout: &Layout) -> Result<Self, SnapshotError> {
        let state = component
            .get_export_index(None, STATE_INSTANCE)
            .ok_or_else(|| SnapshotError::NotInstrumented(STATE_INSTANCE.into()))?;
        let memories = (0..layout.memories.len())
            .map(|m| {
                Ok(MemoryFns {
                    size: export(component, &state, &accessor::size_fn(m))?,
                    grow: export(component, &state, &accessor::grow_fn(m))?,
                    scan: export(component, &state, &accessor::scan_fn(m))?,
                    write_pages: export(component, &state, &accessor::write_pages_fn(m))?,
                })
            })
            .collect::<Result<_, SnapshotError>>()?;
        Ok(StateAccess {
            memories,
            globals_get: export(component, &state, accessor::GLOBALS_GET)?,
            globals_set: export(component, &state, accessor::GLOBALS_SET)?,
            layout: layout.clone(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(super) fn memory_count(&self) -> usize {
        self.memories.len()
    }

    fn typed<P, R>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        index: &ComponentExportIndex,
        name: &str,
    ) -> Result<TypedFunc<P, R>, SnapshotError>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
        R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
    {
        instance
            .get_typed_func::<P, R>(store, index)
            .map_err(call_failed(name))
    }

    /// The memory's size in 64 KiB pages.
    pub(super) fn size<T: 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
        m: usize,
    ) -> Result<u32, SnapshotError> {
        let f = self.typed::<(), (u32,)>(&mut store, instance, &self.memories[m].size, "size")?;
        f.call(&mut store, ())
            .map(|(n,)| n)
            .map_err(call_failed("size"))
    }

    pub(super) fn grow<T: 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
        m: usize,
        delta: u32,
    ) -> Result<i32, SnapshotError> {
        let f =
            self.typed::<(u32,), (i32,)>(&mut store, instance, &self.memories[m].grow, "grow")?;
        f.call(&mut store, (delta,))
            .map(|(n,)| n)
            .map_err(call_failed("grow"))
    }

    pub(super) fn write_pages<T: 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
        m: usize,
        pages: &[u32],
        data: &[u8],
    ) -> Result<(), SnapshotError> {
        let f = self.typed::<(&[u32], &[u8]), ()>(
            &mut store,
            instance,
            &self.memories[m].write_pages,
            "write-pages",
        )?;
        f.call(&mut store, (pages, data))
            .map_err(call_failed("write-pages"))
    }

    pub(super) fn globals_set<T: 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
        values: &[u64],
    ) -> Result<(), SnapshotError> {
        let f =
            self.typed::<(&[u64],), ()>(&mut store, instance, &self.globals_set, "globals-set")?;
        f.call(&mut store, (values,))
            .map_err(call_failed("globals-set"))
    }

    fn globals_get<T: 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
    ) -> Result<Vec<u64>, SnapshotError> {
        let f =
            self.typed::<(), (Vec<u64>,)>(&mut store, instance, &self.globals_get, "globals-get")?;
        f.call(&mut store, ())
            .map(|(v,)| v)
            .map_err(call_failed("globals-get"))
    }

    /// Runs every memory's scan through the sink with `buffer` in place; returns the buffer and the sizes.
    fn scan<T: HasScan + 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
        buffer: ScanBuffer,
    ) -> Result<(ScanBuffer, Vec<u32>), SnapshotError> {
        *store.as_context_mut().data_mut().scan_buffer() = buffer;
        let mut sizes = Vec::with_capacity(self.memories.len());
        for (m, fns) in self.memories.iter().enumerate() {
            let pages = self.size(&mut store, instance, m)?;
            let len = u32::try_from(u64::from(pages) * WASM_PAGE).map_err(|_| {
                SnapshotError::Mismatch("a memory of 4 GiB cannot be scanned".into())
            })?;
            let f = self.typed::<(u32, u32), ()>(&mut store, instance, &fns.scan, "scan")?;
            f.call(&mut store, (0, len)).map_err(call_failed("scan"))?;
            sizes.push(pages);
        }
        let buffer = std::mem::take(store.as_context_mut().data_mut().scan_buffer());
        Ok((buffer, sizes))
    }

    /// Reads the full state of a fresh instance.
    ///
    /// # Errors
    /// A failing accessor call.
    pub fn pristine<T: HasScan + 'static>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
    ) -> Result<Pristine, SnapshotError> {
        let (buffer, _) = self.scan(&mut store, instance, ScanBuffer::Full(Vec::new()))?;
        let ScanBuffer::Full(mut memories) = buffer else {
            unreachable!("scan returns the buffer it was given")
        };
        memories.resize_with(self.memories.len(), Vec::new);
        Ok(Pristine {
            memories,
            globals: self.globals_get(&mut store, instance)?,
        })
    }
}

/// Captures a quiescent instance as its difference from `pristine`.
///
/// # Errors
/// A failing accessor call.
pub fn capture<T: HasScan + 'static>(
    access: &StateAccess,
    mut store: impl AsContextMut<Data = T>,
    instance: &Instance,
    pristine: &Arc<Pristine>,
) -> Result<Snapshot, SnapshotError> {
    let buffer = ScanBuffer::Diff {
        pristine: pristine.clone(),
        memories: Vec::new(),
    };
    let (buffer, sizes) = access.scan(&mut store, instance, buffer)?;
    let ScanBuffer::Diff { mut memories, .. } = buffer else {
        unreachable!("scan returns the buffer it was given")
    };
    memories.resize_with(sizes.len(), MemoryDiff::default);
    for (diff, pages) in memories.iter_mut().zip(sizes) {
        diff.wasm_pages = pages;
    }
    Ok(Snapshot {
        memories,
        globals: access.globals_get(&mut store, instance)?,
    })
}
