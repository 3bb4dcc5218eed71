//! Sleeps a minute `n` times (input `{"n": 1000}`), keeping a counter and a
//! bounded ring of notes on its heap: its state does not grow with history, so
//! resume cost at step 1000 can be compared with step 1.

use cairn_journey::prelude::*;
use std::collections::VecDeque;

fn meta() -> Meta {
    Meta::new("looper", "Sleeps in a loop").execution_timeout(days(365))
}

fn parse_n(input: &str) -> u64 {
    input
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let n = parse_n(&start.input);
    let mut ring: VecDeque<String> = VecDeque::with_capacity(16);
    let mut sum: u64 = 0;
    for i in 0..n {
        ctx.sleep(minutes(1)).await?;
        sum = sum.wrapping_add(i * i);
        if ring.len() == 16 {
            ring.pop_front();
        }
        ring.push_back(format!("step {i} sum {sum}"));
    }
    ctx.send(Email::to("").template("looped").props(format!(
        "{{\"n\":{n},\"sum\":{sum},\"last\":{:?}}}",
        ring.back().map(String::as_str).unwrap_or("")
    )))?;
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
