"""The embedded backend keeps every acknowledged write across kill -9, journal compaction and clean stops."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.local.backend import JOURNAL_PREFIX, SNAPSHOT_NAME
from shared.storage.schema import TABLE_DEFINITION
from tests.integration.local_backend import Backend

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    running = Backend(tmp_path, compact_mb=1)
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()


def write(client: Any, start: int, count: int) -> None:
    for first in range(start, start + count, 25):
        client.batch_write_item(
            RequestItems={
                "t": [
                    {"PutRequest": {"Item": {"PK": {"S": f"item-{n}"}, "SK": {"S": "x"}, "blob": {"B": b"z" * 2000}}}}
                    for n in range(first, min(first + 25, start + count))
                ]
            }
        )
    client.update_item(
        TableName="t",
        Key={"PK": {"S": "counter"}, "SK": {"S": "x"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


def state(backend: Backend, client: Any) -> tuple[int, int, list[str]]:
    pages = client.get_paginator("scan").paginate(TableName="t", Select="COUNT", ConsistentRead=True)
    items = sum(page["Count"] for page in pages)
    counter = int(client.get_item(TableName="t", Key={"PK": {"S": "counter"}, "SK": {"S": "x"}})["Item"]["n"]["N"])
    return items, counter, _stream_sequence_numbers(backend, client)


def _stream_sequence_numbers(backend: Backend, client: Any) -> list[str]:
    streams = backend.streams_client()
    arn = client.describe_table(TableName="t")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    numbers: list[str] = []
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        numbers += [r["dynamodb"]["SequenceNumber"] for r in page["Records"]]
        if not page["Records"]:
            return numbers
        iterator = page["NextShardIterator"]


def test_kill_9_after_compactions_loses_nothing_and_counts_nothing_twice(backend: Backend):
    # Given enough writes to pass the 1 MB compaction threshold several times
    client = backend.start()
    client.create_table(TableName="t", **TABLE_DEFINITION)
    for round_number in range(4):
        write(client, round_number * 300, 300)
    before = state(backend, client)
    assert (backend.data_dir / SNAPSHOT_NAME).exists()
    # When
    backend.stop(signal.SIGKILL)
    client = backend.start()
    # Then: same items, the ADD counter applied exactly once per call, stream records and numbers preserved
    assert state(backend, client) == before
    assert before[:2] == (1201, 4)
    assert len(list(backend.data_dir.glob(JOURNAL_PREFIX + "*"))) == 1


def test_clean_stop_leaves_a_snapshot_so_the_restart_replays_nothing(backend: Backend):
    client = backend.start()
    client.create_table(TableName="t", **TABLE_DEFINITION)
    write(client, 0, 50)
    before = state(backend, client)
    backend.stop(signal.SIGTERM)
    client = backend.start()
    assert backend.replayed == 0
    assert state(backend, client) == before


def test_torn_last_journal_line_is_ignored(backend: Backend):
    client = backend.start()
    client.create_table(TableName="t", **TABLE_DEFINITION)
    write(client, 0, 25)
    before = state(backend, client)
    backend.stop(signal.SIGKILL)
    (journal,) = backend.data_dir.glob(JOURNAL_PREFIX + "*")
    with journal.open("ab") as handle:
        handle.write(b'{"target":"DynamoDB_20120810.PutItem","au')  # a write that never got its fsync+answer
    client = backend.start()
    assert state(backend, client) == before


def test_stream_records_older_than_a_day_are_trimmed_and_a_stale_checkpoint_restarts_from_the_oldest(ddb, stream):
    # Given 30 stream records, 10 of them two days old
    from datetime import UTC, datetime, timedelta

    from moto.dynamodb.models import dynamodb_backends

    from shared.local.backend import trim_streams

    for n in range(30):
        ddb.put_item(TableName="footfall-test", Item={"PK": {"S": f"x{n}"}, "SK": {"S": "y"}})
    table = dynamodb_backends["123456789012"]["us-east-1"].tables["footfall-test"]
    first_before = table.stream_shard.starting_sequence_number
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)
    for record in table.stream_shard.items[:10]:
        record.record["dynamodb"]["ApproximateCreationDateTime"] = old
    shard = table.stream_shard.id  # whatever moto names it
    stream.positions[shard] = str(first_before + 3)  # a checkpoint among them
    # When the backend trims
    dropped = trim_streams(dynamodb_backends, datetime.now(UTC).replace(tzinfo=None))
    # Then the 10 are gone, numbering is kept, and the runner restarts from the oldest record left
    assert dropped == 10
    assert table.stream_shard.starting_sequence_number == first_before + 10
    assert len(table.stream_shard.items) == 20
    stream.drain()
    assert stream.positions[shard] == str(first_before + 29)
