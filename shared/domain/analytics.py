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
catalogued names and listed values, the rest summed in `(other)`; an item holds at most about 1,300 attributes
(a 10-step funnel's day: 50 listed values and every time bucket to each step).

Processing recomputes a changed customer's cells and adds the difference to the counters (so late and
out-of-order events land exactly where a recomputation would put them); `recompute` is the separate check
path: every stored event, grouped by customer, summed in memory. `shared.domain.cell_state` carries a customer's
cells on from a small state when a batch's events all come after those already folded (the same parts:
`funnel_cells`, `retention_cells`, `event_cells`).

This module holds the definitions and the cells; `shared.domain.funnels` (funnels, journeys, the check path),
`shared.domain.figures` (reports from cells) and `shared.domain.cells` (the cell and counter values) are its
parts, re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from shared.domain.figures import (
    PRIOR_WEIGHT,
    RETENTION_OFFSETS,
    funnel_report,
    percentile,
    period,
    period_offset,
    population_from,
    recommend,
    retention_report,
)
from shared.domain.filters import FilterDefinitionError, parse_where
from shared.domain.funnels import (
    BUCKET_BASE,
    DEFAULT_WINDOW,
    OTHER,
    Funnel,
    Journey,
    Row,
    Step,
    bucket,
    bucket_seconds,
    check_funnel,
    journeys,
    ordered,
    resume,
)
from shared.domain.profiles import channel_of, event_key, hour_of_week
from shared.domain.rules import parse_duration as _rule_duration

__all__ = [  # the analytics API in one place: funnels, figures and cells are its parts
    "ANY_EVENT",
    "BEHAVIOUR",
    "BUCKET_BASE",
    "DEFAULT_WINDOW",
    "MAX_BREAKDOWN_VALUES",
    "MAX_OVERVIEW_EVENTS",
    "OTHER",
    "PRIOR_WEIGHT",
    "RETENTION_OFFSETS",
    "SHARD",
    "SPEC_EVENTS",
    "STATS_DAYS",
    "AnalyticsDefinitionError",
    "Cells",
    "Definitions",
    "Funnel",
    "Journey",
    "Row",
    "Step",
    "add",
    "bucket",
    "bucket_seconds",
    "check_funnel",
    "customer_cells",
    "difference",
    "event_key",
    "funnel_report",
    "journeys",
    "kept",
    "ordered",
    "parse_definitions",
    "parse_duration",
    "parse_funnel",
    "percentile",
    "period",
    "population_from",
    "recommend",
    "recompute",
    "retention_report",
]

STATS_DAYS = 2
ANY_EVENT = "*"
BEHAVIOUR = frozenset({CallType.TRACK, CallType.PAGE, CallType.SCREEN})
"""Calls that are something a customer did (identify, alias and group describe who they are)."""
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
class Definitions:
    funnels: tuple[Funnel, ...] = ()
    return_events: tuple[str, ...] = (ANY_EVENT, "Order Completed")
    overview_events: tuple[str, ...] = ()
    """Custom event names the overview counts by name (beside the spec's and those the definitions use)."""

    def catalogued(self) -> frozenset[str]:
        """Every event name counted by name in the overview."""
        used = {step.event for funnel in self.funnels for step in funnel.steps}
        return SPEC_EVENTS | used | (set(self.return_events) - {ANY_EVENT}) | set(self.overview_events)


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


# --- cells -----------------------------------------------------------------------------------------------------------


def customer_cells(
    customer_id: str, events: Iterable[TrackingEvent], definitions: Definitions, *, now: datetime
) -> Cells:
    """Everything one customer adds to the counters (pure: same events, same cells)."""
    return cells_and_journeys(ordered(e for e in events), definitions, now=now)[0]


def cells_and_journeys(
    everything: Sequence[TrackingEvent], definitions: Definitions, *, now: datetime
) -> tuple[Cells, dict[str, Journey]]:
    """`customer_cells` of events already in `ordered` order, and the journey each funnel still has open after
    the last of them (by funnel id: what `shared.domain.cell_state` resumes from)."""
    cells: dict[Any, Any] = defaultdict(lambda: defaultdict(int))
    if not everything:
        return {}, {}
    behaviour = [e for e in everything if e.type in BEHAVIOUR]
    still_open = funnel_cells(cells, definitions.funnels, behaviour, first_channel=channel_of(everything[0]))
    retention_cells(cells, everything[0].timestamp, everything, definitions.return_events, cohort=True)
    event_cells(cells, everything, definitions, now=now)
    return {key: dict(counts) for key, counts in cells.items()}, still_open


def funnel_cells(
    cells: Cells,
    funnels: Sequence[Funnel],
    behaviour: Sequence[TrackingEvent],
    *,
    first_channel: str,
    opened: Mapping[str, Journey] | None = None,
) -> dict[str, Journey]:
    """Add the journeys of `behaviour` (in `ordered` order) through each funnel; returns those still open.

    `opened`: the journeys open before these events (their contributions are in `cells`): each is taken back and
    continued, as `journeys` would have had it. `cells` must create missing cells and counters (a defaultdict).
    """
    still_open = {}
    for funnel in funnels:
        current = (opened or {}).get(funnel.id)
        if current is not None:
            journey_cells(cells, funnel, current, sign=-1)
            current = Journey(current.entry, list(current.times), current.breakdown)
        found, current = resume(funnel, current, behaviour, first_channel=first_channel)
        for journey in found if current is None else [*found, current]:
            journey_cells(cells, funnel, journey)
        if current is not None:
            still_open[funnel.id] = current
    return still_open


def journey_cells(cells: Cells, funnel: Funnel, journey: Journey, *, sign: int = 1) -> None:
    """Add what a journey contributes (`sign` -1: take it back)."""
    day, shard = journey.entry.date().isoformat(), SHARD
    item = cells[FunnelCell(funnel.id, day, shard)]
    for step in range(1, len(journey.times) + 1):
        item[Reached(step)] += sign
        item[ReachedBy(journey.breakdown, step)] += sign
        if step > 1:
            took = (journey.times[step - 1] - journey.times[step - 2]).total_seconds()
            item[StepTime(step, bucket(took))] += sign


def retention_cells(
    cells: Cells, first: datetime, events: Sequence[TrackingEvent], return_events: Sequence[str], *, cohort: bool
) -> None:
    """Add the returns of `events` to the cohorts of the customer's `first` event's moment (`cohort`: and count
    the customer in them). Events after those already in `cells` move each event's last return along."""
    for by, limit in RETENTION_OFFSETS.items():
        start = period(first.date(), by)
        item = cells[RetentionCell(by, start.isoformat(), SHARD)]
        if cohort:
            item[TOTAL] += 1
        for name in return_events:
            offsets = {period_offset(start, e.timestamp.date(), by) for e in events if returned(name, e)}
            _returns(item, name, {o for o in offsets if o < limit})


def _returns(item: dict[Any, int], name: str, offsets: set[int]) -> None:
    """Count the offsets not yet counted; the last return becomes the latest of them all."""
    fresh = {o for o in offsets if not item.get(ReturnedOn(name, o))}
    if not fresh:
        return
    for offset in fresh:
        item[ReturnedOn(name, offset)] += 1
    for counter in [c for c in item if isinstance(c, LastReturn) and c.event == name and item[c]]:
        item[counter] -= 1
    latest = max(c.offset for c in item if isinstance(c, ReturnedOn) and c.event == name and item[c])
    item[LastReturn(name, latest)] += 1


def returned(name: str, event: TrackingEvent) -> bool:
    """Business rule: whether `event` is a return of tracked event `name` (`*`: any event, else behaviour)."""
    return name == ANY_EVENT or (event.type in BEHAVIOUR and event_key(event) == name)


def event_cells(cells: Cells, events: Iterable[TrackingEvent], definitions: Definitions, *, now: datetime) -> None:
    """Add what each event counts on its own: engagement by channel and hour, and the overview within the horizon."""
    shard = SHARD
    for event in events:
        channel = channel_of(event)
        cells[TimingCell(channel, shard)][HourOfWeek(channel, hour_of_week(event))] += 1
    horizon = (now - timedelta(days=STATS_DAYS)).date().isoformat()
    catalogued = definitions.catalogued()
    for event in events:
        day = event.timestamp.date().isoformat()
        if day >= horizon:
            moment = event.timestamp
            hour = cells[StatsCell(day, moment.hour, shard)]
            hour[TOTAL] += 1
            hour[Minute(moment.hour, moment.minute)] += 1
            name = event_key(event)
            cells[StatsCell(day, None, shard)][Named(name if name in catalogued else OTHER)] += 1


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
