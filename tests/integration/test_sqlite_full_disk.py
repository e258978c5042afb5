"""A full disk on the embedded database: a clear answer, and nothing acknowledged is lost.

SQLite's `max_page_count` stands in for the disk: once the file may grow no more, every write fails with
SQLITE_FULL, as it does when the file system is full.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.storage.dynamo import RetryPolicy
from tests.builders import a_track

pytestmark = pytest.mark.integration


def _fill_the_disk(ddb: Any) -> int:
    """Let the file grow by a few pages at most; returns the page limit that was in force before."""
    writer = ddb._db  # the one writer connection (the limit is per connection)
    (before,) = writer.execute("PRAGMA max_page_count").fetchone()
    (pages,) = writer.execute("PRAGMA page_count").fetchone()
    writer.execute(f"PRAGMA max_page_count = {pages + 2}")
    return int(before)


@pytest.mark.parametrize("ddb", ["sqlite"], indirect=True)
def test_a_full_disk_is_a_503_and_the_retry_once_there_is_room_stores_every_event_once(
    ddb, store, source, http, monkeypatch
):
    # Given the embedded database's disk filling up while a client sends batches (the store's retries, which a
    # full disk exhausts, without their pauses)
    monkeypatch.setattr(RetryPolicy, "pause", lambda self, attempt: None)
    _, write_key = source
    before = _fill_the_disk(ddb)
    batches = [
        [a_track(userId=f"full-{n}", properties={"note": "x" * 800}) for n in range(start, start + 20)]
        for start in range(0, 200, 20)
    ]
    answers = [http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key) for batch in batches]
    # Then the request that found the disk full is told to retry (503), and says which events it stored
    assert any(answer.status == 503 for answer in answers)
    acknowledged = {
        result["messageId"] for answer in answers for result in answer.json["results"] if result["status"] == "accepted"
    }
    assert all(
        result["status"] in ("accepted", "not_stored") for answer in answers for result in answer.json["results"]
    )
    # And every acknowledged event is stored, whole
    for batch in batches:
        for call in batch:
            stored = [e.message_id for e in store.list_identity_events("u", call["userId"])]
            assert stored == ([call["messageId"]] if call["messageId"] in acknowledged else [])
    # When there is room again and the client sends every batch again
    ddb._db.execute(f"PRAGMA max_page_count = {before}")
    retries = [http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key) for batch in batches]
    # Then the events stored before are duplicates, the others accepted, and each is stored once
    assert all(answer.status == 200 for answer in retries)
    statuses = {r["messageId"]: r["status"] for answer in retries for r in answer.json["results"]}
    assert statuses == {
        call["messageId"]: "duplicate" if call["messageId"] in acknowledged else "accepted"
        for batch in batches
        for call in batch
    }
    for batch in batches:
        for call in batch:
            assert [e.message_id for e in store.list_identity_events("u", call["userId"])] == [call["messageId"]]
