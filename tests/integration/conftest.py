"""moto fixtures: the table from the one definition, the store, a source, and an HTTP-shaped handler call."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared import wiring
from shared.domain.sources import Source
from shared.local.apigw import http_answer, http_api_event
from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.schema import TABLE_DEFINITION
from shared.storage.sqlite.engine import SqliteClient
from shared.storage.sqlite.feed import SqliteChangeFeed
from tests.builders import a_source
from tests.conftest import TABLE


@pytest.fixture
def ddb(request: pytest.FixtureRequest, aws_credentials: None, tmp_path: Path) -> Iterator[Any]:
    """The DynamoDB client: moto's, or the embedded database's (`SqliteClient`) for a test parametrized with
    `ddb="sqlite"` (indirect), or for every test with `FOOTFALL_TEST_BACKEND=sqlite`."""
    backend = getattr(request, "param", None) or os.environ.get("FOOTFALL_TEST_BACKEND", "moto")
    if backend == "sqlite":
        client = SqliteClient(tmp_path / "footfall.db")
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield client
        client.close()
        return
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
    monkeypatch.setattr(handler, "function_store", partial(wiring.function_store, client=ddb))

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
    """The local stream runner feeding the process Lambda handler from the table's stream (moto's, or the SQLite
    change feed); `drain()` runs it and the fold's runner (`.fold`) dry."""
    from botocore.config import Config

    from functions.process import handler
    from shared.local.streams import DynamoStreamsFeed, quarantine_into
    from tests.streams import drain, fold_runner, recording_runner

    handler.store.cache_clear()
    handler.pipeline.cache_clear()  # no segment rules cached from another test's table
    monkeypatch.setattr(handler, "function_store", partial(wiring.function_store, client=ddb))
    if isinstance(ddb, SqliteClient):
        feed: Any = SqliteChangeFeed(ddb, TABLE)
        fold_feed: Any = feed
    else:
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        feed = DynamoStreamsFeed(ddb, streams, TABLE, "us-east-1")
        fold_feed = DynamoStreamsFeed(ddb, streams, TABLE, "us-east-1")
    runner = recording_runner(handler.lambda_handler, feed, tmp_path / "checkpoint.json", quarantine_into(store))
    fold = fold_runner(ddb, fold_feed, store, tmp_path, monkeypatch)

    def drain_both(limit: int = 1000) -> int:
        return drain(runner, fold, limit=limit)

    runner.drain = drain_both  # type: ignore[attr-defined]
    runner.fold = fold  # type: ignore[attr-defined]
    yield runner
    handler.store.cache_clear()
    handler.pipeline.cache_clear()
