"""Fixtures for every suite: fake AWS credentials, a Lambda context, builders."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

TABLE = "footfall-test"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so nothing can reach real AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # botocore >= 1.44 would send DynamoDB (Streams) calls to account-specific hosts moto does not route.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "FOOTFALL_TABLE_NAME": TABLE,
        "FOOTFALL_SOURCE_CACHE_SECONDS": "0",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FOOTFALL_DYNAMODB_ENDPOINT", raising=False)


@pytest.fixture(autouse=True, scope="session")
def moto_numbers_stream_records_one_at_a_time() -> Iterator[None]:
    """moto numbers a table's stream records by the length of its list, without a lock: two writes at once (the
    collector puts an identity's partitions in parallel, processing its customers' items) can get the same sequence
    number, and a read after that number then hands the second record over again. DynamoDB's numbers are unique:
    number them one at a time, as it does."""
    from moto.dynamodb.models.table import StreamShard

    add, lock = StreamShard.add, threading.Lock()

    def numbered(self: StreamShard, old: Any, new: Any) -> None:
        with lock:
            add(self, old, new)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StreamShard, "add", numbered)
        yield


@pytest.fixture(autouse=True)
def logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a Lambda handler is imported, Powertools gives our loggers its own handler and stops propagation;
    keep propagating in tests, so `caplog` sees every record whichever test imported a handler first."""
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("shared", "functions"):
            logger = logging.getLogger(name)
            if not logger.propagate:
                monkeypatch.setattr(logger, "propagate", True)


@dataclass
class FakeLambdaContext:
    function_name: str = "collect"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:collect"
    aws_request_id: str = "test-request"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
