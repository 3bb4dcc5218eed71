//! Deploy-time instrumentation: rewrites a component so the host can read
//! and write every piece of its instances' state through ordinary exports.
//!
//! Each core module gains exports of its defined memories (`__cairn_mem_N`)
//! and mutable globals (`__cairn_glob_N`); function bodies are untouched. An
//! accessor core module (see [`super::accessor`]) is appended, instantiated
//! with every stateful core instance, lifted, and exported as the instance
//! [`STATE_INSTANCE`]. Imported memories and globals are skipped, so state
//! shared between core instances is captured once, where it is defined.
//!
//! The rewrite only appends to the top-level component's index spaces, so it
//! must count every item the input defines; [`IndexSpaces`] does that.

use super::accessor::{self, AccessorPlan, StatefulInstance};
use std::collections::HashMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    Alias, CanonicalFunctionSection, CanonicalOption, ComponentAliasSection, ComponentExportKind,
    ComponentExportSection, ComponentImportSection, ComponentInstanceSection, ComponentTypeRef,
    ComponentTypeSection, ComponentValType, ExportKind, InstanceSection, ModuleArg, ModuleSection,
    PrimitiveValType, RawSection,
};
use wasmparser::{
    CanonicalFunction, ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind, Encoding,
    ExternalKind, Instance, Parser, Payload, TypeRef, ValType,
};

/// The name of the hidden instance the instrumented component exports.
pub const STATE_INSTANCE: &str = "cairn:snapshot/state";

/// The host function the accessor calls to hand a guest memory range to the host without a copy.
pub const SINK_IMPORT: &str = "cairn-snapshot-sink";

/// The version of what [`instrument`] produces. Compiled artifacts are cached
/// under it with the layout beside them: bump it whenever the instrumented
/// output or the layout changes, or hosts reuse stale artifacts.
pub const INSTRUMENT_VERSION: u32 = 1;

/// The value type of one mutable global, in the order `globals-get` returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GlobalKind {
    I32,
    I64,
    F32,
    F64,
}

/// What the instrumented component exposes: its memories and globals, in accessor order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// One entry per defined memory: (core instance index, initial pages).
    pub memories: Vec<(u32, u64)>,
    /// One entry per defined mutable global.
    pub globals: Vec<GlobalKind>,
}

/// An instrumented component and the layout of the state it exposes.
pub struct Instrumented {
    pub bytes: Vec<u8>,
    pub layout: Layout,
}

/// Why a component cannot be instrumented.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error("not a valid WebAssembly binary: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("this is a core wasm module, not a component; build journeys with `cairn build`")]
    CoreModule,
    #[error("unsupported component structure: {0}")]
    Unsupported(String),
    #[error(
        "core module {module} changes a table at run time ({op}); journeys must not mutate tables, which snapshots cannot capture"
    )]
    MutatesTable { module: u32, op: &'static str },
}

fn unsupported<T>(what: impl Into<String>) -> Result<T, InstrumentError> {
    Err(InstrumentError::Unsupported(what.into()))
}

/// Counts of the top-level component's index spaces, as the input leaves them.
#[derive(Default, Debug)]
struct IndexSpaces {
    types: u32,
    funcs: u32,
    instances: u32,
    core_funcs: u32,
    core_memories: u32,
    core_instances: u32,
    modules: u32,
}

impl IndexSpaces {
    fn add_component_item(&mut self, kind: ComponentExternalKind) -> Result<(), InstrumentError> {
        match kind {
            ComponentExternalKind::Func => self.funcs += 1,
            ComponentExternalKind::Type => self.types += 1,
            ComponentExternalKind::Instance => self.instances += 1,
            ComponentExternalKind::Component => {}
            ComponentExternalKind::Module => {
                return unsupported("imported or aliased core modules");
            }
            ComponentExternalKind::Value => return unsupported("component values"),
        }
        Ok(())
    }

    fn add_core_item(&mut self, kind: ExternalKind) {
        match kind {
            ExternalKind::Func | ExternalKind::FuncExact => self.core_funcs += 1,
            ExternalKind::Memory => self.core_memories += 1,
            ExternalKind::Table | ExternalKind::Global | ExternalKind::Tag => {}
        }
    }
}

/// Instruments a component. Deterministic: the same input gives the same output.
///
/// # Errors
/// Malformed input, a core module instead of a component, structures the
/// rewrite does not support (nested components with modules, imported
/// modules, start functions), or a module that mutates tables.
pub fn instrument(wasm: &[u8]) -> Result<Instrumented, InstrumentError> {
    let mut out = wasm_encoder::Component::new();
    let mut spaces = IndexSpaces::default();
    // core module index -> its state, for modules with any.
    let mut module_state: Vec<accessor::ModuleState> = Vec::new();
    // core instance index -> module index, for `instantiate`d instances.
    let mut instantiations: Vec<(u32, u32)> = Vec::new();
    let mut depth = 0usize;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if depth > 0 {
            match payload {
                Payload::ModuleSection { .. } if depth == 1 => {
                    return unsupported("a nested component that defines core modules");
                }
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth -= 1,
                _ => {}
            }
            continue;
        }
        match &payload {
            Payload::Version { encoding, .. } if *encoding == Encoding::Module => {
                return Err(InstrumentError::CoreModule);
            }
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let bytes = wasm
                    .get(unchecked_range.clone())
                    .ok_or_else(|| InstrumentError::Unsupported("truncated module".into()))?;
                let (rewritten, state) = rewrite_module(bytes, spaces.modules)?;
                out.section(&RawSection {
                    id: wasm_encoder::ComponentSectionId::CoreModule as u8,
                    data: &rewritten,
                });
                module_state.push(state);
                spaces.modules += 1;
                depth += 1;
                continue;
            }
            Payload::ComponentSection { .. } => {
                depth += 1;
            }
            Payload::InstanceSection(reader) => {
                for instance in reader.clone() {
                    if let Instance::Instantiate { module_index, .. } = instance? {
                        instantiations.push((spaces.core_instances, module_index));
                    }
                    spaces.core_instances += 1;
                }
            }
            Payload::ComponentInstanceSection(reader) => spaces.instances += reader.count(),
            Payload::ComponentTypeSection(reader) => spaces.types += reader.count(),
            Payload::ComponentAliasSection(reader) => {
                for alias in reader.clone() {
                    match alias? {
                        ComponentAlias::CoreInstanceExport { kind, .. } => {
                            spaces.add_core_item(kind)
                        }
                        ComponentAlias::InstanceExport { kind, .. } => {
                            spaces.add_component_item(kind)?
                        }
                        ComponentAlias::Outer { kind, .. } => match kind {
                            ComponentOuterAliasKind::CoreType
                            | ComponentOuterAliasKind::Component => {}
                            ComponentOuterAliasKind::Type => spaces.types += 1,
                            ComponentOuterAliasKind::CoreModule => {
                                return unsupported("outer aliases of core modules");
                            }
                        },
                    }
                }
            }
            Payload::ComponentCanonicalSection(reader) => {
                for func in reader.clone() {
                    match func? {
                        CanonicalFunction::Lift { .. } => spaces.funcs += 1,
                        _ => spaces.core_funcs += 1,
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader.clone() {
                    spaces.add_component_item(import?.ty.kind())?;
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader.clone() {
                    spaces.add_component_item(export?.kind)?;
                }
            }
            Payload::ComponentStartSection { .. } => {
                return unsupported("component start functions");
            }
            Payload::End(_) => break,
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&RawSection {
                id,
                data: &wasm[range],
            });
        }
    }

    let stateful: Vec<StatefulInstance> = instantiations
        .iter()
        .filter_map(|&(instance, module)| {
            let state = module_state.get(module as usize)?;
            (!state.memories.is_empty() || !state.globals.is_empty()).then(|| StatefulInstance {
                instance,
                state: state.clone(),
            })
        })
        .collect();
    let layout = Layout {
        memories: stateful
            .iter()
            .flat_map(|s| s.state.memories.iter().map(|m| (s.instance, m.ty.initial)))
            .collect(),
        globals: stateful
            .iter()
            .flat_map(|s| s.state.globals.iter().map(|g| g.kind))
            .collect(),
    };
    append_accessor(&mut out, &spaces, &stateful);
    Ok(Instrumented {
        bytes: out.finish(),
        layout,
    })
}

/// Adds the state exports to one core module; returns it and its state.
fn rewrite_module(
    bytes: &[u8],
    module_index: u32,
) -> Result<(Vec<u8>, accessor::ModuleState), InstrumentError> {
    let mut state = accessor::ModuleState::default();
    let mut imported_memories = 0u32;
    let mut imported_globals = 0u32;
    let mut existing_exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut sections: Vec<(u8, std::ops::Range<usize>)> = Vec::new();

    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import?.ty {
                        TypeRef::Memory(_) => imported_memories += 1,
                        TypeRef::Global(_) => imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for (i, memory) in reader.clone().into_iter().enumerate() {
                    let memory = memory?;
                    if memory.memory64 || memory.shared || memory.page_size_log2.is_some() {
                        return unsupported(
                            "64-bit, shared or custom-page-size memories (module {module_index})",
                        );
                    }
                    state.memories.push(accessor::MemoryExport {
                        export: format!("__cairn_mem_{}", imported_memories + i as u32),
                        index: imported_memories + i as u32,
                        ty: memory,
                    });
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.clone().into_iter().enumerate() {
                    let ty = global?.ty;
                    if !ty.mutable {
                        continue;
                    }
                    let kind = match ty.content_type {
                        ValType::I32 => GlobalKind::I32,
                        ValType::I64 => GlobalKind::I64,
                        ValType::F32 => GlobalKind::F32,
                        ValType::F64 => GlobalKind::F64,
                        other => {
                            return unsupported(format!(
                                "a mutable {other} global in module {module_index}"
                            ));
                        }
                    };
                    let index = imported_globals + i as u32;
                    state.globals.push(accessor::GlobalExport {
                        export: format!("__cairn_glob_{index}"),
                        index,
                        kind,
                        ty,
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export?;
                    if export.name.starts_with("__cairn_") {
                        return unsupported(format!(
                            "module {module_index} already exports the reserved name {}",
                            export.name
                        ));
                    }
                    existing_exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::CodeSectionEntry(body) => reject_table_mutation(body, module_index)?,
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
    }

    let mut exports = wasm_encoder::ExportSection::new();
    for (name, kind, index) in &existing_exports {
        let kind = RoundtripReencoder
            .export_kind(*kind)
            .map_err(|e| InstrumentError::Unsupported(format!("export kind: {e:?}")))?;
        exports.export(name, kind, *index);
    }
    for memory in &state.memories {
        exports.export(
            &memory.export,
            wasm_encoder::ExportKind::Memory,
            memory.index,
        );
    }
    for global in &state.globals {
        exports.export(
            &global.export,
            wasm_encoder::ExportKind::Global,
            global.index,
        );
    }

    // Sections after the export section in the binary's canonical order:
    // start, element, data count, code, data.
    const AFTER_EXPORT: [u8; 5] = [8, 9, 12, 10, 11];
    let mut module = wasm_encoder::Module::new();
    let mut exports_written = false;
    for (id, range) in sections {
        if id == 7 {
            module.section(&exports);
            exports_written = true;
            continue;
        }
        if !exports_written && AFTER_EXPORT.contains(&id) {
            module.section(&exports);
            exports_written = true;
        }
        module.section(&RawSection {
            id,
            data: &bytes[range],
        });
    }
    if !exports_written {
        module.section(&exports);
    }
    Ok((module.finish(), state))
}

/// Refuses code that changes a table after instantiation: tables hold
/// function references, which a snapshot cannot capture.
fn reject_table_mutation(
    body: &wasmparser::FunctionBody<'_>,
    module: u32,
) -> Result<(), InstrumentError> {
    use wasmparser::Operator as Op;
    let mut ops = body.get_operators_reader()?;
    while !ops.eof() {
        let op = match ops.read()? {
            Op::TableSet { .. } => "table.set",
            Op::TableGrow { .. } => "table.grow",
            Op::TableFill { .. } => "table.fill",
            Op::TableCopy { .. } => "table.copy",
            Op::TableInit { .. } => "table.init",
            _ => continue,
        };
        return Err(InstrumentError::MutatesTable { module, op });
    }
    Ok(())
}

/// Appends the accessor module, its wiring, and the exported state instance.
fn append_accessor(
    out: &mut wasm_encoder::Component,
    spaces: &IndexSpaces,
    stateful: &[StatefulInstance],
) {
    let plan = AccessorPlan::new(stateful);
    let memory_count = plan.memory_count();

    // 1. The sink the accessor calls with a guest memory range: a host import,
    //    lowered once per guest memory with that memory as its `memory` option.
    let mut types = ComponentTypeSection::new();
    let bytes_ty = spaces.types;
    types.defined_type().list(PrimitiveValType::U8);
    let sink_ty = spaces.types + 1;
    types
        .function()
        .params([
            ("mem", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("offset", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("data", ComponentValType::Type(bytes_ty)),
        ])
        .result(None);
    out.section(&types);
    let mut next_type = spaces.types + 2;

    let mut imports = ComponentImportSection::new();
    imports.import(SINK_IMPORT, ComponentTypeRef::Func(sink_ty));
    out.section(&imports);
    let sink_func = spaces.funcs;
    let mut next_func = spaces.funcs + 1;

    let mut aliases = ComponentAliasSection::new();
    for (instance, memory) in plan.memories() {
        aliases.alias(Alias::CoreInstanceExport {
            instance,
            kind: ExportKind::Memory,
            name: &memory.export,
        });
    }
    out.section(&aliases);
    let guest_memories = spaces.core_memories;
    let mut next_core_memory = spaces.core_memories + memory_count;

    let mut lowers = CanonicalFunctionSection::new();
    for m in 0..memory_count {
        lowers.lower(sink_func, [CanonicalOption::Memory(guest_memories + m)]);
    }
    out.section(&lowers);
    let sinks = spaces.core_funcs;
    let mut next_core_func = spaces.core_funcs + memory_count;

    let mut core_instances = InstanceSection::new();
    let sink_names: Vec<String> = (0..memory_count).map(accessor::sink_name).collect();
    core_instances.export_items(
        sink_names
            .iter()
            .enumerate()
            .map(|(m, name)| (name.as_str(), ExportKind::Func, sinks + m as u32)),
    );
    let host_instance = spaces.core_instances;
    out.section(&core_instances);

    // 2. The accessor module, instantiated with every stateful core instance.
    out.section(&ModuleSection(&plan.module()));
    let accessor_module = spaces.modules;
    let mut args: Vec<(String, ModuleArg)> = vec![(
        accessor::HOST_MODULE.to_string(),
        ModuleArg::Instance(host_instance),
    )];
    args.extend(stateful.iter().map(|s| {
        (
            accessor::instance_module(s.instance),
            ModuleArg::Instance(s.instance),
        )
    }));
    let mut core_instances = InstanceSection::new();
    core_instances.instantiate(accessor_module, args.iter().map(|(n, a)| (n.as_str(), *a)));
    out.section(&core_instances);
    let accessor_instance = host_instance + 1;

    // 3. Lift the accessor's functions and export them as one instance.
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: accessor_instance,
        kind: ExportKind::Memory,
        name: accessor::SCRATCH,
    });
    let scratch = next_core_memory;
    next_core_memory += 1;
    let _ = next_core_memory;
    aliases.alias(Alias::CoreInstanceExport {
        instance: accessor_instance,
        kind: ExportKind::Func,
        name: accessor::REALLOC,
    });
    let realloc = next_core_func;
    next_core_func += 1;
    let functions = plan.functions();
    let mut core_func_of: HashMap<&str, u32> = HashMap::new();
    for f in &functions {
        aliases.alias(Alias::CoreInstanceExport {
            instance: accessor_instance,
            kind: ExportKind::Func,
            name: &f.name,
        });
        core_func_of.insert(&f.name, next_core_func);
        next_core_func += 1;
    }
    out.section(&aliases);

    let mut types = ComponentTypeSection::new();
    let list_u8 = next_type;
    types.defined_type().list(PrimitiveValType::U8);
    let list_u32 = next_type + 1;
    types.defined_type().list(PrimitiveValType::U32);
    let list_u64 = next_type + 2;
    types.defined_type().list(PrimitiveValType::U64);
    next_type += 3;
    let mut func_types = HashMap::new();
    for f in &functions {
        if func_types.contains_key(&f.signature) {
            continue;
        }
        let u32_ty = ComponentValType::Primitive(PrimitiveValType::U32);
        let mut enc = types.function();
        match f.signature {
            accessor::Signature::Size => {
                enc.params::<_, ComponentValType>([]).result(Some(u32_ty));
            }
            accessor::Signature::Grow => {
                enc.params([("delta", u32_ty)])
                    .result(Some(ComponentValType::Primitive(PrimitiveValType::S32)));
            }
            accessor::Signature::Scan => {
                enc.params([("offset", u32_ty), ("len", u32_ty)])
                    .result(None);
            }
            accessor::Signature::WritePages => {
                enc.params([
                    ("pages", ComponentValType::Type(list_u32)),
                    ("data", ComponentValType::Type(list_u8)),
                ])
                .result(None);
            }
            accessor::Signature::GlobalsGet => {
                enc.params::<_, ComponentValType>([])
                    .result(Some(ComponentValType::Type(list_u64)));
            }
            accessor::Signature::GlobalsSet => {
                enc.params([("values", ComponentValType::Type(list_u64))])
                    .result(None);
            }
        }
        func_types.insert(f.signature, next_type);
        next_type += 1;
    }
    out.section(&types);

    let mut lifts = CanonicalFunctionSection::new();
    let mut lifted = Vec::new();
    for f in &functions {
        let options: Vec<CanonicalOption> = match f.signature {
            accessor::Signature::Size | accessor::Signature::Grow | accessor::Signature::Scan => {
                vec![]
            }
            accessor::Signature::GlobalsGet => vec![CanonicalOption::Memory(scratch)],
            accessor::Signature::WritePages | accessor::Signature::GlobalsSet => vec![
                CanonicalOption::Memory(scratch),
                CanonicalOption::Realloc(realloc),
            ],
        };
        lifts.lift(
            core_func_of[f.name.as_str()],
            func_types[&f.signature],
            options,
        );
        lifted.push((f.name.clone(), next_func));
        next_func += 1;
    }
    out.section(&lifts);

    let mut instances = ComponentInstanceSection::new();
    instances.export_items(
        lifted
            .iter()
            .map(|(name, func)| (name.as_str(), ComponentExportKind::Func, *func)),
    );
    out.section(&instances);
    let mut exports = ComponentExportSection::new();
    exports.export(
        STATE_INSTANCE,
        ComponentExportKind::Instance,
        spaces.instances,
        None,
    );
    out.section(&exports);
}
