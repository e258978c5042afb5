"""A fixed `DataSource` for snapshots and unit tests: the same figures every run, at a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from shared.domain.failures import FailedEvent
from shared.domain.reports import (
    CohortRow,
    FunnelReport,
    LiveEvent,
    Overview,
    Recommendation,
    RetentionReport,
    SegmentSize,
    StepFigures,
    TimingReport,
)
from shared.ports import Page
from tui.data import (
    CustomerRow,
    CustomerView,
    FunnelRef,
    HistoryEntry,
    NotAvailable,
    NotFound,
    ReplayRefused,
    SegmentRow,
    SegmentView,
    SegmentWhy,
    TimelineEvent,
)

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _customers() -> list[CustomerRow]:
    names = ["ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ida", "jon", "kim", "lou"]
    return [
        CustomerRow(
            customer_id=f"u:{name}",
            user_id=name,
            email=f"{name}@example.com" if n % 3 else None,
            events=10 + 7 * n,
            orders=n % 4,
            revenue=round(59.5 * (n % 4), 2),
            last_seen=at(5 + 37 * n),
        )
        for n, name in enumerate(names)
    ]


def _step(label: str, customers: int, first: int, previous: int | None, median: float | None) -> StepFigures:
    return StepFigures(
        label=label,
        customers=customers,
        from_previous=None if previous is None else customers / previous,
        from_first=customers / first,
        drop_off=0 if previous is None else previous - customers,
        median_seconds=median,
        p90_seconds=None if median is None else median * 4,
    )


def _funnel_steps(scale: float) -> list[StepFigures]:
    counts = [round(1200 * scale), round(530 * scale), round(210 * scale), round(120 * scale)]
    labels = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
    medians = [None, 240.0, 900.0, 3600.0]
    return [
        _step(label, n, counts[0], counts[i - 1] if i else None, medians[i])
        for i, (label, n) in enumerate(zip(labels, counts, strict=True))
    ]


@dataclass
class FakeDataSource:
    """Fixed figures; `unavailable` names reads that raise `NotAvailable`, `failing` ones that raise an error."""

    label: str = "fake · footfall-test"
    customers_list: list[CustomerRow] = field(default_factory=_customers)
    unavailable: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    failures: list[FailedEvent] = field(
        default_factory=lambda: [
            FailedEvent(
                id="2026-03-07.115500000000.bad1",
                received_at=NOW - timedelta(minutes=5),
                route="/v1/track",
                reason="event: a track call needs an event name",
                status=400,
                raw=b'{"userId": "ann", "properties": {"sku": "s-1"}}',
                source_id="web",
                message_id="m-bad-1",
            ),
            FailedEvent(
                id="2026-03-07.110000000000.bad2",
                received_at=NOW - timedelta(hours=1),
                route="/v1/batch",
                reason="invalid JSON: Expecting value at line 1 column 1",
                status=400,
                raw=b"not json at all",
                source_id="web",
            ),
        ]
    )
    replayed: list[str] = field(default_factory=list)
    live_batches: list[list[LiveEvent]] = field(default_factory=list)
    """Successive answers of `live` (the last one repeats)."""

    def _check(self, name: str) -> None:
        if name in self.unavailable:
            raise NotAvailable(f"shared.services.{name}")
        if name in self.failing:
            raise RuntimeError(f"{name} exploded")

    def overview(self, *, now: datetime) -> Overview:
        self._check("overview")
        return Overview(
            events_per_minute=[(n * 7) % 23 + n // 3 for n in range(60)],
            events_today=18_342,
            top_events=[("Product Viewed", 9120), ("page", 4410), ("Product Added", 2210), ("Order Completed", 612)],
            segments=[
                SegmentSize("browsers", 311, [250, 262, 270, 281, 290, 305, 311]),
                SegmentSize("cart_abandoners", 42, [30, 35, 33, 40, 44, 41, 42]),
                SegmentSize("heavy_spenders", 17, [12, 12, 13, 15, 15, 16, 17]),
            ],
            lag_seconds=1.4,
            failed_today=2,
        )

    def customers(self, *, limit: int, next_token: str | None = None) -> Page[CustomerRow]:
        self._check("customers")
        start = int(next_token or 0)
        rows = self.customers_list[start : start + limit]
        more = start + limit < len(self.customers_list)
        return Page(tuple(rows), str(start + limit) if more else None)

    def find_customer(self, reference: str) -> str | None:
        for row in self.customers_list:
            if reference in (row.customer_id, row.user_id, row.email):
                return row.customer_id
        return None

    def customer(self, customer_id: str, *, now: datetime) -> CustomerView:
        self._check("customer")
        row = next((r for r in self.customers_list if r.customer_id == customer_id), None)
        if row is None:
            raise NotFound(f"no customer {customer_id!r}")
        events = tuple(
            TimelineEvent(
                at=at(10 + 45 * n),
                type="track",
                event=("Product Viewed", "Product Added", "Email Opened")[n % 3],
                source="web",
                message_id=f"m-{n}",
                properties={"product_id": f"p-{n % 4}"} if n % 3 != 2 else {"campaign": "spring"},
            )
            for n in range(30)
        )
        return CustomerView(
            row=row,
            first_seen=at(60 * 24 * 3),
            identities=(f"u:{row.user_id}", "a:anon-7f3a"),
            traits={"email": row.email, "plan": "pro", "city": "Lisbon"},
            computed={
                "average_order_value": 59.5,
                "last_order_at": at(60 * 26),
                "open_cart": {"c-9": ["p-2"]},
                "rolling": {"7d": {"events": 12, "orders": 1}, "30d": {"events": 30, "orders": 2}},
                "event_counts": {"Product Viewed": 20, "Product Added": 6, "Email Opened": 4},
            },
            segments=(
                SegmentWhy(
                    "cart_abandoners",
                    "Cart abandoners",
                    True,
                    True,
                    ("Product Added (cart c-9) at 2026-03-07T10:10:00Z, no Order Completed within 1h",),
                    None,
                ),
                SegmentWhy(
                    "new_customers", "New customers", True, True, ("first seen 3 days ago",), "2026-03-11T12:00:00Z"
                ),
                SegmentWhy("heavy_spenders", "Heavy spenders", False, False, ("revenue 119 < 500 in 90d",), None),
            ),
            events=events,
        )

    def timing(self, customer_id: str) -> TimingReport:
        self._check("timing")
        return TimingReport(
            population={"email": {42: 10}},
            customer_id=customer_id,
            recommendation=Recommendation(channel="email", hour_of_week=42, confidence=0.72, events=14),
        )

    def customer_rows(self, customer_ids: Sequence[str]) -> list[CustomerRow]:
        found = {row.customer_id: row for row in self.customers_list}
        return [found.get(cid, CustomerRow(cid, None, None, 0, 0, 0.0, None)) for cid in customer_ids]

    def segments(self, *, now: datetime) -> list[SegmentRow]:
        self._check("segments")
        sizes = {s.segment_id: s for s in self.overview(now=now).segments} if "overview" not in self.unavailable else {}
        rows = []
        for sid, name, description in (
            ("browsers", "Browsers", "At least 5 product views in 7 days and no order in 30 days."),
            ("cart_abandoners", "Cart abandoners", "Added to cart, no order within 1 hour."),
            ("heavy_spenders", "Heavy spenders", "Revenue of at least 500 in the last 90 days."),
        ):
            size = sizes.get(sid)
            rows.append(
                SegmentRow(
                    sid,
                    name,
                    description,
                    2,
                    at(60 * 24 * 2),
                    size.size if size else None,
                    tuple(size.trend) if size else (),
                )
            )
        return rows

    def segment(self, segment_id: str, *, now: datetime) -> SegmentView:
        rows = {row.segment_id: row for row in self.segments(now=now)}
        if segment_id not in rows:
            raise NotFound(f"no segment {segment_id!r}")
        return SegmentView(
            row=rows[segment_id],
            definition={
                "id": segment_id,
                "name": rows[segment_id].name,
                "rule": {
                    "absence": {
                        "did": {"event": "Product Added"},
                        "then_not": {"event": "Order Completed"},
                        "within": "1h",
                        "match": ["cart_id"],
                    }
                },
            },
            history=tuple(
                HistoryEntry(at(20 + 30 * n), self.customers_list[n].customer_id, n % 3 != 1) for n in range(6)
            ),
        )

    def segment_members(self, segment_id: str) -> Iterator[str]:
        return iter([row.customer_id for row in self.customers_list])

    def funnels(self) -> list[FunnelRef]:
        self._check("funnels")
        return [FunnelRef("purchase", "Purchase"), FunnelRef("signup", "Sign-up")]

    def funnel(self, funnel_id: str, *, start: date, end: date) -> FunnelReport:
        self._check("funnels")
        scale = (end - start).days / 6 if funnel_id == "purchase" else 0.2
        return FunnelReport(
            funnel_id=funnel_id,
            name="Purchase" if funnel_id == "purchase" else "Sign-up",
            start=start,
            end=end,
            steps=_funnel_steps(scale),
            breakdown={
                "organic": _funnel_steps(scale * 0.5),
                "paid": _funnel_steps(scale * 0.3),
                "email": _funnel_steps(scale * 0.2),
            },
        )

    def retention(self, *, by: str, cumulative: bool, today: date) -> RetentionReport:
        self._check("retention")
        first = date(2026, 2, 28)
        step = 7 if by == "week" else 1
        rows = []
        for n in range(7):
            shares: list[float | None] = [1.0]
            for offset in range(1, 8):
                shares.append(None if offset > 6 - n else max(0.0, 0.6 - 0.07 * offset + 0.02 * n))
            if cumulative:
                shares = [None if s is None else min(1.0, s + 0.1) for s in shares]
            rows.append(CohortRow(first + timedelta(days=step * n), 120 - 9 * n, shares))
        return RetentionReport(by=by, event="*", cumulative=cumulative, rows=rows)

    def live(self, *, limit: int) -> list[LiveEvent]:
        self._check("live")
        if self.live_batches:
            batch = self.live_batches.pop(0) if len(self.live_batches) > 1 else self.live_batches[0]
            return batch[:limit]
        return [
            LiveEvent(at(n / 6), name, f"u:{who}", "web", channel, f"live-{n}")
            for n, (name, who, channel) in enumerate(
                [
                    ("Product Viewed", "ann", "organic"),
                    ("Product Added", "bob", "paid"),
                    ("Email Opened", "cyd", "email"),
                    ("Order Completed", "ann", None),
                    ("Product Viewed", "dee", "paid"),
                ]
            )
        ]

    def failed(self, *, limit: int, next_token: str | None = None, now: datetime) -> Page[FailedEvent]:
        self._check("failed")
        return Page(tuple(self.failures[:limit]))

    def failed_event(self, failure_id: str) -> FailedEvent:
        for failure in self.failures:
            if failure.id == failure_id:
                return failure
        raise NotFound(f"no failed event {failure_id!r}")

    def replay(self, failure_id: str) -> str:
        if "replay" in self.failing:
            raise ReplayRefused("still invalid: event: a track call needs an event name")
        self.replayed.append(failure_id)
        self.failures = [f for f in self.failures if f.id != failure_id]
        return f"replayed {failure_id}: 1 event processed again"
