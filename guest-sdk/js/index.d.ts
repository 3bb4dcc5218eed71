// Types for cairn-journey, the JavaScript SDK for cairn journeys.

/** Milliseconds, as a BigInt (the host's u64). */
export type Duration = bigint;
/** Unix milliseconds, as a BigInt. */
export type Instant = bigint;

export function millis(n: number | bigint): Duration;
export function seconds(n: number | bigint): Duration;
export function minutes(n: number | bigint): Duration;
export function hours(n: number | bigint): Duration;
export function days(n: number | bigint): Duration;

/** A condition on an event property; `value` is JSON text. */
export interface Condition {
  property: string;
  op: "eq" | "neq" | "gt" | "gte" | "lt" | "lte" | "exists" | "contains";
  value: string;
}
export function eq(property: string, value: unknown): Condition;
export function neq(property: string, value: unknown): Condition;
export function gt(property: string, value: unknown): Condition;
export function gte(property: string, value: unknown): Condition;
export function lt(property: string, value: unknown): Condition;
export function lte(property: string, value: unknown): Condition;
export function contains(property: string, value: unknown): Condition;
export function exists(property: string): Condition;

/** An event name, or an event with property conditions (all must hold). */
export type EventRule = string | { event: string; conditions?: Condition[] };

export interface Meta {
  /** Stable id: deploying another component with this id makes a new version. */
  id: string;
  name?: string;
  /** The event that enrolls a user. */
  trigger?: EventRule;
  /** Events that end the user's run at once. */
  exitOn?: EventRule[];
  /** Default "unlimited". */
  entryLimit?: "once" | "unlimited" | { oncePer: Duration };
  /** The run's execution ceiling: no wait may end after start + this. */
  executionTimeout?: Duration;
  /** Templates the journey sends; deploying fails until each is registered with the host. */
  templates?: string[];
}

export interface Start {
  userId: string;
  /** The run's input, JSON text. */
  input: string;
  startedAt: Instant;
}

export interface Event {
  name: string;
  /** The event's properties, parsed. */
  properties: Record<string, unknown>;
  timestamp: Instant;
}

export type Waited = { event: Event; timedOut?: undefined } | { timedOut: true; event?: undefined };

export interface Message {
  to?: string;
  template: string;
  /** An object (serialized for you) or JSON text. */
  props?: Record<string, unknown> | string;
  category?: string;
  /** An idempotency label: a send with the same label in a run is queued once. */
  label?: string;
  channel?: "email" | "sms" | "push" | "webhook";
}

export interface SendReceipt {
  key: string;
  status:
    | { tag: "queued" }
    | { tag: "suppressed" }
    | { tag: "unsubscribed" }
    | { tag: "frequency-capped" }
    | { tag: "deferred-until"; val: Instant };
}

/** A wait the host refused, thrown by awaiting the wait. */
export class WaitError extends Error {
  kind: "exceeds-ceiling" | "already-waiting" | "invalid";
  /** With "exceeds-ceiling": the run's ceiling. */
  limit?: Instant;
  /** With "exceeds-ceiling": when the refused wait would have ended. */
  requested?: Instant;
}

/** A message the host refused, thrown by `send`. */
export class SendError extends Error {
  kind: "invalid" | "too-large";
}

/** The durable context. */
export type Weekday = "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday";

export interface Ctx {
  sleep(duration: Duration): Promise<void>;
  sleepUntil(at: Instant): Promise<void>;
  waitForEvent(name: string, timeout: Duration, filter?: Condition[]): Promise<Waited>;
  checkpoint(label: string): void;
  send(message: Message): SendReceipt;
  /** The step's time: when its wait ended. It does not advance during a step. */
  /** The next instant at `hour:minute` in the user's time zone (or `timezone`), on one of `weekdays` if given. */
  nextLocalTime(
    hour: number,
    minute: number,
    options?: { weekdays?: Weekday[]; timezone?: string },
  ): Instant;
  now(): Instant;
  /** Random, and the same if a crashed step runs again. */
  randomU64(): bigint;
  log(message: string, level?: "trace" | "debug" | "info" | "warn" | "error"): void;
}

export interface Journey {
  meta: Meta;
  run(ctx: Ctx, start: Start): Promise<void>;
}

/** Declares the journey: `export default journey({ meta, async run(ctx, start) { ... } })`. */
export function journey(definition: Journey): Journey;
