"""The embedded database's change feed: old and new images in the same transaction as the change, nothing for a
write that changes nothing, TTL deletions as DynamoDB's service writes them, 24 hours kept."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.local.streams import StreamRunner, lambda_record
from shared.storage.schema import TABLE_DEFINITION, TTL_ATTRIBUTE
from shared.storage.sqlite.engine import SqliteClient
from shared.storage.sqlite.feed import SHARD_ID, TTL_IDENTITY, SqliteChangeFeed

pytestmark = pytest.mark.integration

T = "t"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> Any:
    client = SqliteClient(tmp_path / "footfall.db", clock=clock)
    client.create_table(TableName=T, **TABLE_DEFINITION)
    client.update_time_to_live(TableName=T, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    yield client
    client.close()


def item(sk: str, **attributes: Any) -> dict[str, Any]:
    return {"PK": {"S": "P"}, "SK": {"S": sk}} | attributes


def records(db: SqliteClient) -> list[dict[str, Any]]:
    return SqliteChangeFeed(db, T).read(SHARD_ID, None, 1000)


def test_each_change_is_recorded_in_order_with_its_old_and_new_images(db):
    # When an item is created, changed, and deleted
    db.put_item(TableName=T, Item=item("1", v={"N": "1"}, b={"B": b"\x00"}))
    db.update_item(
        TableName=T, Key=item("1"), UpdateExpression="ADD v :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )
    db.delete_item(TableName=T, Key=item("1"))
    # Then
    found = records(db)
    assert [r["eventName"] for r in found] == ["INSERT", "MODIFY", "REMOVE"]
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in found] == sorted(
        int(r["dynamodb"]["SequenceNumber"]) for r in found
    )
    insert, modify, remove = (r["dynamodb"] for r in found)
    assert insert["Keys"] == item("1") and "OldImage" not in insert
    assert insert["NewImage"] == item("1", v={"N": "1"}, b={"B": b"\x00"})
    assert modify["OldImage"]["v"] == {"N": "1"} and modify["NewImage"]["v"] == {"N": "2"}
    assert remove["OldImage"]["v"] == {"N": "2"} and "NewImage" not in remove
    assert all("userIdentity" not in r for r in found)


def test_a_write_that_changes_nothing_records_nothing(db):
    # Given
    db.put_item(TableName=T, Item=item("1", v={"N": "1"}))
    # When the same item is written again, updated to what it holds, an absent item deleted, a condition fails
    db.put_item(TableName=T, Item=item("1", v={"N": "1.0"}))
    db.update_item(
        TableName=T, Key=item("1"), UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "1"}}
    )
    db.delete_item(TableName=T, Key=item("2"))
    with pytest.raises(ClientError):
        db.put_item(TableName=T, Item=item("1"), ConditionExpression="attribute_not_exists(PK)")
    # Then only the first write is in the feed
    assert [r["eventName"] for r in records(db)] == ["INSERT"]


def test_a_transaction_is_all_or_nothing_items_and_records_alike(db):
    # Given
    db.put_item(TableName=T, Item=item("1", version={"N": "1"}))
    put_two = {"Put": {"TableName": T, "Item": item("2")}}
    stale = {
        "Put": {
            "TableName": T,
            "Item": item("1", version={"N": "3"}),
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": "2"}},
        }
    }
    # When a transaction fails its second condition
    with pytest.raises(ClientError) as failed:
        db.transact_write_items(TransactItems=[put_two, stale])
    # Then nothing of it is stored or recorded, and the reasons say which action failed
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in failed.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert "Item" not in db.get_item(TableName=T, Key=item("2"))
    assert len(records(db)) == 1
    # When it is right
    stale["Put"]["ExpressionAttributeValues"] = {":v": {"N": "1"}}
    db.transact_write_items(TransactItems=[put_two, stale])
    # Then both changes are recorded
    assert [r["eventName"] for r in records(db)] == ["INSERT", "INSERT", "MODIFY"]


def test_expired_items_are_removed_as_dynamodb_s_ttl_removes_them(db, clock):
    # Given items expiring in the past, in the future, more than five years ago, and never
    db.put_item(TableName=T, Item=item("past", expires_at={"N": str(int(NOW) - 10)}))
    db.put_item(TableName=T, Item=item("future", expires_at={"N": str(int(NOW) + 10)}))
    db.put_item(TableName=T, Item=item("ancient", expires_at={"N": str(int(NOW) - 6 * 365 * 86400)}))
    db.put_item(TableName=T, Item=item("never", expires_at={"S": "not a number"}))
    # When the sweep runs
    expired = SqliteChangeFeed(db, T).maintain(now=NOW)
    # Then only the expired item is gone, with a REMOVE record from the DynamoDB service
    assert expired == (1, 0)
    left = {i["SK"]["S"] for i in db.scan(TableName=T)["Items"]}
    assert left == {"future", "ancient", "never"}
    removal = records(db)[-1]
    assert removal["eventName"] == "REMOVE" and removal["userIdentity"] == TTL_IDENTITY
    assert removal["dynamodb"]["OldImage"]["SK"] == {"S": "past"}
    assert lambda_record(removal, "arn", "local")["userIdentity"] == TTL_IDENTITY  # as Lambda hands it over


def test_records_older_than_a_day_are_trimmed(db, clock):
    # Given a record, then another a day later
    db.put_item(TableName=T, Item=item("1"))
    clock.now += 86400 + 1
    db.put_item(TableName=T, Item=item("2"))
    # When
    assert SqliteChangeFeed(db, T).maintain() == (0, 1)
    # Then the shard starts at the newer record
    (shard,) = SqliteChangeFeed(db, T).shards()
    assert shard["SequenceNumberRange"]["StartingSequenceNumber"] == records(db)[0]["dynamodb"]["SequenceNumber"]
    assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in records(db)] == ["2"]


def test_the_stream_runner_reads_the_feed_as_lambda_records_and_resumes_from_its_checkpoint(db, tmp_path):
    # Given events and a non-event item
    db.put_item(TableName=T, Item=item("E1", entity={"S": "event"}, body={"B": b"\x01"}))
    db.put_item(TableName=T, Item=item("X", entity={"S": "other"}))
    calls: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        calls.append(event)
        return {"batchItemFailures": []}

    def runner() -> StreamRunner:
        return StreamRunner(
            feed=SqliteChangeFeed(db, T),
            handler=handler,
            checkpoint_path=tmp_path / "checkpoint.json",
            quarantine=lambda *_: None,
            batch_window=0,
        )

    # When
    assert runner().poll() == 2
    db.put_item(TableName=T, Item=item("E2", entity={"S": "event"}))
    assert runner().poll() == 1  # a new runner, from the checkpoint
    # Then each event was handed over once, Lambda-shaped (binary as base64 text)
    assert [len(c["Records"]) for c in calls] == [1, 1]
    first = calls[0]["Records"][0]
    assert first == lambda_record(records(db)[0], SqliteChangeFeed(db, T).source_arn, "local")
    assert first["dynamodb"]["NewImage"]["body"] == {"B": "AQ=="}
    assert first["eventSourceARN"].endswith(db.describe_table(TableName=T)["Table"]["LatestStreamLabel"])


def test_the_database_file_is_its_owner_s_alone(db):
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600


def test_a_second_client_on_the_same_file_sees_committed_writes(db):
    # Given another process's client on the same file
    other = SqliteClient(db.path)
    try:
        # When one writes
        db.put_item(TableName=T, Item=item("1"))
        # Then the other reads it, and its writes reach the same feed
        assert other.get_item(TableName=T, Key=item("1"))["Item"] == item("1")
        other.put_item(TableName=T, Item=item("2"))
        assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in records(db)] == ["1", "2"]
    finally:
        other.close()


def test_a_writer_held_past_the_busy_timeout_is_throttling_and_writes_nothing(db):
    # Given another process holding the write lock, and a client that waits 0.1 s for it
    import sqlite3

    from shared.storage.dynamo import DynamoTrackingStore
    from shared.storage.errors import ThrottledError

    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    impatient = SqliteClient(db.path, busy_timeout=0.1)
    try:
        # When the store writes through it, Then it is told to retry (a 503 at the collector), and nothing is written
        with pytest.raises(ThrottledError):
            DynamoTrackingStore(T, client=impatient)._call(impatient.put_item, TableName=T, Item=item("1"))
        holder.execute("ROLLBACK")
        assert "Item" not in impatient.get_item(TableName=T, Key=item("1"))
        assert records(db) == []
    finally:
        holder.close()
        impatient.close()
