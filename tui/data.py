"""The TUI's data port (`DataSource`) and its adapter on the tracking store: one method per screen read.

Every read is of pre-aggregated items (profiles, memberships, segment history, the analytics and overview
items the stream maintains) or of one customer's own events; no screen is drawn from a scan of raw events.
The reads are the `shared.services` functions the CLI calls, and their typed read models are what the screens
draw (a customer's events are the customers service's `RecentEvent`s); the rows below only put together what one
screen shows from several of them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.reports import (
    FunnelReport,
    LiveEvent,
    Overview,
    RetentionReport,
    TimingReport,
)
from shared.domain.segments import Memberships
from shared.ports import Page, StoredProfile
from shared.services import analytics
from shared.services import overview as overviews
from shared.services.customers import CustomerSummary, RecentEvent, customer_detail, customer_summary, find_customer
from shared.services.segments import SegmentExplanation, explain, rules_of

if TYPE_CHECKING:
    from shared.storage.dynamo import DynamoTrackingStore


class NotAvailable(Exception):
    """The data source cannot answer this read (the message says why): the screen shows a placeholder."""


class NotFound(LookupError):
    """The customer, segment or failed event asked for is not there (any more)."""


class ReplayRefused(Exception):
    """A failed event could not be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One line of a customer list."""

    customer_id: str
    user_id: str | None
    email: str | None
    events: int
    orders: int
    revenue: float
    last_seen: str | None


TimelineEvent = RecentEvent
"""One of a customer's events, for the timeline: the customers service's read model as it is."""


@dataclass(frozen=True, slots=True)
class SegmentWhy:
    """Whether a customer is in a segment, why, and when that can change (the segments service's `explain`)."""

    segment_id: str
    name: str
    member: bool
    rule_says: bool
    reasons: tuple[str, ...]
    next_change: str | None


@dataclass(frozen=True, slots=True)
class CustomerView:
    """Everything the customer screen shows but the best time and channel (read apart: another service)."""

    row: CustomerRow
    first_seen: str | None
    identities: tuple[str, ...]
    traits: dict[str, Any]
    computed: dict[str, Any]
    """Computed traits: counts, average order value, rolling 7/30/90-day figures, open cart, touches."""
    segments: tuple[SegmentWhy, ...]
    events: tuple[TimelineEvent, ...]
    """Newest first."""


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One line of the segment list."""

    segment_id: str
    name: str
    description: str
    version: int
    applied_at: str
    size: int | None = None
    """Members now (None while the overview figures are not available)."""
    trend: tuple[int, ...] = ()
    """Size at the end of each of the last 7 days, oldest first."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A customer entering or leaving a segment."""

    at: str
    customer_id: str
    entered: bool


@dataclass(frozen=True, slots=True)
class SegmentView:
    """A segment's definition and its most recent entries and exits (newest first)."""

    row: SegmentRow
    definition: dict[str, Any]
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class FunnelRef:
    """A defined funnel, as listed."""

    id: str
    name: str


class DataSource(Protocol):
    """What the screens read (and the one write: replay). Every method blocks: call it from a worker."""

    label: str
    """Where the data comes from, for the title bar."""

    def overview(self, *, now: datetime) -> Overview: ...
    def customers(self, *, limit: int, next_token: str | None = None) -> Page[CustomerRow]: ...
    def find_customer(self, reference: str) -> str | None: ...
    def customer(self, customer_id: str, *, now: datetime) -> CustomerView: ...
    def timing(self, customer_id: str) -> TimingReport: ...
    def customer_rows(self, customer_ids: Sequence[str]) -> list[CustomerRow]: ...
    def segments(self, *, now: datetime) -> list[SegmentRow]: ...
    def segment(self, segment_id: str, *, now: datetime) -> SegmentView: ...
    def segment_members(self, segment_id: str) -> Iterator[str]: ...
    def funnels(self) -> list[FunnelRef]: ...
    def funnel(self, funnel_id: str, *, start: date, end: date) -> FunnelReport: ...
    def retention(self, *, by: str, cumulative: bool, today: date) -> RetentionReport: ...
    def live(self, *, limit: int) -> list[LiveEvent]: ...
    def failed(self, *, limit: int, next_token: str | None = None, now: datetime) -> Page[FailedEvent]: ...
    def failed_event(self, failure_id: str) -> FailedEvent: ...
    def replay(self, failure_id: str) -> str: ...


HISTORY_SHOWN = 50


def _row(summary: CustomerSummary) -> CustomerRow:
    return CustomerRow(
        customer_id=summary.customer_id,
        user_id=summary.user_id,
        email=summary.email if isinstance(summary.email, str) else None,
        events=summary.events,
        orders=summary.orders,
        revenue=float(summary.revenue),
        last_seen=summary.last_seen,
    )


def _why(explanation: SegmentExplanation, name: str) -> SegmentWhy:
    return SegmentWhy(
        segment_id=explanation.segment,
        name=name,
        member=explanation.member,
        rule_says=explanation.rule_says,
        reasons=explanation.reasons,
        next_change=explanation.next_change,
    )


class _ReadOnce:
    """The store, with one customer's events and memberships read once for a whole customer screen.

    `customer_detail` and every segment's `explain` read the same identity events: without this the customer
    screen would cost one query per identity per segment. Every other read goes to the store as it is.
    """

    def __init__(self, store: DynamoTrackingStore) -> None:
        self._store = store
        self._events: dict[tuple[str, str], list[TrackingEvent]] = {}
        self._memberships: dict[str, Memberships] = {}

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]:
        if (kind, identifier) not in self._events:
            self._events[kind, identifier] = self._store.list_identity_events(kind, identifier)
        return list(self._events[kind, identifier])

    def memberships_of(self, customer_id: str) -> Memberships:
        if customer_id not in self._memberships:
            self._memberships[customer_id] = self._store.memberships_of(customer_id)
        return dict(self._memberships[customer_id])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class StoreDataSource:
    """`DataSource` on the tracking store, through the same `shared.services` reads the CLI uses."""

    def __init__(self, store: DynamoTrackingStore, *, label: str = "") -> None:
        self.store = store
        self.label = label or store.table_name

    # --- overview -------------------------------------------------------------------------------------------

    def overview(self, *, now: datetime) -> Overview:
        return overviews.overview(self.store, now=now)

    def live(self, *, limit: int) -> list[LiveEvent]:
        return overviews.recent_events(self.store, limit=limit)

    # --- customers ------------------------------------------------------------------------------------------

    def customers(self, *, limit: int, next_token: str | None = None) -> Page[CustomerRow]:
        page = self.store.list_customers(limit=limit, next_token=next_token)
        return Page(tuple(_row(customer_summary(stored.profile)) for stored in page.items), page.next_token)

    def find_customer(self, reference: str) -> str | None:
        found = find_customer(self.store, reference.strip())
        return found.profile.customer_id if found else None

    def customer_rows(self, customer_ids: Sequence[str]) -> list[CustomerRow]:
        found = self.store.get_profiles(list(customer_ids)) if customer_ids else {}
        return [
            _row(customer_summary(found[cid].profile))
            if cid in found
            else CustomerRow(cid, None, None, 0, 0, 0.0, None)
            for cid in customer_ids
        ]

    def customer(self, customer_id: str, *, now: datetime) -> CustomerView:
        reader = _ReadOnce(self.store)
        stored = find_customer(reader, customer_id)
        if stored is None:
            raise NotFound(f"no customer {customer_id!r}")
        detail = customer_detail(reader, stored, now=now, recent=10**9)
        return CustomerView(
            row=_row(detail),
            first_seen=detail.first_seen,
            identities=detail.identities,
            traits=detail.traits,
            computed=detail.computed,
            segments=self._segments_of(reader, stored, now),
            events=detail.recent_events,
        )

    def _segments_of(self, reader: _ReadOnce, stored: StoredProfile, now: datetime) -> tuple[SegmentWhy, ...]:
        """Every segment's answer for the customer: the ones they are in first."""
        definitions = self.store.list_segments()
        names = {segment.id: segment.name for segment in definitions}
        segments = [
            _why(explain(reader, rule, stored, now=now), names.get(rule.id, rule.id)) for rule in rules_of(definitions)
        ]
        return tuple(sorted(segments, key=lambda why: (not why.member, why.segment_id)))

    def timing(self, customer_id: str) -> TimingReport:
        return analytics.timing_report(self.store, customer_id)

    # --- segments -------------------------------------------------------------------------------------------

    def segments(self, *, now: datetime) -> list[SegmentRow]:
        sizes = {size.segment_id: size for size in overviews.segment_sizes(self.store, now=now)}
        rows = []
        for segment in sorted(self.store.list_segments(), key=lambda s: s.id):
            size = sizes.get(segment.id)
            rows.append(
                SegmentRow(
                    segment_id=segment.id,
                    name=segment.name,
                    description=str(segment.definition.get("description", "")),
                    version=segment.version,
                    applied_at=segment.applied_at,
                    size=size.size if size else None,
                    trend=tuple(size.trend) if size else (),
                )
            )
        return rows

    def segment(self, segment_id: str, *, now: datetime) -> SegmentView:
        rows = {row.segment_id: row for row in self.segments(now=now)}
        if segment_id not in rows:
            raise NotFound(f"no segment {segment_id!r}")
        definition = next(s.definition for s in self.store.list_segments() if s.id == segment_id)
        history = self.store.recent_segment_history(segment_id, limit=HISTORY_SHOWN)  # newest first
        return SegmentView(
            row=rows[segment_id],
            definition=dict(definition),
            history=tuple(HistoryEntry(at, cid, entered) for at, cid, entered in history),
        )

    def segment_members(self, segment_id: str) -> Iterator[str]:
        return self.store.segment_members(segment_id)

    # --- analytics ------------------------------------------------------------------------------------------

    def funnels(self) -> list[FunnelRef]:
        return [FunnelRef(f.id, f.name) for f in analytics.list_funnels(self.store)]

    def funnel(self, funnel_id: str, *, start: date, end: date) -> FunnelReport:
        return analytics.funnel_report(self.store, funnel_id, start=start, end=end, breakdown=True)

    def retention(self, *, by: str, cumulative: bool, today: date) -> RetentionReport:
        return analytics.retention_report(self.store, by=by, event="*", cumulative=cumulative, today=today)

    # --- failed events --------------------------------------------------------------------------------------

    def failed(self, *, limit: int, next_token: str | None = None, now: datetime) -> Page[FailedEvent]:
        return self.store.list_failed(limit=limit, next_token=next_token, now=now)

    def failed_event(self, failure_id: str) -> FailedEvent:
        found = self.store.get_failed(failure_id)
        if found is None:
            raise NotFound(f"no failed event {failure_id!r} (replayed or expired meanwhile?)")
        return found

    def replay(self, failure_id: str) -> str:
        from shared.services.collect import Collector
        from shared.services.replay import ReplayError, change_from_record, replay

        failure = self.failed_event(failure_id)
        try:
            result = replay(self.store, Collector(self.store), failure, change_from_record)
        except ReplayError as exc:
            raise ReplayRefused(str(exc)) from exc
        events = result.get("events", 0)
        return f"replayed {failure_id}: {events} event{'s' if events != 1 else ''} processed again"


class IteratorPager:
    """Pages pulled lazily from an iterator (a segment's members), kept once pulled.

    Thread workers may overlap (a new one starts while an old one still runs), so pulling holds a lock.
    """

    def __init__(self, items: Iterator[str], size: int) -> None:
        self._items = items
        self.size = size
        self._pulled: list[str] = []
        self._done = False
        self._lock = threading.Lock()

    def page(self, index: int) -> tuple[list[str], bool]:
        """The items of page `index` (0-based) and whether there is a later page."""
        wanted = (index + 1) * self.size + 1  # one more tells whether a next page exists
        with self._lock:
            while not self._done and len(self._pulled) < wanted:
                try:
                    self._pulled.append(next(self._items))
                except StopIteration:
                    self._done = True
            start = index * self.size
            return self._pulled[start : start + self.size], len(self._pulled) > start + self.size
