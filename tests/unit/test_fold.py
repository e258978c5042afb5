"""The counter fold: a batch's changes summed into one update per counter item, each added once, no transaction.

A small in-memory store stands in for the storage calls the fold makes (`fold_lanes`, `fold_item`, `item_mark`,
`touch_lane`): it keeps a mark per shard on each item, applies DynamoDB's condition, and can crash after a given
number of updates or throttle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.ports import FoldLane, StorageError, ThrottledError, fold_position
from shared.services.analytics import FOLD_ATTRIBUTES, LANE_KEPT, CounterChange, fold

Cells = dict[tuple[str, str], dict[str, int]]
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


@dataclass
class FoldStore:
    counters: Cells = field(default_factory=dict)
    marks: dict[tuple[tuple[str, str], str], str] = field(default_factory=dict)
    lanes: dict[str, FoldLane] = field(default_factory=dict)
    updates: int = 0
    refused: int = 0
    crash_after: int | None = None
    throttle: int = 0

    def fold_lanes(self) -> dict[str, FoldLane]:
        return dict(self.lanes)

    def touch_lane(self, lane: str, at: datetime) -> None:
        self.lanes[lane] = FoldLane(self.lanes.get(lane, FoldLane()).mark, at)

    def counter_order(self, counter: str) -> str:
        return counter

    def item_mark(self, lane: str, cell: tuple[str, str]) -> str | None:
        return self.marks.get((cell, lane))

    def fold_item(self, lane: str, cell: Any, counts: Any, *, first: str, upto: str, forget: Any = ()) -> bool:
        assert len(counts) <= FOLD_ATTRIBUTES and first <= upto
        if self.throttle:
            self.throttle -= 1
            raise ThrottledError("slow down")
        if self.crash_after is not None and self.updates >= self.crash_after:
            raise StorageError("the process died")
        mark = self.marks.get((cell, lane))
        if mark is not None and mark >= first:
            self.refused += 1
            return False
        target = self.counters.setdefault(cell, {})
        for name, count in counts.items():
            target[name] = target.get(name, 0) + count
        self.marks[(cell, lane)] = upto
        for other in forget:
            self.marks.pop((cell, other), None)
        self.updates += 1
        return True


def _sum(changes: list[CounterChange]) -> Cells:
    total: Cells = {}
    for change in changes:
        for key, attributes in change.delta.items():
            for name, count in attributes.items():
                total.setdefault(key, {})[name] = total.get(key, {}).get(name, 0) + count
    return {key: {a: n for a, n in attrs.items() if n} for key, attrs in total.items()}


def _nonzero(counters: Cells) -> Cells:
    return {key: {a: n for a, n in attrs.items() if n} for key, attrs in counters.items() if any(attrs.values())}


def _changes() -> list[CounterChange]:
    small = [CounterChange(str(100 + i), {("TIMING", "web#0"): {f"h|web|{i}": 1}}) for i in range(5)]
    wide = CounterChange("200", {("FUNNEL#f", f"DAY#2026-11-{d:02d}#0"): {"s|1": 1} for d in range(1, 29)})
    wide.delta.update({("STATS#2026-11-30", f"H{h:02d}#0"): {"n": 1} for h in range(24)})
    wide.delta.update({("RETENTION#day", f"2026-{m:02d}-01#{s}"): {"n": 1} for m in range(1, 13) for s in range(5)})
    tall = CounterChange("300", {("TIMING", "email#0"): {f"h|email|{h}": 1 for h in range(FOLD_ATTRIBUTES + 10)}})
    taken = CounterChange("400", {("TIMING", "web#0"): {"h|web|0": -1}})
    return [*small, wide, tall, taken]


def test_a_batch_is_one_update_per_counter_item_unless_an_item_takes_more_names_than_one_update():
    store = FoldStore()
    changes = _changes()
    assert fold(store, "shard-1", changes, now=NOW) == []
    assert _nonzero(store.counters) == _sum(changes)
    items = {cell for change in changes for cell in change.delta}
    # every item once, but TIMING/email (260 names: two updates)
    assert store.updates == len(items) + 1
    assert store.lanes["shard-1"].at == NOW


def test_a_redelivered_batch_counts_nothing_twice():
    store = FoldStore()
    changes = _changes()
    fold(store, "shard-1", changes, now=NOW)
    updates = store.updates
    assert fold(store, "shard-1", changes, now=NOW) == []  # the whole batch again (a crash after the last update)
    assert fold(store, "shard-1", changes[3:], now=NOW) == []  # the second half of a bisected batch
    assert store.updates == updates and _nonzero(store.counters) == _sum(changes)


def test_a_retry_that_brings_more_records_adds_only_what_is_after_each_items_mark():
    store = FoldStore()
    changes = _changes()
    fold(store, "shard-1", changes[:6], now=NOW)
    assert fold(store, "shard-1", changes, now=NOW) == []  # the first six again, and two more
    assert _nonzero(store.counters) == _sum(changes)
    assert store.refused >= 1  # an item found ahead was read and given only the rest


@pytest.mark.parametrize("crash_after", [0, 1, 5, 40, 95, 100])
def test_a_crash_after_any_update_and_the_retry_end_as_a_clean_run(crash_after):
    store = FoldStore(crash_after=crash_after)
    changes = _changes()
    failed = fold(store, "shard-1", changes, now=NOW)
    if store.updates == crash_after:
        # What was not folded everywhere is reported, lowest first, and every record after it too.
        assert failed and all(c.sequence in failed for c in changes if int(c.sequence) >= int(min(failed, key=int)))
        assert "shard-1" not in store.lanes  # not marked as seen while records are left
    store.crash_after = None
    retried = [c for c in changes if not failed or int(c.sequence) >= int(min(failed, key=int))]
    assert fold(store, "shard-1", retried, now=NOW) == []
    assert _nonzero(store.counters) == _sum(changes)


def test_throttling_is_waited_out_and_another_shard_has_its_own_mark(monkeypatch):
    monkeypatch.setattr("shared.services.analytics.FOLD_BACKOFF_SECONDS", 0)
    store = FoldStore(throttle=2)
    first = [CounterChange("100", {("TIMING", "web#0"): {"h|web|1": 1}})]
    other = [CounterChange("50", {("TIMING", "web#0"): {"h|web|1": 1}})]  # a lower number, in another shard
    assert fold(store, "shard-1", first, now=NOW) == []
    assert fold(store, "shard-2", other, now=NOW) == []
    assert store.counters[("TIMING", "web#0")] == {"h|web|1": 2}


def test_records_the_transactions_of_the_version_before_folded_are_skipped():
    # Given a shard whose mark (from the version that folded in transactions) is past record 300
    store = FoldStore(lanes={"shard-1": FoldLane(mark=fold_position("300"))})
    changes = _changes()
    # When the batch is folded (a retry that overlaps the upgrade)
    assert fold(store, "shard-1", changes, now=NOW) == []
    # Then only record 400 is added
    assert _nonzero(store.counters) == _sum([c for c in changes if c.sequence == "400"])


def test_the_marks_of_a_shard_closed_for_a_day_are_dropped_as_items_are_written():
    store = FoldStore(lanes={"old": FoldLane(at=NOW - LANE_KEPT - timedelta(minutes=1)), "recent": FoldLane(at=NOW)})
    cell = ("TIMING", "web#0")
    store.marks[(cell, "old")] = store.marks[(cell, "recent")] = fold_position("5")
    assert fold(store, "shard-1", [CounterChange("10", {cell: {"h|web|1": 1}})], now=NOW) == []
    assert {lane for (item, lane) in store.marks if item == cell} == {"recent", "shard-1"}


def test_a_cells_record_of_the_version_that_counted_in_its_own_transaction_is_not_counted_again():
    from datetime import UTC, datetime

    from shared.domain.cells import HourOfWeek, TimingCell
    from shared.services.analytics import counter_change
    from shared.storage.analytics import decode_counter_record, encode_cells

    def change(sequence: str, old: dict | None, new: dict | None) -> CounterChange | None:
        return counter_change(sequence, decode_counter_record(old=old, new=new), received=received)

    cells = {TimingCell("web"): {HourOfWeek("web", 1): 1}}
    received = datetime(2026, 11, 30, 12, tzinfo=UTC)
    image = {"entity": "analytics_cells", "version": 1, "cells": encode_cells(cells)}
    # Written before the fold (no `at`): its counters were updated with it, in one transaction.
    legacy = change("7", None, image)
    assert legacy is not None and legacy.delta == {}
    # Written since: counted by the fold. Removed (forget): taken back, whoever wrote it.
    current = change("8", None, {**image, "at": "2026-11-30T12:00:00.000Z"})
    assert current is not None and current.delta == cells
    removed = change("9", image, None)
    assert removed is not None and removed.delta == {TimingCell("web"): {HourOfWeek("web", 1): -1}}
