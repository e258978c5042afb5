"""Funnels: a funnel and its steps, the journeys one customer makes through it, and the brute-force check path.

The journey rule (see `shared.domain.analytics` for how journeys become counters): a customer's events in time
order (ties by message id) run through the funnel. A journey starts at a step-1 event when none is open; it
advances on the next step's event (sequential: other events may come between; strict: any other event ends it,
and that event may start a new journey); it closes when it completes, when the conversion window since its start
has passed, or when the next step's own window since the previous step has passed. Bounds are inclusive.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.events import TrackingEvent
from shared.domain.filters import NO_FILTER, PropertyFilter, text
from shared.domain.profiles import event_key

DEFAULT_WINDOW = timedelta(days=14)
BUCKET_BASE = 1.2
OTHER = "(other)"
"""Where names and values that are not catalogued (or listed) are summed."""


@dataclass(frozen=True, slots=True)
class Step:
    event: str
    where: PropertyFilter = NO_FILTER
    """Which of these events count, by their properties (the same language as segment rules')."""
    within: timedelta | None = None
    """This step must follow the previous one within this time."""
    label: str = ""

    def matches(self, event: TrackingEvent) -> bool:
        return event_key(event) == self.event and self.where.matches(event.properties)


@dataclass(frozen=True, slots=True)
class Funnel:
    id: str
    name: str
    steps: tuple[Step, ...]
    window: timedelta = DEFAULT_WINDOW
    strict: bool = False
    breakdown: str = "channel"
    """`channel` (the customer's first-touch channel) or `property:<name>` (of the step-1 event)."""
    breakdown_values: tuple[str, ...] = ()
    """The values of a property breakdown counted by name (the rest are summed in `(other)`)."""

    def definition(self) -> dict[str, Any]:
        """The funnel as a file entry (how it is stored)."""
        return {
            "id": self.id,
            "name": self.name,
            "window": f"{int(self.window.total_seconds())}s",
            "order": "strict" if self.strict else "sequential",
            "breakdown": self.breakdown,
            **({"breakdown_values": list(self.breakdown_values)} if self.breakdown_values else {}),
            "steps": [
                {
                    "event": s.event,
                    "label": s.label,
                    **({"where": s.where.definition()} if s.where else {}),
                    **({"within": f"{int(s.within.total_seconds())}s"} if s.within else {}),
                }
                for s in self.steps
            ],
        }


@dataclass(slots=True)
class Journey:
    entry: datetime
    times: list[datetime]
    breakdown: str


# --- journeys ------------------------------------------------------------------------------------------------------


def ordered(events: Iterable[TrackingEvent]) -> list[TrackingEvent]:
    """A customer's events in the order every rule reads them: time, then message id."""
    return sorted(events, key=lambda e: (e.timestamp, e.message_id))


def journeys(funnel: Funnel, events: Sequence[TrackingEvent], *, first_channel: str) -> list[Journey]:
    """The journeys of one customer (`events` in `ordered` order, behaviour calls only)."""
    found, current = resume(funnel, None, events, first_channel=first_channel)
    return [*found, current] if current is not None else found


def resume(
    funnel: Funnel, current: Journey | None, events: Sequence[TrackingEvent], *, first_channel: str
) -> tuple[list[Journey], Journey | None]:
    """The journey rule continued from `current` (the journey open after the events before these, or None) over
    `events` (after those, in `ordered` order, behaviour calls only): the journeys closed, and the one still open.

    `current` is advanced in place. A journey stays open past its deadline until a later event closes it (the rule
    reads events, not the clock), so the open one still counts as it is.
    """
    steps, found = funnel.steps, []
    for event in events:
        moment = event.timestamp
        if current is not None and moment > _deadline(funnel, current):
            found.append(current)
            current = None
        if current is not None:
            if steps[len(current.times)].matches(event):
                current.times.append(moment)
                if len(current.times) == len(steps):
                    found.append(current)
                    current = None
                continue
            if not funnel.strict:
                continue
            found.append(current)  # strict: anything else ends it, and may start the next one
            current = None
        if steps[0].matches(event):
            current = Journey(moment, [moment], _breakdown(funnel, event, first_channel))
            if len(steps) == 1:
                found.append(current)
                current = None
    return found, current


def _deadline(funnel: Funnel, journey: Journey) -> datetime:
    deadline = journey.entry + funnel.window
    within = funnel.steps[len(journey.times)].within
    return min(deadline, journey.times[-1] + within) if within is not None else deadline


def _breakdown(funnel: Funnel, event: TrackingEvent, first_channel: str) -> str:
    if funnel.breakdown == "channel":
        return first_channel
    value = text(event.properties.get(funnel.breakdown.split(":", 1)[1]))
    if not value:
        return "(none)"
    return value if value in funnel.breakdown_values else OTHER


def bucket(seconds: float) -> int:
    """±10 % time buckets (the middle of a bucket is within 10 % of any value in it): 0 = under a second."""
    return 0 if seconds < 1 else int(math.log(seconds) / math.log(BUCKET_BASE)) + 1


def bucket_seconds(index: int) -> float:
    """The middle of a bucket (geometric), the value a median in it is reported as."""
    return 0.0 if index == 0 else BUCKET_BASE ** (index - 1) * math.sqrt(BUCKET_BASE)


# --- the fast check path ----------------------------------------------------------------------------------------------

Row = tuple[str, float, str, str]
"""(customer id, epoch seconds, message id, event key): an event as the check path reads it."""


def check_funnel(
    funnel: Funnel, rows: Iterable[Row], *, properties: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[int, int]]:
    """Steps reached per entry day (`{day: {step: journeys}}`), straight from raw rows: the brute-force check.

    The same journey rule as `journeys`, written over plain tuples so a million events take about a second in
    pure Python. `properties` (message id → properties) is needed only when steps filter on properties.
    """
    check = _Check(funnel, properties or {})
    by_customer: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for customer, moment, message, name in rows:
        if funnel.strict or name in check.wanted:
            by_customer[customer].append((moment, message, name))
    for events in by_customer.values():
        events.sort()
        check.walk(events)
    return {day: dict(steps) for day, steps in check.result.items()}


class _Check:
    """The check path's state: the funnel as plain values, and the steps reached per entry day so far."""

    def __init__(self, funnel: Funnel, properties: Mapping[str, Mapping[str, Any]]) -> None:
        self.steps = funnel.steps
        self.names = [step.event for step in funnel.steps]
        self.wanted = set(self.names)
        self.strict = funnel.strict
        self.count = len(self.names)
        self.window = funnel.window.total_seconds()
        self.withins = [s.within.total_seconds() if s.within else None for s in funnel.steps]
        self.filtered = [bool(s.where) for s in funnel.steps]
        self.properties = properties
        self.result: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def walk(self, events: Sequence[tuple[float, str, str]]) -> None:
        """One customer's journeys (`events` in time order): the rule of `journeys`, one tight loop on tuples."""
        entry = last = 0.0
        reached = 0
        for moment, message, name in events:
            if reached and moment > self.deadline(entry, last, reached):
                self.close(entry, reached)
                reached = 0
            if reached and self.matches(reached, name, message):
                reached, last = reached + 1, moment
            elif reached and self.strict:  # strict: anything else ends it, and may start the next one
                self.close(entry, reached)
                reached = 0
            if not reached and self.matches(0, name, message):
                entry = last = moment
                reached = 1
            if reached == self.count:
                self.close(entry, reached)
                reached = 0
        if reached:
            self.close(entry, reached)

    def deadline(self, entry: float, last: float, reached: int) -> float:
        within = self.withins[reached]
        return entry + self.window if within is None else min(entry + self.window, last + within)

    def matches(self, index: int, name: str, message: str) -> bool:
        if self.names[index] != name:
            return False
        return not self.filtered[index] or self.steps[index].where.matches(self.properties.get(message, {}))

    def close(self, entry: float, reached: int) -> None:
        counts = self.result[datetime.fromtimestamp(entry, UTC).date().isoformat()]
        for step in range(1, reached + 1):
            counts[step] += 1
