// The greeter journey, shared by greeter-v1 and greeter-v2, which differ
// only in VERSION: two versions of one journey id, for the versioning tests.

use cairn_journey::prelude::*;

fn meta() -> Meta {
    Meta::new("greeter", "Greets a day after it starts")
}

async fn run(ctx: Ctx, start: Start) -> Result<()> {
    ctx.sleep(days(1)).await?;
    ctx.send(
        Email::to(format!("{}@example.com", start.user_id))
            .template(format!("hello-{VERSION}"))
            .props("{}"),
    )?;
    Ok(())
}

cairn_journey::journey!(meta: meta(), run: run);
