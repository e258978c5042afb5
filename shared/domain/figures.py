"""Report figures from counter cells: funnel conversion and time to convert, retention cohorts, best time and
channel. Pure: the cells come from the counters (or from a recomputation, for the check path)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from shared.domain.cells import (
    TOTAL,
    Cells,
    FunnelCell,
    HourOfWeek,
    LastReturn,
    Reached,
    ReachedBy,
    RetentionCell,
    ReturnedOn,
    StepTime,
    TimingCell,
)
from shared.domain.funnels import Funnel, bucket_seconds
from shared.domain.reports import CohortRow, FunnelReport, Recommendation, RetentionReport, StepFigures

RETENTION_OFFSETS = {"day": 31, "week": 13}
"""Offsets kept per cohort (day 0-30, week 0-12)."""


def period(day: date, by: str) -> date:
    return day - timedelta(days=day.weekday()) if by == "week" else day


def period_offset(cohort: date, day: date, by: str) -> int:
    days = (period(day, by) - cohort).days
    return days // 7 if by == "week" else days


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
        observable = period_offset(cohort, today, by)
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
