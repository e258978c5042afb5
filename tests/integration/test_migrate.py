"""`footfall migrate`: a table as the current main writes it is upgraded, once, resumably, and stays correct."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.cli import main
from shared.domain.identity import split_identity
from shared.local.stack import ensure_migrated, ensure_table
from shared.services.customers import forget_customer
from shared.services.segments import apply_segments
from shared.storage import keys, migrate
from shared.storage.codec import serialize
from shared.storage.dynamo import DynamoTrackingStore, deserialize
from shared.storage.errors import ThrottledError
from tests.builders import a_track, random_ref
from tests.conftest import TABLE
from tests.integration.test_forget import readable
from tests.oracle import audit

pytestmark = pytest.mark.integration

RULES = {
    "segments": [
        {"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "gte": 1}},
        {"id": "viewers", "rule": {"count": {"event": "Product Viewed"}, "gte": 1}},
    ]
}


def _send(http: Any, key: str, *calls: dict[str, Any]) -> list[str]:
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=key)
    assert answer.status == 200, answer.json
    return [result["status"] for result in answer.json["results"]]


def _items(ddb: Any) -> list[dict[str, Any]]:
    found, start = [], None
    while True:
        page = ddb.scan(TableName=TABLE, **({"ExclusiveStartKey": start} if start else {}))
        found += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def _raw_marks(ddb: Any) -> set[str]:
    return {i["PK"]["S"] for i in _items(ddb) if i["SK"]["S"] == "FORGOTTEN" and i["PK"]["S"].startswith("ID#")}


@pytest.fixture
def old_table(ddb, http, source, store, stream) -> dict[str, Any]:
    """A table as the current main leaves it: events, profiles, a segment, a forgotten customer (hashed mark),
    and identities erased by older versions (raw marks `ID#…` / `FORGOTTEN`, one with its `at`); no schema
    version item, no erasure epoch item."""
    _, key = source
    kept, gone, anon = random_ref("kept"), random_ref("gone"), random_ref("anon")
    _send(http, key, a_track(userId=kept, event="Order Completed", properties={"revenue": 5}))
    _send(http, key, a_track(userId=gone, anonymousId=anon, event="Product Viewed"))
    stream.drain()
    apply_segments(store, RULES, source="test", now=datetime.now(UTC), customers=[])  # (no backfill)
    from functions.process import handler

    handler.pipeline().forget_rules()  # (processing read none within its rules cache's 30 s)
    _segments_in_membership_items(ddb, store, {store.get_links([f"u:{kept}"])[f"u:{kept}"].customer_id: ["buyers"]})
    stream.drain()
    forget_customer(store, gone, now=datetime.now(UTC))
    stream.drain()
    ddb.delete_item(TableName=TABLE, Key={"PK": {"S": keys.ERASURE_PK}, "SK": {"S": keys.EPOCH_SK}})
    assert _cells_to_their_own_item(ddb) == 1  # the kept customer's (the erased one's are gone with it)
    stream.drain()
    legacy = [random_ref("old") for _ in range(5)]
    for n, old in enumerate(legacy):
        item = {"PK": {"S": f"ID#u#{old}"}, "SK": {"S": "FORGOTTEN"}, "entity": {"S": "forgotten"}}
        ddb.put_item(TableName=TABLE, Item=item | ({"at": {"S": "2026-01-02T03:04:05Z"}} if n == 0 else {}))
    assert migrate.stored_version(store) == 0
    return {"key": key, "kept": kept, "gone": gone, "anon": anon, "legacy": legacy}


def _segments_in_membership_items(ddb: Any, store: DynamoTrackingStore, members: dict[str, list[str]]) -> None:
    """Customers as versions before the customer item held segments left them: the item without `segments`, and a
    membership item per segment (in the members index), written as those versions wrote it (its record makes the
    announcement and the history, and the fold counts it)."""
    for stored in store.get_profiles(sorted(members)).values():
        store.save_profile(replace(stored, segments=None))
    at = "2026-11-01T10:00:00.000000Z"
    for customer_id, segments in members.items():
        for segment in segments:
            item = {
                "PK": keys.customer_pk(customer_id),
                "SK": f"MEMBER#{segment}",
                "entity": "membership",
                "segment": segment,
                "customer_id": customer_id,
                "state": "in",
                "since": at,
                "changed_at": at,
                "rule_version": 1,
                "reason": "count of Order Completed = 1",
                "identity_kind": split_identity(customer_id)[0],
                "identity": split_identity(customer_id)[1],
                "GSI1PK": f"SEGMENT#{segment}",
                "GSI1SK": customer_id,
            }
            ddb.put_item(TableName=TABLE, Item=serialize(item))


def _cells_to_their_own_item(ddb: Any) -> int:
    """Customers' cells as versions before the customer item kept them: an item of their own (`ANALYTICS`), the
    customer item without them (the fold sees them move, so the counters stay)."""
    moved = 0
    for item in _items(ddb):
        if item["entity"]["S"] != "profile" or "cells" not in item:
            continue
        old = {"PK": item["PK"], "SK": {"S": "ANALYTICS"}, "entity": {"S": "analytics_cells"}, "version": {"N": "1"}}
        ddb.put_item(TableName=TABLE, Item=old | {"cells": item["cells"], "at": item["cells_at"]})
        ddb.update_item(
            TableName=TABLE,
            Key={"PK": item["PK"], "SK": item["SK"]},
            UpdateExpression="REMOVE cells, cells_at",
        )
        moved += 1
    return moved


def _holds_its_segments(ddb: Any, store: DynamoTrackingStore, user_id: str) -> None:
    """The kept customer's membership adopted by its customer item: held there, listed once by a member item, the
    old membership item retired (out of the members index), the size and the announcements unchanged."""
    customer_id = store.get_links([f"u:{user_id}"])[f"u:{user_id}"].customer_id
    stored = store.get_profiles([customer_id])[customer_id]
    assert stored.segments is not None and "buyers" in stored.segments
    assert stored.segments["buyers"].since == "2026-11-01T10:00:00.000000Z"  # as the membership item said
    assert list(store.segment_members("buyers")) == [customer_id]
    old = ddb.get_item(TableName=TABLE, Key={"PK": {"S": keys.customer_pk(customer_id)}, "SK": {"S": "MEMBER#buyers"}})
    assert old["Item"]["entity"]["S"] == "membership_moved" and "GSI1PK" not in old["Item"]
    assert store.segment_size_items(["buyers"], days=[]) == {("buyers", None): 1}
    events = store.list_identity_events("u", user_id)
    entered = [e for e in events if e.event == "Audience Entered" and e.properties["audience_key"] == "buyers"]
    assert len(entered) == 1


def _erased_are_refused(http: Any, store: DynamoTrackingStore, old: dict[str, Any]) -> None:
    erased = [*old["legacy"], old["gone"]]
    assert _send(http, old["key"], *(a_track(userId=u, event="Back") for u in erased)) == ["suppressed"] * 6
    assert _send(http, old["key"], a_track(userId=None, anonymousId=old["anon"])) == ["suppressed"]
    assert all(store.list_identity_events("u", u) == [] for u in erased)


def test_migrate_moves_the_raw_marks_once_and_the_table_stays_correct(ddb, http, store, stream, old_table):
    # Given the old table: its raw-marked identities are refused before the migration too (both keys read)
    _erased_are_refused(http, store, old_table)
    # When
    first = migrate.migrate(store)
    second = migrate.migrate(store)
    # Then the first run moved the 5 raw marks, the second had nothing to do
    assert first == [
        ("hashed suppression marks", 5),
        ("one due entry per customer deadline", 0),
        ("digest of the erased identities", 7),
        ("analytics cells in the customer item", 1),
        ("segments in the customer item", 1),
    ]
    assert second == []
    assert store.move_legacy_marks() == 0  # the step itself converges too
    assert migrate.cells_into_customer_items(store) == 0
    # and the kept customer's cells are in its customer item, their own item gone, the counters unchanged
    # (customer items in the customer list: an attached identity's pointer is a customer item that is not one)
    profiles = [i for i in _items(ddb) if i["entity"]["S"] == "profile" and "GSI1PK" in i]
    assert [i for i in _items(ddb) if i["SK"]["S"] == "ANALYTICS"] == []
    assert ["cells" in i for i in profiles] == [True]
    stream.drain()
    _holds_its_segments(ddb, store, old_table["kept"])
    assert migrate.memberships_into_customer_items(store) == 0
    audit(store)
    assert migrate.stored_version(store) == migrate.latest_version()
    assert _raw_marks(ddb) == set()
    texts = [readable(deserialize(item)) for item in _items(ddb)]
    assert not any(old in text for old in old_table["legacy"] for text in texts)  # no raw id left anywhere
    hashed = {keys.identity_hash_pk(f"u:{old}") for old in old_table["legacy"]}
    marks = {i["PK"]["S"]: i for i in _items(ddb) if i["SK"]["S"] == "FORGOTTEN"}
    assert hashed <= marks.keys()
    assert marks[keys.identity_hash_pk(f"u:{old_table['legacy'][0]}")]["at"]["S"] == "2026-01-02T03:04:05Z"
    # And every erased identity is still refused by a fresh collector (hashed key only now) and a warm one
    from functions.collect import handler

    handler.collector.cache_clear()
    for _ in range(2):
        _erased_are_refused(http, store, old_table)
    assert handler.collector().store.suppression.hashed_only is True  # type: ignore[attr-defined]
    # And the kept customer goes on; the stored state is what the oracle computes from the events
    assert _send(http, old_table["key"], a_track(userId=old_table["kept"], event="Order Completed")) == ["accepted"]
    stream.drain()
    audit(store)
    _holds_its_segments(ddb, store, old_table["kept"])


def test_processing_adopts_an_older_customer_it_meets_and_an_erasure_then_counts_it_out_once(
    ddb, http, store, stream, old_table
):
    # Given the old table with its cells moved (step 4), its memberships not (the customer item holds none)
    migrate.cells_into_customer_items(store)
    stream.drain()
    # When the customer comes back before any migration of its memberships
    assert _send(http, old_table["key"], a_track(userId=old_table["kept"], event="Product Viewed")) == ["accepted"]
    stream.drain()
    # Then the write that folded the event adopted them: held, listed once, retired, nothing announced again;
    # and the entry it decided (relative to what it adopted) is followed like any other
    _holds_its_segments(ddb, store, old_table["kept"])
    customer_id = store.get_links([f"u:{old_table['kept']}"])[f"u:{old_table['kept']}"].customer_id
    assert list(store.segment_members("viewers")) == [customer_id]
    assert store.segment_size_items(["viewers"], days=[]) == {("viewers", None): 1}
    audit(store)
    assert migrate.memberships_into_customer_items(store) == 0  # nothing left for the migration
    # And erasing the customer takes its size back once (the retired membership item's deletion is not counted)
    forget_customer(store, old_table["kept"], now=datetime.now(UTC))
    stream.drain()
    assert store.segment_size_items(["buyers", "viewers"], days=[]) == {("buyers", None): 0, ("viewers", None): 0}
    assert list(store.segment_members("buyers")) == list(store.segment_members("viewers")) == []
    audit(store)


def test_a_backfill_adopts_the_older_customers_it_decides(ddb, http, store, stream, old_table):
    migrate.cells_into_customer_items(store)
    stream.drain()
    customer_id = store.get_links([f"u:{old_table['kept']}"])[f"u:{old_table['kept']}"].customer_id
    # When the rule file is applied again with a backfill of the customer (evaluated by the sweep's code path)
    apply_segments(store, RULES, source="test", now=datetime.now(UTC), customers=[customer_id])
    stream.drain()
    # Then
    _holds_its_segments(ddb, store, old_table["kept"])
    audit(store)


def _older_device_customer(ddb: Any, http: Any, store: Any, stream: Any, key: str, monkeypatch: Any) -> str:
    """A customer known by a device only, stored as older versions stored it: in `viewers` by its membership item."""
    from functions.process import handler

    device = random_ref("device")
    with monkeypatch.context() as patched:  # (its first batch decides nothing: as before segments were applied)
        patched.setattr(handler.pipeline(), "segment_rules", list)
        _send(http, key, a_track(userId=None, anonymousId=device, event="Product Viewed"))
        stream.drain()
    _segments_in_membership_items(ddb, store, {f"a:{device}": ["viewers"]})
    stream.drain()
    assert store.memberships_of(f"a:{device}").keys() == {"viewers"}
    return device


def test_a_merge_takes_an_older_customer_out_of_its_segments(ddb, http, store, stream, old_table, monkeypatch):
    migrate.cells_into_customer_items(store)
    stream.drain()
    device = _older_device_customer(ddb, http, store, stream, old_table["key"], monkeypatch)
    # When the device logs in as the kept customer: the device's customer is merged into the kept one
    identify = a_track(type="identify", userId=old_table["kept"], anonymousId=device, traits={}, properties={})
    del identify["event"]
    _send(http, old_table["key"], identify)
    stream.drain()
    # Then the merged-away customer left `viewers` (announced, its size back), the kept one entered it
    kept = store.get_links([f"u:{old_table['kept']}"])[f"u:{old_table['kept']}"].customer_id
    assert list(store.segment_members("viewers")) == [kept]
    assert store.segment_size_items(["viewers"], days=[]) == {("viewers", None): 1}
    exits = [e for e in store.list_identity_events("a", device) if e.event == "Audience Exited"]
    assert [e.properties["reason"] for e in exits] == [f"merged into {kept}"]
    audit(store)


def test_migrate_takes_a_customer_an_older_version_merged_out_of_its_segments(
    ddb, http, store, stream, old_table, monkeypatch
):
    from shared.ports import StoredProfile

    migrate.cells_into_customer_items(store)
    stream.drain()
    kept = store.get_links([f"u:{old_table['kept']}"])[f"u:{old_table['kept']}"].customer_id
    store.save_profile(store.get_profiles([kept])[kept].adopting(store.memberships_of(kept)))
    stream.drain()
    device = _older_device_customer(ddb, http, store, stream, old_table["key"], monkeypatch)
    # Given a merge as older versions made it: the tombstone kept its membership items in
    identify = a_track(type="identify", userId=old_table["kept"], anonymousId=device, traits={}, properties={})
    del identify["event"]
    with monkeypatch.context() as older:
        older.setattr(StoredProfile, "adopting", lambda self, memberships: self)
        _send(http, old_table["key"], identify)
        stream.drain()
    assert f"a:{device}" in list(store.segment_members("viewers"))  # (what the oracle calls a problem)
    # When
    assert migrate.memberships_into_customer_items(store) == 1  # the tombstone; the kept customer holds its own
    stream.drain()
    # Then the merged-away customer left `viewers`, announced, and the table is what the oracle recomputes
    assert list(store.segment_members("viewers")) == [kept]
    exits = [e for e in store.list_identity_events("a", device) if e.event == "Audience Exited"]
    assert [e.properties["reason"] for e in exits] == [f"merged into {kept}"]
    audit(store)


def test_a_migration_that_stops_midway_converges_when_run_again(ddb, http, store, old_table, monkeypatch):
    # Given a step that fails once it has moved 2 of the 5 raw marks (one item scanned a page, so it stops there
    # whatever order the scan returns the table in)
    class Crash(Exception):
        pass

    def crash_after_two_marks(moved: int) -> None:
        if moved >= 2:
            raise Crash

    crashing = migrate.Step(
        1,
        "hashed suppression marks",
        lambda s: s.move_legacy_marks(page_size=1, after_page=crash_after_two_marks),
    )
    monkeypatch.setattr(migrate, "STEPS", [crashing])
    with pytest.raises(Crash):
        migrate.migrate(store)
    assert migrate.stored_version(store) == 0
    assert len(_raw_marks(ddb)) == 3  # some moved, some not
    # Then meanwhile every erased identity is refused (the table is not flagged: both keys are read)
    _erased_are_refused(http, store, old_table)
    # And a crash between writing the hashed copies and deleting the raw marks is no worse
    monkeypatch.undo()
    writes = store._batch_write

    def fail_deletes(items: list[dict[str, Any]], *, delete: bool = False) -> list[int]:
        if delete:
            raise ThrottledError("throttled")
        return writes(items, delete=delete)

    monkeypatch.setattr(store, "_batch_write", fail_deletes)
    with pytest.raises(ThrottledError):
        migrate.migrate(store)
    monkeypatch.undo()
    _erased_are_refused(http, store, old_table)
    # When it runs again, normally
    left = len(_raw_marks(ddb))
    assert migrate.migrate(store) == [
        ("hashed suppression marks", left),
        ("one due entry per customer deadline", 0),
        ("digest of the erased identities", 7),
        ("analytics cells in the customer item", 1),
        ("segments in the customer item", 1),
    ]
    # Then it converged: no raw mark, the newest version, nothing more to do, erased ids refused
    assert _raw_marks(ddb) == set() and migrate.stored_version(store) == migrate.latest_version()
    assert migrate.migrate(store) == []
    _erased_are_refused(http, store, old_table)


def test_footfall_migrate_json(ddb, old_table, tmp_path, capsys):
    args = ["migrate", "--table", TABLE, "--region", "us-east-1", "--data-dir", str(tmp_path), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    latest = migrate.latest_version()
    assert first == {
        "table": TABLE,
        "from_version": 0,
        "version": latest,
        "latest_version": latest,
        "steps": [
            {"name": "hashed suppression marks", "changed": 5},
            {"name": "one due entry per customer deadline", "changed": 0},
            {"name": "digest of the erased identities", "changed": 7},
            {"name": "analytics cells in the customer item", "changed": 1},
            {"name": "segments in the customer item", "changed": 1},
        ],
    }
    assert second == {"table": TABLE, "from_version": latest, "version": latest, "latest_version": latest, "steps": []}


def test_a_table_serve_creates_is_stamped_and_an_old_one_is_migrated_by_serve(ddb, store, old_table):
    # A new table: nothing to run, and no raw mark is ever looked for
    ensure_table(ddb, "fresh")
    fresh = DynamoTrackingStore("fresh", client=ddb)
    assert migrate.stored_version(fresh) == migrate.latest_version() and migrate.migrate(fresh) == []
    epoch = ddb.get_item(TableName="fresh", Key={"PK": {"S": keys.ERASURE_PK}, "SK": {"S": keys.EPOCH_SK}})
    assert epoch["Item"]["marks"]["S"] == "hashed"
    # The old table: serve's hook runs the step, once
    said: list[str] = []
    ensure_migrated(store, out=said.append)
    ensure_migrated(store, out=said.append)
    assert said == [
        f"migrated {TABLE}: hashed suppression marks (5 items changed)",
        f"migrated {TABLE}: one due entry per customer deadline (0 items changed)",
        f"migrated {TABLE}: digest of the erased identities (7 items changed)",
        f"migrated {TABLE}: analytics cells in the customer item (1 items changed)",
        f"migrated {TABLE}: segments in the customer item (1 items changed)",
    ]


def test_steps_are_numbered_in_order(monkeypatch, store):
    monkeypatch.setattr(migrate, "STEPS", [*migrate.STEPS, migrate.Step(7, "gap", lambda s: 0)])
    with pytest.raises(ValueError, match="numbered"):
        migrate.migrate(store)


def test_a_customer_item_that_cannot_be_decoded_does_not_stop_the_migration(ddb, store, old_table):
    corrupt = {"PK": {"S": "CUSTOMER#u:broken"}, "SK": {"S": "PROFILE"}, "entity": {"S": "profile"}}
    ddb.put_item(TableName=TABLE, Item=corrupt | {"customer_id": {"S": "u:broken"}, "body": {"B": b"\x01not zlib"}})
    assert migrate.memberships_into_customer_items(store) == 1  # the kept customer; the broken item is left
