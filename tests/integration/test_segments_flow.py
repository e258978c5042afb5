"""Segments on the stream and the scheduler: the starter story, redelivery, history, explain."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.local.stack import STARTERS
from shared.publishers import OutboxFile
from shared.services.customers import find_customer
from shared.services.segments import (
    AppliedSegment,
    SegmentsApplied,
    apply_segments,
    explain,
    rules_of,
    run_scheduler,
)
from tests.builders import random_ref
from tests.oracle import audit
from tests.oracle.raw import AUDIENCE_SOURCE, scan
from tests.oracle.rules import member

pytestmark = pytest.mark.integration


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: Any) -> Path:
    from functions.process import handler

    path = tmp_path / "outbox.jsonl"
    monkeypatch.setattr(handler, "publishers", lambda _settings: OutboxFile(path))
    handler.pipeline().forget_rules()  # rules applied by a test are seen at once
    return path


def audience_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def memberships(store: Any, reference: str) -> set[str]:
    return set(store.memberships_of(find_customer(store, reference).profile.customer_id))


def test_the_starter_segments_follow_a_customer_story_on_the_stream(http, source, store, stream, outbox):
    # Given the starter segments and a visitor who browses and adds to cart
    _, key = source
    apply_segments(store, json.loads(STARTERS.read_text()), source="starters", now=datetime.now(UTC), customers=[])
    visitor = random_ref("visitor")
    now = datetime.now(UTC)
    calls = [
        {"type": "track", "anonymousId": visitor, "event": "Product Viewed", "properties": {"product_id": f"p{n}"}}
        for n in range(5)
    ]
    calls.append(
        {
            "type": "track",
            "anonymousId": visitor,
            "event": "Product Added",
            "properties": {"product_id": "p1", "cart_id": "c1"},
        }
    )
    assert http("POST", "/v1/batch", body=json.dumps({"batch": calls}), write_key=key).status == 200
    stream.drain()
    # Then at once: a browser and a new customer, not (yet) an abandoner
    assert memberships(store, visitor) == {"browsers", "new_customers"}
    # When an hour passes with no event (the scheduler's clock is moved on)
    result = run_scheduler(store, now=now + timedelta(minutes=62))
    stream.drain()  # the Audience Entered event travels the stream to the outbox
    # Then the deadline made them a cart abandoner, announced once in the outbox
    assert result["entered"] == 1
    assert memberships(store, visitor) == {"browsers", "new_customers", "cart_abandoners"}
    entered = [line for line in audience_lines(outbox) if line["properties"]["audience_key"] == "cart_abandoners"]
    assert [(e["event"], e["anonymousId"]) for e in entered] == [("Audience Entered", visitor)]
    # When they come back and order for 600
    order = {
        "type": "track",
        "anonymousId": visitor,
        "event": "Order Completed",
        "properties": {"cart_id": "c1", "revenue": 600},
    }
    assert http("POST", "/v1/track", body=json.dumps(order), write_key=key).status == 200
    stream.drain()
    stream.drain()
    # Then they leave the abandoners and the browsers, and enter the heavy spenders
    assert memberships(store, visitor) == {"new_customers", "heavy_spenders"}
    changes = {(line["event"], line["properties"]["audience_key"]) for line in audience_lines(outbox)}
    assert ("Audience Exited", "cart_abandoners") in changes and ("Audience Entered", "heavy_spenders") in changes
    history = store.segment_history("cart_abandoners")  # (the scheduler's clock ran ahead of the order's)
    assert sorted(entered for _, _, entered in history) == [False, True]


def apply_viewers(store: Any) -> None:
    """One segment: everyone who sent a `Viewed` event."""
    apply_segments(
        store,
        {"segments": [{"id": "viewers", "rule": {"count": {"event": "Viewed"}, "gte": 1}}]},
        source="test",
        now=datetime.now(UTC),
        customers=[],
    )


def test_redelivery_never_announces_an_entry_twice(http, source, store, stream, outbox, lambda_context):
    _, key = source
    apply_viewers(store)
    http("POST", "/v1/track", body=json.dumps({"userId": "rita", "event": "Viewed"}), write_key=key)
    stream.drain()
    stream.drain()
    from functions.fold import handler as fold
    from functions.process import handler

    for event in list(stream.calls) * 2:  # Lambda delivers every batch again, twice (the fold's too)
        handler.lambda_handler(event, lambda_context)
    for event in list(stream.fold.calls) * 2:
        fold.lambda_handler(event, lambda_context)
    assert memberships(store, "rita") == {"viewers"}
    # Publishing is at-least-once (a redelivered batch publishes again), but it is one entry with one messageId
    lines = audience_lines(outbox)
    assert {line["event"] for line in lines} == {"Audience Entered"}
    assert len({line["messageId"] for line in lines}) == 1
    assert len(store.segment_history("viewers")) == 1


def test_apply_backfills_existing_customers_and_explain_says_why(http, source, store, stream, outbox):
    _, key = source
    for n in range(3):
        http(
            "POST",
            "/v1/track",
            body=json.dumps({"userId": "sam", "event": "Email Opened", "messageId": f"e{n}"}),
            write_key=key,
        )
    stream.drain()
    rules = {
        "segments": [
            {
                "id": "openers",
                "name": "Openers",
                "rule": {"count": {"event": "Email Opened"}, "within": "14d", "gte": 3},
            }
        ]
    }
    summary = apply_segments(
        store, rules, source="test", now=datetime.now(UTC), customers=[find_customer(store, "sam").profile.customer_id]
    )
    assert summary == SegmentsApplied(segments=(AppliedSegment("openers", 1),), entered=1, exited=0)
    (rule,) = rules_of(store.list_segments())
    why = explain(store, rule, find_customer(store, "sam"), now=datetime.now(UTC))
    assert why.member and why.rule_says
    assert why.reasons[0].startswith("count of Email Opened = 3")
    assert why.next_change is not None  # the first open leaves the 14-day window then
    changed = {
        "segments": [
            {
                "id": "openers",
                "name": "Openers",
                "rule": {"count": {"event": "Email Opened"}, "within": "14d", "gte": 4},
            }
        ]
    }
    assert (
        apply_segments(
            store,
            changed,
            source="test",
            now=datetime.now(UTC),
            customers=[find_customer(store, "sam").profile.customer_id],
        ).exited
        == 1
    )
    assert store.list_segments()[0].version == 2


RULES = {
    "segments": [
        {"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "within": "30d", "gte": 2}},
        {
            "id": "big",
            "rule": {"sum": {"event": "Order Completed", "property": "revenue"}, "within": "90d", "gte": 100},
        },
        {"id": "shoe_fans", "rule": {"count": {"event": "Product Viewed", "where": {"category": "shoes"}}, "gte": 2}},
        {"id": "silent", "rule": {"last": "any", "before": "10d"}},
        {
            "id": "abandoners",
            "rule": {
                "absence": {
                    "did": {"event": "Product Added"},
                    "then_not": {"event": "Order Completed"},
                    "within": "1h",
                    "match": ["cart_id"],
                }
            },
        },
    ]
}


# The embedded database (SQLite): the property is about incremental evaluation, and moto's stream reads copy the
# whole growing stream on every poll (33 s on moto, 7 s here); the backend's fidelity has its own contract tests.
@pytest.mark.parametrize("ddb", ["sqlite"], indirect=True)
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_incremental_membership_equals_evaluating_the_whole_history(
    http, source, store, stream, outbox, lambda_context, data
):
    # Given the rules, and a random history arriving in random batches (with a redelivered batch)
    _, key = source
    apply_segments(store, RULES, source="test", now=datetime.now(UTC), customers=[])
    user = random_ref("prop")
    now = datetime.now(UTC)
    names = st.sampled_from(["Order Completed", "Product Viewed", "Product Added", "Email Opened"])
    calls = [
        {
            "type": "track",
            "userId": user,
            "event": data.draw(names),
            "timestamp": (
                now - timedelta(days=data.draw(st.integers(0, 40)), minutes=data.draw(st.integers(0, 120)))
            ).isoformat(),
            "sentAt": None,
            "properties": {
                "revenue": data.draw(st.sampled_from([10, 60, 0])),
                "category": data.draw(st.sampled_from(["shoes", "hats"])),
                "cart_id": data.draw(st.sampled_from(["c1", "c2"])),
            },
        }
        for _ in range(data.draw(st.integers(1, 8)))
    ]
    for call in calls:
        call.pop("sentAt")
    # When they arrive a few at a time, each batch processed (and one delivered twice)
    position = 0
    while position < len(calls):
        size = data.draw(st.integers(1, 3))
        body = json.dumps({"batch": calls[position : position + size]})
        assert http("POST", "/v1/batch", body=body, write_key=key).status == 200
        stream.drain()
        if data.draw(st.booleans()):  # Lambda delivers the last batch again (the fold's too)
            from functions.fold import handler as fold
            from functions.process import handler

            handler.lambda_handler(stream.calls[-1], lambda_context)
            if stream.fold.calls:
                fold.lambda_handler(stream.fold.calls[-1], lambda_context)
        position += size
    # Then the stored memberships equal the independent oracle's reading of the rules over the whole history
    table = scan(store.client, store.table_name)
    events = [e for e in table.events if e.pk == f"ID#u#{user}" and e.source != AUDIENCE_SOURCE]
    moment = datetime.now(UTC)
    expected = {segment["id"] for segment in table.segments if member(segment["rule"], {}, events, moment)}
    customer = find_customer(store, user)
    assert set(store.memberships_of(customer.profile.customer_id)) == expected
    # And so do the profile, every other membership and every counter
    assert audit(store, now=moment).customer_of(f"u:{user}") == customer.profile.customer_id


def test_throttled_member_item_writes_are_retried_and_end_as_a_clean_run(ddb, http, source, store, stream, outbox):
    # Given DynamoDB throttling the first writes of member items (what lists a segment's customers) past the store's
    # retries, so their customer items' records fail and come again
    _, key = source
    apply_viewers(store)
    throttled = {"left": 12}

    def throttle(params: dict[str, Any], **_: Any) -> Any:
        if b"MEMBERS#" in params["body"] and throttled["left"] > 0:
            throttled["left"] -= 1
            return AWSResponse("https://dynamodb", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            }
        return None

    ddb.meta.events.register("before-call.dynamodb.BatchWriteItem", throttle)
    people = [random_ref("viewer") for _ in range(3)]
    for person in people:
        http("POST", "/v1/track", body=json.dumps({"userId": person, "event": "Viewed"}), write_key=key)
    # When the stream runs dry (the failed records come again)
    stream.drain()
    # Then every membership is there (the customer items hold them), listed, announced once each, and everything
    # equals a recomputation from the stored events
    assert throttled["left"] == 0
    assert store.list_failed().items == ()  # throttling is transient: nobody was quarantined
    assert all(memberships(store, person) == {"viewers"} for person in people)
    assert set(store.segment_members("viewers")) == {f"u:{person}" for person in people}
    assert len(store.segment_history("viewers")) == 3
    assert len(audit(store).customers) == 3


def test_a_membership_change_processing_sets_aside_is_replayed_as_its_audience_event_and_counted_once(
    http, source, store, stream, outbox, monkeypatch
):
    # Given a segment, and audience events that cannot be stored for now (processing's part of a membership change)
    import shared.services.pipeline as pipeline
    from shared.ports import ThrottledError
    from shared.services.collect import Collector
    from shared.services.replay import change_from_record, replay

    apply_viewers(store)
    real = pipeline.follow_customer_items

    def down(*_: Any) -> None:
        raise ThrottledError("audience events are down")

    # (a customer created now: its customer item holds its segments, and its record makes the announcement)
    monkeypatch.setattr(pipeline, "follow_customer_items", down)
    _, key = source
    http("POST", "/v1/track", body=json.dumps({"userId": "vera", "event": "Viewed"}), write_key=key)
    # When the stream is run dry: processing retries the membership record, then sets it aside; the fold counts it
    stream.drain()
    (failure,) = store.list_failed().items
    assert failure.route == "stream:process"
    assert dict(store.counter_items("SEGSIZE")) == {"viewers#0": {"net": 1}}
    assert store.segment_history("viewers") == []
    # And after the fix it is replayed
    monkeypatch.setattr(pipeline, "follow_customer_items", real)
    assert replay(store, Collector(store), failure, change_from_record)["membership"] == "viewers"
    stream.drain()
    # Then the audience event and the history entry exist once, and the segment's size is still one
    assert [e.event for e in store.list_identity_events("u", "vera") if e.event.startswith("Audience")] == [
        "Audience Entered"
    ]
    assert len(store.segment_history("viewers")) == 1
    assert dict(store.counter_items("SEGSIZE")) == {"viewers#0": {"net": 1}}
    assert store.list_failed().items == ()
    assert audit(store)


def test_a_customer_whose_item_holds_its_segments_is_evaluated_without_reading_memberships(
    ddb, http, source, store, stream, monkeypatch
):
    # Given the starter segments, and a spy on every read of a customer's partition
    from shared.storage import keys

    _, key = source
    apply_segments(store, json.loads(STARTERS.read_text()), source="starters", now=datetime.now(UTC), customers=[])
    visitor = random_ref("visitor")
    customer = keys.customer_pk(f"a:{visitor}")
    seen: list[tuple[str, str]] = []
    query, batch_get = ddb.query, ddb.batch_get_item

    def spy_query(**kwargs: Any) -> Any:
        values = kwargs.get("ExpressionAttributeValues", {})
        if values.get(":pk", {}).get("S") == customer:
            seen.append(("Query", kwargs["KeyConditionExpression"]))
        return query(**kwargs)

    def spy_batch_get(**kwargs: Any) -> Any:
        for options in kwargs["RequestItems"].values():
            seen.extend(("Get", k["SK"]["S"]) for k in options["Keys"] if k["PK"]["S"] == customer)
        return batch_get(**kwargs)

    monkeypatch.setattr(ddb, "query", spy_query)
    monkeypatch.setattr(ddb, "batch_get_item", spy_batch_get)
    view = {"type": "track", "anonymousId": visitor, "event": "Product Viewed", "properties": {"product_id": "p1"}}
    # When their first events are processed
    assert (
        http("POST", "/v1/batch", body=json.dumps({"batch": [view, view | {"event": "Page"}]}), write_key=key).status
        == 200
    )
    stream.drain()
    processing = list(seen)
    # Then they entered their segments and their cells are stored in the customer item its first write created,
    # with no read of memberships (there are none before the profile that this batch created)
    assert memberships(store, visitor) == {"new_customers"}
    stored = store.get_cells([f"a:{visitor}"])[f"a:{visitor}"]
    assert stored.version == 1 and stored.cells
    assert [what for what in processing if what[0] == "Query"] == []
    # When they come back in a later batch: the customer item, read at the start of the batch, holds their
    # segments, so there is still no query of their partition; the item (profile, segments, cells, deadline) is
    # written once more, not once per part
    seen.clear()
    again = view | {"properties": {"product_id": "p2"}}
    assert http("POST", "/v1/batch", body=json.dumps({"batch": [again]}), write_key=key).status == 200
    stream.drain()
    assert ("Get", keys.PROFILE_SK) in seen
    assert [what for what in seen if what[0] == "Query"] == []
    assert store.get_cells([f"a:{visitor}"])[f"a:{visitor}"].version == 2
