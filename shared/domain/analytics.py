"""Funnels, retention, best time and channel, and the overview counts: definitions, rules and figures.

Everything a report shows is a sum of *cells* (cell → counter name → count, `shared.domain.cells`), and every customer
contributes cells that are a pure function of that customer's stored events:

- **funnel journeys**: the customer's events in time order (ties by message id) run through the funnel. A
  journey starts at a step-1 event when none is open; it advances on the next step's event (sequential: other
  events may come between; strict: any other event ends it, and that event may start a new journey); it closes
  when it completes, when the conversion window since its start has passed, or when the next step's own window
  since the previous step has passed. Bounds are inclusive (a step exactly at the deadline counts). A customer
  who comes back after converting, or after a journey closed, starts a new one: reports count journeys.
  A journey contributes to its entry day (UTC day of its step-1 event): steps reached, breakdown value, and the
  time between consecutive steps (in ±10 % buckets, so medians and p90s are exact to the bucket; few buckets keep
  the counter items small, and an update of a counter item costs write units by its size).
- **retention**: the customer's cohort is the day (and ISO week) of their first event; for each tracked return
  event (`*` = any), the day/week offsets on which they did it, and the last such offset.
- **timing**: engagement events per channel and hour of week (as the profile counts them).
- **overview**: events per day, per event name and per minute, for the days within `STATS_DAYS` of processing
  time (older cells are frozen: a late event older than that is not added to the overview, nothing else).

Bounded cardinality: names and values are chosen by whoever holds the public write key, so no counter item may
grow with them. Events are counted by name when the name is *catalogued* (Segment's e-commerce, e-mail and
lifecycle spec names, the `$page`/`$identify`… calls, every name the applied definitions use, and the
definitions' `overview.events`); every other name is summed in `(other)`. A property breakdown keeps the values
its funnel lists in `breakdown_values` (at most 50) and sums the rest in `(other)`. So the figures are exact for
catalogued names and listed values, the rest summed in `(other)`; an item holds at most a few hundred attributes.

Processing recomputes a changed customer's cells and adds the difference to the counters (so late and
out-of-order events land exactly where a recomputation would put them); `recompute` is the separate check
path: every stored event, grouped by customer, summed in memory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.cells import (
    SHARD,
    TOTAL,
    Cells,
    FunnelCell,
    HourOfWeek,
    LastReturn,
    Minute,
    Named,
    Reached,
    ReachedBy,
    RetentionCell,
    ReturnedOn,
    StatsCell,
    StepTime,
    TimingCell,
    add,
)
from shared.domain.errors import RuleDefinitionError, TrackingError
from shared.domain.events import CallType, TrackingEvent
from shared.domain.filters import NO_FILTER, FilterDefinitionError, PropertyFilter, parse_where, text
from shared.domain.profiles import channel_of, event_key, hour_of_week
from shared.domain.reports import CohortRow, FunnelReport, Recommendation, RetentionReport, StepFigures
from shared.domain.segments import parse_duration as _rule_duration

DEFAULT_WINDOW = timedelta(days=14)
RETENTION_OFFSETS = {"day": 31, "week": 13}
"""Offsets kept per cohort (day 0-30, week 0-12)."""
STATS_DAYS = 2
ANY_EVENT = "*"
BUCKET_BASE = 1.2
BEHAVIOUR = frozenset({CallType.TRACK, CallType.PAGE, CallType.SCREEN})
"""Calls that are something a customer did (identify, alias and group describe who they are)."""
OTHER = "(other)"
"""Where names and values that are not catalogued (or listed) are summed."""
MAX_BREAKDOWN_VALUES = 50
MAX_OVERVIEW_EVENTS = 100
SPEC_EVENTS = frozenset(
    {
        # Segment e-commerce spec v2
        "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed", "Promotion Clicked",
        "Product Clicked", "Product Viewed", "Product Added", "Product Removed", "Cart Viewed", "Checkout Started",
        "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered", "Order Updated", "Order Completed",
        "Order Refunded", "Order Cancelled", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
        "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
        "Product Shared", "Cart Shared", "Product Reviewed",
        # e-mail spec
        "Email Bounced", "Email Delivered", "Email Link Clicked", "Email Marked as Spam", "Email Opened",
        "Unsubscribed",
        # lifecycle
        "Signed Up", "Signed In", "Signed Out", "Account Created", "Account Deleted", "Trial Started", "Trial Ended",
        # calls that are not `track`
        *(f"${call}" for call in CallType if call is not CallType.TRACK),
    }
)  # fmt: skip
"""Event names counted by name without being configured."""


class AnalyticsDefinitionError(TrackingError):
    """A funnels/retention file that cannot be used, with where and why."""

    code = "invalid_definition"


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


@dataclass(frozen=True, slots=True)
class Definitions:
    funnels: tuple[Funnel, ...] = ()
    return_events: tuple[str, ...] = (ANY_EVENT, "Order Completed")
    overview_events: tuple[str, ...] = ()
    """Custom event names the overview counts by name (beside the spec's and those the definitions use)."""

    def catalogued(self) -> frozenset[str]:
        """Every event name counted by name in the overview."""
        used = {step.event for funnel in self.funnels for step in funnel.steps}
        return SPEC_EVENTS | used | (set(self.return_events) - {ANY_EVENT}) | set(self.overview_events)


@dataclass(slots=True)
class Journey:
    entry: datetime
    times: list[datetime]
    breakdown: str


# --- definitions ---------------------------------------------------------------------------------------------------


def parse_definitions(document: Any, *, source: str = "<definitions>") -> Definitions:
    """`{"funnels": [...], "retention": {"events": [...]}}` → definitions.

    Raises:
        AnalyticsDefinitionError: with the path of the first problem.
    """
    if not isinstance(document, Mapping):
        raise AnalyticsDefinitionError(f"{source}: expected an object with `funnels` and/or `retention`")
    unknown = set(document) - {"funnels", "retention", "overview"}
    if unknown:
        raise AnalyticsDefinitionError(f"{source}: unknown keys {sorted(unknown)}")
    entries = document.get("funnels", [])
    if not isinstance(entries, list):
        raise AnalyticsDefinitionError(f"{source}.funnels: expected a list")
    funnels = [parse_funnel(entry, f"{source}.funnels[{index}]") for index, entry in enumerate(entries)]
    ids = [f.id for f in funnels]
    if len(set(ids)) != len(ids):
        raise AnalyticsDefinitionError(f"{source}.funnels: duplicate ids")
    retention = document.get("retention", {})
    events = retention.get("events", [ANY_EVENT, "Order Completed"]) if isinstance(retention, Mapping) else None
    if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
        raise AnalyticsDefinitionError(f"{source}.retention.events: expected a list of event names (`*` = any)")
    overview = document.get("overview", {})
    if not isinstance(overview, Mapping) or set(overview) - {"events"}:
        raise AnalyticsDefinitionError(f"{source}.overview: expected {{events: [names]}}")
    custom = _names(overview.get("events", []), f"{source}.overview.events", MAX_OVERVIEW_EVENTS)
    return Definitions(tuple(funnels), tuple(dict.fromkeys([ANY_EVENT, *events])), custom)


def parse_funnel(data: Any, where: str) -> Funnel:
    if not isinstance(data, Mapping):
        raise AnalyticsDefinitionError(f"{where}: expected an object")
    allowed = {"id", "name", "steps", "window", "order", "breakdown", "breakdown_values", "description"}
    if set(data) - allowed:
        raise AnalyticsDefinitionError(f"{where}: unknown keys {sorted(set(data) - allowed)}")
    funnel_id = data.get("id")
    if not isinstance(funnel_id, str) or not funnel_id.replace("_", "").replace("-", "").isalnum():
        raise AnalyticsDefinitionError(f"{where}.id: letters, digits, `_` and `-` only")
    steps = data.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= 10:
        raise AnalyticsDefinitionError(f"{where}.steps: 1 to 10 steps")
    order = data.get("order", "sequential")
    if order not in ("sequential", "strict"):
        raise AnalyticsDefinitionError(f"{where}.order: `sequential` or `strict`")
    breakdown = data.get("breakdown", "channel")
    if not isinstance(breakdown, str) or not (
        breakdown == "channel" or (breakdown.startswith("property:") and len(breakdown) > 9)
    ):
        raise AnalyticsDefinitionError(f"{where}.breakdown: `channel` or `property:<name>`")
    values = _names(data.get("breakdown_values", []), f"{where}.breakdown_values", MAX_BREAKDOWN_VALUES)
    if values and breakdown == "channel":
        raise AnalyticsDefinitionError(f"{where}.breakdown_values: only for a `property:<name>` breakdown")
    return Funnel(
        id=funnel_id,
        name=str(data.get("name") or funnel_id),
        steps=tuple(_step(step, f"{where}.steps[{i}]", first=i == 0) for i, step in enumerate(steps)),
        window=parse_duration(data.get("window", "14d"), f"{where}.window"),
        strict=order == "strict",
        breakdown=breakdown,
        breakdown_values=values,
    )


def _names(value: Any, where: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > limit:
        raise AnalyticsDefinitionError(f"{where}: a list of at most {limit} non-empty strings")
    return tuple(dict.fromkeys(value))


def _step(data: Any, where: str, *, first: bool) -> Step:
    if isinstance(data, str):
        data = {"event": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("event"), str) or not data["event"]:
        raise AnalyticsDefinitionError(f"{where}: expected an event name or {{event, where, within}}")
    if set(data) - {"event", "where", "within", "label"}:
        raise AnalyticsDefinitionError(f"{where}: unknown keys {sorted(set(data) - {'event', 'where', 'within'})}")
    conditions = data.get("where", {})
    if not isinstance(conditions, Mapping):
        raise AnalyticsDefinitionError(f"{where}.where: expected property → value(s)")
    if first and "within" in data:
        raise AnalyticsDefinitionError(f"{where}.within: the first step has no previous step")
    try:
        properties = parse_where(conditions, f"{where}.where", shorthand="in")
    except FilterDefinitionError as exc:
        raise AnalyticsDefinitionError(str(exc)) from exc
    return Step(
        event=data["event"],
        where=properties,
        within=parse_duration(data["within"], f"{where}.within") if "within" in data else None,
        label=str(data.get("label") or data["event"]),
    )


def parse_duration(text: Any, where: str) -> timedelta:
    try:
        return _rule_duration(text, where)
    except RuleDefinitionError as exc:
        raise AnalyticsDefinitionError(str(exc)) from exc


# --- journeys ------------------------------------------------------------------------------------------------------


def ordered(events: Iterable[TrackingEvent]) -> list[TrackingEvent]:
    """A customer's events in the order every rule reads them: time, then message id."""
    return sorted(events, key=lambda e: (e.timestamp, e.message_id))


def journeys(funnel: Funnel, events: Sequence[TrackingEvent], *, first_channel: str) -> list[Journey]:
    """The journeys of one customer (`events` in `ordered` order, behaviour calls only)."""
    steps, found = funnel.steps, []
    current: Journey | None = None
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
    if current is not None:
        found.append(current)
    return found


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


# --- cells -----------------------------------------------------------------------------------------------------------


def customer_cells(
    customer_id: str, events: Iterable[TrackingEvent], definitions: Definitions, *, now: datetime
) -> Cells:
    """Everything one customer adds to the counters (pure: same events, same cells)."""
    everything = ordered(e for e in events)
    cells: dict[Any, Any] = defaultdict(lambda: defaultdict(int))
    if not everything:
        return {}
    shard = SHARD
    behaviour = [e for e in everything if e.type in BEHAVIOUR]
    first_channel = channel_of(everything[0])
    for funnel in definitions.funnels:
        for journey in journeys(funnel, behaviour, first_channel=first_channel):
            _journey_cells(cells, funnel, journey, shard)
    _retention_cells(cells, everything, definitions.return_events, shard)
    for event in everything:
        channel = channel_of(event)
        cells[TimingCell(channel, shard)][HourOfWeek(channel, hour_of_week(event))] += 1
    horizon = (now - timedelta(days=STATS_DAYS)).date().isoformat()
    catalogued = definitions.catalogued()
    for event in everything:
        day = event.timestamp.date().isoformat()
        if day >= horizon:
            moment = event.timestamp
            hour = cells[StatsCell(day, moment.hour, shard)]
            hour[TOTAL] += 1
            hour[Minute(moment.hour, moment.minute)] += 1
            name = event_key(event)
            cells[StatsCell(day, None, shard)][Named(name if name in catalogued else OTHER)] += 1
    return {key: dict(counts) for key, counts in cells.items()}


def _journey_cells(cells: Cells, funnel: Funnel, journey: Journey, shard: str) -> None:
    day = journey.entry.date().isoformat()
    item = cells[FunnelCell(funnel.id, day, None, shard)]
    for step in range(1, len(journey.times) + 1):
        item[Reached(step)] += 1
        item[ReachedBy(journey.breakdown, step)] += 1
        if step > 1:  # times in a cell per step: an item's attributes stay few (one update expression each)
            took = (journey.times[step - 1] - journey.times[step - 2]).total_seconds()
            cells[FunnelCell(funnel.id, day, step, shard)][StepTime(step, bucket(took))] += 1


def _retention_cells(cells: Cells, events: Sequence[TrackingEvent], return_events: Sequence[str], shard: str) -> None:
    first = events[0].timestamp.date()
    for by, limit in RETENTION_OFFSETS.items():
        cohort = period(first, by)
        item = cells[RetentionCell(by, cohort.isoformat(), shard)]
        item[TOTAL] += 1
        for name in return_events:
            offsets = {
                _offset(cohort, e.timestamp.date(), by)
                for e in events
                if name == ANY_EVENT or (e.type in BEHAVIOUR and event_key(e) == name)
            }
            offsets = {o for o in offsets if o < limit}
            for offset in offsets:
                item[ReturnedOn(name, offset)] += 1
            if offsets:
                item[LastReturn(name, max(offsets))] += 1


def period(day: date, by: str) -> date:
    return day - timedelta(days=day.weekday()) if by == "week" else day


def _offset(cohort: date, day: date, by: str) -> int:
    days = (period(day, by) - cohort).days
    return days // 7 if by == "week" else days


def difference(new: Cells, old: Cells, *, now: datetime) -> Cells:
    """What to add to the counters to go from `old` to `new` (overview cells older than the horizon: nothing)."""
    horizon = (now - timedelta(days=STATS_DAYS)).date().isoformat()
    delta: Cells = {}
    for key in new.keys() | old.keys():
        if _frozen(key, horizon):
            continue
        before, after = old.get(key, {}), new.get(key, {})
        changed = {a: after.get(a, 0) - before.get(a, 0) for a in after.keys() | before.keys()}
        changed = {a: n for a, n in changed.items() if n}
        if changed:
            delta[key] = changed
    return delta


def kept(cells: Cells, *, now: datetime) -> Cells:
    """The cells worth remembering for the next difference (frozen overview cells are dropped)."""
    horizon = (now - timedelta(days=STATS_DAYS)).date().isoformat()
    return {key: value for key, value in cells.items() if not _frozen(key, horizon)}


def _frozen(cell: Any, horizon: str) -> bool:
    """Business rule: an overview cell of a day before the horizon no longer changes."""
    return isinstance(cell, StatsCell) and cell.day < horizon


def recompute(
    events_by_customer: Mapping[str, Iterable[TrackingEvent]], definitions: Definitions, *, now: datetime
) -> Cells:
    """The check path: every customer's cells, summed (what the counters must equal)."""
    total: Cells = {}
    for customer_id, events in events_by_customer.items():
        add(total, customer_cells(customer_id, events, definitions, now=now))
    return total


# --- figures ---------------------------------------------------------------------------------------------------------


def funnel_report(funnel: Funnel, cells: Cells, start: date, end: date) -> FunnelReport:
    """A report from this funnel's cells (cells of other funnels, or of entry days outside the range, are ignored)."""
    totals: dict[Any, int] = defaultdict(int)
    first, last = start.isoformat(), end.isoformat()
    for cell, counts in cells.items():
        if isinstance(cell, FunnelCell) and cell.funnel_id == funnel.id and first <= cell.day <= last:
            for name, count in counts.items():
                totals[name] += int(count)
    steps = _figures(funnel, lambda step: totals.get(Reached(step), 0), totals)
    values = sorted({name.value for name in totals if isinstance(name, ReachedBy)})
    breakdown = {
        value: _figures(funnel, lambda step, v=value: totals.get(ReachedBy(v, step), 0), None) for value in values
    }
    return FunnelReport(funnel.id, funnel.name, start, end, steps, breakdown)


def _figures(funnel: Funnel, reached: Any, totals: Mapping[Any, int] | None) -> list[StepFigures]:
    figures: list[StepFigures] = []
    first = reached(1)
    for index, step in enumerate(funnel.steps, start=1):
        count = reached(index)
        previous = reached(index - 1) if index > 1 else None
        histogram = (
            {n.bucket: c for n, c in totals.items() if isinstance(n, StepTime) and n.step == index and c}
            if totals is not None and index > 1
            else {}
        )
        figures.append(
            StepFigures(
                label=step.label or step.event,
                customers=count,
                from_previous=(count / previous) if previous else None,
                from_first=(count / first) if first and index > 1 else (1.0 if first else None),
                drop_off=(previous - count) if previous is not None else 0,
                median_seconds=percentile(histogram, 0.5),
                p90_seconds=percentile(histogram, 0.9),
            )
        )
    return figures


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The bucket value at `fraction` of a bucket histogram (nearest rank), None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_seconds(index)
    return None  # pragma: no cover - unreachable: ranks never exceed the total


def retention_report(
    cells: Cells,
    *,
    by: str,
    event: str,
    cumulative: bool,
    today: date,
    cohorts: int,
) -> RetentionReport:
    """Cohort rows (newest last) from the `by` cohorts' cells (other cells are ignored)."""
    limit = RETENTION_OFFSETS[by]
    merged: dict[date, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    for cell, counts in cells.items():
        if isinstance(cell, RetentionCell) and cell.by == by:
            cohort = date.fromisoformat(cell.cohort)
            for name, count in counts.items():
                merged[cohort][name] += int(count)
    rows = []
    for cohort in sorted(merged)[-cohorts:]:
        counts = merged[cohort]
        size = counts.get(TOTAL, 0)
        observable = _offset(cohort, today, by)
        values: list[float | None] = []
        for offset in range(limit):
            if offset > observable or not size:
                values.append(None)
                continue
            if cumulative:
                came = sum(counts.get(LastReturn(event, o), 0) for o in range(offset, limit))
            else:
                came = counts.get(ReturnedOn(event, offset), 0)
            values.append(came / size)
        rows.append(CohortRow(cohort, size, values))
    return RetentionReport(by, event, cumulative, rows)


PRIOR_WEIGHT = 10.0
"""How many events the population's pattern counts for in a customer's recommendation."""


def recommend(
    engagement: Mapping[str, Mapping[str, int]], population: Mapping[str, Mapping[int, int]]
) -> Recommendation:
    """Best channel, then best hour of week in it: the customer's counts plus the population's shares as a prior.

    With no engagement of their own a customer gets the population's best (confidence 0).
    """
    own = {channel: {int(h): int(n) for h, n in hours.items()} for channel, hours in engagement.items()}
    mine = sum(sum(hours.values()) for hours in own.values())
    everyone = sum(sum(hours.values()) for hours in population.values()) or 1
    channels = set(own) | set(population) or {"email"}

    def channel_score(channel: str) -> float:
        prior = sum(population.get(channel, {}).values()) / everyone
        return sum(own.get(channel, {}).values()) + PRIOR_WEIGHT * prior

    best_channel = max(sorted(channels), key=channel_score)
    in_channel = sum(population.get(best_channel, {}).values()) or 1

    def hour_score(hour: int) -> float:
        prior = population.get(best_channel, {}).get(hour, 0) / in_channel
        return own.get(best_channel, {}).get(hour, 0) + PRIOR_WEIGHT * prior

    best_hour = max(range(168), key=lambda h: (hour_score(h), -h))
    return Recommendation(best_channel, best_hour, mine / (mine + PRIOR_WEIGHT), mine)


def population_from(cells: Cells) -> dict[str, dict[int, int]]:
    """Channel → hour → events from the timing cells (other cells are ignored)."""
    table: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for cell, counts in cells.items():
        if isinstance(cell, TimingCell):
            for name, count in counts.items():
                if isinstance(name, HourOfWeek):
                    table[name.channel][name.hour] += int(count)
    return {channel: dict(hours) for channel, hours in table.items()}


# --- the fast check path ----------------------------------------------------------------------------------------------

Row = tuple[str, float, str, str]
"""(customer id, epoch seconds, message id, event key): an event as the check path reads it."""


def check_funnel(  # noqa: C901 - one tight loop on purpose: the check path must read a million events in ~1 s
    funnel: Funnel, rows: Iterable[Row], *, properties: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[int, int]]:
    """Steps reached per entry day (`{day: {step: journeys}}`), straight from raw rows: the brute-force check.

    The same journey rule as `journeys`, written over plain tuples so a million events take about a second in
    pure Python. `properties` (message id → properties) is needed only when steps filter on properties.
    """
    names = [step.event for step in funnel.steps]
    wanted = set(names)
    window = funnel.window.total_seconds()
    withins = [s.within.total_seconds() if s.within else None for s in funnel.steps]
    filtered = [bool(s.where) for s in funnel.steps]
    by_customer: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for customer, moment, message, name in rows:
        if funnel.strict or name in wanted:
            by_customer[customer].append((moment, message, name))
    result: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    count = len(names)

    def matches(index: int, name: str, message: str) -> bool:
        if names[index] != name:
            return False
        if not filtered[index]:
            return True
        return funnel.steps[index].where.matches((properties or {}).get(message, {}))

    def close(entry: float, reached: int) -> None:
        day = datetime.fromtimestamp(entry, UTC).date().isoformat()
        counts = result[day]
        for step in range(1, reached + 1):
            counts[step] += 1

    for events in by_customer.values():
        events.sort()
        entry = last = 0.0
        reached = 0
        for moment, message, name in events:
            if reached:
                within = withins[reached] if reached < count else None
                deadline = entry + window if within is None else min(entry + window, last + within)
                if moment > deadline:
                    close(entry, reached)
                    reached = 0
            if reached:
                if matches(reached, name, message):
                    reached += 1
                    last = moment
                    if reached == count:
                        close(entry, reached)
                        reached = 0
                    continue
                if not funnel.strict:
                    continue
                close(entry, reached)
                reached = 0
            if matches(0, name, message):
                entry = last = moment
                reached = 1
                if count == 1:
                    close(entry, 1)
                    reached = 0
        if reached:
            close(entry, reached)
    return {day: dict(steps) for day, steps in result.items()}
