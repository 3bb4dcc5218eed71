//! Host bindings for the `cairn:journey/journey` world, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "journey",
    imports: { default: trappable },
});
