"""The contract suite: every test runs against the in-memory fake, the store on moto and the store on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.schema import TABLE_DEFINITION
from shared.storage.sqlite.engine import SqliteClient
from tests.conftest import TABLE
from tests.fakes import InMemoryTrackingStore


@pytest.fixture(params=["fake", "dynamo", "sqlite"])
def event_store(request: pytest.FixtureRequest, aws_credentials: None, tmp_path: Path) -> Iterator[Any]:
    """A store that must behave as the `TrackingStore` port says, whichever it is."""
    if request.param == "fake":
        yield InMemoryTrackingStore()
        return
    if request.param == "sqlite":
        sqlite = SqliteClient(tmp_path / "footfall.db")
        sqlite.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield DynamoTrackingStore(TABLE, client=sqlite, retry=RetryPolicy(sleep=lambda _: None))
        sqlite.close()
        return
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield DynamoTrackingStore(TABLE, client=client, retry=RetryPolicy(sleep=lambda _: None))
