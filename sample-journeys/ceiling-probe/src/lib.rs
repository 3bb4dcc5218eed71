//! Ceiling probe: asks for a wait beyond its 30-day execution ceiling and
//! handles the refusal by waiting until the last allowed moment instead.
//!
//! Input `{"wait": "sleep" | "sleep-until" | "event", "handle": true}` picks
//! which wait overreaches; with `"handle": false` the error propagates and the
//! run fails with the ceiling in its reason.

use cairn_journey::prelude::*;
use serde_json::Value;

fn meta() -> Meta {
    Meta::new("ceiling-probe", "Execution ceiling probe").execution_timeout(days(30))
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let input: Value = serde_json::from_str(&start.input).map_err(|e| format!("bad input: {e}"))?;
    let handle = input["handle"].as_bool().unwrap_or(true);
    let too_far = days(60);

    let refused = match input["wait"].as_str().unwrap_or("sleep") {
        "sleep" => ctx.sleep(too_far).await.err(),
        "sleep-until" => ctx.sleep_until(start.started_at + too_far).await.err(),
        "event" => ctx.wait_for_event("renewed", too_far).await.err(),
        other => return Err(format!("unknown wait kind {other:?}").into()),
    };
    let Some(err) = refused else {
        return Err("the host accepted a wait beyond the execution ceiling".into());
    };
    if !handle {
        return Err(err.into());
    }
    let WaitError::ExceedsCeiling(ceiling) = err else {
        return Err(err.into());
    };
    ctx.checkpoint("ceiling-refused");
    ctx.log(
        LogLevel::Warn,
        &format!(
            "wanted {} but the ceiling is {}",
            Timestamp(ceiling.requested),
            Timestamp(ceiling.limit)
        ),
    );
    ctx.sleep_until(Timestamp(ceiling.limit)).await?;
    ctx.send(Email::to("").template("final-notice"))?;
    ctx.checkpoint("final-notice-sent");
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
