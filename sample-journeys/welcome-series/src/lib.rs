//! Welcome series: welcome now, tips a day later, then wait up to three days
//! for a purchase; thank the buyer, or remind the one who did not buy.
//!
//! The journey keeps a history and a tally on its heap across every wait, and
//! puts both into its last message, so a lost or corrupted snapshot shows in
//! the outbox.

use cairn_journey::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn meta() -> Meta {
    Meta::new("welcome-series", "Welcome series")
        .trigger("signed_up")
        .exit_on("unsubscribed")
        .entry_limit(EntryLimit::Once)
        .execution_timeout(days(10))
        .template("welcome")
        .template("tips")
        .template("thank-you")
        .template("reminder")
}

struct Memory {
    history: Vec<String>,
    tally: BTreeMap<String, u32>,
}

impl Memory {
    fn note(&mut self, ctx: &Ctx, what: &str) {
        self.history
            .push(format!("{what}@{}", ctx.now().as_millis()));
        *self.tally.entry(what.to_string()).or_default() += 1;
        ctx.checkpoint(what);
    }
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let input: Value = serde_json::from_str(&start.input).map_err(|e| format!("bad input: {e}"))?;
    let name = input["name"].as_str().unwrap_or("there").to_string();
    let mut memory = Memory {
        history: Vec::new(),
        tally: BTreeMap::new(),
    };

    // An A/B test of the welcome subject line.
    let variant = if ctx.random_u64() % 2 == 0 { "a" } else { "b" };
    ctx.send(
        Email::to("")
            .template("welcome")
            .props(json!({ "name": name, "variant": variant }).to_string())
            .category("onboarding"),
    )?;
    memory.note(&ctx, "welcomed");

    ctx.sleep(days(1)).await?;
    ctx.send(
        Email::to("")
            .template("tips")
            .props(json!({ "name": name, "day": 1 }).to_string())
            .category("onboarding"),
    )?;
    memory.note(&ctx, "tips-sent");

    match ctx.wait_for_event("purchased", days(3)).await? {
        Waited::Event(event) => {
            let purchase: Value = serde_json::from_str(&event.properties).unwrap_or(Value::Null);
            memory.note(&ctx, "converted");
            ctx.send(
                Email::to("")
                    .template("thank-you")
                    .props(
                        json!({
                            "name": name,
                            "item": purchase["item"],
                            "history": memory.history,
                            "tally": memory.tally,
                        })
                        .to_string(),
                    )
                    .category("transactional"),
            )?;
        }
        Waited::TimedOut => {
            memory.note(&ctx, "reminded");
            ctx.send(
                Email::to("")
                    .template("reminder")
                    .props(
                        json!({
                            "name": name,
                            "history": memory.history,
                            "tally": memory.tally,
                        })
                        .to_string(),
                    )
                    .category("onboarding"),
            )?;
        }
    }
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
