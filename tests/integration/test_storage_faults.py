"""Throttling and partial batch writes, injected with botocore event hooks: nothing acknowledged is lost.

moto never throttles, so the faults are injected in front of it: a `before-call` hook either answers for DynamoDB
(a throttling error) or lets the call through to moto, as DynamoDB does under load.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from shared.domain.results import Outcome
from shared.services.audiences import MembershipChange, record_membership_changes
from shared.services.customers import forget_customer
from shared.storage.dynamo import RetryPolicy
from tests.builders import a_track
from tests.conftest import TABLE

pytestmark = pytest.mark.integration


class FaultInjector:
    """Plays DynamoDB under pressure for selected operations of one client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()  # events are put from several threads: every call counted once
        self.plans: dict[str, Callable[[int, dict[str, Any]], Any]] = {}
        client.meta.events.register("before-call.dynamodb.*", self._before_call)

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        name = model.name
        plan = self.plans.get(name)
        with self.lock:
            self.calls[name] = number = self.calls.get(name, 0) + 1
        if plan is None:
            return None
        return plan(number, json.loads(params["body"]))

    @staticmethod
    def throttle() -> tuple[AWSResponse, dict[str, Any]]:
        error = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb", 400, {}, None), error


def stored_ids(store: Any, user_id: str) -> list[str]:
    return [event.message_id for event in store.list_identity_events("u", user_id)]


def test_throttled_puts_are_retried_until_every_event_is_stored(ddb, store, source, http):
    # Given DynamoDB throttling every other event put
    faults = FaultInjector(ddb)
    faults.plans["PutItem"] = lambda n, _: faults.throttle() if n % 2 else None
    _, write_key = source
    batch = [a_track(userId="patient") for _ in range(60)]
    # When
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key)
    # Then
    assert answer.status == 200
    assert {r["status"] for r in answer.json["results"]} == {"accepted"}
    assert sorted(stored_ids(store, "patient")) == sorted(e["messageId"] for e in batch)
    assert faults.calls["PutItem"] > 60  # it really had to retry


def test_throttling_past_the_retries_is_a_503_and_the_client_retry_stores_each_event_once(ddb, store, source, http):
    # Given a table that takes 10 events and then throttles every put (the collector's backoff pauses skipped: 20
    # events, each retried 8 times, would wait about 35 s for nothing)
    from functions.collect import handler

    handler.collector().store.retry = RetryPolicy(sleep=lambda _: None)
    faults = FaultInjector(ddb)
    faults.plans["PutItem"] = lambda n, _: None if n <= 10 else faults.throttle()
    _, write_key = source
    batch = [a_track(userId="unlucky") for _ in range(30)]
    # When
    first = http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key)
    del faults.plans["PutItem"]
    retry = http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key)
    # Then the first answer tells the client to retry, and says what was stored already
    assert first.status == 503
    assert first.headers["Retry-After"] == "1"
    statuses = [r["status"] for r in first.json["results"]]
    assert statuses.count("accepted") == 10
    assert statuses.count("not_stored") == 20
    assert retry.status == 200
    assert [r["status"] for r in retry.json["results"]].count("duplicate") == 10
    assert sorted(stored_ids(store, "unlucky")) == sorted(e["messageId"] for e in batch)


def test_two_deliveries_of_one_event_store_it_once_even_at_the_same_moment(ddb, store):
    # Given one event delivered twice (a client retry racing its first attempt): no read decides, the put does
    from concurrent.futures import ThreadPoolExecutor

    from shared.domain.events import parse_event
    from shared.services.collect import utcnow

    event = parse_event(a_track(userId="twice"), source_id="web", received_at=utcnow(), new_id=lambda: "x")
    # When both are stored at once
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(o.value for batch in pool.map(store.put_events, [[event], [event]]) for o in batch)
    # Then one is accepted, the other a duplicate, and one item exists
    assert outcomes == sorted([Outcome.ACCEPTED.value, Outcome.DUPLICATE.value])
    assert stored_ids(store, "twice") == [event.message_id]


def test_throttled_suppression_read_stores_nothing_and_asks_for_a_retry(ddb, store, source, http):
    faults = FaultInjector(ddb)
    faults.plans["BatchGetItem"] = lambda *_: faults.throttle()
    _, write_key = source
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": [a_track(userId="nobody")]}), write_key=write_key)
    assert answer.status == 503
    assert stored_ids(store, "nobody") == []
    assert "PutItem" not in faults.calls


def test_store_reports_not_stored_per_event_when_throttled(ddb, store):
    from shared.domain.events import parse_event
    from shared.services.collect import utcnow

    faults = FaultInjector(ddb)
    faults.plans["PutItem"] = lambda *_: faults.throttle()
    events = [parse_event(a_track(), source_id="web", received_at=utcnow(), new_id=lambda: "x") for _ in range(3)]
    assert store.put_events(events) == [Outcome.NOT_STORED] * 3
    assert faults.calls["PutItem"] == 3 * store.retry.attempts


def test_moto_streams_need_account_id_endpoints_disabled():
    """botocore >= 1.44 would send DynamoDB calls to `<account>.ddb.<region>.amazonaws.com`, which moto does not
    route; our conftest (and the local stack) disable it. This guards that setting."""
    import os

    from moto import mock_aws

    assert os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled"
    with mock_aws():
        client = boto3.client("dynamodb")
        from shared.storage.schema import TABLE_DEFINITION

        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams")
        assert streams.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "ENABLED"


def test_one_identitys_events_are_written_in_the_order_they_were_sent(ddb, store):
    # Given a request with forty events of one visitor among twenty other visitors' events
    from shared.domain.events import parse_event
    from shared.services.collect import utcnow

    calls = [a_track(userId="ordered", event=f"Step {n}") for n in range(40)]
    calls += [a_track(userId=f"other-{n}") for n in range(20)]
    events = [parse_event(call, source_id="web", received_at=utcnow(), new_id=lambda: "x") for call in calls]
    written: list[str] = []
    first = {event.message_id for event in events[:5]}

    def record(params: dict[str, Any], **_: Any) -> None:
        sk = json.loads(params["body"])["Item"]["SK"]["S"]
        if any(message_id in sk for message_id in first):
            time.sleep(0.05)  # the first puts are slow: a put of a later event must still wait for them
        written.append(sk)

    ddb.meta.events.register("before-call.dynamodb.PutItem", record)
    # When it is stored (other visitors' partitions in parallel with the first one's)
    assert store.put_events(events) == [Outcome.ACCEPTED] * 60
    # Then the visitor's events were written one after the other in the order sent (the stream keeps that order)
    order = {event.message_id: n for n, event in enumerate(events[:40])}
    mine = [sk for sk in written if any(message_id in sk for message_id in order)]
    assert [next(order[m] for m in order if m in sk) for sk in mine] == list(range(40))


def test_announcements_keep_each_identity_s_order_skip_erased_ones_and_are_safe_to_repeat(ddb, store):
    # Given three segment changes of two customers, one of them two changes of one identity, and every batch write
    requests: list[list[tuple[str, str]]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        puts = [r["PutRequest"]["Item"] for r in params["RequestItems"][TABLE] if "PutRequest" in r]
        requests.append([(item["entity"]["S"], item["PK"]["S"]) for item in puts])

    ddb.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", record)
    changes = [
        MembershipChange("buyers", "u:ann", True, "2026-03-01T10:00:00Z", 1, "bought", ("u", "ann")),
        MembershipChange("buyers", "u:bob", True, "2026-03-01T10:00:00Z", 1, "bought", ("u", "bob")),
        MembershipChange("buyers", "u:ann", False, "2026-03-01T10:00:05Z", 1, "refunded", ("u", "ann")),
    ]
    # When they are announced
    assert record_membership_changes(store, changes) == changes
    # Then ann's second change went in a request after her first; each event with its history item
    assert [sorted(request) for request in requests] == [
        sorted([("event", "ID#u#ann"), ("event", "ID#u#bob"), *[("segment_history", "SEGHIST#buyers")] * 2]),
        [("event", "ID#u#ann"), ("segment_history", "SEGHIST#buyers")],
    ]
    assert [e.event for e in store.list_identity_events("u", "ann")] == ["Audience Entered", "Audience Exited"]
    # When they are announced again (a record delivered twice), after bob was erased
    forget_customer(store, "bob", now=datetime.now(UTC))
    requests.clear()
    assert record_membership_changes(store, changes) == [changes[0], changes[2]]
    # Then ann's items are the same ones, written again, and nothing of bob's is
    assert [e.event for e in store.list_identity_events("u", "ann")] == ["Audience Entered", "Audience Exited"]
    assert store.list_identity_events("u", "bob") == []
    assert all(pk != "ID#u#bob" for request in requests for _, pk in request)
    assert len(store.segment_history("buyers")) == 3
