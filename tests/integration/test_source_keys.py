"""Webhook replays, write-key rotation and source removal, through the collect handler."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared.domain.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook

pytestmark = pytest.mark.integration


def _signed(body: bytes, secret: str, stamp: int) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign_webhook(body, secret, stamp)}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "track", "userId": "u-replay", "event": "Order Completed", "properties": {"revenue": 10}},
        {
            "batch": [
                {"type": "track", "userId": "u-replay", "event": "A"},
                {"type": "track", "userId": "u-2", "event": "B"},
            ]
        },
    ],
    ids=["one call", "batch"],
)
def test_a_replayed_webhook_without_message_ids_is_stored_once(http, source, store, payload: dict[str, Any]):
    # Given a Segment-shaped webhook without messageIds, signed once
    created, _ = source
    body = json.dumps(payload).encode()
    headers = _signed(body, created.webhook_secrets[0], int(time.time()))
    # When the same signed request is delivered twice within the tolerance
    first = http("POST", "/v1/webhooks/web", body=body, headers=headers)
    replay = http("POST", "/v1/webhooks/web", body=body, headers=headers)
    # Then the replay is answered as duplicates, and the user has one event of each
    assert {r["status"] for r in first.json["results"]} == {"accepted"}
    assert {r["status"] for r in replay.json["results"]} == {"duplicate"}
    assert [r["messageId"] for r in first.json["results"]] == [r["messageId"] for r in replay.json["results"]]
    assert len(store.list_identity_events("u", "u-replay")) == 1


def test_the_same_webhook_body_signed_again_later_is_a_new_delivery(http, source):
    created, _ = source
    body = json.dumps({"type": "track", "userId": "u-again", "event": "Ping"}).encode()
    now = int(time.time())
    first = http("POST", "/v1/webhooks/web", body=body, headers=_signed(body, created.webhook_secrets[0], now - 60))
    later = http("POST", "/v1/webhooks/web", body=body, headers=_signed(body, created.webhook_secrets[0], now))
    assert first.json["results"][0]["status"] == later.json["results"][0]["status"] == "accepted"


def _track(http, write_key: str) -> int:
    return http("POST", "/v1/track", body=json.dumps({"userId": "u-key", "event": "Ping"}), write_key=write_key).status


def test_a_rotated_write_key_works_for_its_grace_period_and_then_never(http, source, store, monkeypatch):
    # Given a source whose key is rotated with a one-hour grace
    from datetime import UTC, datetime, timedelta

    from functions.collect import handler
    from shared.domain.sources import rotate_write_key

    created, old_key = source
    new_key = "ffk_" + "n" * 32
    rotated = rotate_write_key(created, new_key, now=datetime.now(UTC), grace=timedelta(hours=1))
    store.put_source(rotated, write_keys=[new_key])
    # Then both keys work now
    assert (_track(http, new_key), _track(http, old_key)) == (200, 200)
    # When the grace period is over (the collector's clock moved on)
    later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(handler.collector(), "clock", lambda: later)
    # Then only the new key works
    assert (_track(http, new_key), _track(http, old_key)) == (200, 401)


def test_a_removed_source_accepts_nothing_and_its_stored_events_stay(http, source, store):
    # Given a source with a stored event
    created, write_key = source
    assert _track(http, write_key) == 200
    body = json.dumps({"type": "track", "userId": "u-key", "event": "Hook"}).encode()
    headers = _signed(body, created.webhook_secrets[0], int(time.time()))
    # When it is removed
    store.remove_source(created)
    from functions.collect import handler

    handler.collector().source_cache_seconds = 0  # a cold collector (a warm one forgets within 30 s)
    # Then its key and its webhook secret are refused, and what it sent is still there
    assert _track(http, write_key) == 401
    assert http("POST", "/v1/webhooks/web", body=body, headers=headers).status == 401
    assert len(store.list_identity_events("u", "u-key")) == 1
