// Welcome series, in JavaScript: the same journey as
// sample-journeys/welcome-series (Rust). Welcome now, tips a day later, then
// wait up to three days for a purchase; thank the buyer or remind the one
// who did not buy. Its history and tally live on the heap across every wait
// and end up in the last message.
import { journey, days } from "cairn-journey";

const sortedObject = (map) => Object.fromEntries([...map].sort(([a], [b]) => (a < b ? -1 : 1)));

export default journey({
  meta: {
    id: "welcome-series",
    name: "Welcome series",
    trigger: "signed_up",
    exitOn: ["unsubscribed"],
    entryLimit: "once",
    executionTimeout: days(10),
    templates: ["welcome", "tips", "thank-you", "reminder"],
  },
  async run(ctx, start) {
    const input = JSON.parse(start.input);
    const name = input.name ?? "there";
    const history = [];
    const tally = new Map();
    const note = (what) => {
      history.push(`${what}@${ctx.now()}`);
      tally.set(what, (tally.get(what) ?? 0) + 1);
      ctx.checkpoint(what);
    };

    // An A/B test of the welcome subject line.
    const variant = ctx.randomU64() % 2n === 0n ? "a" : "b";
    ctx.send({ to: "", template: "welcome", props: { name, variant }, category: "onboarding" });
    note("welcomed");

    await ctx.sleep(days(1));
    ctx.send({ to: "", template: "tips", props: { name, day: 1 }, category: "onboarding" });
    note("tips-sent");

    const waited = await ctx.waitForEvent("purchased", days(3));
    if (waited.event) {
      note("converted");
      const item = waited.event.properties.item ?? null;
      ctx.send({
        to: "",
        template: "thank-you",
        props: { name, item, history, tally: sortedObject(tally) },
        category: "transactional",
      });
    } else {
      note("reminded");
      ctx.send({
        to: "",
        template: "reminder",
        props: { name, history, tally: sortedObject(tally) },
        category: "onboarding",
      });
    }
  },
});
