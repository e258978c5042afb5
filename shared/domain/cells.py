"""Counter cells as domain values: which counter (a cell) and which count in it (a counter name).

Every analytics figure is a sum of cells: `Cells` maps a cell (a funnel's entry day, a retention cohort, a
channel's engagement, a day's events, a segment's size) to its counts by counter name. These are plain frozen
values; how a cell is keyed and how a counter name is spelled in the table is the storage layer's business
(`shared.storage.analytics` maps them both ways, byte for byte). Named tuples, for speed (a customer's cells are
recomputed on every change, and the check path computes a million events' worth): each ends with its `kind`, so
two cells or two counter names of different kinds are never equal, whatever their other fields hold.

Stdlib only and tiny: the collector imports the storage adapter, which imports this module.
"""

from __future__ import annotations

from typing import NamedTuple

SHARD = "0"
"""The one counter item per cell (its shard). Counters are written by the stream fold, once per counter item per
window (not once per customer), so one item per cell stays far below a partition's 1,000 WU/s; reports still sum
whatever shards a cell has (tables written before the fold have 4)."""


# --- cells: which counter item -----------------------------------------------------------------------------------


class FunnelCell(NamedTuple):
    """Journeys of a funnel that entered on `day`: steps reached, breakdown and the time taken to reach each step
    (one cell, so the fold's update of a day touches one item; it was one cell per step's times until 2026-12)."""

    funnel_id: str
    day: str
    shard: str = SHARD
    kind: str = "funnel"


class RetentionCell(NamedTuple):
    """A cohort (`by` = `day` or `week`, starting on `cohort`): its size and its returns."""

    by: str
    cohort: str
    shard: str = SHARD
    kind: str = "retention"


class TimingCell(NamedTuple):
    """Engagement through a channel by hour of week."""

    channel: str
    shard: str = SHARD
    kind: str = "timing"


class StatsCell(NamedTuple):
    """One day's events: in an hour (`hour` 0-23: the total and per minute), or by name (`hour` None)."""

    day: str
    hour: int | None = None
    shard: str = SHARD
    kind: str = "stats"


class SizeCell(NamedTuple):
    """A segment's size: the total (`day` None), or that day's net change."""

    segment_id: str
    day: str | None = None
    shard: str = SHARD
    kind: str = "size"


Cell = FunnelCell | RetentionCell | TimingCell | StatsCell | SizeCell


# --- counter names: which count in a cell ------------------------------------------------------------------------


class Total(NamedTuple):
    """How many: events in a stats hour, customers in a retention cohort."""

    kind: str = "total"


class Net(NamedTuple):
    """A segment size's net change (entries minus exits)."""

    kind: str = "net"


class Reached(NamedTuple):
    """Journeys that reached `step` (1-based)."""

    step: int
    kind: str = "reached"


class ReachedBy(NamedTuple):
    """Journeys of one breakdown value that reached `step`."""

    value: str
    step: int
    kind: str = "reached_by"


class StepTime(NamedTuple):
    """Journeys that took a time in `bucket` (see `analytics.bucket`) from the previous step to `step`."""

    step: int
    bucket: int
    kind: str = "step_time"


class ReturnedOn(NamedTuple):
    """Customers of a cohort who did `event` on `offset` (days or weeks after the cohort's start)."""

    event: str
    offset: int
    kind: str = "returned_on"


class LastReturn(NamedTuple):
    """Customers of a cohort whose last `event` was on `offset`."""

    event: str
    offset: int
    kind: str = "last_return"


class HourOfWeek(NamedTuple):
    """Events through `channel` in `hour` of the week (0 = Monday 00h)."""

    channel: str
    hour: int
    kind: str = "hour_of_week"


class Minute(NamedTuple):
    """Events in one minute of a stats hour (`minute` 0-59 of `hour`)."""

    hour: int
    minute: int
    kind: str = "minute"


class Named(NamedTuple):
    """Events by name (a catalogued name, or `(other)`)."""

    event: str
    kind: str = "named"


TOTAL = Total()
NET = Net()
Counter = Total | Net | Reached | ReachedBy | StepTime | ReturnedOn | LastReturn | HourOfWeek | Minute | Named

Cells = dict[Cell, dict[Counter, int]]
"""Cell → counter name → count."""


def add(total: Cells, more: Cells, sign: int = 1) -> None:
    """Add `more` (times `sign`) into `total`."""
    for key, counts in more.items():
        target = total.setdefault(key, {})
        for name, count in counts.items():
            target[name] = target.get(name, 0) + sign * count


def size_cells(segment_id: str, step: int, day: str) -> Cells:
    """The cells of one size step (+1 entered, -1 left) on `day`: the total and that day's net change."""
    return {SizeCell(segment_id): {NET: step}, SizeCell(segment_id, day): {NET: step}}
