"""The overview reads a day's counters as cells: per-minute counts, today's total and names (no storage keys)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from shared.domain.cells import TOTAL, Cells, Minute, Named, StatsCell
from shared.services.overview import overview

NOW = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)  # the last hour spans yesterday and today


class StatsStore:
    """The overview's store: two days of event counters, nothing else."""

    def __init__(self, days: dict[date, Cells]) -> None:
        self.days = days

    def stats_counters(self, day: date) -> Cells:
        return self.days.get(day, {})

    def get_status(self) -> dict[str, float]:
        return {"lag_seconds": 1.5}

    def list_segments(self) -> list[object]:
        return []

    def segment_size_items(self, segments: object, *, days: object) -> dict[tuple[str, str | None], int]:
        return {}

    def count_failed(self, day: str) -> int:
        return 2


def test_the_overview_sums_minutes_over_midnight_and_counts_only_todays_totals_and_names():
    # Given yesterday's last minutes and today's first, with totals in hour cells and names in the names cell
    store = StatsStore(
        {
            date(2026, 11, 29): {
                StatsCell("2026-11-29", 23): {TOTAL: 9, Minute(23, 45): 4},
                StatsCell("2026-11-29"): {Named("Order Completed"): 9},
            },
            date(2026, 11, 30): {
                StatsCell("2026-11-30", 0): {TOTAL: 3, Minute(0, 10): 2, Minute(0, 29): 1},
                StatsCell("2026-11-30", 0, "3"): {TOTAL: 1, Minute(0, 10): 1},  # a shard of an older table
                StatsCell("2026-11-30"): {Named("Product Viewed"): 3, Named("(other)"): 1},
            },
        }
    )
    # When
    seen = overview(store, now=NOW)
    # Then the minutes of both days are placed, and today's figures are today's only
    assert seen.events_per_minute[-2] == 1  # 00:29 (the last is now, 00:30)
    assert seen.events_per_minute[-21] == 3  # 00:10, both shards
    assert seen.events_per_minute[-46] == 4  # 23:45 yesterday
    assert sum(seen.events_per_minute) == 8
    assert seen.events_today == 4
    assert seen.top_events == [("Product Viewed", 3), ("(other)", 1)]
    assert (seen.lag_seconds, seen.failed_today) == (1.5, 2)
