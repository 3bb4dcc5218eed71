//! Version 2 of the greeter journey (see ../greeter-v1/src/journey.rs).

const VERSION: &str = "v2";

include!("../../greeter-v1/src/journey.rs");
