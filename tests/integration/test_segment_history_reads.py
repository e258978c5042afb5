"""Segment detail reads the latest history newest first with a limit: one Query, whatever the history's length."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from benchmarks.meter import Meter
from shared.local.stack import STARTERS
from shared.services.segments import apply_segments
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.sqlite.engine import SqliteClient
from tui.data import HISTORY_SHOWN, StoreDataSource

START = datetime(2026, 3, 1, tzinfo=UTC)


def _record(store: DynamoTrackingStore, segment_id: str, count: int) -> list[tuple[str, str, bool]]:
    written = []
    for number in range(count):
        at = (START + timedelta(minutes=number)).isoformat()
        entered = number % 3 != 2
        store.record_history(segment_id, f"u:c{number}", at=at, entered=entered, rule_version=1)
        written.append((at, f"u:c{number}", entered))
    return written


def _meter(ddb: Any) -> Meter:
    """A meter on the test's client, reading images through a second client on the same database (a moto client
    under moto; on the embedded database, a second `SqliteClient` on its file: a moto client there reads nothing)."""
    if isinstance(ddb, SqliteClient):
        return Meter.for_client(ddb, SqliteClient(ddb.path))
    return Meter.for_client(ddb, boto3.client("dynamodb"))


def test_recent_history_is_the_latest_newest_first_in_one_query(store: DynamoTrackingStore, ddb: Any) -> None:
    # Given a history longer than what is asked for
    written = _record(store, "buyers", 130)
    meter = _meter(ddb)
    # When the latest 50 are read
    latest = store.recent_segment_history("buyers", limit=50)
    # Then they are the 50 newest, newest first, from a single request that evaluated only them
    assert latest == list(reversed(written))[:50]
    ledger = meter.snapshot()
    assert ledger.operations == {"Query": 1}
    assert ledger.entities["segment_history"].reads == 50
    # And the whole history (oldest first) is still there for `members --at`
    assert store.segment_history("buyers") == written


def test_recent_history_of_a_short_history_is_all_of_it(store: DynamoTrackingStore) -> None:
    written = _record(store, "browsers", 3)
    assert store.recent_segment_history("browsers", limit=50) == list(reversed(written))
    assert store.recent_segment_history("nobody", limit=50) == []


def test_segment_detail_shows_the_latest_history_at_a_cost_that_does_not_grow(
    store: DynamoTrackingStore, ddb: Any
) -> None:
    # Given a starter segment with a short history, then with a long one
    apply_segments(store, json.loads(STARTERS.read_text()), source="starters", now=START, customers=[])
    source = StoreDataSource(store)
    segment = store.list_segments()[0].id
    _record(store, segment, 5)
    meter = _meter(ddb)
    short = source.segment(segment, now=START + timedelta(days=1))
    short_requests = sum(meter.snapshot().operations.values())
    _record(store, segment, 3 * HISTORY_SHOWN)
    meter.reset()
    # When the segment detail is read
    view = source.segment(segment, now=START + timedelta(days=1))
    # Then it shows the newest entries first, as many as the screen shows, for as many requests as before
    assert len(short.history) == 5
    assert [entry.at for entry in view.history] == sorted((entry.at for entry in view.history), reverse=True)
    assert len(view.history) == HISTORY_SHOWN
    assert view.history[0].customer_id == f"u:c{3 * HISTORY_SHOWN - 1}"
    assert sum(meter.snapshot().operations.values()) == short_requests
    assert meter.snapshot().entities["segment_history"].reads == HISTORY_SHOWN
