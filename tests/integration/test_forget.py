"""GDPR erasure: `forget` removes every item of a customer and refuses the ids' later events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.services.customers import find_customer, forget_customer
from shared.services.segments import apply_segments
from shared.storage.dynamo import deserialize
from shared.storage.items import decode_json
from tests.builders import a_track, random_ref
from tests.conftest import TABLE

pytestmark = pytest.mark.integration


def all_items(ddb) -> list[dict]:
    pages = ddb.get_paginator("scan").paginate(TableName=TABLE)
    return [deserialize(item) for page in pages for item in page["Items"]]


def readable(item: dict) -> str:
    """An item as text, compressed bodies included."""
    plain = {k: v for k, v in item.items() if not isinstance(v, bytes)}
    body = decode_json(item["body"]) if item.get("entity") in ("event", "profile") else None
    return json.dumps([plain, body], default=str)


def test_forget_erases_every_item_of_a_merged_customer_and_suppresses_its_ids(ddb, http, source, store, stream):
    # Given a customer built from two identities, merged (user events, then anonymous browsing, then a login)
    _, key = source
    anon, other = random_ref("anon"), random_ref("bystander")

    def send(*calls: dict) -> None:
        assert http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=key).status == 200

    apply_segments(
        store,
        {"segments": [{"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "gte": 1}}]},
        source="test",
        now=datetime.now(UTC),
        customers=[],
    )
    send(a_track(userId="erin", event="Order Completed", properties={"revenue": 10}))
    refused = {"type": "track", "userId": "erin", "properties": {"note": "no event name"}}
    http("POST", "/v1/batch", body=json.dumps({"batch": [refused]}), write_key=key)  # a failed-event record
    assert len(store.list_failed().items) == 1
    stream.drain()
    send(a_track(userId=None, anonymousId=anon, event="Product Viewed"), a_track(userId=other, event="Kept"))
    stream.drain()
    send({"type": "identify", "userId": "erin", "anonymousId": anon, "traits": {"email": "erin@example.com"}})
    stream.drain()
    assert set(find_customer(store, "erin").profile.identities) == {"u:erin", f"a:{anon}"}
    assert store.segment_history("buyers")  # Erin is in a segment, with history
    before = len(all_items(ddb))
    # When
    summary = forget_customer(store, "erin", now=datetime.now(UTC))
    # Then nothing of Erin is left but the suppression marks; the bystander is untouched
    left = all_items(ddb)
    mentions = {(i["PK"], i["SK"]) for i in left if "erin" in readable(i) or anon in readable(i)}
    assert mentions == {("ID#u#erin", "FORGOTTEN"), (f"ID#a#{anon}", "FORGOTTEN")}
    assert summary["deleted_items"] == before - len(left) + 2
    assert store.list_failed().items == ()  # the refused input that named Erin went too
    assert store.segment_history("buyers") == [] and list(store.segment_members("buyers")) == []
    assert find_customer(store, "erin") is None and find_customer(store, anon) is None
    assert find_customer(store, other).profile.event_counts == {"Kept": 1}
    # And later events for either id are answered "suppressed" and not stored, nor folded into a profile
    answer = http(
        "POST",
        "/v1/batch",
        body=json.dumps(
            {
                "batch": [
                    a_track(userId="erin", event="Came Back"),
                    a_track(userId=None, anonymousId=anon, event="Came Back"),
                    a_track(userId=other, event="Also Kept"),
                ]
            }
        ),
        write_key=key,
    )
    stream.drain()
    assert [r["status"] for r in answer.json["results"]] == ["suppressed", "suppressed", "accepted"]
    assert store.list_identity_events("u", "erin") == [] and find_customer(store, "erin") is None
    assert find_customer(store, other).profile.event_counts == {"Kept": 1, "Also Kept": 1}


def test_events_stored_before_forget_but_processed_after_are_not_folded_back(http, source, store, stream):
    _, key = source
    http("POST", "/v1/track", body=json.dumps(a_track(userId="late", event="X")), write_key=key)
    forget_customer(store, "late", now=datetime.now(UTC))  # before the stream delivered the event
    stream.drain()
    assert find_customer(store, "late") is None
    assert store.get_links(["u:late"]) == {}
