//! Version 1 of the greeter journey (see journey.rs).

const VERSION: &str = "v1";

include!("journey.rs");
