"""Behavioral segment rules: data (parsed from a rule file), evaluated against one customer's history.

A rule is a closed union of small conditions combined with `all` / `any` / `not`. Evaluating it gives
membership, the reasons (which conditions held, with the events that counted), and the next moment the
answer can change without any new event (an event leaving a window, an absence deadline passing), which
is when the scheduler must look again.

The rule model is `shared.domain.conditions`, rule files are read by `shared.domain.rules`; both are re-exported
here. Windows are inclusive at their edge: "within 7d" at `now` means `now - 7d <= time <= now`. An absence
("did A, and no B within N after it") makes the customer a member from `A + N` on, as long as no matching
B came after A; a later B resolves it (the cart was bought after all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.domain.conditions import (
    AGGREGATES,
    COMPARISONS,
    DEFAULT_ABSENCE_LOOKBACK,
    AbsenceCondition,
    AggregateCondition,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    EventFilter,
    Not,
    RecencyCondition,
    SegmentRule,
    TraitCondition,
    Window,
)
from shared.domain.errors import RuleDefinitionError
from shared.domain.events import TrackingEvent
from shared.domain.filters import property_at
from shared.domain.profiles import money
from shared.domain.rules import parse_duration, parse_rules

__all__ = [  # the segments API in one place: conditions (the rule model) and rules (rule files) are its parts
    "AGGREGATES",
    "COMPARISONS",
    "DEFAULT_ABSENCE_LOOKBACK",
    "AbsenceCondition",
    "AggregateCondition",
    "AllOf",
    "AnyOf",
    "Comparison",
    "Condition",
    "Due",
    "Evaluation",
    "EventFilter",
    "Facts",
    "Membership",
    "Memberships",
    "Not",
    "RecencyCondition",
    "SegmentRule",
    "TraitCondition",
    "Window",
    "due_time",
    "evaluate",
    "parse_duration",
    "parse_rules",
]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Whether a customer is in a segment, why, and when that can next change without a new event."""

    member: bool
    reasons: tuple[str, ...]
    next_change: datetime | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What a rule is evaluated on: the customer's traits and events (any order)."""

    traits: Mapping[str, Any]
    events: Sequence[TrackingEvent]


@dataclass(frozen=True, slots=True)
class Membership:
    """A customer in a segment since a moment, and why."""

    segment_id: str
    customer_id: str
    since: str
    rule_version: int
    reason: str


Memberships = dict[str, Membership]
"""A customer's memberships by segment id."""


@dataclass(frozen=True, slots=True)
class Due:
    """A customer to evaluate again at `at`: its segments (their earliest deadline, or again after a failure), or,
    with `analytics`, its analytics counters (an update that failed)."""

    customer_id: str
    at: datetime
    analytics: bool = False


def due_time(moment: datetime) -> datetime:
    """When a deadline is swept: the first whole second at or after it (UTC), the due list's precision."""
    rounded = moment.astimezone(UTC).replace(microsecond=0)
    return rounded + timedelta(seconds=1) if rounded < moment else rounded


# --- evaluation ----------------------------------------------------------------------------------------------------


def evaluate(rule: SegmentRule, facts: Facts, now: datetime) -> Evaluation:
    """Evaluate a rule for one customer at `now`."""
    events = sorted(facts.events, key=lambda e: (e.timestamp, e.message_id))
    member, reasons, changes = _evaluate(rule.condition, facts.traits, events, now)
    upcoming = [moment for moment in changes if moment > now]
    return Evaluation(member, tuple(reasons), min(upcoming) if upcoming else None)


_Result = tuple[bool, list[str], list[datetime]]


def _evaluate(condition: Condition, traits: Mapping[str, Any], events: list[TrackingEvent], now: datetime) -> _Result:
    match condition:
        case TraitCondition(trait=trait, comparison=comparison):
            value = traits.get(trait)
            held = value is not None if comparison is None else comparison.holds(value)
            return held, [f"trait {trait} = {value!r}"], []
        case AggregateCondition():
            return _aggregate(condition, events, now)
        case RecencyCondition():
            return _recency(condition, events, now)
        case AbsenceCondition():
            return _absence(condition, events, now)
        case AllOf(conditions=conditions):
            results = [_evaluate(c, traits, events, now) for c in conditions]
            return all(r[0] for r in results), [x for r in results for x in r[1]], [x for r in results for x in r[2]]
        case AnyOf(conditions=conditions):
            results = [_evaluate(c, traits, events, now) for c in conditions]
            return any(r[0] for r in results), [x for r in results for x in r[1]], [x for r in results for x in r[2]]
        case Not(condition=inner):
            held, reasons, changes = _evaluate(inner, traits, events, now)
            return not held, [f"not ({'; '.join(reasons)})"], changes
    raise RuleDefinitionError(f"unknown condition {condition!r}")


def _aggregate(condition: AggregateCondition, events: list[TrackingEvent], now: datetime) -> _Result:
    window = condition.window
    matching = [e for e in events if condition.events.matches(e)]
    counted = [e for e in matching if window.contains(e.timestamp, now)]
    if condition.kind == "count":
        value: Any = len(counted)
    else:
        amounts = [a for a in (money(_property(e, condition.property or "")) for e in counted) if a is not None]
        value = _combine(condition.kind, amounts)
    changes = [m for e in counted if (m := window.leaves_at(e.timestamp)) is not None]
    changes += [m for e in matching if (m := window.enters_at(e.timestamp)) is not None]
    label = f"{condition.kind}{'(' + condition.property + ')' if condition.property else ''}"
    ids = ", ".join(e.message_id for e in counted[-5:])
    held = condition.comparison.holds(value)
    return held, [f"{label} of {_names(condition.events)} = {_show(value)} ({ids or 'no events'})"], changes


def _combine(kind: str, amounts: list[Decimal]) -> Decimal | None:
    if kind == "sum":
        return sum(amounts, Decimal(0))
    if not amounts:
        return None
    if kind == "min":
        return min(amounts)
    if kind == "max":
        return max(amounts)
    return sum(amounts, Decimal(0)) / len(amounts)


def _recency(condition: RecencyCondition, events: list[TrackingEvent], now: datetime) -> _Result:
    matching = [e for e in events if condition.events.matches(e) and e.timestamp <= now]
    if not matching:
        return False, [f"no {_names(condition.events)} yet"], []
    event = matching[0] if condition.which == "first" else matching[-1]
    age = now - event.timestamp
    held, changes = True, []
    if condition.within is not None:
        held = age <= condition.within
        changes.append(event.timestamp + condition.within + timedelta(microseconds=1))
    if condition.before is not None:
        held = held and age > condition.before
        changes.append(event.timestamp + condition.before + timedelta(microseconds=1))
    return (
        held,
        [f"{condition.which} {_names(condition.events)} at {event.timestamp.isoformat()} ({event.message_id})"],
        changes,
    )


def _absence(condition: AbsenceCondition, events: list[TrackingEvent], now: datetime) -> _Result:
    firsts = [e for e in events if condition.did.matches(e) and now - condition.lookback <= e.timestamp <= now]
    answers = [e for e in events if condition.then_not.matches(e) and e.timestamp <= now]
    held, reasons, changes = False, [], []
    for first in firsts:
        # A B without the matched property (an order without cart_id) resolves every A before it.
        resolved = any(
            b.timestamp >= first.timestamp
            and all(_property(b, k) in (None, _property(first, k)) for k in condition.match)
            for b in answers
        )
        if resolved:
            continue
        deadline = first.timestamp + condition.wait
        if deadline <= now:
            held = True
            reasons.append(
                f"{_names(condition.did)} at {first.timestamp.isoformat()} ({first.message_id}) "
                f"without {_names(condition.then_not)} within {condition.wait}"
            )
            changes.append(first.timestamp + condition.lookback + timedelta(microseconds=1))
        else:
            changes.append(deadline)
    if not held:
        reasons.append(f"no {_names(condition.did)} left without {_names(condition.then_not)}")
    return held, reasons, changes


def _property(event: TrackingEvent, path: str) -> Any:
    return property_at(event.properties, path)


def _names(events: EventFilter) -> str:
    name = " or ".join(events.names) or "any event"
    return name + "".join(f" [{test.describe()}]" for test in events.where.tests)


def _show(value: Any) -> str:
    return "none" if value is None else str(value)
