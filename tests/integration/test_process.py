"""The process Lambda on moto's stream, driven by the local stream runner: identities, profiles, faults."""

from __future__ import annotations

import json
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from shared.ports import Link
from shared.services.customers import customer_detail, find_customer
from shared.services.segments import apply_segments
from shared.storage import items
from shared.storage.dynamo import serialize
from tests.builders import a_track, cart_abandoners, random_ref
from tests.conftest import TABLE
from tests.oracle import audit

pytestmark = pytest.mark.integration


def send(http: Any, write_key: str, *calls: dict[str, Any]) -> None:
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=write_key)
    assert answer.status == 200, answer.json


def test_anonymous_browsing_then_identify_then_purchase_is_one_customer_with_the_whole_timeline(
    http, source, store, stream
):
    # Given
    _, key = source
    anon, user = random_ref("anon"), random_ref("user")
    send(
        http,
        key,
        a_track(userId=None, anonymousId=anon, event="Product Viewed", properties={"product_id": "p1"}),
        a_track(
            userId=None,
            anonymousId=anon,
            event="Product Added",
            properties={"product_id": "p1", "cart_id": "c1", "price": 30},
        ),
    )
    stream.drain()
    # When
    send(
        http,
        key,
        {"type": "identify", "userId": user, "anonymousId": anon, "traits": {"email": "x@y.z"}, "messageId": "login-1"},
        a_track(
            userId=user,
            event="Order Completed",
            properties={"revenue": 30, "cart_id": "c1"},
            timestamp="2026-11-29T11:00:00.000Z",
            sentAt="2026-11-29T11:00:00.000Z",
        ),
    )
    stream.drain()
    # Then
    by_user, by_anon = find_customer(store, user), find_customer(store, anon)
    assert by_user == by_anon
    profile = by_user.profile
    assert set(profile.identities) == {f"u:{user}", f"a:{anon}"}
    assert profile.event_counts == {"Product Viewed": 1, "Product Added": 1, "$identify": 1, "Order Completed": 1}
    assert (profile.orders, profile.revenue, profile.traits["email"]) == (1, Decimal(30), "x@y.z")
    detail = customer_detail(store, by_user, now=datetime.now(UTC))
    assert detail.total_stored_events == 4
    assert detail.computed["open_cart"] == []
    # provenance: the identify call that linked the two identities is on record
    assert [(link["attached"], link["via"]) for link in profile.links] == [(f"u:{user}", "login-1")]
    assert audit(store).customers[profile.customer_id] == {f"u:{user}", f"a:{anon}"}


def test_a_shared_device_never_merges_two_known_users(http, source, store, stream):
    # Given a device identified as Ann
    _, key = source
    device = random_ref("device")
    send(
        http,
        key,
        {"type": "identify", "userId": "ann", "anonymousId": device},
        a_track(userId=None, anonymousId=device, event="Product Viewed"),
    )
    stream.drain()
    # When Bob logs in on the same device
    send(
        http,
        key,
        {"type": "identify", "userId": "bob", "anonymousId": device, "messageId": "bob-login"},
        a_track(userId="bob", event="Order Completed", properties={"revenue": 12}),
    )
    stream.drain()
    # Then Ann and Bob stay two customers, and Bob's is flagged
    ann, bob = find_customer(store, "ann"), find_customer(store, "bob")
    assert ann.profile.customer_id != bob.profile.customer_id
    assert f"a:{device}" in ann.profile.identities and f"a:{device}" not in bob.profile.identities
    assert ann.profile.orders == 0 and bob.profile.orders == 1
    (conflict,) = bob.profile.flags["shared_device"]
    assert (conflict["identity"], conflict["via"]) == (f"a:{device}", "bob-login")
    report = audit(store)
    assert (report.customer_of("u:ann"), report.customer_of("u:bob")) == (
        ann.profile.customer_id,
        bob.profile.customer_id,
    )


def test_redelivering_the_same_batches_changes_nothing(http, source, store, stream, lambda_context):
    # Given a processed stream
    _, key = source
    send(
        http, key, *[a_track(userId=f"r{n % 4}", event="Order Completed", properties={"revenue": 5}) for n in range(40)]
    )
    stream.drain()
    before = {c: store.get_profiles([f"u:r{c}"])[f"u:r{c}"] for c in range(4)}
    # When Lambda delivers every batch again, twice
    from functions.process import handler

    for event in list(stream.calls) * 2:
        assert handler.lambda_handler(event, lambda_context)["batchItemFailures"] == []
    # Then every profile (and its version: nothing was even written) is as before
    assert {c: store.get_profiles([f"u:r{c}"])[f"u:r{c}"] for c in range(4)} == before
    assert sum(p.profile.orders for p in before.values()) == 40
    assert len(audit(store).customers) == 4


def test_throttled_profile_writes_are_retried_and_nothing_is_lost_or_doubled(ddb, http, source, store, stream):
    # Given DynamoDB throttling the first 5 profile writes (after the batch's other writes went through)
    _, key = source
    throttled = {"left": 5}

    def throttle(model: Any, params: dict[str, Any], **_: Any) -> Any:
        if model.name == "PutItem" and b'"PROFILE"' in params["body"] and throttled["left"] > 0:
            throttled["left"] -= 1
            return AWSResponse("https://dynamodb", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            }
        return None

    ddb.meta.events.register("before-call.dynamodb.PutItem", throttle)
    # When
    send(
        http, key, *[a_track(userId=f"t{n % 3}", event="Order Completed", properties={"revenue": 1}) for n in range(30)]
    )
    stream.drain()
    # Then
    assert throttled["left"] == 0
    assert sorted(find_customer(store, f"t{n}").profile.orders for n in range(3)) == [10, 10, 10]
    assert store.list_failed().items == ()
    assert len(audit(store).customers) == 3


def test_a_poison_record_is_quarantined_and_the_records_after_it_are_processed(ddb, http, source, store, stream):
    # Given a corrupt event item between good ones
    _, key = source
    send(http, key, a_track(userId="before", event="Order Completed", properties={"revenue": 1}))
    poison = {"PK": "ID#u#poison", "SK": "EVT#web#bad", "entity": "event", "src": "web", "body": b"\x01garbage"}
    ddb.put_item(TableName=TABLE, Item=serialize(poison))
    send(http, key, a_track(userId="after", event="Order Completed", properties={"revenue": 2}))
    # When
    stream.drain()
    # Then
    assert find_customer(store, "before").profile.orders == 1
    assert find_customer(store, "after").profile.orders == 1
    (quarantined,) = store.list_failed().items
    assert quarantined.route == "stream:process"
    assert json.loads(quarantined.raw)["dynamodb"]["Keys"]["SK"] == {"S": "EVT#web#bad"}
    assert stream.attempts == {}
    assert len(audit(store).customers) == 2


def test_the_runner_resumes_from_its_checkpoint(http, source, store, stream):
    _, key = source
    send(http, key, a_track(userId="cp", event="A"))
    stream.drain()
    checkpoint = json.loads(stream.checkpoint_path.read_text())
    stream.positions = {}
    stream.feed.reset()
    stream.positions.update(checkpoint)  # a fresh runner reading the same checkpoint
    send(http, key, a_track(userId="cp", event="B"))
    stream.drain()
    assert find_customer(store, "cp").profile.event_counts == {"A": 1, "B": 1}


@pytest.mark.parametrize("ddb", ["moto"], indirect=True)
def test_a_checkpoint_the_stream_trimmed_away_restarts_from_the_oldest_record_kept(ddb, stream):
    # Given 30 stream records and a checkpoint at the fourth, then the first 10 trimmed (DynamoDB Streams keeps 24
    # hours; moto never trims, so the test does it to moto's shard as DynamoDB would: the numbering stays)
    from moto.dynamodb.models import dynamodb_backends

    for n in range(30):
        ddb.put_item(TableName=TABLE, Item={"PK": {"S": f"x{n}"}, "SK": {"S": "y"}})
    shard = dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE].stream_shard
    first = shard.starting_sequence_number
    stream.positions[shard.id] = str(first + 3)
    del shard.items[:10]
    shard.starting_sequence_number += 10
    # When
    stream.drain()
    # Then the runner went on from the oldest record left, to the last
    assert stream.positions[shard.id] == str(first + 29)


def test_events_duplicated_by_a_racing_write_are_counted_once(ddb, http, source, store, stream):
    # Given an event stored, then written again on the same key (two deliveries racing): a MODIFY record
    _, key = source
    call = a_track(userId="racer", event="Order Completed", properties={"revenue": 3})
    send(http, key, call)
    (stored,) = store.list_identity_events("u", "racer")
    ddb.put_item(TableName=TABLE, Item=serialize(items.event_to_item(stored)))
    # When
    stream.drain()
    # Then
    assert find_customer(store, "racer").profile.orders == 1


def test_failed_events_are_replayed_after_a_fix(http, source, store, stream, monkeypatch):
    # Given a bug that makes the collector fail on one call, and the process stage fail on one customer
    import shared.services.collect as collect
    import shared.services.process as process
    from shared.services.collect import Collector
    from shared.services.replay import change_from_record, replay

    _, key = source
    real_parse, real_apply = collect.parse_event, process.apply_events

    def buggy_parse(raw: Any, **kwargs: Any) -> Any:
        if raw.get("event") == "Buggy":
            raise RuntimeError("bug")
        return real_parse(raw, **kwargs)

    def buggy_apply(profile: Any, events: Any) -> Any:
        if any(e.user_id == "unlucky" for e in events):
            raise RuntimeError("bug")
        return real_apply(profile, events)

    monkeypatch.setattr(collect, "parse_event", buggy_parse)
    monkeypatch.setattr(process, "apply_events", buggy_apply)
    answer = http("POST", "/v1/track", body=json.dumps(a_track(userId="lucky", event="Buggy")), write_key=key)
    send(http, key, a_track(userId="unlucky", event="Order Completed", properties={"revenue": 7}))
    stream.drain()
    assert answer.status == 500
    assert sorted(f.route for f in store.list_failed().items) == ["/v1/track", "stream:process"]
    # When the bug is fixed and both are replayed
    monkeypatch.setattr(collect, "parse_event", real_parse)
    monkeypatch.setattr(process, "apply_events", real_apply)
    for failure in store.list_failed().items:
        replay(store, Collector(store), failure, change_from_record)
    stream.drain()
    # Then both events made it, once, and the failed-events store is empty
    assert [e.event for e in store.list_identity_events("u", "lucky")] == ["Buggy"]
    assert find_customer(store, "lucky").profile.event_counts == {"Buggy": 1}
    assert find_customer(store, "unlucky").profile.orders == 1
    assert store.list_failed().items == ()


class RuntimeDied(BaseException):
    """The Lambda runtime killed mid-invocation (a BaseException, so no `except Exception` can swallow it)."""


@pytest.mark.parametrize("crash_at", ["profile", "segments"])
def test_a_crash_after_a_partial_write_and_the_redelivery_end_as_a_clean_run_would(
    http, source, store, stream, monkeypatch, crash_at
):
    # Given a segment of buyers, and the process Lambda dying once mid-batch, after some of its writes went through
    from functions.process import handler
    from shared.services.segments import apply_segments
    from shared.storage.dynamo import DynamoTrackingStore

    _, key = source
    buyers = {"segments": [{"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "gte": 1}}]}
    apply_segments(store, buyers, source="test", now=datetime.now(UTC), customers=[])
    # profile: the 3rd customer item's write (two are written, with their cells and segments); segments: when the
    # member items of the entries those items hold are first written (their records came in a later batch)
    method, crash_on = ("save_profile", 3) if crash_at == "profile" else ("follow_members", 1)
    original, calls = getattr(DynamoTrackingStore, method), {"n": 0}

    def dies_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == crash_on:
            raise RuntimeDied  # not an Exception: nothing in the process may handle it, as with a killed runtime
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoTrackingStore, method, dies_once)
    handler.pipeline().forget_rules()
    people = [random_ref("crash") for _ in range(6)]
    calls_sent = [
        a_track(userId=p, event=e, properties={"revenue": 3})
        for p in people
        for e in ("Product Viewed", "Order Completed")
    ]
    send(http, key, *calls_sent)
    # When the batch is delivered, dies, and is delivered again (the checkpoint did not move)
    with pytest.raises(RuntimeDied):
        stream.drain()
    stream.drain()
    # Then everything equals a recomputation from the stored events: nothing lost, nothing counted twice
    assert calls["n"] > crash_on
    assert sorted(find_customer(store, p).profile.orders for p in people) == [1] * 6
    assert len(audit(store).customers) == 6
    assert set(store.segment_members("buyers")) == {f"u:{p}" for p in people}


def test_evaluation_uses_the_profiles_the_batch_just_wrote_instead_of_reading_them_again(
    ddb, http, source, store, stream
):
    # Given three customers, and every batch read of profile items counted
    _, key = source
    profile_reads: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        request = json.loads(params["body"])["RequestItems"][TABLE]
        if request.get("ConsistentRead"):  # (the links' read looks at the identities' slots too, eventually)
            profile_reads.append(sum(k["SK"]["S"] == "PROFILE" for k in request["Keys"]))

    ddb.meta.events.register("before-call.dynamodb.BatchGetItem", count)
    people = [random_ref("p") for _ in range(3)]
    # When they first come (no profile to read: nobody is linked yet) and then come back
    send(http, key, *(a_track(userId=person, event="Product Viewed") for person in people))
    stream.drain()
    assert sum(profile_reads) == 0
    send(http, key, *(a_track(userId=person, event="Product Added") for person in people))
    stream.drain()
    # Then each visit read the profiles once, to fold into them, not again to evaluate segments and analytics
    assert sum(profile_reads) == 3
    assert all(find_customer(store, person).profile.event_counts["Product Added"] == 1 for person in people)
    audit(store)


def test_a_batch_costs_each_customer_one_item_write_and_a_handful_of_requests_in_all(
    ddb, http, source, store, stream, monkeypatch
):
    # Given a rule with a deadline (carts), its rules read already, and every request counted by operation
    from shared.services import pipeline

    monkeypatch.setattr(pipeline, "RULES_CACHE_SECONDS", 3600.0)  # (read once here, whatever the machine's pace)
    monkeypatch.setattr(pipeline, "STATUS_SECONDS", 3600.0)  # (the processing status: written once here)
    _, key = source
    apply_segments(store, {"segments": [cart_abandoners()]}, source="test", now=datetime.now(UTC), customers=[])
    send(http, key, a_track(userId=random_ref("early"), event="Product Viewed"))
    stream.drain()
    made: list[str] = []
    ddb.meta.events.register("before-call.dynamodb", lambda model, **_: made.append(model.name))
    people = [random_ref("p") for _ in range(10)]
    asked: dict[str, Counter[str]] = {}
    # When ten new customers view products, in one stream batch, then come back and add carts, in another
    for event in ("Product Viewed", "Product Added"):
        send(http, key, *(a_track(userId=p, event=event, properties={"cart_id": "c1"}) for p in people))
        made.clear()
        assert stream.poll() == 10
        asked[event] = Counter(name for name in made if name != "DescribeTable")
        stream.drain()
    # Then the new customers cost two reads (suppression marks; links and slots: none, so no item to read), an item
    # write each (which also claims the identity: no link write), and the live feed one write: no history was read
    assert asked["Product Viewed"] == {"BatchGetItem": 2, "PutItem": 11}
    # And the returning ones three reads (marks, links and slots, items), an item write each, their ten deadlines'
    # entries one write, and the live feed one: 1.5 requests a customer
    assert asked["Product Added"] == {"BatchGetItem": 3, "PutItem": 11, "BatchWriteItem": 1}
    assert store.get_status()["processed_at"] > 0  # (written by the first batch, with its live feed item)
    assert all(len(find_customer(store, p).scheduled) == 1 for p in people)
    audit(store)


def test_a_live_feed_item_stays_within_one_write_unit_and_keeps_the_newest_events(store):
    # Given a batch of 50 events whose names and ids do not compress (more than a kilobyte compressed)
    from shared.storage.analytics import LIVE_BLOB_BYTES

    events = [
        {"at": f"2026-03-01T10:00:{n:02d}Z", "event": f"Viewed {uuid.uuid4().hex}", "message_id": uuid.uuid4().hex}
        for n in range(50)
    ]
    # When processing writes its live feed item
    store.put_live("100", events, now=1_000.0)
    # Then the item keeps the newest events that fit in a write unit
    (kept,) = store.live_items(limit=5)
    assert 1 < len(kept) < 50 and kept == events[-len(kept) :]
    assert len(zlib.compress(json.dumps(kept).encode())) <= LIVE_BLOB_BYTES


def _shard_call(stream: Any, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """One stream record handed to the process Lambda alone, as a batch of another shard would be."""
    from functions.process import handler
    from shared.local.context import LocalContext
    from shared.local.streams import lambda_record

    event = {"Records": [lambda_record(record, stream.feed.source_arn, stream.feed.region)], "shardId": "other"}
    return lambda: handler.lambda_handler(event, LocalContext("footfall-process"))


@pytest.mark.parametrize("first", ["the attach", "the customer"])
def test_an_identity_claimed_by_two_shards_at_once_ends_in_one_customer(
    http, source, store, stream, monkeypatch, first
):
    # Given an anonymous visitor's first event and the identify naming it (user new too), on two shards at once:
    # one batch makes the visitor a customer of its own, the other attaches it to the user (both claim its slot)
    from shared.storage.dynamo import DynamoTrackingStore

    _, key = source
    visitor, user = random_ref("visitor"), random_ref("user")
    identify = a_track(type="identify", userId=user, anonymousId=visitor, traits={"plan": "pro"}, properties={})
    del identify["event"]
    send(http, key, a_track(userId=None, anonymousId=visitor, event="Product Viewed"), identify)
    (shard,) = stream.feed.shards()
    records = stream.feed.read(shard["ShardId"], None, 100)
    events = {r["dynamodb"]["Keys"]["PK"]["S"]: r for r in records if r["eventName"] == "INSERT" and "EVT#" in str(r)}
    viewed, identified = events[f"ID#a#{visitor}"], events[f"ID#u#{user}"]
    own, attach = _shard_call(stream, viewed), _shard_call(stream, identified)
    real_save, real_claim = DynamoTrackingStore.save_profile, DynamoTrackingStore.claim_customer
    interleaved: list[dict[str, Any]] = []

    def other_shard_first(customer_id: str) -> None:  # the other shard runs just before this one's write lands
        if not interleaved and customer_id in (f"a:{visitor}", f"u:{user}"):
            interleaved.append({})
            interleaved[0] = own() if first == "the customer" else attach()

    def save(self: Any, stored: Any) -> Any:
        if stored.version == 0:
            other_shard_first(stored.profile.customer_id)
        return real_save(self, stored)

    def claim(self: Any, customer_id: str) -> Any:
        other_shard_first(customer_id)
        return real_claim(self, customer_id)

    monkeypatch.setattr(DynamoTrackingStore, "save_profile", save)
    monkeypatch.setattr(DynamoTrackingStore, "claim_customer", claim)
    # When each shard's batch runs, the other one landing in between, and the stream retries what failed
    answer = attach() if first == "the customer" else own()
    monkeypatch.setattr(DynamoTrackingStore, "save_profile", real_save)
    monkeypatch.setattr(DynamoTrackingStore, "claim_customer", real_claim)
    stream.drain()
    # Then the batch that lost the race failed for now (nothing of it written), and the retry made one customer
    assert interleaved and interleaved[0]["batchItemFailures"] == []
    assert answer["batchItemFailures"] != []
    customer = find_customer(store, visitor)
    assert customer is not None and find_customer(store, user) == customer
    assert set(customer.profile.identities) == {f"a:{visitor}", f"u:{user}"}
    audit(store)


def test_a_link_an_older_version_wrote_to_an_attached_identity_leads_on_to_its_customer(http, source, store, stream):
    # Given a visitor attached to a user by this version (a pointer in its slot), then, during an upgrade, the
    # older version still running linked the visitor to itself (it reads link items only, and found none)
    _, key = source
    visitor, user = random_ref("visitor"), random_ref("user")
    identify = a_track(type="identify", userId=user, anonymousId=visitor, traits={}, properties={})
    del identify["event"]
    send(http, key, identify)
    stream.drain()
    store.client.put_item(
        TableName=store.table_name,
        Item=serialize(items.link_item(Link(f"a:{visitor}", f"a:{visitor}", "old-version", "2026-01-01T00:00:00Z"))),
    )
    # When the visitor's next event is processed
    send(http, key, a_track(userId=None, anonymousId=visitor, event="Product Viewed"))
    stream.drain()
    # Then it is folded into the user's customer, where the visitor's slot points
    customer = find_customer(store, f"u:{user}")
    assert customer is not None and customer.profile.event_counts.get("Product Viewed") == 1
    assert store.list_failed().items == ()
    audit(store)
