"""Write cairn journeys in Python.

A journey is an ``async def`` that awaits durable waits::

    from cairn_journey import journey, days

    @journey(id="welcome", name="Welcome", trigger="signed_up")
    async def run(ctx, start):
        ctx.send(to="", template="welcome", props={"name": "Ada"})
        await ctx.sleep(days(1))
        ...

The host snapshots the whole instance at every wait and restores it into a
fresh instance when the wait ends, so local variables survive days of
waiting. The coroutine is driven with ``.send()``, without an event loop:
each export call runs it to its next wait point or to its end.
"""

import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world.imports import durable
from wit_world.imports import types as wit

__all__ = [
    "journey", "Ctx", "Start", "Event", "TimedOut", "WaitError", "SendError",
    "millis", "seconds", "minutes", "hours", "days",
    "eq", "neq", "gt", "gte", "lt", "lte", "contains", "exists", "WitWorld",
]


def millis(n: int) -> int:
    return int(n)


def seconds(n: int) -> int:
    return int(n * 1000)


def minutes(n: int) -> int:
    return int(n * 60_000)


def hours(n: int) -> int:
    return int(n * 3_600_000)


def days(n: int) -> int:
    return int(n * 86_400_000)


class WaitError(Exception):
    """A wait the host refused. ``kind``: exceeds-ceiling, already-waiting, invalid."""

    def __init__(self, error: Any):
        if isinstance(error, wit.WaitError_ExceedsCeiling):
            self.kind = "exceeds-ceiling"
            self.limit = error.value.limit
            self.requested = error.value.requested
            detail = f"the wait would end at {self.requested}, after the run's execution ceiling {self.limit}"
        elif isinstance(error, wit.WaitError_AlreadyWaiting):
            self.kind = "already-waiting"
            detail = f"wait {error.value} is already registered in this step"
        else:
            self.kind = "invalid"
            detail = str(error.value)
        super().__init__(f"wait refused ({self.kind}): {detail}")


class SendError(Exception):
    """A message the host refused. ``kind``: invalid, too-large."""

    def __init__(self, error: Any):
        if isinstance(error, wit.SendError_TooLarge):
            self.kind = "too-large"
            super().__init__(f"message too large: the limit is {error.value} bytes")
        else:
            self.kind = "invalid"
            super().__init__(f"invalid message: {error.value}")


def _condition(op: wit.ConditionOp) -> Callable[[str, Any], wit.Condition]:
    return lambda prop, value: wit.Condition(prop, op, json.dumps(value))


eq = _condition(wit.ConditionOp.EQ)
neq = _condition(wit.ConditionOp.NEQ)
gt = _condition(wit.ConditionOp.GT)
gte = _condition(wit.ConditionOp.GTE)
lt = _condition(wit.ConditionOp.LT)
lte = _condition(wit.ConditionOp.LTE)
contains = _condition(wit.ConditionOp.CONTAINS)


def exists(prop: str) -> wit.Condition:
    return wit.Condition(prop, wit.ConditionOp.EXISTS, "null")


@dataclass
class Start:
    user_id: str
    input: str
    started_at: int

    def json(self) -> Any:
        """The run's input, parsed."""
        return json.loads(self.input)


@dataclass
class Event:
    name: str
    properties: Any
    timestamp: int


@dataclass
class TimedOut:
    """What ``wait_for_event`` returns when the timeout came first."""


class _Wait:
    """The awaitable a wait returns: it parks the coroutine until resume."""

    def __init__(self, wait_id: int, kind: str):
        self.wait_id = wait_id
        self.kind = kind

    def __await__(self):
        wake = yield self
        return wake


def _register(kind: str, call: Callable[[], int]) -> _Wait:
    try:
        return _Wait(call(), kind)
    except Err as e:
        raise WaitError(e.value) from None


_CHANNELS = {c.name.lower(): c for c in wit.Channel}
_LEVELS = {level.name.lower(): level for level in wit.LogLevel}


class Ctx:
    """The durable context a journey gets."""

    def sleep(self, duration: int) -> _Wait:
        """Waits ``duration`` ms (e.g. ``days(1)``); raises WaitError past the ceiling."""
        return _register("timer", lambda: durable.sleep(int(duration)))

    def sleep_until(self, at: int) -> _Wait:
        """Waits until unix ms ``at``."""
        return _register("timer", lambda: durable.sleep_until(int(at)))

    def wait_for_event(self, name: str, timeout: int, filter: Optional[list] = None) -> _Wait:
        """Waits for the user's event ``name`` or ``timeout``: an Event or TimedOut."""
        return _register("event", lambda: durable.wait_for_event(name, int(timeout), list(filter or [])))

    def checkpoint(self, label: str) -> None:
        durable.checkpoint(label)

    def send(self, template: str, to: str = "", props: Any = None, category: Optional[str] = None,
             label: Optional[str] = None, channel: str = "email") -> wit.SendReceipt:
        """Queues a message; raises SendError if the host refuses it."""
        body = props if isinstance(props, str) else json.dumps({} if props is None else props)
        message = wit.Message(_CHANNELS[channel], to, template, body, category, label)
        try:
            return durable.send(message)
        except Err as e:
            raise SendError(e.value) from None

    def next_local_time(self, hour: int, minute: int, weekdays: Optional[list] = None,
                        timezone: Optional[str] = None) -> int:
        """The first instant (unix ms) after now when the clock in the user's
        time zone (or ``timezone``) reads ``hour:minute``, on one of
        ``weekdays`` (``["monday", ...]``) if given; for ``sleep_until``."""
        days_ = [getattr(wit.Weekday, d.upper()) for d in weekdays or []]
        try:
            return durable.next_local_time(wit.LocalTime(hour, minute, days_, timezone))
        except Err as e:
            raise ValueError(f"invalid local time: {e.value}") from None

    def now(self) -> int:
        """The step's time, unix ms: when its wait ended."""
        return durable.now()

    def random_u64(self) -> int:
        """A random u64, the same if a crashed step runs again."""
        return durable.random_u64()

    def log(self, message: str, level: str = "info") -> None:
        durable.log(_LEVELS[level], str(message))


def _rule(rule: Any) -> wit.EventRule:
    if isinstance(rule, str):
        return wit.EventRule(rule, [])
    event, conditions = rule
    return wit.EventRule(event, list(conditions))


def _entry_limit(limit: Any) -> Any:
    if limit is None or limit == "unlimited":
        return wit.EntryLimit_Unlimited()
    if limit == "once":
        return wit.EntryLimit_Once()
    if isinstance(limit, dict) and "once_per" in limit:
        return wit.EntryLimit_OncePerPeriod(int(limit["once_per"]))
    raise ValueError(f'entry_limit must be "once", "unlimited" or {{"once_per": duration}}, not {limit!r}')


_journey: Optional[dict] = None
_run: Any = None  # the coroutine of the run in this instance
_wait: Optional[_Wait] = None


def journey(id: str, name: Optional[str] = None, trigger: Any = None, exit_on: Optional[list] = None,
            entry_limit: Any = None, execution_timeout: Optional[int] = None,
            templates: Optional[list] = None):
    """Declares the module's journey: decorate ``async def run(ctx, start)``.

    ``trigger`` and each ``exit_on`` rule are an event name or
    ``(name, [conditions])``, e.g. ``("cart_abandoned", [gt("cart_value", 0)])``.
    ``templates`` names the templates the journey sends: deploying fails
    until each is registered with the host.
    """

    def register(run: Callable) -> Callable:
        global _journey
        _journey = {
            "meta": wit.JourneyMeta(
                id, name or id, None if trigger is None else _rule(trigger),
                [_rule(r) for r in exit_on or []], _entry_limit(entry_limit),
                None if execution_timeout is None else int(execution_timeout),
                list(templates or []),
            ),
            "run": run,
        }
        return run

    return register


def _drive(value: Any) -> Any:
    global _run, _wait
    try:
        parked = _run.send(value)
    except StopIteration:
        _run = None
        return wit.Step_Done()
    except BaseException as e:  # the journey failed: say why, with where
        _run = None
        return wit.Step_Failed("".join(traceback.format_exception_only(type(e), e)).strip()
                               + "\n" + "".join(traceback.format_tb(e.__traceback__)))
    if not isinstance(parked, _Wait):
        _run = None
        return wit.Step_Failed(f"the journey awaited {parked!r}, which is not a cairn wait")
    _wait = parked
    return wit.Step_Waiting(parked.wait_id)


class WitWorld:
    """The component's exports, backed by the module's ``@journey``."""

    def meta(self) -> wit.JourneyMeta:
        if _journey is None:
            raise RuntimeError("no @journey was declared")
        return _journey["meta"]

    def start(self, input: wit.StartInput) -> Any:
        global _run
        if _journey is None:
            return wit.Step_Failed("no @journey was declared")
        start = Start(input.user_id, input.input, input.started_at)
        _run = _journey["run"](Ctx(), start)
        return _drive(None)

    def resume(self, wake: Any) -> Any:
        global _wait
        if _run is None or _wait is None:
            return wit.Step_Failed("resumed without a registered wait")
        _wait = None
        if isinstance(wake, wit.Wake_Event):
            try:
                properties = json.loads(wake.value.properties)
            except ValueError:
                properties = wake.value.properties
            return _drive(Event(wake.value.name, properties, wake.value.timestamp))
        if isinstance(wake, wit.Wake_TimedOut):
            return _drive(TimedOut())
        return _drive(None)
