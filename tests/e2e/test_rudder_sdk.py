"""RudderStack's official Python SDK, unchanged but for its data plane URL and write key, delivers to `footfall serve`.

What it sends: `POST {dataPlaneUrl}/v1/batch`, the write key as Basic-auth user, gzip by default, a body
`{"batch": [...], "sentAt": ...}`; identify traits ride in `context.traits`. It retries 5xx/429 with backoff.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rudderstack.analytics import Client
from rudderstack.analytics.request import APIError

from tests.builders import random_ref
from tests.e2e.conftest import CollectorProxy, LocalStack

pytestmark = pytest.mark.e2e


def _client(write_key: str, data_plane_url: str, errors: list[Exception], **options: Any) -> Client:
    return Client(write_key=write_key, host=data_plane_url, on_error=lambda error, _: errors.append(error), **options)


def _send_each_call(client: Client, user: str, anonymous: str, company: str) -> list[dict[str, Any]]:
    """Identify, track, page, group and alias (six calls), then flush; the messages as the SDK made them."""
    sent = [
        client.page(anonymous_id=anonymous, name="Home", properties={"path": "/"}),
        client.track(anonymous_id=anonymous, event="Product Viewed", properties={"product_id": "p-9"}),
        client.identify(user_id=user, anonymous_id=anonymous, traits={"plan": "pro"}),
        client.group(user_id=user, group_id=company, traits={"name": "Acme"}),
        client.track(user_id=user, event="Order Completed", properties={"revenue": 99.5, "order_id": "o-1"}),
        client.alias(previous_id=anonymous, user_id=user),
    ]
    client.flush()
    client.join()
    assert all(queued for queued, _ in sent)
    return [message for _, message in sent]


def _assert_stored_once(local_stack: LocalStack, message_ids: list[str]) -> None:
    stored = local_stack.stored_message_ids()
    assert sorted(m for m in stored if m in message_ids) == sorted(message_ids)
    assert len(stored) == len(set(stored))


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip-default", "plain"])
def test_rudder_sdk_calls_are_stored_once_each_with_their_message_ids(local_stack: LocalStack, gzip: bool):
    # Given the SDK pointed at the local collector (as its data plane URL) with the printed write key
    errors: list[Exception] = []
    client = _client(local_stack.write_key, local_stack.info.collector_url, errors, gzip=gzip, max_retries=2)
    user, anonymous, company = random_ref("rs-user"), random_ref("rs-anon"), random_ref("rs-co")
    # When it pages, tracks, identifies, groups and aliases (batched in its background thread), then flushes
    sent = _send_each_call(client, user, anonymous, company)
    # Then each call is stored once, under the id the SDK gave it
    assert errors == []
    _assert_stored_once(local_stack, [message["messageId"] for message in sent])
    by_user = local_stack.events("u", user)
    assert sorted((e.type, e.event) for e in by_user) == [
        ("alias", None),
        ("group", None),
        ("identify", None),
        ("track", "Order Completed"),
    ]
    identify = next(e for e in by_user if e.type == "identify")
    assert identify.context["traits"] == {"plan": "pro"}  # RudderStack puts identify traits in context.traits
    group = next(e for e in by_user if e.type == "group")
    assert (group.group_id, group.traits) == (company, {"name": "Acme"})
    assert next(e for e in by_user if e.type == "alias").previous_id == anonymous
    assert next(e for e in by_user if e.event == "Order Completed").properties["revenue"] == 99.5
    by_anonymous = local_stack.events("a", anonymous)
    assert sorted((e.type, e.name or e.event) for e in by_anonymous) == [("page", "Home"), ("track", "Product Viewed")]


def test_rudder_sdk_batches_its_calls_into_gzipped_basic_auth_posts_to_v1_batch(
    local_stack: LocalStack, collector_proxy: CollectorProxy
):
    # Given the SDK with its default options, pointed at a recording relay in front of the collector
    errors: list[Exception] = []
    client = _client(local_stack.write_key, collector_proxy.url, errors)
    # When six calls are made and flushed
    sent = _send_each_call(client, random_ref("rs-user"), random_ref("rs-anon"), random_ref("rs-co"))
    # Then they went in fewer requests than calls, each a gzipped /v1/batch with the write key as Basic-auth user
    assert errors == []
    posts = collector_proxy.posts
    assert 1 <= len(posts) < len(sent)
    basic = "Basic " + base64.b64encode(f"{local_stack.write_key}:".encode()).decode()
    for post in posts:
        assert (post.path, post.status) == ("/v1/batch", 200)
        assert post.headers["authorization"] == basic
        assert post.headers["content-encoding"] == "gzip"
        assert post.headers["content-type"] == "application/json"
        assert set(post.json) == {"batch", "sentAt"}
    batched = [message for post in posts for message in post.json["batch"]]
    assert [m["messageId"] for m in batched] == [m["messageId"] for m in sent]
    assert {m["channel"] for m in batched} == {"server"}
    _assert_stored_once(local_stack, [message["messageId"] for message in sent])


@pytest.mark.parametrize("deliver", [False, True], ids=["refused", "stored-but-answer-lost"])
def test_rudder_sdk_retries_a_503_and_its_events_are_stored_exactly_once(
    local_stack: LocalStack, collector_proxy: CollectorProxy, deliver: bool
):
    # Given a relay that answers the first POST 503 (storage down) — after relaying it, when the answer is lost
    collector_proxy.fail_posts(1, deliver=deliver)
    errors: list[Exception] = []
    client = _client(local_stack.write_key, collector_proxy.url, errors, max_retries=3)
    # When the SDK sends and flushes
    sent = _send_each_call(client, random_ref("rs-user"), random_ref("rs-anon"), random_ref("rs-co"))
    # Then it retried the same batch, which was accepted, and every event is stored exactly once
    assert errors == []
    posts = collector_proxy.posts
    assert len(posts) >= 2
    assert (posts[0].status, posts[0].forwarded) == (503, 200 if deliver else None)
    assert posts[-1].status == 200
    assert posts[1].json["batch"] == posts[0].json["batch"]
    _assert_stored_once(local_stack, [message["messageId"] for message in sent])


def test_rudder_sdk_gives_up_at_once_on_a_refused_write_key(local_stack: LocalStack, collector_proxy: CollectorProxy):
    # Given the SDK with a write key the collector does not know
    errors: list[Exception] = []
    client = _client("not-a-write-key", collector_proxy.url, errors, max_retries=2)
    # When it sends a call
    client.track(anonymous_id=random_ref("rs-anon"), event="Signed Up")
    client.flush()
    client.join()
    # Then the 401 reaches on_error after one request, not retried
    assert [p.status for p in collector_proxy.posts] == [401]
    assert len(errors) == 1
    assert isinstance(errors[0], APIError)
    assert errors[0].status == 401
