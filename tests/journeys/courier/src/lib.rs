//! Sends what its input asks for and reports every receipt, for the
//! delivery tests: each send's status (or error) and, if asked, the next
//! local time it computed and when it woke there. The report is the run's
//! last checkpoint (JSON).
//!
//! Input: `{"sends": [{"template", "category"?, "to"?, "props"?}],
//!          "local": {"hour", "minute", "weekdays"?: ["monday"], "zone"?}}`

use cairn_journey::prelude::*;
use serde_json::{Value, json};

fn meta() -> Meta {
    Meta::new("courier", "Sends on request").template("welcome")
}

fn weekday(name: &str) -> Weekday {
    match name {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        _ => Weekday::Sunday,
    }
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    let input: Value = serde_json::from_str(&start.input).map_err(|e| e.to_string())?;
    let mut report = Vec::new();
    for send in input["sends"].as_array().cloned().unwrap_or_default() {
        let mut message = Email::to(send["to"].as_str().unwrap_or(""))
            .template(send["template"].as_str().unwrap_or(""))
            .props(send.get("props").cloned().unwrap_or(json!({})).to_string());
        if let Some(category) = send["category"].as_str() {
            message = message.category(category);
        }
        report.push(match ctx.send(message) {
            Ok(receipt) => match receipt.status {
                SendStatus::Queued => json!("queued"),
                SendStatus::Suppressed => json!("suppressed"),
                SendStatus::Unsubscribed => json!("unsubscribed"),
                SendStatus::FrequencyCapped => json!("frequency-capped"),
                SendStatus::DeferredUntil(at) => json!({ "deferred-until": at }),
            },
            Err(err) => json!({ "error": Error::from(err).to_string() }),
        });
    }
    if let Some(local) = input.get("local") {
        let mut at = LocalTime::at(
            local["hour"].as_u64().unwrap_or(0) as u8,
            local["minute"].as_u64().unwrap_or(0) as u8,
        );
        let days: Vec<Weekday> = local["weekdays"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(weekday)
            .collect();
        at = at.on(&days);
        if let Some(zone) = local["zone"].as_str() {
            at = at.in_zone(zone);
        }
        match ctx.next_local_time(at) {
            Ok(t) => {
                report.push(json!({ "local": t.as_millis() }));
                ctx.checkpoint(&Value::Array(report.clone()).to_string());
                ctx.sleep_until(t).await?;
                report.push(json!({ "woke": ctx.now().as_millis() }));
            }
            Err(err) => report.push(json!({ "error": err.to_string() })),
        }
    }
    ctx.checkpoint(&Value::Array(report).to_string());
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
