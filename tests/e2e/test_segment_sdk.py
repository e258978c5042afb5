"""The official Segment Python SDK, unchanged but for `host`, delivers to `footfall serve`."""

from __future__ import annotations

import pytest
from segment.analytics import Client

from tests.builders import random_ref
from tests.e2e.conftest import CollectorProxy, LocalStack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_sdk_calls_are_stored_once_each_with_their_message_ids(local_stack: LocalStack, gzip: bool):
    # Given the SDK pointed at the local collector with the printed write key
    errors: list[Exception] = []
    client = Client(
        write_key=local_stack.write_key,
        host=local_stack.info.collector_url,
        gzip=gzip,
        on_error=lambda error, _: errors.append(error),
        max_retries=2,
    )
    user, anonymous = random_ref("sdk-user"), random_ref("sdk-anon")
    # When it tracks, identifies and pages (batched in its background thread), then flushes
    sent = [
        client.page(anonymous_id=anonymous, name="Home", properties={"path": "/"}),
        client.track(anonymous_id=anonymous, event="Product Viewed", properties={"product_id": "p-9"}),
        client.identify(user_id=user, anonymous_id=anonymous, traits={"plan": "pro"}),
        client.track(user_id=user, event="Order Completed", properties={"revenue": 99.5, "order_id": "o-1"}),
    ]
    client.flush()
    client.join()
    # Then each call is stored once, under the id the SDK gave it
    assert errors == []
    message_ids = [message["messageId"] for _, message in sent]
    stored = local_stack.stored_message_ids()
    assert sorted(m for m in stored if m in message_ids) == sorted(message_ids)
    assert len(stored) == len(set(stored))
    by_user = local_stack.events("u", user)
    assert {(e.type, e.event) for e in by_user} == {("identify", None), ("track", "Order Completed")}
    assert next(e for e in by_user if e.event == "Order Completed").properties["revenue"] == 99.5
    assert [e.name for e in local_stack.events("a", anonymous) if e.type == "page"] == ["Home"]


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
def test_segment_sdk_retries_a_503_and_its_events_are_stored_exactly_once(
    local_stack: LocalStack, collector_proxy: CollectorProxy, retry_after: bool
):
    # Given a relay in front of the collector that answers the first POST 503 (with or without Retry-After)
    collector_proxy.fail_posts(1, retry_after=retry_after)
    errors: list[Exception] = []
    client = Client(
        write_key=local_stack.write_key,
        host=collector_proxy.url,
        on_error=lambda error, _: errors.append(error),
        max_retries=3,
    )
    anonymous = random_ref("sdk-anon")
    # When the SDK sends and flushes
    sent = [client.track(anonymous_id=anonymous, event=f"Step {n}") for n in range(3)]
    client.flush()
    client.join()
    # Then it retried, the retry was accepted, and every event is stored exactly once
    assert errors == []
    posts = collector_proxy.posts
    assert len(posts) >= 2
    assert (posts[0].status, posts[-1].status) == (503, 200)
    message_ids = [message["messageId"] for _, message in sent]
    stored = local_stack.stored_message_ids()
    assert sorted(m for m in stored if m in message_ids) == sorted(message_ids)
    assert len(stored) == len(set(stored))
