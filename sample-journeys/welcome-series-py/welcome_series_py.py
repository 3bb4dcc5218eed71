"""Welcome series, in Python: the same journey as sample-journeys/welcome-series
(Rust). Its history and tally live on the heap across every wait."""

from cairn_journey import Event, days, journey


@journey(id="welcome-series", name="Welcome series", trigger="signed_up",
         exit_on=["unsubscribed"], entry_limit="once", execution_timeout=days(10),
         templates=["welcome", "tips", "thank-you", "reminder"])
async def run(ctx, start):
    name = start.json().get("name", "there")
    history = []
    tally = {}

    def note(what):
        history.append(f"{what}@{ctx.now()}")
        tally[what] = tally.get(what, 0) + 1
        ctx.checkpoint(what)

    variant = "a" if ctx.random_u64() % 2 == 0 else "b"
    ctx.send("welcome", props={"name": name, "variant": variant}, category="onboarding")
    note("welcomed")
    await ctx.sleep(days(1))
    ctx.send("tips", props={"name": name, "day": 1}, category="onboarding")
    note("tips-sent")
    waited = await ctx.wait_for_event("purchased", days(3))
    if isinstance(waited, Event):
        note("converted")
        ctx.send("thank-you", props={"name": name, "item": waited.properties.get("item"),
                                     "history": history, "tally": tally}, category="transactional")
    else:
        note("reminded")
        ctx.send("reminder", props={"name": name, "history": history, "tally": tally},
                 category="onboarding")
