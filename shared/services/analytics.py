"""The analytics service: keep funnel, retention, timing and overview counters exact, and read reports.

Processing calls `update_customers` with the customers a batch changed (and their events, already read for
segments); reading a report is a handful of queries on counter items whatever the event volume. `recompute`
is the check path (every stored event, summed in memory), also what `footfall funnels show --check` compares.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from shared.domain import analytics
from shared.domain.analytics import Cells, Definitions, Funnel
from shared.domain.events import TrackingEvent
from shared.domain.reports import FunnelReport, RetentionReport, TimingReport
from shared.ports import Page, StorageError, StoredProfile
from shared.services.segments import customer_events
from shared.storage.analytics import CellsChange, StoredCells

logger = logging.getLogger(__name__)
STARTERS = Path(__file__).resolve().parents[2] / "infra" / "analytics" / "starters.json"
SAVE_ATTEMPTS = 4
PARALLEL_READS = 8


class AnalyticsStore(Protocol):
    def get_analytics_definitions(self) -> dict[str, Any] | None: ...
    def put_analytics_definitions(self, document: Mapping[str, Any]) -> None: ...
    def get_cells(self, customer_ids: Sequence[str]) -> dict[str, StoredCells]: ...
    def save_cells(self, changes: Sequence[CellsChange]) -> list[str]: ...
    def counter_items(
        self, pk: str, *, start: str | None = None, end: str | None = None
    ) -> list[tuple[str, dict[str, int]]]: ...
    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]: ...
    def list_customers(self, *, limit: int = 50, next_token: str | None = None) -> Page[StoredProfile]: ...


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
) -> int:
    """Recompute these customers' cells and add the differences to the counters. Returns counter changes.

    A customer merged away (or erased) contributes nothing any more; its previous cells are taken back.

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
        previous = store.get_cells(wanted)
        changes = []
        for customer_id in wanted:
            profile = profiles.get(customer_id)
            active = profile is not None and not profile.profile.merged_into
            cells = (
                analytics.customer_cells(customer_id, known.get(customer_id, []), definitions, now=now)
                if active
                else {}
            )
            delta = analytics.difference(cells, previous[customer_id].cells, now=now)
            kept = analytics.kept(cells, now=now)
            if delta or kept != previous[customer_id].cells:
                changes.append(CellsChange(previous[customer_id], kept, delta))
        conflicted = set(store.save_cells(changes))
        changed += sum(len(c.delta) for c in changes if c.previous.customer_id not in conflicted)
        wanted = sorted(conflicted)
        for customer_id in conflicted:
            known.pop(customer_id, None)  # another writer moved it: read everything again
        profiles = None
    raise StorageError(f"analytics cells of {len(wanted)} customers kept changing under us")


def take_back(store: AnalyticsStore, customer_ids: Sequence[str]) -> None:
    """Remove these customers' contributions from the counters (before they are erased).

    Raises:
        StorageError: could not be done (nothing was half-done for any customer).
    """
    wanted = list(customer_ids)
    for _ in range(SAVE_ATTEMPTS):
        previous = store.get_cells(wanted)
        changes = [
            CellsChange(stored, {}, {key: {a: -n for a, n in counts.items()} for key, counts in stored.cells.items()})
            for stored in previous.values()
            if stored.cells
        ]
        wanted = store.save_cells(changes)
        if not wanted:
            return
    raise StorageError("analytics cells kept changing while they were taken back")


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
    items = store.counter_items(f"FUNNEL#{funnel.id}", start=f"DAY#{start.isoformat()}", end=f"DAY#{end.isoformat()}~")
    report = analytics.funnel_report(funnel, items, start, end)
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
    items = store.counter_items(f"RETENTION#{by}", start=first.isoformat(), end=f"{today.isoformat()}~")
    return analytics.retention_report(items, by=by, event=event, cumulative=cumulative, today=today, cohorts=cohorts)


def timing_report(store: AnalyticsStore, customer_id: str | None = None) -> TimingReport:
    """The population's engagement table, and a customer's best channel and hour when asked: two requests."""
    population = analytics.population_from(attributes for _, attributes in store.counter_items("TIMING"))
    if customer_id is None:
        return TimingReport(population)
    stored = store.get_profiles([customer_id]).get(customer_id)
    if stored is None:
        raise KeyError(customer_id)
    return TimingReport(population, customer_id, analytics.recommend(stored.profile.engagement, population))


# --- the check path ------------------------------------------------------------------------------------------------


def recompute(store: Any, *, now: datetime) -> Cells:
    """Brute force: read every stored event (a scan), group by customer, and sum their cells."""
    definitions = definitions_of(store)
    by_customer: dict[str, list[TrackingEvent]] = {}
    for stored in (store.get_profiles(batch) for batch in _batches(list(all_customer_ids(store)), 100)):
        for customer_id, profile in stored.items():
            if not profile.profile.merged_into:
                by_customer[customer_id] = customer_events(store, profile)
    return analytics.recompute(by_customer, definitions, now=now)


def stored_counters(store: Any, cells: Cells) -> Cells:
    """The counter items that hold the given keys' partitions, as cells (for comparing with `recompute`)."""
    found: Cells = {}
    for pk in sorted({pk for pk, _ in cells}):
        for sk, counts in store.counter_items(pk):
            nonzero = {name: n for name, n in counts.items() if n}
            if nonzero:
                found[(pk, sk)] = nonzero
    return found


def _batches(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
