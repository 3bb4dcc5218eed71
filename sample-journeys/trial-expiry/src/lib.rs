//! Trial expiry: warn three days before the trial ends (a calendar deadline,
//! so `sleep_until`), wait for a subscription until the end, then either
//! welcome the customer or say the trial expired and try a win-back a week
//! later.
//!
//! Input: `{"trial_ends_at": <unix ms>, "plan": "pro"}`.

use cairn_journey::Condition;
use cairn_journey::prelude::*;
use serde_json::{Value, json};

fn meta() -> Meta {
    Meta::new("trial-expiry", "Trial expiry")
        .trigger("trial_started")
        .exit_on("account_deleted")
        .execution_timeout(days(45))
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let input: Value = serde_json::from_str(&start.input).map_err(|e| format!("bad input: {e}"))?;
    let ends_at = Timestamp(
        input["trial_ends_at"]
            .as_u64()
            .ok_or("input needs trial_ends_at (unix milliseconds)")?,
    );
    let plan = input["plan"].as_str().unwrap_or("pro").to_string();

    let warn_at = Timestamp(
        ends_at
            .as_millis()
            .saturating_sub(days(3).as_millis() as u64),
    );
    ctx.sleep_until(warn_at).await?;
    ctx.send(
        Email::to("")
            .template("trial-ending")
            .props(json!({ "plan": plan, "ends_at": ends_at.to_string() }).to_string()),
    )?;
    ctx.checkpoint("warned");

    let left = ends_at - ctx.now();
    match ctx
        .wait_for_event("subscribed", left)
        .filter(Condition::eq("plan", json!(plan).to_string()))
        .await?
    {
        Waited::Event(_) => {
            ctx.checkpoint("subscribed");
            ctx.send(
                Email::to("")
                    .template("subscription-welcome")
                    .category("transactional"),
            )?;
        }
        Waited::TimedOut => {
            ctx.checkpoint("expired");
            ctx.send(Email::to("").template("trial-expired"))?;
            ctx.sleep_until(ends_at + days(7)).await?;
            ctx.send(Email::to("").template("win-back").category("marketing"))?;
            ctx.checkpoint("win-back-sent");
        }
    }
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
