//! The accessor core module that [`super::instrument`] appends to a component.
//!
//! It imports every defined memory and mutable global of the guest's core
//! instances and owns a private `scratch` memory with a bump allocator, so
//! reading and writing state never touches the guest's allocator. Functions,
//! per guest memory `m<N>`:
//! - `m<N>-size` / `m<N>-grow`: `memory.size` / `memory.grow` in 64 KiB pages;
//! - `m<N>-scan(offset, len)`: calls the host sink with that range of the
//!   guest memory (lowered against the guest memory, so the host reads it in
//!   place, without a copy);
//! - `m<N>-write-pages(pages, data)`: copies 4 KiB pages from scratch into the guest;
//!
//! and `globals-get` / `globals-set`, every mutable global as a u64 bit pattern.

use super::instrument::GlobalKind;
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction as I, MemArg,
    MemorySection, MemoryType, Module, TypeSection, ValType,
};

/// The core instance the lowered sinks are exported from.
pub const HOST_MODULE: &str = "host";
/// The accessor's own memory.
pub const SCRATCH: &str = "scratch";
/// The accessor's allocator for lowering lists into scratch.
pub const REALLOC: &str = "realloc";
/// The snapshot page size.
pub const PAGE: u32 = 4096;
/// Where `globals-get` puts its values; bytes 0..8 hold its (ptr, len) return area.
const GLOBALS_AT: u32 = 16;

/// A defined memory a core module exports for the accessor.
#[derive(Debug, Clone)]
pub struct MemoryExport {
    pub export: String,
    pub index: u32,
    pub ty: wasmparser::MemoryType,
}

/// A defined mutable global a core module exports for the accessor.
#[derive(Debug, Clone)]
pub struct GlobalExport {
    pub export: String,
    pub index: u32,
    pub kind: GlobalKind,
    pub ty: wasmparser::GlobalType,
}

/// The state one core module defines.
#[derive(Debug, Clone, Default)]
pub struct ModuleState {
    pub memories: Vec<MemoryExport>,
    pub globals: Vec<GlobalExport>,
}

/// A core instance of the component whose module defines state.
#[derive(Debug, Clone)]
pub struct StatefulInstance {
    pub instance: u32,
    pub state: ModuleState,
}

/// The shape of an accessor function, which decides its lifted type and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signature {
    Size,
    Grow,
    Scan,
    WritePages,
    GlobalsGet,
    GlobalsSet,
}

/// One exported accessor function.
pub struct AccessorFunction {
    pub name: String,
    pub signature: Signature,
}

pub fn sink_name(memory: u32) -> String {
    format!("sink{memory}")
}

pub fn instance_module(instance: u32) -> String {
    format!("i{instance}")
}

/// The accessor's exported function names, shared with the host side.
pub fn size_fn(m: usize) -> String {
    format!("m{m}-size")
}
pub fn grow_fn(m: usize) -> String {
    format!("m{m}-grow")
}
pub fn scan_fn(m: usize) -> String {
    format!("m{m}-scan")
}
pub fn write_pages_fn(m: usize) -> String {
    format!("m{m}-write-pages")
}
pub const GLOBALS_GET: &str = "globals-get";
pub const GLOBALS_SET: &str = "globals-set";

/// Plans and emits the accessor for a set of stateful instances.
pub struct AccessorPlan<'a> {
    stateful: &'a [StatefulInstance],
}

impl<'a> AccessorPlan<'a> {
    pub fn new(stateful: &'a [StatefulInstance]) -> Self {
        AccessorPlan { stateful }
    }

    /// Guest memories in accessor order, with the core instance that defines each.
    pub fn memories(&self) -> impl Iterator<Item = (u32, &'a MemoryExport)> + 'a {
        self.stateful
            .iter()
            .flat_map(|s| s.state.memories.iter().map(move |m| (s.instance, m)))
    }

    fn globals(&self) -> impl Iterator<Item = (u32, &'a GlobalExport)> + 'a {
        self.stateful
            .iter()
            .flat_map(|s| s.state.globals.iter().map(move |g| (s.instance, g)))
    }

    pub fn memory_count(&self) -> u32 {
        self.memories().count() as u32
    }

    /// The exported functions, in the order [`Self::module`] defines them.
    pub fn functions(&self) -> Vec<AccessorFunction> {
        let mut fns = Vec::new();
        for m in 0..self.memory_count() as usize {
            for (name, signature) in [
                (size_fn(m), Signature::Size),
                (grow_fn(m), Signature::Grow),
                (scan_fn(m), Signature::Scan),
                (write_pages_fn(m), Signature::WritePages),
            ] {
                fns.push(AccessorFunction { name, signature });
            }
        }
        fns.push(AccessorFunction {
            name: GLOBALS_GET.into(),
            signature: Signature::GlobalsGet,
        });
        fns.push(AccessorFunction {
            name: GLOBALS_SET.into(),
            signature: Signature::GlobalsSet,
        });
        fns
    }

    /// Emits the accessor core module.
    pub fn module(&self) -> Module {
        let memories = self.memory_count();
        let globals: Vec<(u32, &GlobalExport)> = self.globals().collect();
        let global_count = globals.len() as u32;
        let scratch = memories; // the first defined memory, after the imported ones
        let bump = global_count; // the first defined global, after the imported ones

        let mut types = TypeSection::new();
        let ty_sink = 0; // (mem, offset, ptr, len) -> ()
        types.ty().function([ValType::I32; 4], []);
        let ty_realloc = 1; // (old, old_size, align, size) -> ptr
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        let ty_size = 2; // () -> i32
        types.ty().function([], [ValType::I32]);
        let ty_grow = 3; // (i32) -> i32
        types.ty().function([ValType::I32], [ValType::I32]);
        let ty_scan = 4; // (i32, i32) -> ()
        types.ty().function([ValType::I32; 2], []);
        let ty_write_pages = 5; // (pages_ptr, pages_len, data_ptr, data_len) -> ()
        types.ty().function([ValType::I32; 4], []);

        let mut imports = ImportSection::new();
        for m in 0..memories {
            imports.import(HOST_MODULE, &sink_name(m), EntityType::Function(ty_sink));
        }
        for (instance, memory) in self.memories() {
            imports.import(
                &instance_module(instance),
                &memory.export,
                EntityType::Memory(MemoryType {
                    minimum: memory.ty.initial,
                    maximum: memory.ty.maximum,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                }),
            );
        }
        for (instance, global) in &globals {
            imports.import(
                &instance_module(*instance),
                &global.export,
                EntityType::Global(GlobalType {
                    val_type: val_type(global.kind),
                    mutable: true,
                    shared: false,
                }),
            );
        }

        let mut own_memories = MemorySection::new();
        own_memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut own_globals = GlobalSection::new();
        own_globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(0),
        );

        let mut funcs = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut exports = ExportSection::new();
        exports.export(SCRATCH, ExportKind::Memory, scratch);
        let mut next_func = memories; // after the imported sinks

        funcs.function(ty_realloc);
        code.function(&realloc(scratch, bump));
        exports.export(REALLOC, ExportKind::Func, next_func);
        next_func += 1;

        for m in 0..memories {
            let emitted: [(u32, Function); 4] = [
                (ty_size, body(&[], &[I::MemorySize(m)])),
                (ty_grow, body(&[], &[I::LocalGet(0), I::MemoryGrow(m)])),
                (
                    ty_scan,
                    body(
                        &[],
                        &[
                            I::I32Const(m as i32),
                            I::LocalGet(0),
                            I::LocalGet(0),
                            I::LocalGet(1),
                            I::Call(m),
                        ],
                    ),
                ),
                (ty_write_pages, write_pages(m, scratch, bump)),
            ];
            for (ty, function) in emitted {
                funcs.function(ty);
                code.function(&function);
            }
        }
        for (offset, f) in self.functions().iter().enumerate() {
            if matches!(f.signature, Signature::GlobalsGet | Signature::GlobalsSet) {
                continue;
            }
            exports.export(&f.name, ExportKind::Func, next_func + offset as u32);
        }
        next_func += 4 * memories;

        funcs.function(ty_size);
        code.function(&globals_get(&globals, scratch));
        exports.export(GLOBALS_GET, ExportKind::Func, next_func);
        next_func += 1;
        funcs.function(ty_scan);
        code.function(&globals_set(&globals, scratch, bump));
        exports.export(GLOBALS_SET, ExportKind::Func, next_func);

        let mut module = Module::new();
        module
            .section(&types)
            .section(&imports)
            .section(&funcs)
            .section(&own_memories)
            .section(&own_globals)
            .section(&exports)
            .section(&code);
        module
    }
}

fn val_type(kind: GlobalKind) -> ValType {
    match kind {
        GlobalKind::I32 => ValType::I32,
        GlobalKind::I64 => ValType::I64,
        GlobalKind::F32 => ValType::F32,
        GlobalKind::F64 => ValType::F64,
    }
}

fn body(locals: &[(u32, ValType)], instructions: &[I<'_>]) -> Function {
    let mut f = Function::new(locals.iter().copied());
    for i in instructions {
        f.instruction(i);
    }
    f.instruction(&I::End);
    f
}

fn mem(memory_index: u32, offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index,
    }
}

/// Grows `memory` so that `end` (a local) fits, trapping if it cannot.
fn ensure_fits(f: &mut Vec<I<'static>>, memory: u32, end_local: u32) {
    // if end > size * 64Ki { if grow(ceil((end - size*64Ki) / 64Ki)) == -1 { trap } }
    f.extend([
        I::LocalGet(end_local),
        I::MemorySize(memory),
        I::I32Const(16),
        I::I32Shl,
        I::I32GtU,
        I::If(BlockType::Empty),
        I::LocalGet(end_local),
        I::MemorySize(memory),
        I::I32Const(16),
        I::I32Shl,
        I::I32Sub,
        I::I32Const(65535),
        I::I32Add,
        I::I32Const(16),
        I::I32ShrU,
        I::MemoryGrow(memory),
        I::I32Const(-1),
        I::I32Eq,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::End,
    ]);
}

/// `realloc(old, old_size, align, size) -> ptr`: a bump allocator in scratch.
fn realloc(scratch: u32, bump: u32) -> Function {
    // locals: 0 old, 1 old_size, 2 align, 3 size, 4 ptr, 5 end
    let mut f = vec![
        // ptr = (bump + align - 1) & -align, starting past the return area.
        I::GlobalGet(bump),
        I::I32Const(GLOBALS_AT as i32),
        I::GlobalGet(bump),
        I::I32Const(GLOBALS_AT as i32),
        I::I32GtU,
        I::Select,
        I::LocalGet(2),
        I::I32Add,
        I::I32Const(1),
        I::I32Sub,
        I::I32Const(0),
        I::LocalGet(2),
        I::I32Sub,
        I::I32And,
        I::LocalSet(4),
        I::LocalGet(4),
        I::LocalGet(3),
        I::I32Add,
        I::LocalSet(5),
    ];
    ensure_fits(&mut f, scratch, 5);
    f.extend([I::LocalGet(5), I::GlobalSet(bump), I::LocalGet(4)]);
    body(&[(2, ValType::I32)], &f)
}

/// `write-pages(pages_ptr, pages_len, data_ptr, data_len)`: copies 4 KiB pages
/// from scratch into guest memory `m`; traps unless `data_len == 4096 * pages_len`.
fn write_pages(m: u32, scratch: u32, bump: u32) -> Function {
    // locals: 0 pages_ptr, 1 pages_len, 2 data_ptr, 3 data_len, 4 i
    let f = vec![
        I::LocalGet(3),
        I::LocalGet(1),
        I::I32Const(PAGE as i32),
        I::I32Mul,
        I::I32Ne,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::Block(BlockType::Empty),
        I::Loop(BlockType::Empty),
        I::LocalGet(4),
        I::LocalGet(1),
        I::I32GeU,
        I::BrIf(1),
        // dst = pages[i] * 4096
        I::LocalGet(0),
        I::LocalGet(4),
        I::I32Const(4),
        I::I32Mul,
        I::I32Add,
        I::I32Load(mem(scratch, 0, 2)),
        I::I32Const(PAGE as i32),
        I::I32Mul,
        // src = data_ptr + i * 4096
        I::LocalGet(2),
        I::LocalGet(4),
        I::I32Const(PAGE as i32),
        I::I32Mul,
        I::I32Add,
        I::I32Const(PAGE as i32),
        I::MemoryCopy {
            src_mem: scratch,
            dst_mem: m,
        },
        I::LocalGet(4),
        I::I32Const(1),
        I::I32Add,
        I::LocalSet(4),
        I::Br(0),
        I::End,
        I::End,
        I::I32Const(0),
        I::GlobalSet(bump),
    ];
    body(&[(1, ValType::I32)], &f)
}

/// `globals-get() -> list<u64>`: writes every global at scratch[16..] and
/// returns a pointer to its (ptr, len) pair at scratch[0..8].
fn globals_get(globals: &[(u32, &GlobalExport)], scratch: u32) -> Function {
    // local 0: end of the values
    let end = GLOBALS_AT + 8 * globals.len() as u32;
    let mut f = vec![I::I32Const(end as i32), I::LocalSet(0)];
    ensure_fits(&mut f, scratch, 0);
    for (i, (_, global)) in globals.iter().enumerate() {
        f.push(I::I32Const(0));
        f.push(I::GlobalGet(i as u32));
        match global.kind {
            GlobalKind::I32 => f.push(I::I64ExtendI32U),
            GlobalKind::I64 => {}
            GlobalKind::F32 => f.extend([I::I32ReinterpretF32, I::I64ExtendI32U]),
            GlobalKind::F64 => f.push(I::I64ReinterpretF64),
        }
        f.push(I::I64Store(mem(
            scratch,
            (GLOBALS_AT + 8 * i as u32) as u64,
            3,
        )));
    }
    f.extend([
        I::I32Const(0),
        I::I32Const(GLOBALS_AT as i32),
        I::I32Store(mem(scratch, 0, 2)),
        I::I32Const(0),
        I::I32Const(globals.len() as i32),
        I::I32Store(mem(scratch, 4, 2)),
        I::I32Const(0),
    ]);
    body(&[(1, ValType::I32)], &f)
}

/// `globals-set(ptr, len)`: the reverse of `globals-get`; traps unless `len` is the global count.
fn globals_set(globals: &[(u32, &GlobalExport)], scratch: u32, bump: u32) -> Function {
    let mut f = vec![
        I::LocalGet(1),
        I::I32Const(globals.len() as i32),
        I::I32Ne,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
    ];
    for (i, (_, global)) in globals.iter().enumerate() {
        f.push(I::LocalGet(0));
        f.push(I::I64Load(mem(scratch, 8 * i as u64, 3)));
        match global.kind {
            GlobalKind::I32 => f.push(I::I32WrapI64),
            GlobalKind::I64 => {}
            GlobalKind::F32 => f.extend([I::I32WrapI64, I::F32ReinterpretI32]),
            GlobalKind::F64 => f.push(I::F64ReinterpretI64),
        }
        f.push(I::GlobalSet(i as u32));
    }
    f.extend([I::I32Const(0), I::GlobalSet(bump)]);
    body(&[], &f)
}
