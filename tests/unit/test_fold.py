"""The counter fold: a batch's changes summed into as few transactions as DynamoDB's limits allow, each once.

A small in-memory store stands in for the two storage calls the fold makes (`fold_mark`, `fold_counters`); it
enforces the transaction limits the DynamoDB store enforces and can crash after a given number of commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.ports import ConditionFailedError, StorageError, ThrottledError
from shared.services.analytics import FOLD_ATTRIBUTES, FOLD_ITEMS, CounterChange, fold

Cells = dict[tuple[str, str], dict[str, int]]


@dataclass
class FoldStore:
    marks: dict[str, str] = field(default_factory=dict)
    counters: Cells = field(default_factory=dict)
    commits: int = 0
    crash_after: int | None = None
    throttle: int = 0

    def fold_mark(self, lane: str) -> str | None:
        return self.marks.get(lane)

    def cell_order(self, cell: tuple[str, str]) -> tuple[str, str]:
        return cell

    def counter_order(self, counter: str) -> str:
        return counter

    def fold_counters(self, lane: str, *, after: str | None, upto: str, delta: Cells) -> None:
        assert len(delta) <= FOLD_ITEMS and all(len(a) <= FOLD_ATTRIBUTES for a in delta.values())
        if self.throttle:
            self.throttle -= 1
            raise ThrottledError("slow down")
        if self.marks.get(lane) != after:
            raise ConditionFailedError("mark moved")
        if self.crash_after is not None and self.commits >= self.crash_after:
            raise StorageError("the process died")
        for key, attributes in delta.items():
            target = self.counters.setdefault(key, {})
            for name, count in attributes.items():
                target[name] = target.get(name, 0) + count
        self.marks[lane] = upto
        self.commits += 1


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


def test_a_batch_is_summed_into_few_transactions_that_respect_the_limits():
    store = FoldStore()
    changes = _changes()
    assert len(changes[5].delta) > FOLD_ITEMS  # one record too big for one transaction: it goes in parts
    assert fold(store, "shard-1", changes) == []
    assert _nonzero(store.counters) == _sum(changes)
    assert store.commits <= 6


def test_a_redelivered_batch_counts_nothing_twice():
    store = FoldStore()
    changes = _changes()
    fold(store, "shard-1", changes)
    commits = store.commits
    assert fold(store, "shard-1", changes) == []  # the whole batch again (a crash after the commit)
    assert fold(store, "shard-1", changes[3:]) == []  # the second half of a bisected batch
    assert store.commits == commits and _nonzero(store.counters) == _sum(changes)


@pytest.mark.parametrize("crash_after", range(6))
def test_a_crash_after_any_commit_and_the_retry_end_as_a_clean_run(crash_after):
    store = FoldStore(crash_after=crash_after)
    changes = _changes()
    failed = fold(store, "shard-1", changes)
    if store.commits == crash_after:
        # What was not committed is reported, lowest first, and the records before it are done.
        assert failed and all(c.sequence in failed for c in changes if int(c.sequence) >= int(min(failed, key=int)))
    store.crash_after = None
    assert fold(store, "shard-1", changes) == []
    assert _nonzero(store.counters) == _sum(changes)


def test_throttling_is_waited_out_and_another_shard_has_its_own_mark(monkeypatch):
    monkeypatch.setattr("shared.services.analytics.FOLD_BACKOFF_SECONDS", 0)
    store = FoldStore(throttle=2)
    first = [CounterChange("100", {("TIMING", "web#0"): {"h|web|1": 1}})]
    other = [CounterChange("50", {("TIMING", "web#0"): {"h|web|1": 1}})]  # a lower number, in another shard
    assert fold(store, "shard-1", first) == []
    assert fold(store, "shard-2", other) == []
    assert store.counters[("TIMING", "web#0")] == {"h|web|1": 2}


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
