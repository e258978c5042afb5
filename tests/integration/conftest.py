"""moto fixtures: the table from the one definition, the store, a source, and an HTTP-shaped handler call."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.domain.sources import Source
from shared.local.apigw import http_answer, http_api_event
from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.schema import TABLE_DEFINITION
from tests.builders import a_source
from tests.conftest import TABLE


@pytest.fixture
def ddb(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield client


@pytest.fixture
def store(ddb: Any) -> DynamoTrackingStore:
    return DynamoTrackingStore(TABLE, client=ddb, retry=RetryPolicy(sleep=lambda _: None))


@pytest.fixture
def source(store: DynamoTrackingStore) -> tuple[Source, str]:
    """The `web` source, stored, and its write key."""
    created, write_key = a_source("web")
    store.put_source(created, write_keys=[write_key])
    return created, write_key


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)


@pytest.fixture
def http(ddb: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Answer]:
    """Call the collect Lambda as API Gateway would for an HTTP request (its store uses the `ddb` client)."""
    from functions.collect import handler

    handler.collector.cache_clear()  # the next call builds its store inside this test's moto
    monkeypatch.setattr(handler, "make_client", lambda **_: ddb)

    def call(
        method: str,
        path: str,
        *,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        query: str = "",
        write_key: str | None = None,
    ) -> Answer:
        all_headers = dict(headers or {})
        if write_key is not None:
            all_headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        data = body.encode() if isinstance(body, str) else body
        event = http_api_event(method, path, headers=all_headers.items(), query=query, body=data)
        status, answer_headers, payload = http_answer(handler.lambda_handler(event, lambda_context))
        parsed = None
        if dict(answer_headers).get("Content-Type", "").startswith("application/json") and payload:
            import json

            parsed = json.loads(payload)
        return Answer(status, dict(answer_headers), payload, parsed)

    yield call
    handler.collector.cache_clear()


@pytest.fixture
def stream(ddb: Any, store: DynamoTrackingStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """The local stream runner feeding the process Lambda handler from moto's stream; `drain()` runs it and the
    fold's runner (`.fold`) dry."""
    from botocore.config import Config

    from functions.process import handler
    from shared.local.streams import StreamRunner, quarantine_into
    from tests.streams import drain, fold_runner

    handler.store.cache_clear()
    handler.pipeline.cache_clear()  # no segment rules cached from another test's table
    monkeypatch.setattr(handler, "make_client", lambda **_: ddb)
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    calls: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return handler.lambda_handler(event, context)

    runner = StreamRunner(
        client=ddb,
        streams=streams,
        table=TABLE,
        region="us-east-1",
        handler=invoke,
        checkpoint_path=tmp_path / "checkpoint.json",
        quarantine=quarantine_into(store),
        batch_window=0,
    )

    fold = fold_runner(ddb, streams, store, tmp_path, monkeypatch)

    def drain_both(limit: int = 1000) -> int:
        return drain(runner, fold, limit=limit)

    runner.drain = drain_both  # type: ignore[attr-defined]
    runner.fold = fold  # type: ignore[attr-defined]
    runner.calls = calls  # type: ignore[attr-defined]
    yield runner
    handler.store.cache_clear()
    handler.pipeline.cache_clear()
