// Asks for a wait beyond its 30-day ceiling, catches the WaitError, waits
// until the ceiling instead, and reports what it caught and what its heap
// (a Map and an array) held across both waits.
import { journey, days, WaitError } from "cairn-journey";

export default journey({
  meta: { id: "probe-js", name: "Typed errors in JavaScript", executionTimeout: days(30) },
  async run(ctx) {
    const notes = new Map([["started", String(ctx.now())]]);
    const seen = [];
    let caught;
    try {
      await ctx.sleep(days(60));
    } catch (error) {
      caught = error;
    }
    if (!(caught instanceof WaitError)) throw new Error(`expected a WaitError, got ${caught}`);
    ctx.checkpoint("ceiling-refused");
    seen.push(`refused:${caught.kind}`);
    notes.set("limit", String(caught.limit));
    await ctx.sleepUntil(caught.limit);
    seen.push(`woke:${ctx.now()}`);
    const mondayTen = ctx.nextLocalTime(10, 0, { weekdays: ["monday"], timezone: "Europe/Berlin" });
    let badLocal;
    try {
      ctx.nextLocalTime(25, 0);
    } catch (error) {
      badLocal = error.message;
    }
    ctx.send({
      template: "final-notice",
      props: {
        kind: caught.kind,
        limit: String(caught.limit),
        requested: String(caught.requested),
        message: caught.message,
        notes: Object.fromEntries(notes),
        seen,
        mondayTen: String(mondayTen),
        badLocal,
      },
    });
  },
});
