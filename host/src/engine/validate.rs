//! Deploy-time checks on a component's imports, exports and code, before
//! any compilation: a journey may import only cairn's interfaces, and its
//! code may not change a table after instantiation (snapshots hold linear
//! memories and globals; a mutated table would not survive a restore).

use wasmparser::{Encoding, Operator, Parser, Payload};

/// What the checks found that later stages need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    /// The largest initial size of any memory the component declares, in bytes.
    pub largest_initial_memory: u64,
}

/// The interfaces a journey may import (any other import is refused).
const ALLOWED_IMPORTS: [&str; 2] = ["cairn:journey/types@0.1.0", "cairn:journey/durable@0.1.0"];
/// The functions the `journey` world exports.
const REQUIRED_EXPORTS: [&str; 3] = ["meta", "start", "resume"];
/// Names instrumentation adds; a component may not bring its own.
const RESERVED: [&str; 2] = [
    crate::snapshot::instrument::STATE_INSTANCE,
    crate::snapshot::instrument::SINK_IMPORT,
];

/// Checks the top-level imports and exports of a component.
///
/// # Errors
/// A message naming the offending import or the missing export.
pub fn check(wasm: &[u8]) -> Result<Checked, String> {
    if !wasm.starts_with(b"\0asm") {
        return Err(
            "not a valid WebAssembly binary: it does not start with the `\\0asm` magic number"
                .into(),
        );
    }
    let mut checked = Checked::default();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| {
            // wasmparser pretty-prints some errors over several lines.
            let message = e.to_string();
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("not a valid WebAssembly binary: {message}")
        })?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding == Encoding::Module => {
                return Err(
                    "this is a core wasm module, not a component: build journeys with \
                            `cairn build`, which componentizes them"
                        .into(),
                );
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| format!("malformed import section: {e}"))?;
                    // Type imports (the world's `use`) grant nothing; only
                    // instances, functions and the like are capabilities.
                    if matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        continue;
                    }
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| format!("malformed memory section: {e}"))?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let bytes = memory.initial.saturating_mul(page);
                    checked.largest_initial_memory = checked.largest_initial_memory.max(bytes);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut operators = body
                    .get_operators_reader()
                    .map_err(|e| format!("malformed code: {e}"))?;
                while !operators.eof() {
                    let op = operators
                        .read()
                        .map_err(|e| format!("malformed code: {e}"))?;
                    if let Some(name) = table_mutation(&op) {
                        return Err(format!(
                            "the component's code uses `{name}`: journeys may not change tables \
                             after instantiation, because snapshots do not hold tables"
                        ));
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| format!("malformed export section: {e}"))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    for name in &imports {
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "the component imports {name:?}, a name reserved for the host"
            ));
        }
        let unversioned = name.split('@').next().unwrap_or(name);
        if ALLOWED_IMPORTS.contains(&name.as_str())
            || (name.starts_with("wasi:")
                && name.contains("@0.2.")
                && crate::durable::wasi::INTERFACES.contains(&unversioned))
        {
            continue;
        }
        if name.starts_with("wasi:") {
            return Err(format!(
                "the component imports {name:?}: cairn provides only the resource-free WASI \
                 0.2 interfaces ({}), because streams, files, sockets and pollables are \
                 resources a snapshot cannot carry; build Rust journeys for \
                 wasm32-unknown-unknown (`cairn build` does) and use the durable context's \
                 now, log and random-u64",
                crate::durable::wasi::INTERFACES.join(", ")
            ));
        }
        return Err(format!(
            "the component imports {name:?}, which cairn does not provide; a journey may \
             import only {} and resource-free WASI",
            ALLOWED_IMPORTS.join(" and ")
        ));
    }
    for name in &exports {
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "the component exports {name:?}, a name reserved for the host"
            ));
        }
    }
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|f| !exports.iter().any(|e| e == f))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the component does not export the cairn:journey/journey world: missing {}",
            missing.join(", ")
        ));
    }
    Ok(checked)
}

/// The name of an instruction that changes a table at run time.
fn table_mutation(op: &Operator<'_>) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        _ => return None,
    })
}
