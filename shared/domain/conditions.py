"""Segment conditions: the closed union of small frozen conditions a segment rule is made of.

Parsed from rule files by `shared.domain.rules`, evaluated by `shared.domain.segments`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.events import TrackingEvent
from shared.domain.filters import NO_FILTER, PropertyFilter, number
from shared.domain.profiles import event_key

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
AGGREGATES = ("count", "sum", "min", "max", "avg")
DEFAULT_ABSENCE_LOOKBACK = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events count: by name (`$page`, `$identify`… for non-track calls; empty = any) and properties (the
    property-filter language of `shared.domain.filters`, the same as funnel steps')."""

    names: tuple[str, ...] = ()
    where: PropertyFilter = NO_FILTER

    def matches(self, event: TrackingEvent) -> bool:
        """Business rule: an event counts if its name is listed (or none is) and every property matches."""
        if self.names and event_key(event) not in self.names:
            return False
        return self.where.matches(event.properties)


@dataclass(frozen=True, slots=True)
class Comparison:
    """`<op> <value>`, e.g. `gte 500`."""

    op: str
    value: Any

    def holds(self, actual: Any) -> bool:
        """Compare, treating a missing or incomparable value as not matching."""
        if actual is None:
            return False
        try:
            return COMPARISONS[self.op](number(actual), number(self.value))
        except TypeError:
            return False


@dataclass(frozen=True, slots=True)
class Window:
    """The ages an event may have to count: `[now - oldest, now - newest]`; `oldest=None` means ever."""

    oldest: timedelta | None = None
    newest: timedelta = timedelta(0)

    def contains(self, moment: datetime, now: datetime) -> bool:
        """Inclusive at both edges."""
        return (self.oldest is None or moment >= now - self.oldest) and moment <= now - self.newest

    def leaves_at(self, moment: datetime) -> datetime | None:
        """When an event at `moment` stops counting (the window slides past it)."""
        return None if self.oldest is None else moment + self.oldest + timedelta(microseconds=1)

    def enters_at(self, moment: datetime) -> datetime | None:
        """When an event at `moment` starts counting (windows that end in the past, `between`)."""
        return moment + self.newest if self.newest else None


@dataclass(frozen=True, slots=True)
class TraitCondition:
    """Business rule: a trait compares to a value (or merely exists)."""

    trait: str
    comparison: Comparison | None  # None: the trait exists


@dataclass(frozen=True, slots=True)
class AggregateCondition:
    """Business rule: count/sum/min/max/avg of matching events (of a property) within a window compares to a value."""

    kind: str
    events: EventFilter
    comparison: Comparison
    window: Window = field(default_factory=Window)
    property: str | None = None


@dataclass(frozen=True, slots=True)
class RecencyCondition:
    """Business rule: the first/last matching event happened within an age (`within`) or longer ago (`before`)."""

    which: str  # "first" | "last"
    events: EventFilter
    within: timedelta | None = None
    before: timedelta | None = None


@dataclass(frozen=True, slots=True)
class AbsenceCondition:
    """Business rule: did A, and no B within `wait` after it (B matching A on the `match` properties).

    A's older than `lookback` are forgotten, so an abandonment long ago does not keep anyone in for ever.
    """

    did: EventFilter
    then_not: EventFilter
    wait: timedelta
    match: tuple[str, ...] = ()
    lookback: timedelta = DEFAULT_ABSENCE_LOOKBACK


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every condition holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one condition holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The condition does not hold."""

    condition: Condition


Condition = TraitCondition | AggregateCondition | RecencyCondition | AbsenceCondition | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """A named segment: who is in it is decided by `condition`."""

    id: str
    name: str
    condition: Condition
    version: int = 1
    description: str = ""
