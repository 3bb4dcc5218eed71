//! A journey that reads time and randomness through WASI 0.2 imports, as
//! toolchains' default outputs do, instead of the durable context: it must
//! deploy, see the step's logical time, and snapshot like any other.

use cairn_journey::prelude::*;

mod wasi {
    wit_bindgen::generate!({
        inline: r#"
            package wasi:clocks@0.2.0;
            interface wall-clock {
                record datetime { seconds: u64, nanoseconds: u32 }
                now: func() -> datetime;
            }
            interface monotonic-clock {
                type instant = u64;
                now: func() -> instant;
            }
            world clocks {
                import wall-clock;
                import monotonic-clock;
            }
        "#,
        world: "clocks",
    });
}

mod random {
    wit_bindgen::generate!({
        inline: r#"
            package wasi:random@0.2.0;
            interface random {
                get-random-bytes: func(len: u64) -> list<u8>;
                get-random-u64: func() -> u64;
            }
            world rand { import random; }
        "#,
        world: "rand",
    });
}

use random::wasi::random::random as wasi_random;
use wasi::wasi::clocks::{monotonic_clock, wall_clock};

fn meta() -> Meta {
    Meta::new("wasi-clock", "Reads WASI clocks and randomness")
}

/// What WASI reported at one step, as JSON.
fn reading() -> String {
    let wall = wall_clock::now();
    let wall_ms = wall.seconds * 1000 + u64::from(wall.nanoseconds) / 1_000_000;
    let bytes = wasi_random::get_random_bytes(16);
    format!(
        r#"{{"wall_ms":{wall_ms},"monotonic_ns":{},"random":{},"bytes":{}}}"#,
        monotonic_clock::now(),
        wasi_random::get_random_u64(),
        bytes.len()
    )
}

async fn run(ctx: Ctx, _start: Start) -> Result<()> {
    let first = reading();
    let first_ctx_now = ctx.now().as_millis();
    ctx.sleep(hours(1)).await?;
    let second = reading();
    ctx.send(Email::to("ops@example.com").template("wasi").props(format!(
        r#"{{"first":{first},"first_ctx_now":{first_ctx_now},"second":{second},"second_ctx_now":{}}}"#,
        ctx.now().as_millis()
    )))?;
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
