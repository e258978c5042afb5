"""The oracle can fail: a product mutation the old self-checking audit let through is caught by it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.services import analytics, segments
from shared.services.segments import apply_segments
from tests.builders import random_ref
from tests.oracle import AuditError, audit

# Both backends: the audit passes on the store on SQLite fed from its own change feed, as on moto's stream.
pytestmark = [pytest.mark.integration, pytest.mark.parametrize("ddb", ["moto", "sqlite"], indirect=True)]

RULES = {"segments": [{"id": "buyers", "rule": {"count": {"event": "Order Completed"}, "gte": 1}}]}


def _story(http: Any, key: str, stream: Any) -> tuple[str, str]:
    """An anonymous visitor orders, then identifies: one customer with two identities, both with events."""
    anon, user = random_ref("anon"), random_ref("user")
    calls = [
        {"type": "track", "anonymousId": anon, "event": "Order Completed", "properties": {"revenue": 20}},
        {"type": "identify", "userId": user, "anonymousId": anon, "traits": {"plan": "pro"}},
        {"type": "track", "userId": user, "event": "Product Viewed", "properties": {"product_id": "p1"}},
    ]
    for call in calls:  # one request each: the stream brings them in this order
        answer = http("POST", "/v1/batch", body=json.dumps({"batch": [call]}), write_key=key)
        assert answer.status == 200, answer.json
        stream.drain()
    return anon, user


def test_the_clean_pipeline_passes_the_audit(http, source, store, stream):
    # Given
    _, key = source
    from functions.process import handler

    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    # When
    anon, user = _story(http, key, stream)
    # Then one customer holds both identities, in the segment, and every stored figure equals the oracle's
    report = audit(store)
    assert report.customer_of(f"u:{user}") == report.customer_of(f"a:{anon}") is not None


def test_customer_events_reading_only_the_first_identity_is_caught(http, source, store, stream, monkeypatch):
    # Given the mutation: a customer's events are read from its first identity only (segments and analytics)
    original = segments.customer_events

    def first_identity_only(store_: Any, profile: Any) -> Any:
        identities = profile.profile.identities or (profile.profile.customer_id,)
        trimmed = type(profile)(
            profile=type(profile.profile)(**{**_fields(profile.profile), "identities": tuple(identities[:1])}),
            version=profile.version,
            applied=profile.applied,
        )
        return original(store_, trimmed)

    from functions.process import handler
    from shared.services import pipeline, prepare

    for module in (segments, analytics, pipeline, prepare):
        monkeypatch.setattr(module, "customer_events", first_identity_only)
    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    _, key = source
    # When
    _story(http, key, stream)
    # Then the audit sees the membership and counters built from half the events
    with pytest.raises(AuditError) as caught:
        audit(store)
    assert "counter" in str(caught.value), caught.value  # the identified half (a view) is missing from them


def _fields(profile: Any) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in profile.__slots__}


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
