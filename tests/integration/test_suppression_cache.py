"""The collector's suppression read: one batch, hashed marks only, and marks skipped for identities a warm
container knows to be clear at the current erasure epoch (`storage.suppression.SuppressionCache`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.services.customers import find_customer, forget_customer
from shared.storage import keys
from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.migrate import stamp_new_table
from shared.storage.suppression import SuppressionCache, digest_prefix
from tests.builders import a_track, random_ref
from tests.conftest import TABLE

pytestmark = pytest.mark.integration


@pytest.fixture
def reads(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str]]]:
    """The keys of every BatchGetItem made on the `ddb` client, in order."""
    seen: list[list[tuple[str, str]]] = []
    original = ddb.batch_get_item

    def spy(**kwargs: Any) -> Any:
        for options in kwargs["RequestItems"].values():
            seen.append([(key["PK"]["S"], key["SK"]["S"]) for key in options["Keys"]])
        return original(**kwargs)

    monkeypatch.setattr(ddb, "batch_get_item", spy)
    return seen


def _send(http: Any, key: str, *calls: dict[str, Any]) -> Any:
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=key)
    assert answer.status == 200, answer.json
    return [result["status"] for result in answer.json["results"]]


def test_a_warm_collector_skips_known_clear_marks_and_refuses_an_identity_forgotten_since(
    ddb, http, source, store, reads
):
    # Given a table as the product makes it (no raw mark left), and a warm collector that has seen Zoe twice
    store.flag_marks_hashed()  # as a new or migrated table is: no raw mark left
    _, key = source
    zoe = random_ref("zoe")
    zoe_mark = (keys.identity_hash_pk(f"u:{zoe}"), keys.FORGOTTEN_SK)
    epoch = (keys.ERASURE_PK, keys.EPOCH_SK)
    assert _send(http, key, a_track(userId=zoe, event="First")) == ["accepted"]  # learns the epoch
    assert _send(http, key, a_track(userId=zoe, event="Second")) == ["accepted"]  # learns Zoe is clear at it
    assert all(epoch in batch and zoe_mark in batch for batch in reads)
    reads.clear()
    # When she is seen again: one read, the epoch only (de-duplication is the put's condition); her mark is not read
    assert _send(http, key, a_track(userId=zoe, event="Third")) == ["accepted"]
    assert reads == [[epoch]]
    reads.clear()
    # When she is forgotten (by another process: the CLI), and then a request names her
    other = DynamoTrackingStore(TABLE, client=ddb, retry=RetryPolicy(sleep=lambda _: None))
    forget_customer(other, zoe, now=datetime.now(UTC))
    statuses = _send(http, key, a_track(userId=zoe, event="After"), a_track(anonymousId=random_ref("a")))
    # Then the changed epoch made the collector read her mark again: refused, nothing stored
    assert statuses == ["suppressed", "accepted"]
    assert any(zoe_mark in batch for batch in reads)
    assert store.list_identity_events("u", zoe) == []
    # And from then on too
    assert _send(http, key, a_track(userId=zoe, event="Later")) == ["suppressed"]
    assert store.list_identity_events("u", zoe) == []


def test_retries_are_still_answered_duplicate_with_the_marks_skipped(http, source, store, reads):
    store.flag_marks_hashed()  # as a new or migrated table is: no raw mark left
    _, key = source
    call = a_track(userId=random_ref("u"), event="Once")
    assert [_send(http, key, call) for _ in range(4)] == [["accepted"], ["duplicate"], ["duplicate"], ["duplicate"]]
    assert len(store.list_identity_events("u", call["userId"])) == 1


def test_a_table_with_raw_marks_left_is_read_under_both_keys_and_nothing_is_remembered(ddb, http, source, store):
    # Given a table not migrated yet: an identity erased by an older version has only its raw mark
    _, key = source
    old = random_ref("old")
    ddb.put_item(TableName=TABLE, Item={"PK": {"S": f"ID#u#{old}"}, "SK": {"S": "FORGOTTEN"}})
    # Then it is refused, every time (cold, then warm)
    for _ in range(3):
        assert _send(http, key, a_track(userId=old, event="Again")) == ["suppressed"]
    assert store.list_identity_events("u", old) == []
    from functions.collect import handler

    remembered = handler.collector().store.suppression  # type: ignore[attr-defined]
    assert remembered.clear == set() and remembered.hashed_only is False


def test_what_a_read_that_saw_a_new_epoch_read_beside_it_is_not_remembered():
    # The items of one BatchGetItem are not read at one instant: a mark read beside the epoch may predate it.
    cache = SuppressionCache()
    cache.learn(planned=None, epoch=3, hashed_only=True, after=set(), alongside={"u:a"})
    assert cache.epoch == 3 and cache.clear == set()
    planned, _, skipped = cache.plan(["u:a"])
    assert skipped == set()  # nothing known yet: its mark is read
    cache.learn(planned=planned, epoch=3, hashed_only=True, after=set(), alongside={"u:a"})
    assert cache.plan(["u:a", "u:b"])[2] == {"u:a"}
    # A new epoch drops what was known; only marks read after that epoch was seen are remembered at it
    cache.learn(planned=3, epoch=4, hashed_only=True, after={"u:a"}, alongside={"u:b"})
    assert cache.epoch == 4 and cache.clear == {"u:a"}
    # A read that started earlier and saw an older epoch finishes late: ignored
    cache.learn(planned=3, epoch=3, hashed_only=True, after=set(), alongside={"u:c"})
    assert cache.epoch == 4 and cache.clear == {"u:a"}


def test_the_cache_is_bounded():
    cache = SuppressionCache(limit=2)
    cache.learn(planned=None, epoch=1, hashed_only=True, after={"u:a", "u:b"}, alongside=set())
    cache.learn(planned=1, epoch=1, hashed_only=True, after=set(), alongside={"u:c"})
    assert cache.clear == {"u:c"}


def _event_item(store: DynamoTrackingStore, user_id: str) -> dict[str, Any]:
    [item] = store._query(
        KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": keys.identity_pk("u", user_id)}}
    )
    return item


def test_processing_skips_the_marks_the_collector_found_clear_and_reads_them_after_a_forget(
    ddb, http, source, store, stream, reads
):
    # Given a warm collector and a warm processing container
    store.flag_marks_hashed()
    _, key = source
    assert _send(http, key, a_track(userId=random_ref("warm"), event="First")) == ["accepted"]
    stream.drain()
    epoch = (keys.ERASURE_PK, keys.EPOCH_SK)
    # When a new identity's event is stored: the collector read her mark at the epoch it knew, and says so
    ana = random_ref("ana")
    ana_mark = (keys.identity_hash_pk(f"u:{ana}"), keys.FORGOTTEN_SK)
    reads.clear()
    assert _send(http, key, a_track(userId=ana, event="Hello")) == ["accepted"]
    assert reads == [[epoch, ana_mark]]
    assert _event_item(store, ana)["clear"] == 0
    # Then processing reads the epoch only: her mark is not read a second time
    reads.clear()
    stream.drain()
    assert find_customer(store, ana) is not None
    assert not any(ana_mark in batch for batch in reads)
    assert any(epoch in batch for batch in reads)

    # When another new identity's event is stored, stamped, and she is forgotten before processing sees it
    bob = random_ref("bob")
    bob_mark = (keys.identity_hash_pk(f"u:{bob}"), keys.FORGOTTEN_SK)
    assert _send(http, key, a_track(userId=bob, event="Hello")) == ["accepted"]
    assert _event_item(store, bob)["clear"] == 0
    forget_customer(DynamoTrackingStore(TABLE, client=ddb), bob, now=datetime.now(UTC))
    reads.clear()
    stream.drain()
    # Then the raised epoch made processing read her mark: nothing of hers is folded back
    assert any(bob_mark in batch for batch in reads)
    assert find_customer(store, bob) is None
    assert store.get_links([f"u:{bob}"]) == {}


def test_a_cold_collector_stamps_nothing(http, source, store):
    # A collector that has not seen the epoch before its read cannot vouch for the marks it read alongside
    store.flag_marks_hashed()
    _, key = source
    cold = random_ref("cold")
    assert _send(http, key, a_track(userId=cold, event="First")) == ["accepted"]
    assert "clear" not in _event_item(store, cold)


# --- the digest of erased identities ----------------------------------------------------------------------------


def _mark(identity: str) -> tuple[str, str]:
    return keys.identity_hash_pk(identity), keys.FORGOTTEN_SK


def test_with_the_digest_a_warm_collector_reads_no_mark_of_a_new_identity_but_reads_an_erased_ones(
    ddb, http, source, store, reads
):
    # Given a table as the product makes it (hashed marks, the first digest), and a collector that read the epoch
    stamp_new_table(store)
    _, key = source
    epoch = (keys.ERASURE_PK, keys.EPOCH_SK)
    first = random_ref("first")
    assert _send(http, key, a_track(userId=first, event="Hi")) == ["accepted"]
    assert reads == [[epoch, _mark(f"u:{first}")]]
    # When identities it has never seen arrive: the epoch is read, no mark
    reads.clear()
    bob, cat = random_ref("bob"), random_ref("cat")
    assert _send(http, key, a_track(userId=bob, event="Hi"), a_track(userId=cat, event="Hi")) == ["accepted"] * 2
    assert reads == [[epoch]]
    # When Bob is forgotten by another process
    forget_customer(DynamoTrackingStore(TABLE, client=ddb), bob, now=datetime.now(UTC))
    assert digest_prefix(f"u:{bob}") in store.erasure_digest(1)
    reads.clear()
    dan = random_ref("dan")
    # Then the changed epoch makes the collector read the marks it skipped: Bob is refused
    assert _send(http, key, a_track(userId=bob, event="Again"), a_track(userId=dan, event="Hi")) == [
        "suppressed",
        "accepted",
    ]
    assert any(_mark(f"u:{bob}") in batch for batch in reads)
    # And with the new epoch's digest read, Bob's prefix is in it: his mark is read, a newcomer's is not
    reads.clear()
    eve = random_ref("eve")
    assert _send(http, key, a_track(userId=bob, event="Later"), a_track(userId=eve, event="Hi")) == [
        "suppressed",
        "accepted",
    ]
    assert reads == [[epoch, _mark(f"u:{bob}")]]
    assert store.list_identity_events("u", bob) == []


def test_forgets_racing_each_other_both_land_in_the_digest(ddb, store, monkeypatch):
    stamp_new_table(store)
    first = DynamoTrackingStore(TABLE, client=ddb)
    second = DynamoTrackingStore(TABLE, client=ddb)
    read = first.erasure_digest
    raced: list[int] = []

    def racing(epoch: int) -> Any:
        found = read(epoch)
        if not raced:  # between this forget's read and its transaction, another forget raises the epoch
            raced.append(epoch)
            second.forget(identities=["u:racer"], customer_ids=[], at="2026-11-30T00:00:00Z")
        return found

    monkeypatch.setattr(first, "erasure_digest", racing)
    first.forget(identities=["u:slow"], customer_ids=[], at="2026-11-30T00:00:00Z")
    assert raced == [0]
    digest = store.erasure_digest(2)
    assert digest == {digest_prefix("u:racer"), digest_prefix("u:slow")}
    assert store.forgotten_identities(["u:racer", "u:slow", "u:other"]) == {"u:racer", "u:slow"}


def test_migrate_gives_a_table_with_marks_its_first_digest(ddb, store, reads):
    # Given a table whose identities were forgotten before digests existed (hashed marks, no digest)
    store.flag_marks_hashed()
    store.forget(identities=["u:old"], customer_ids=[], at="2026-11-30T00:00:00Z")
    assert store.erasure_digest(1) is None
    # When the migration step runs (twice: it is idempotent)
    assert store.build_erasure_digest() == 1
    assert store.build_erasure_digest() == 1
    # Then the digest of the epoch it raised holds the old mark, and a warm reader reads no mark of a newcomer
    assert store.erasure_digest(3) == {digest_prefix("u:old")}
    reader = DynamoTrackingStore(TABLE, client=ddb)
    assert reader.forgotten_identities(["u:old"]) == {"u:old"}
    reads.clear()
    assert reader.forgotten_identities(["u:new", "u:old"]) == {"u:old"}
    assert reads == [[(keys.ERASURE_PK, keys.EPOCH_SK), _mark("u:old")]]
