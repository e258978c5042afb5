"""Behavioral segment rules: data (parsed from a rule file), evaluated against one customer's history.

A rule is a closed union of small conditions combined with `all` / `any` / `not`. Evaluating it gives
membership, the reasons (which conditions held, with the events that counted), and the next moment the
answer can change without any new event (an event leaving a window, an absence deadline passing), which
is when the scheduler must look again.

Windows are inclusive at their edge: "within 7d" at `now` means `now - 7d <= time <= now`. An absence
("did A, and no B within N after it") makes the customer a member from `A + N` on, as long as no matching
B came after A; a later B resolves it (the cart was bought after all).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.domain.errors import RuleDefinitionError
from shared.domain.events import TrackingEvent
from shared.domain.filters import NO_FILTER, FilterDefinitionError, PropertyFilter, number, parse_where, property_at
from shared.domain.profiles import event_key, money

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
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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


class Memberships(dict[str, Membership]):
    """A customer's memberships by segment id, and `scheduled`: the moments its segments are on the due list for.

    Storage reads both in one query, so deciding whether a customer's earliest deadline moved (and must be written)
    costs no read of its own. A plain dict where one is expected means "nothing known to be scheduled".
    """

    __slots__ = ("scheduled",)

    def __init__(
        self, memberships: Mapping[str, Membership] | None = None, *, scheduled: Iterable[datetime] = ()
    ) -> None:
        super().__init__(memberships or {})
        self.scheduled: frozenset[datetime] = frozenset(scheduled)


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


# --- rule files ----------------------------------------------------------------------------------------------------


def parse_duration(text: Any, where: str) -> timedelta:
    """`90s`, `30m`, `1h`, `7d`, `2w`."""
    match = _DURATION.match(str(text)) if isinstance(text, (str, int)) else None
    if not match:
        raise RuleDefinitionError(f"{where}: {text!r} is not a duration like 30m, 1h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_rules(document: Any, *, source: str = "<rules>") -> list[SegmentRule]:
    """Segment rules from a rule file's data (`{"segments": [{id, name, rule}, …]}`).

    Raises:
        RuleDefinitionError: naming the file, the rule id and the exact problem; nothing is returned then.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("segments"), list):
        raise RuleDefinitionError(f"{source}: expected a mapping with a 'segments' list")
    rules: list[SegmentRule] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["segments"]):
        rule_id = entry.get("id") if isinstance(entry, Mapping) else None
        where = f"{source}: segment {rule_id or '#' + str(index + 1)}"
        if not isinstance(rule_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", rule_id):
            raise RuleDefinitionError(f"{where}: id must be 1-63 of a-z, 0-9, '_' and '-'")
        if rule_id in seen:
            raise RuleDefinitionError(f"{where}: id is used twice")
        seen.add(rule_id)
        unknown = set(entry) - {"id", "name", "description", "version", "rule"}
        if unknown:
            raise RuleDefinitionError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if "rule" not in entry:
            raise RuleDefinitionError(f"{where}: 'rule' is required")
        version = entry.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RuleDefinitionError(f"{where}: version must be a positive integer")
        rules.append(
            SegmentRule(
                id=rule_id,
                name=str(entry.get("name") or rule_id),
                condition=_condition(entry["rule"], f"{where}: rule"),
                version=version,
                description=str(entry.get("description", "")),
            )
        )
    return rules


def _condition(data: Any, where: str) -> Condition:
    if not isinstance(data, Mapping) or not data:
        raise RuleDefinitionError(f"{where}: a condition must be a mapping")
    keys = set(data)
    if keys & {"all", "any"}:
        (kind,) = _one_of(keys, ("all", "any"), where)
        items = data[kind]
        if not isinstance(items, list) or not items:
            raise RuleDefinitionError(f"{where}.{kind}: expected a non-empty list of conditions")
        parts = tuple(_condition(item, f"{where}.{kind}[{n}]") for n, item in enumerate(items))
        return AllOf(parts) if kind == "all" else AnyOf(parts)
    if "not" in keys:
        _only(keys, {"not"}, where)
        return Not(_condition(data["not"], f"{where}.not"))
    if "trait" in keys:
        return _trait(data, where)
    if keys & set(AGGREGATES):
        return _aggregate_condition(data, where)
    if keys & {"first", "last"}:
        return _recency_condition(data, where)
    if "absence" in keys:
        return _absence_condition(data, where)
    raise RuleDefinitionError(
        f"{where}: unknown condition with keys {', '.join(sorted(map(str, keys)))}; use "
        "trait, count, sum, min, max, avg, first, last, absence, all, any or not"
    )


def _one_of(keys: set[Any], options: Iterable[str], where: str) -> list[str]:
    found = [k for k in options if k in keys]
    if len(found) != 1:
        raise RuleDefinitionError(f"{where}: use exactly one of {', '.join(options)}")
    return found


def _only(keys: set[Any], allowed: set[str], where: str) -> None:
    unknown = keys - allowed
    if unknown:
        raise RuleDefinitionError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")


def _comparison(data: Mapping[str, Any], where: str, *, required: bool = True) -> Comparison | None:
    ops = [op for op in COMPARISONS if op in data]
    if not ops:
        if required:
            raise RuleDefinitionError(f"{where}: a comparison is required ({', '.join(COMPARISONS)})")
        return None
    if len(ops) > 1:
        raise RuleDefinitionError(f"{where}: only one comparison allowed, found {', '.join(ops)}")
    return Comparison(ops[0], data[ops[0]])


def _trait(data: Mapping[str, Any], where: str) -> TraitCondition:
    _only(set(data), {"trait", "exists", *COMPARISONS}, where)
    if not isinstance(data["trait"], str) or not data["trait"]:
        raise RuleDefinitionError(f"{where}.trait: expected a trait name")
    comparison = _comparison(data, where, required=not data.get("exists"))
    return TraitCondition(data["trait"], comparison)


def _filter(data: Any, where: str) -> EventFilter:
    if data == "any" or data == {"any": True}:
        return EventFilter()
    if not isinstance(data, Mapping):
        raise RuleDefinitionError(f"{where}: expected {{event: NAME or [NAMES], where: {{property: value}}}}")
    _only(set(data), {"event", "where", "property"}, where)
    names = data.get("event", [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise RuleDefinitionError(f"{where}.event: expected an event name or a list of names")
    conditions = data.get("where", {})
    if not isinstance(conditions, Mapping):
        raise RuleDefinitionError(f"{where}.where: expected a mapping of property to value")
    try:
        return EventFilter(tuple(names), parse_where(conditions, f"{where}.where", shorthand="eq"))
    except FilterDefinitionError as exc:
        raise RuleDefinitionError(str(exc)) from exc


def _window(data: Mapping[str, Any], where: str) -> Window:
    if "within" in data and "between" in data:
        raise RuleDefinitionError(f"{where}: use within or between, not both")
    if "within" in data:
        return Window(oldest=parse_duration(data["within"], f"{where}.within"))
    if "between" in data:
        span = data["between"]
        if not isinstance(span, list) or len(span) != 2:
            raise RuleDefinitionError(f"{where}.between: expected [older, newer] ages, e.g. [14d, 7d]")
        oldest, newest = (parse_duration(age, f"{where}.between") for age in span)
        if newest >= oldest:
            raise RuleDefinitionError(f"{where}.between: the first age must be the older one")
        return Window(oldest=oldest, newest=newest)
    return Window()


def _aggregate_condition(data: Mapping[str, Any], where: str) -> AggregateCondition:
    (kind,) = _one_of(set(data), AGGREGATES, where)
    _only(set(data), {kind, "within", "between", *COMPARISONS}, where)
    events = _filter(data[kind], f"{where}.{kind}")
    prop = data[kind].get("property") if isinstance(data[kind], Mapping) else None
    if kind != "count" and not isinstance(prop, str):
        raise RuleDefinitionError(f"{where}.{kind}: 'property' (the number to {kind}) is required")
    comparison = _comparison(data, where)
    assert comparison is not None
    return AggregateCondition(kind, events, comparison, _window(data, where), prop if kind != "count" else None)


def _recency_condition(data: Mapping[str, Any], where: str) -> RecencyCondition:
    (which,) = _one_of(set(data), ("first", "last"), where)
    _only(set(data), {which, "within", "before"}, where)
    if "within" not in data and "before" not in data:
        raise RuleDefinitionError(f"{where}: {which} needs within or before (an age such as 30d)")
    return RecencyCondition(
        which,
        _filter(data[which], f"{where}.{which}"),
        within=parse_duration(data["within"], f"{where}.within") if "within" in data else None,
        before=parse_duration(data["before"], f"{where}.before") if "before" in data else None,
    )


def _absence_condition(data: Mapping[str, Any], where: str) -> AbsenceCondition:
    _only(set(data), {"absence"}, where)
    spec = data["absence"]
    here = f"{where}.absence"
    if not isinstance(spec, Mapping):
        raise RuleDefinitionError(f"{here}: expected {{did, then_not, within, match?, lookback?}}")
    _only(set(spec), {"did", "then_not", "within", "match", "lookback"}, here)
    for key in ("did", "then_not", "within"):
        if key not in spec:
            raise RuleDefinitionError(f"{here}: '{key}' is required")
    match = spec.get("match", [])
    match = [match] if isinstance(match, str) else match
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        raise RuleDefinitionError(f"{here}.match: expected a property name or a list of them")
    wait = parse_duration(spec["within"], f"{here}.within")
    lookback = (
        parse_duration(spec["lookback"], f"{here}.lookback")
        if "lookback" in spec
        else max(DEFAULT_ABSENCE_LOOKBACK, wait)
    )
    if lookback < wait:
        raise RuleDefinitionError(f"{here}.lookback: must be at least the wait ({spec['within']})")
    return AbsenceCondition(
        _filter(spec["did"], f"{here}.did"), _filter(spec["then_not"], f"{here}.then_not"), wait, tuple(match), lookback
    )
