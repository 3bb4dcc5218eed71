// cairn-journey: write cairn journeys in JavaScript.
//
// A journey is an async function that awaits durable waits:
//
//   import { journey, days } from "cairn-journey";
//   export default journey({
//     meta: { id: "welcome", name: "Welcome", trigger: "signed_up" },
//     async run(ctx, start) {
//       ctx.send({ to: "", template: "welcome", props: { name: "Ada" } });
//       await ctx.sleep(days(1));
//       ...
//     },
//   });
//
// The host snapshots the whole instance at every wait and restores it into a
// fresh instance when the wait ends, so everything the journey keeps in
// variables survives days of waiting. The SDK owns the component's exports:
// `start` and `resume` resolve when the journey reaches its next wait point or
// ends, never by awaiting the durable promise itself (that would trap).
import * as durable from "cairn:journey/durable@0.1.0";

const MS = { second: 1000n, minute: 60_000n, hour: 3_600_000n, day: 86_400_000n };
const ms = (n, unit) => BigInt(n) * unit;
/** Durations in milliseconds (BigInt), as the host counts them. */
export const millis = (n) => ms(n, 1n);
export const seconds = (n) => ms(n, MS.second);
export const minutes = (n) => ms(n, MS.minute);
export const hours = (n) => ms(n, MS.hour);
export const days = (n) => ms(n, MS.day);

/** A wait the host refused: `kind` is "exceeds-ceiling", "already-waiting" or "invalid". */
export class WaitError extends Error {
  constructor(payload) {
    const { tag, val } = payload;
    const detail =
      tag === "exceeds-ceiling"
        ? `the wait would end at ${val.requested}, after the run's execution ceiling ${val.limit}`
        : tag === "already-waiting"
          ? `wait ${val} is already registered in this step`
          : String(val);
    super(`wait refused (${tag}): ${detail}`);
    this.name = "WaitError";
    this.kind = tag;
    if (tag === "exceeds-ceiling") {
      this.limit = val.limit;
      this.requested = val.requested;
    }
  }
}

/** A message the host refused: `kind` is "invalid" or "too-large". */
export class SendError extends Error {
  constructor(payload) {
    const { tag, val } = payload;
    super(tag === "too-large" ? `message too large: the limit is ${val} bytes` : `invalid message: ${val}`);
    this.name = "SendError";
    this.kind = tag;
  }
}

// Conditions on event properties, for triggers, exit rules and event waits.
const condition = (op) => (property, value) => ({
  property,
  op,
  value: value === undefined ? "null" : JSON.stringify(value),
});
export const eq = condition("eq");
export const neq = condition("neq");
export const gt = condition("gt");
export const gte = condition("gte");
export const lt = condition("lt");
export const lte = condition("lte");
export const contains = condition("contains");
export const exists = (property) => ({ property, op: "exists", value: "null" });

// The run's single in-flight wait, and the export call waiting for news.
let wait = null; // { id, resolve, reject, kind }
let stepDone = null; // resolves the current export call with a `step`

function finish(step) {
  const done = stepDone;
  stepDone = null;
  if (done) done(step);
}

function register(kind, call) {
  let id;
  try {
    id = call();
  } catch (e) {
    return Promise.reject(e && e.payload ? new WaitError(e.payload) : e);
  }
  return new Promise((resolve, reject) => {
    wait = { id, kind, resolve, reject };
    finish({ tag: "waiting", val: id });
  });
}

const toMessage = (m) => ({
  channel: m.channel ?? "email",
  to: m.to ?? "",
  template: m.template,
  props: typeof m.props === "string" ? m.props : JSON.stringify(m.props ?? {}),
  category: m.category,
  label: m.label,
});

/** The durable context a journey gets. */
class Ctx {
  /** Waits `duration` ms (BigInt, e.g. `days(1)`). Throws a WaitError past the ceiling. */
  sleep(duration) {
    return register("timer", () => durable.sleep(BigInt(duration)));
  }
  /** Waits until unix ms `at`. */
  sleepUntil(at) {
    return register("timer", () => durable.sleepUntil(BigInt(at)));
  }
  /**
   * Waits for the user's event `name` (optionally matching `filter`
   * conditions) or `timeout`, whichever is first. Resolves with
   * `{ event: { name, properties, timestamp } }` or `{ timedOut: true }`.
   */
  waitForEvent(name, timeout, filter = []) {
    return register("event", () => durable.waitForEvent(name, BigInt(timeout), filter));
  }
  /** A milestone operators see in the run's timeline. */
  checkpoint(label) {
    durable.checkpoint(label);
  }
  /**
   * Queues a message: `{ to, template, props, category?, label?, channel? }`.
   * Returns the receipt `{ key, status }`; throws a SendError if refused.
   */
  send(message) {
    try {
      return durable.send(toMessage(message));
    } catch (e) {
      throw e && e.payload ? new SendError(e.payload) : e;
    }
  }
  /**
   * The first instant (unix ms, BigInt) after now when the clock in the
   * user's time zone reads `hour:minute`, for `sleepUntil`. Options:
   * `weekdays` (e.g. ["monday"]) and `timezone` (an IANA zone instead of the
   * user's). Throws an Error naming a bad hour, minute or zone.
   */
  nextLocalTime(hour, minute, { weekdays = [], timezone } = {}) {
    try {
      return durable.nextLocalTime({ hour, minute, weekdays, timezone });
    } catch (e) {
      throw new Error(`invalid local time: ${e && e.payload !== undefined ? e.payload : e}`);
    }
  }
  /** The step's time, unix ms (BigInt): when its wait ended. */
  now() {
    return durable.now();
  }
  /** A random u64 (BigInt), the same if a crashed step runs again. */
  randomU64() {
    return durable.randomU64();
  }
  log(message, level = "info") {
    durable.log(level, String(message));
  }
}

function toRule(rule) {
  if (typeof rule === "string") return { event: rule, conditions: [] };
  return { event: rule.event, conditions: rule.conditions ?? rule.when ?? [] };
}

function toEntryLimit(limit) {
  if (limit === undefined || limit === "unlimited") return { tag: "unlimited" };
  if (limit === "once") return { tag: "once" };
  if (limit && limit.oncePer !== undefined) return { tag: "once-per-period", val: BigInt(limit.oncePer) };
  throw new Error(`entryLimit must be "once", "unlimited" or { oncePer: duration }, not ${JSON.stringify(limit)}`);
}

function toMeta(meta) {
  return {
    id: meta.id,
    name: meta.name ?? meta.id,
    trigger: meta.trigger === undefined ? undefined : toRule(meta.trigger),
    exitOn: (meta.exitOn ?? []).map(toRule),
    entryLimit: toEntryLimit(meta.entryLimit),
    executionTimeout: meta.executionTimeout === undefined ? undefined : BigInt(meta.executionTimeout),
    templates: meta.templates ?? [],
  };
}

function describe(error) {
  if (error instanceof Error) return error.stack ? `${error.message}\n${error.stack}` : error.message;
  return String(error);
}

/**
 * Declares a journey: `meta` (id, name, trigger, exitOn, entryLimit,
 * executionTimeout, templates) and `async run(ctx, start)`, where `start` is
 * `{ userId, input, startedAt }` (`input` is the run's JSON text).
 */
export function journey({ meta, run }) {
  if (!meta || !meta.id) throw new Error("journey({ meta }) needs meta.id");
  if (typeof run !== "function") throw new Error("journey({ run }) needs an async run(ctx, start) function");
  return { meta, run };
}

/** The component's exports for a journey (the build wires them up). */
export function exportsFor(definition) {
  const stepPromise = () =>
    new Promise((resolve) => {
      stepDone = resolve;
    });
  return {
    meta: () => toMeta(definition.meta),
    start(input) {
      const step = stepPromise();
      const start = { userId: input.userId, input: input.input, startedAt: input.startedAt };
      Promise.resolve()
        .then(() => definition.run(new Ctx(), start))
        .then(
          () => finish({ tag: "done" }),
          (error) => finish({ tag: "failed", val: describe(error) }),
        );
      return step;
    },
    resume(wake) {
      const step = stepPromise();
      const current = wait;
      wait = null;
      if (!current) {
        finish({ tag: "failed", val: "resumed without a registered wait" });
      } else if (wake.tag === "event") {
        const { name, properties, timestamp } = wake.val;
        let parsed;
        try {
          parsed = JSON.parse(properties);
        } catch {
          parsed = properties;
        }
        current.resolve({ event: { name, properties: parsed, timestamp } });
      } else if (wake.tag === "timed-out") {
        current.resolve({ timedOut: true });
      } else {
        current.resolve(undefined);
      }
      return step;
    },
  };
}
