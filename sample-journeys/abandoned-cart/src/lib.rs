//! Abandoned cart: an hour after a non-empty cart is abandoned, remind the
//! user; a day later, offer a discount. Placing the order ends the journey
//! at once (exit-on), wherever it is. One entry per user per week.

use cairn_journey::Condition;
use cairn_journey::prelude::*;
use serde_json::{Value, json};

fn meta() -> Meta {
    Meta::new("abandoned-cart", "Abandoned cart")
        .trigger(EventRule::new("cart_abandoned").when(Condition::gt("cart_value", "0")))
        .exit_on("order_placed")
        .entry_limit(EntryLimit::OncePerPeriod(days(7)))
        .execution_timeout(days(3))
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let cart: Value = serde_json::from_str(&start.input).map_err(|e| format!("bad input: {e}"))?;
    let value = cart["cart_value"].as_f64().unwrap_or(0.0);

    ctx.sleep(hours(1)).await?;
    ctx.send(
        Email::to("")
            .template("cart-reminder")
            .props(json!({ "cart_value": value }).to_string())
            .category("marketing"),
    )?;
    ctx.checkpoint("reminded");

    ctx.sleep(days(1)).await?;
    let discount = if value >= 100.0 { 15 } else { 10 };
    ctx.send(
        Email::to("")
            .template("cart-discount")
            .props(json!({ "cart_value": value, "discount_percent": discount }).to_string())
            .category("marketing"),
    )?;
    ctx.checkpoint("discount-offered");
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
