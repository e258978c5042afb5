"""The contract suite: every test runs against the in-memory fake and the real DynamoDB store on moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.schema import TABLE_DEFINITION
from tests.conftest import TABLE
from tests.fakes import InMemoryTrackingStore


@pytest.fixture(params=["fake", "dynamo"])
def event_store(request: pytest.FixtureRequest, aws_credentials: None) -> Iterator[Any]:
    """A store that must behave as the `TrackingStore` port says, whichever it is."""
    if request.param == "fake":
        yield InMemoryTrackingStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield DynamoTrackingStore(TABLE, client=client, retry=RetryPolicy(sleep=lambda _: None))
