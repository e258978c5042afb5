"""GDPR erasure: `forget` removes every item of a customer and refuses the ids' later events."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus, unquote_plus

import pytest

from shared.services.customers import find_customer, forget_customer
from shared.services.overview import recent_events
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
    # Then nothing of Erin is left (the suppression marks hold hashes); the bystander is untouched
    left = all_items(ddb)
    mentions = {(i["PK"], i["SK"]) for i in left if "erin" in readable(i) or anon in readable(i)}
    assert mentions == set()
    assert summary.deleted_items == before - len(left) + 2 + 1  # + 2 suppression marks + the erasure epoch item
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


def test_a_segment_entry_followed_after_forget_leaves_nothing_of_the_customer(ddb, http, source, store, stream):
    # Given a customer whose customer item recorded a segment entry, forgotten before the stream followed that
    # item's record (its member item, announcement and history are still to be written)
    _, key = source
    rules = {"segments": [{"id": "viewers", "rule": {"count": {"event": "Viewed"}, "gte": 1}}]}
    apply_segments(store, rules, source="test", now=datetime.now(UTC), customers=[])
    person = random_ref("gone")
    http("POST", "/v1/track", body=json.dumps(a_track(userId=person, event="Viewed")), write_key=key)
    stream.poll()  # the event's batch: the customer item, with the entry, is written
    assert store.get_profiles([f"u:{person}"])[f"u:{person}"].segments is not None
    forget_customer(store, person, now=datetime.now(UTC))
    # When the stream follows the item's record afterwards
    stream.drain()
    # Then no member item, announcement or history item names the customer
    assert list(store.segment_members("viewers")) == []
    assert store.segment_history("viewers") == []
    assert not [item for item in all_items(ddb) if person in readable(item)]


# --- the identifier in any encoding (#13 attack 9) ---------------------------------------------------------------

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _views(value: object, depth: int = 0) -> Iterator[str]:
    """Every text an attribute holds: as stored, and once decoded (storage codec, zlib, gzip, base64, %-escapes)."""
    if depth > 5:
        return
    if isinstance(value, (bytes, bytearray)):
        yield from _byte_views(bytes(value), depth)
    elif isinstance(value, str):
        yield from _text_views(value, depth)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _views(name, depth)
            yield from _views(item, depth)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _views(item, depth)
    else:
        yield str(value)


def _byte_views(data: bytes, depth: int) -> Iterator[str]:
    """Bytes as text, and whatever they decode to (storage codec, zlib, gzip, base64)."""
    yield data.decode("utf-8", "replace")
    for decode in (
        lambda d: json.dumps(decode_json(d)),
        zlib.decompress,
        gzip.decompress,
        lambda d: base64.b64decode(d, validate=True),
    ):
        with contextlib.suppress(Exception):
            yield from _views(decode(data), depth + 1)


def _text_views(value: str, depth: int) -> Iterator[str]:
    """A text as is, %-unescaped, and every base64 run in it decoded (standard and URL-safe alphabets)."""
    yield value
    if unquote_plus(value) != value:
        yield from _views(unquote_plus(value), depth + 1)
    for run in _BASE64_RUN.findall(value):
        for alphabet in (None, b"-_"):
            with contextlib.suppress(Exception):
                yield from _views(base64.b64decode(run + "=" * (-len(run) % 4), altchars=alphabet), depth + 1)


def _encodings(identifier: str) -> set[str]:
    return {
        identifier,
        identifier.lower(),
        quote(identifier, safe=""),
        quote_plus(identifier),
        json.dumps(identifier)[1:-1],
        base64.b64encode(identifier.encode()).decode().rstrip("="),
    }


def _holding(items: list[dict], identifiers: list[str]) -> list[tuple[str, str, str]]:
    needles = {needle for identifier in identifiers for needle in _encodings(identifier)}
    found = []
    for item in items:
        for name, value in item.items():
            for text in _views(value):
                hit = next((needle for needle in needles if needle in text or needle in text.lower()), None)
                if hit:
                    found.append((item["PK"], item["SK"], name))
                    break
    return found


def test_forget_leaves_no_item_holding_the_ids_in_any_encoding(ddb, http, source, store, stream):
    # Given a customer known by a userId and an anonymousId that need escaping, with segment history, a due
    # evaluation, live-feed entries, refused inputs in every encoding, and conflicts flagged on other profiles
    _, key = source
    uid, anon = f"Erin Ü+{random_ref('x')}@Example.com", f"Anon/{random_ref('dev')}=ü"
    other, mallory = random_ref("bystander"), random_ref("mallory")
    now = datetime.now(UTC)
    at = now.isoformat().replace("+00:00", "Z")
    earlier = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")

    def call(**fields) -> dict:
        return {"messageId": random_ref("msg"), "timestamp": at, "sentAt": at, **fields}

    def send(*calls: dict) -> None:
        assert http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=key).status == 200
        stream.drain()

    apply_segments(
        store,
        {
            "segments": [
                {"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "gte": 1}},
                {
                    "id": "abandoners",
                    "rule": {
                        "absence": {
                            "did": {"event": "Product Added"},
                            "then_not": {"event": "Order Completed"},
                            "within": "1h",
                        }
                    },
                },
            ]
        },
        source="test",
        now=now,
        customers=[],
    )
    send(call(type="track", anonymousId=anon, event="Product Viewed"))
    send(call(type="identify", userId=uid, anonymousId=anon, traits={"email": uid}))
    send(
        call(type="track", userId=uid, event="Order Completed", properties={"revenue": 5}, timestamp=earlier),
        call(type="track", userId=uid, event="Product Added", properties={"cart_id": "c1"}),
        call(type="track", userId=other, event="Kept"),
        call(type="track", userId=mallory, event="Kept"),
    )
    send(
        call(type="identify", userId=other, anonymousId=anon),  # a shared device: flagged on the bystander
        call(type="alias", userId=mallory, previousId=uid),  # a client key cannot merge two users: flagged
    )
    refused = json.dumps({"batch": [{"type": "track", "userId": uid, "event": "Broken"}]})[:-5]
    gz = http("POST", "/v1/batch", body=gzip.compress(refused.encode()), headers={"Content-Encoding": "gzip"})
    data = base64.urlsafe_b64encode(json.dumps({"userId": uid, "writeKey": key}).encode()).decode().rstrip("=")
    http("GET", "/v1/pixel/track", query=f"data={data}")  # no event name: refused, kept as received
    http("GET", "/v1/pixel/track", query=f"userId={quote(uid, safe='')}&anonymousId={quote(anon)}&writeKey={key}")
    assert gz.status == 400 and len(store.list_failed().items) == 3
    customer = find_customer(store, uid).profile
    assert set(customer.identities) == {f"u:{uid}", f"a:{anon}"}
    assert find_customer(store, other).profile.flags["shared_device"][0]["identity"] == f"a:{anon}"
    assert find_customer(store, mallory).profile.flags["identity_conflict"][0]["identity"] == f"u:{uid}"
    assert store.segment_history("buyers") and any(item["entity"] == "due" for item in all_items(ddb))
    assert any(e.customer == f"u:{uid}" for e in recent_events(store))
    assert _holding(all_items(ddb), [uid, anon])  # the scan finds them before
    # When
    forget_customer(store, uid, now=datetime.now(UTC))
    # Then no item holds either id, however encoded; the others keep their own data
    assert _holding(all_items(ddb), [uid, anon]) == []
    assert find_customer(store, other).profile.event_counts["Kept"] == 1
    assert find_customer(store, mallory).profile.event_counts["Kept"] == 1
    assert find_customer(store, other).profile.flags.get("shared_device", []) == []
    # And an alias naming a forgotten id is not stored and links nothing, from any key
    answer = http("POST", "/v1/alias", body=json.dumps(call(userId=random_ref("new"), previousId=uid)), write_key=key)
    stream.drain()
    assert answer.json["results"][0]["status"] == "suppressed"
    assert store.get_links([f"u:{uid}", f"a:{uid}"]) == {}
    assert _holding(all_items(ddb), [uid, anon]) == []


def test_an_alias_naming_a_forgotten_id_is_not_stored_and_links_nothing(http, source, store, stream):
    # Given a forgotten user
    _, key = source
    gone, newcomer = random_ref("gone"), random_ref("new")
    http("POST", "/v1/track", body=json.dumps(a_track(userId=gone, event="X")), write_key=key)
    stream.drain()
    forget_customer(store, gone, now=datetime.now(UTC))
    # When an alias names it as the previous id
    alias = {"type": "alias", "userId": newcomer, "previousId": gone, "messageId": random_ref("msg")}
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": [alias]}), write_key=key)
    stream.drain()
    # Then it is answered suppressed, and the forgotten id is linked to no one
    assert answer.json["results"][0]["status"] == "suppressed"
    assert store.get_links([f"u:{gone}", f"a:{gone}"]) == {}
    assert store.list_identity_events("u", newcomer) == []


def test_processing_skips_a_stored_alias_whose_previous_id_was_forgotten_since(http, source, store, stream):
    # Given an alias stored before its previous id was forgotten, not yet processed
    _, key = source
    gone, newcomer = random_ref("gone"), random_ref("new")
    alias = {"type": "alias", "userId": newcomer, "previousId": gone, "messageId": random_ref("msg")}
    http("POST", "/v1/batch", body=json.dumps({"batch": [alias]}), write_key=key)
    forget_customer(store, gone, now=datetime.now(UTC))
    # When processing catches up
    stream.drain()
    # Then the forgotten id is linked to no one
    assert store.get_links([f"u:{gone}", f"a:{gone}"]) == {}


def test_the_live_feed_never_shows_an_identity_erased_before_its_events_were_processed(http, source, store, stream):
    # Given an event stored, then its user forgotten before processing caught up
    _, key = source
    gone = random_ref("gone")
    track = {"type": "track", "userId": gone, "event": "Product Viewed", "messageId": random_ref("msg")}
    http("POST", "/v1/batch", body=json.dumps({"batch": [track]}), write_key=key)
    forget_customer(store, gone, now=datetime.now(UTC))
    # When processing catches up
    stream.drain()
    # Then the live feed does not name the erased user
    assert not any(gone in json.dumps(events) for events in store.live_items(limit=10))
