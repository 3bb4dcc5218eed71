//! Sleeps once, then panics: a failed run must record the panic message.

use cairn_journey::prelude::*;

fn meta() -> Meta {
    Meta::new("panicker", "Panics after its first wait")
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    ctx.checkpoint("before-sleep");
    ctx.sleep(hours(1)).await?;
    let items: Vec<u32> = Vec::new();
    if start.input.contains("index") {
        // An out-of-bounds index, as a real bug would be.
        let i = start.input.len();
        return Err(format!("unreachable {}", items[i]).into());
    }
    panic!("journey bug for user {}", start.user_id);
}

cairn_journey::journey!(meta: meta(), run: run);
