//! A hostile tenant's journey: it waits an hour, then attacks the host in the
//! way its input names (`{"attack": "loop"}`), to prove that each attack fails
//! only its own run, with the limit it hit named in the reason.
//!
//! Attacks: `loop` (CPU), `memory` (grow until refused), `recursion` (stack),
//! `panic`, `huge-send` (a 1 MiB message), `snapshot-bomb` (16 MiB of
//! incompressible heap kept across a wait), `import-flood` (host calls in a
//! loop). `work` is the benign CPU-heavy step the limits benchmark times:
//! `{"attack": "work", "n": 1000000}` hashes `n` rounds, then completes.

use cairn_journey::prelude::*;
use std::hint::black_box;

fn meta() -> Meta {
    Meta::new("hostile", "Attacks the host after its first wait")
}

fn number(input: &str, key: &str) -> u64 {
    input
        .split_once(&format!("\"{key}\""))
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn attack(input: &str) -> &str {
    input
        .split_once("\"attack\"")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .unwrap_or("")
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // black_box keeps the call from becoming a loop.
    black_box(recurse(black_box(depth - 1))) ^ depth
}

fn work(rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..rounds {
        h = (h ^ i).wrapping_mul(0x0100_0000_01b3);
        h = h.rotate_left(7) ^ (h >> 3);
    }
    h
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    ctx.sleep(hours(1)).await?;
    match attack(&start.input) {
        "loop" => {
            let mut i: u64 = 0;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "recursion" => {
            black_box(recurse(black_box(u64::MAX)));
        }
        "panic" => panic!("the hostile journey panicked on purpose"),
        "huge-send" => {
            let blob = "x".repeat(1 << 20);
            ctx.send(
                Email::to("victim@example.com")
                    .template("huge")
                    .props(format!("{{\"blob\":\"{blob}\"}}")),
            )?;
        }
        "snapshot-bomb" => {
            let mut seed = ctx.random_u64() | 1;
            let heap: Vec<u64> = (0..(16 << 20) / 8)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                })
                .collect();
            ctx.sleep(hours(1)).await?;
            black_box(&heap);
        }
        "import-flood" => loop {
            black_box(ctx.now());
        },
        "work" => {
            let h = work(number(&start.input, "n"));
            ctx.checkpoint(&format!("worked {h:x}"));
        }
        other => return Err(format!("unknown attack {other:?}").into()),
    }
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
