"""Storing events, de-duplicated exactly: the same answers from the fake and from DynamoDB."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.events import CallType, TrackingEvent
from shared.ports import Outcome
from tests.builders import random_ref

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 29, 10, tzinfo=UTC)


def an_event(**overrides: Any) -> TrackingEvent:
    event = TrackingEvent(
        source_id="web",
        message_id=random_ref("msg"),
        type=CallType.TRACK,
        timestamp=AT,
        received_at=AT,
        user_id=random_ref("user"),
        event="Product Viewed",
    )
    return replace(event, **overrides)


def stored(store: Any, event: TrackingEvent) -> list[TrackingEvent]:
    kind, identifier = event.identity
    return [e for e in store.list_identity_events(kind, identifier) if e.message_id == event.message_id]


def test_a_message_twice_in_one_request_is_stored_once_and_answered_duplicate(event_store):
    # Given one request carrying the same message twice (a client that queued it twice), and another message
    event, other = an_event(), an_event()
    # When
    outcomes = event_store.put_events([event, other, event])
    # Then
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert len(stored(event_store, event)) == 1


def test_a_retried_request_is_answered_duplicate_for_what_was_stored(event_store):
    # Given
    first, second = an_event(), an_event()
    assert event_store.put_events([first]) == [Outcome.ACCEPTED]
    # When the client retries the whole request
    outcomes = event_store.put_events([first, second])
    # Then
    assert outcomes == [Outcome.DUPLICATE, Outcome.ACCEPTED]
    assert [len(stored(event_store, e)) for e in (first, second)] == [1, 1]


def test_the_de_duplication_key_is_identity_source_and_message_id(event_store):
    # Given one message id reused by another source and for another identity (not a retry: a retry resends the
    # same call, with the same userId/anonymousId)
    event = an_event()
    other_source = replace(event, source_id="shop")
    other_user = replace(event, user_id=random_ref("user"))
    # When
    outcomes = event_store.put_events(
        [event, other_source, other_user, replace(event, received_at=AT.replace(hour=11))]
    )
    # Then each (identity, source, messageId) is stored once; a resend with a later receivedAt is the same message
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert [len(stored(event_store, e)) for e in (event, other_user)] == [2, 1]  # `event`'s identity: two sources
