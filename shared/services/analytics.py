"""The analytics service: keep funnel, retention, timing and overview counters exact, and read reports.

Processing calls `update_customers` with the customers a batch changed (and their events, already read for
segments): each changed customer's cells are written, one put each. The stream then brings those writes back,
and `fold` adds a whole batch's differences to the counters in one update per counter item (see
the storage adapter). Reading a report is a handful of queries on counter items whatever the event
volume. `recompute` is the check path (every stored event, summed in memory), also what `footfall funnels show
--check` compares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain import analytics
from shared.domain.analytics import Cells, Definitions, Funnel
from shared.domain.cells import add, size_cells
from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.reports import FunnelReport, RetentionReport, TimingReport
from shared.ports import (
    WHOLE,
    AnalyticsStore,
    CellsChange,
    CellsRecord,
    CounterRecord,
    CustomerRecord,
    FoldStore,
    StorageError,
    StoredCells,
    StoredProfile,
    ThrottledError,
    fold_position,
)
from shared.services.segments import customer_events

logger = logging.getLogger(__name__)
STARTERS = Path(__file__).resolve().parents[2] / "infra" / "analytics" / "starters.json"
SAVE_ATTEMPTS = 4
PARALLEL_READS = 8


def definitions_of(store: AnalyticsStore) -> Definitions:
    """The applied definitions (none applied yet: no funnels, retention on any event and orders)."""
    document = store.get_analytics_definitions()
    return analytics.parse_definitions(document, source="stored definitions") if document else Definitions()


def update_customers(
    store: AnalyticsStore,
    customer_ids: Iterable[str],
    definitions: Definitions,
    *,
    now: datetime,
    events: Mapping[str, list[TrackingEvent]] | None = None,
    profiles: Mapping[str, StoredProfile] | None = None,
    created: Set[str] = frozenset(),
) -> int:
    """Recompute these customers' cells and store those that changed. Returns the counter changes they make.

    A customer merged away contributes nothing any more: its cells become empty (the fold takes them back).
    `created`: customers whose profile was just created, hence with no cells stored (not read; the write is
    conditional on there being none, so a wrong guess is read again).

    Raises:
        StorageError: when it could not be saved (the caller retries the batch; nothing was counted twice).
    """
    wanted = sorted(set(customer_ids))
    known = dict(events or {})
    changed = 0
    for _ in range(SAVE_ATTEMPTS):
        if not wanted:
            return changed
        if profiles is None or any(c not in profiles for c in wanted):
            profiles = store.get_profiles(wanted)
        missing = [
            profiles[c] for c in wanted if c in profiles and c not in known and not profiles[c].profile.merged_into
        ]
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            for stored, found in zip(missing, pool.map(lambda p: customer_events(store, p), missing), strict=True):
                known[stored.profile.customer_id] = found
        previous = {c: StoredCells(c, 0, {}) for c in wanted if c in created}
        previous |= store.get_cells([c for c in wanted if c not in created]) if len(previous) < len(wanted) else {}
        changes = []
        for customer_id in wanted:
            profile = profiles.get(customer_id)
            active = profile is not None and not profile.profile.merged_into
            cells = (
                analytics.customer_cells(customer_id, known.get(customer_id, []), definitions, now=now)
                if active
                else {}
            )
            kept = analytics.kept(cells, now=now)
            if kept != previous[customer_id].cells:
                changes.append(CellsChange(previous[customer_id], kept, format_timestamp(now)))
        conflicted = set(store.save_cells(changes))
        changed += sum(
            len(analytics.difference(c.cells, c.previous.cells, now=now))
            for c in changes
            if c.previous.customer_id not in conflicted
        )
        wanted = sorted(conflicted)
        created = frozenset()  # another writer stored cells: read them
        for customer_id in conflicted:
            known.pop(customer_id, None)  # another writer moved it: read everything again
        profiles = None
    raise StorageError(f"analytics cells of {len(wanted)} customers kept changing under us")


@dataclass(frozen=True, slots=True)
class CounterChange:
    """What one stream record adds to the counters (a customer's cells changed, a segment's size moved)."""

    sequence: str
    delta: Cells


def counter_change(sequence: str, record: CounterRecord | None, *, received: datetime) -> CounterChange | None:
    """What a stream record (decoded by storage) adds to the counters, or None for a record that moves none.

    A customer's cells item: new cells minus old, with the overview horizon they were cut at (when they were
    computed; the record's time for a REMOVE). A membership item: its segment's size, one up or down.
    """
    if isinstance(record, CustomerRecord):
        parts = [counter_change(sequence, part, received=received) for part in (record.cells, *record.steps)]
        delta: Cells = {}
        for part in parts:
            if part is not None:
                add(delta, part.delta)
        return CounterChange(sequence, delta)
    if isinstance(record, CellsRecord):
        if not record.removed and not record.at:
            # Written by a version that counted in the same transaction (every write since carries `at`): a record
            # still in the stream when that version was replaced is counted already.
            return CounterChange(sequence, {})
        at = record.at
        moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else received
        return CounterChange(sequence, analytics.difference(record.after, record.before, now=moment))
    if record is not None:
        day = record.day or received.date().isoformat()
        return CounterChange(sequence, size_cells(record.segment_id, record.step, day))
    return None


FOLD_BACKOFF_SECONDS = 0.2
FOLD_ATTRIBUTES = 250
"""Attributes per counter update (an update expression stays far below DynamoDB's 4 KB)."""
PARALLEL_FOLDS = 8
LANE_KEPT = timedelta(hours=25)
"""A stream shard not folded for this long is closed (DynamoDB Streams keep records 24 hours): its marks on counter
items are removed as the items are next updated, so a long-lived item does not collect one per shard for ever."""


@dataclass(frozen=True, slots=True)
class _Unit:
    """A record's counts for one counter item (or a part of them: a record with more names than one update takes)."""

    position: str
    sequence: str
    counts: dict[Any, int]


def fold(store: FoldStore, lane: str, changes: Sequence[CounterChange], *, now: datetime | None = None) -> list[str]:
    """Add a batch's counter changes to the counters, once each however often the stream delivers them.

    `lane` is the stream shard the records come from (their sequence numbers are ordered within it). Each counter
    item gets one update per batch (more only past the attributes one update takes), with no transaction: the
    update adds the counts and moves the shard's mark kept on that item, on the condition that the mark is below
    the first record it holds. So a retried batch adds nothing an item already has; an item found ahead reads its
    mark and adds only what is after it. Items are independent: a crash between two updates leaves each either
    done or not, and the retry finishes the rest. Records at or below the shard's mark from before per-item marks
    (`fold_lanes`) were folded by the transactions of that version and are skipped.

    Returns:
        The sequence numbers of the records not folded for now (to report failed: the stream retries them).
    """
    ordered = sorted((c for c in changes if c.delta), key=lambda c: int(c.sequence))
    now = now or datetime.now(UTC)
    try:
        lanes = store.fold_lanes()
    except StorageError:
        logger.warning("the fold's shards could not be read; the batch will be retried", extra={"lane": lane})
        return [c.sequence for c in ordered]
    legacy = lanes[lane].mark if lane in lanes else None
    ordered = [c for c in ordered if legacy is None or fold_position(c.sequence) > legacy]
    closed = sorted(other for other, seen in lanes.items() if other != lane and seen.at and seen.at < now - LANE_KEPT)
    per_item: dict[Any, list[_Unit]] = {}
    for change in ordered:
        for cell, counts in change.delta.items():
            per_item.setdefault(cell, []).extend(_units(store, change.sequence, counts))
    with ThreadPoolExecutor(max_workers=PARALLEL_FOLDS) as pool:
        stopped = [s for s in pool.map(lambda i: _fold_item(store, lane, i[0], i[1], closed), per_item.items()) if s]
    first_failure = min(stopped, key=int, default=None)
    if ordered and first_failure is None:
        try:
            store.touch_lane(lane, now)
        except StorageError:
            logger.warning("the fold's shard was not marked as seen", extra={"lane": lane})
    return [c.sequence for c in ordered if first_failure is not None and int(c.sequence) >= int(first_failure)]


def _units(store: FoldStore, sequence: str, counts: Mapping[Any, int]) -> list[_Unit]:
    """A record's counts for one item, in parts that each fit one update (cut in the store's order of names)."""
    names = sorted((n for n, count in counts.items() if count), key=store.counter_order)
    chunks = [names[start : start + FOLD_ATTRIBUTES] for start in range(0, len(names), FOLD_ATTRIBUTES)]
    return [
        _Unit(
            fold_position(sequence, WHOLE if index == len(chunks) - 1 else index),
            sequence,
            {name: counts[name] for name in chunk},
        )
        for index, chunk in enumerate(chunks)
    ]


def _updates(units: Sequence[_Unit]) -> Iterator[list[_Unit]]:
    """Consecutive units summed into one update while their names fit it."""
    pending: list[_Unit] = []
    names: set[Any] = set()
    for unit in units:
        if pending and len(names | unit.counts.keys()) > FOLD_ATTRIBUTES:
            yield pending
            pending, names = [], set()
        pending.append(unit)
        names |= unit.counts.keys()
    if pending:
        yield pending


def _fold_item(store: FoldStore, lane: str, cell: Any, units: list[_Unit], closed: Sequence[str]) -> str | None:
    """One counter item's share of the batch; returns the sequence of the first record not folded into it (None:
    all of it is in)."""
    remaining, throttled = list(units), 0
    while remaining and throttled <= SAVE_ATTEMPTS:
        update = next(_updates(remaining))
        counts: dict[Any, int] = {}
        for unit in update:
            for name, count in unit.counts.items():
                counts[name] = counts.get(name, 0) + count
        try:
            if store.fold_item(lane, cell, counts, first=update[0].position, upto=update[-1].position, forget=closed):
                remaining = remaining[len(update) :]
                continue
            mark = store.item_mark(lane, cell)  # folded before, some or all of it: go on after the item's mark
            remaining = [unit for unit in remaining if mark is None or unit.position > mark]
        except ThrottledError:
            logger.warning("the fold was throttled; trying again", extra={"lane": lane})
            throttled += 1
            time.sleep(FOLD_BACKOFF_SECONDS)
        except StorageError:
            logger.warning("a counter item could not be folded; its records will be retried", extra={"lane": lane})
            break
    return remaining[0].sequence if remaining else None


def apply_definitions(store: AnalyticsStore, document: Any, *, source: str, now: datetime) -> dict[str, Any]:
    """Validate and store definitions, then recompute every customer's cells (the counters follow exactly).

    Raises:
        AnalyticsDefinitionError: the file is wrong; nothing is stored.
    """
    definitions = analytics.parse_definitions(document, source=source)
    store.put_analytics_definitions(document)
    customers = 0
    batch: list[str] = []
    for customer_id in all_customer_ids(store):
        batch.append(customer_id)
        if len(batch) == 50:
            update_customers(store, batch, definitions, now=now)
            customers += len(batch)
            batch = []
    if batch:
        update_customers(store, batch, definitions, now=now)
        customers += len(batch)
    return {
        "funnels": [f.id for f in definitions.funnels],
        "return_events": list(definitions.return_events),
        "customers": customers,
    }


def all_customer_ids(store: AnalyticsStore) -> Iterator[str]:
    token: str | None = None
    while True:
        page = store.list_customers(limit=100, next_token=token)
        yield from (stored.profile.customer_id for stored in page.items)
        token = page.next_token
        if not token:
            return


# --- reports ---------------------------------------------------------------------------------------------------------


def list_funnels(store: AnalyticsStore) -> list[Funnel]:
    return list(definitions_of(store).funnels)


def find_funnel(store: AnalyticsStore, funnel_id: str) -> Funnel:
    for funnel in list_funnels(store):
        if funnel.id == funnel_id:
            return funnel
    raise KeyError(funnel_id)


def funnel_report(
    store: AnalyticsStore, funnel_id: str, *, start: date, end: date, breakdown: bool = True
) -> FunnelReport:
    """Figures for journeys that entered between `start` and `end` (inclusive): one query."""
    funnel = find_funnel(store, funnel_id)
    cells = store.funnel_counters(funnel.id, start=start, end=end)
    report = analytics.funnel_report(funnel, cells, start, end)
    return report if breakdown else FunnelReport(report.funnel_id, report.name, start, end, report.steps, {})


def retention_report(
    store: AnalyticsStore,
    *,
    by: str = "day",
    event: str = analytics.ANY_EVENT,
    cumulative: bool = False,
    cohorts: int = 14,
    today: date,
) -> RetentionReport:
    """Cohort table of the last `cohorts` days/weeks: one query."""
    if by not in analytics.RETENTION_OFFSETS:
        raise ValueError("by must be `day` or `week`")
    tracked = definitions_of(store).return_events
    if event not in tracked:
        raise KeyError(event)
    span = timedelta(days=cohorts if by == "day" else cohorts * 7)
    first = analytics.period(today - span, by)
    cells = store.retention_counters(by, start=first, end=today)
    return analytics.retention_report(cells, by=by, event=event, cumulative=cumulative, today=today, cohorts=cohorts)


def timing_report(store: AnalyticsStore, customer_id: str | None = None) -> TimingReport:
    """The population's engagement table, and a customer's best channel and hour when asked: two requests."""
    population = analytics.population_from(store.timing_counters())
    if customer_id is None:
        return TimingReport(population)
    stored = store.get_profiles([customer_id]).get(customer_id)
    if stored is None:
        raise KeyError(customer_id)
    return TimingReport(population, customer_id, analytics.recommend(stored.profile.engagement, population))


# --- the check path ------------------------------------------------------------------------------------------------


def recompute(store: AnalyticsStore, *, now: datetime) -> Cells:
    """Brute force: read every stored event (a scan), group by customer, and sum their cells."""
    definitions = definitions_of(store)
    by_customer: dict[str, list[TrackingEvent]] = {}
    for stored in (store.get_profiles(batch) for batch in _batches(list(all_customer_ids(store)), 100)):
        for customer_id, profile in stored.items():
            if not profile.profile.merged_into:
                by_customer[customer_id] = customer_events(store, profile)
    return analytics.recompute(by_customer, definitions, now=now)


def stored_counters(store: AnalyticsStore, cells: Cells) -> Cells:
    """The counters stored beside the given cells (their items' partitions), non-zero, as cells (for comparing with
    `recompute`)."""
    return store.counters_beside(cells)


def _batches(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
