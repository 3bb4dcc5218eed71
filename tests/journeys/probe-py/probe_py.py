"""Asks for a wait beyond its 30-day ceiling, catches the WaitError, waits
until the ceiling instead, and reports what it caught and what its heap (a
dict and a list) held across both waits."""

from cairn_journey import WaitError, days, journey


@journey(id="probe-py", name="Typed errors in Python", execution_timeout=days(30))
async def run(ctx, start):
    notes = {"started": str(ctx.now())}
    seen = []
    try:
        await ctx.sleep(days(60))
        raise RuntimeError("the host accepted a wait beyond the ceiling")
    except WaitError as caught:
        error = caught
    ctx.checkpoint("ceiling-refused")
    seen.append(f"refused:{error.kind}")
    notes["limit"] = str(error.limit)
    await ctx.sleep_until(error.limit)
    seen.append(f"woke:{ctx.now()}")
    monday_ten = ctx.next_local_time(10, 0, weekdays=["monday"], timezone="Europe/Berlin")
    try:
        ctx.next_local_time(25, 0)
        bad_local = None
    except ValueError as e:
        bad_local = str(e)
    ctx.send("final-notice", props={
        "kind": error.kind, "limit": str(error.limit), "requested": str(error.requested),
        "message": str(error), "notes": notes, "seen": seen,
        "mondayTen": str(monday_ten), "badLocal": bad_local,
    })
