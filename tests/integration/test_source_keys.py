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
