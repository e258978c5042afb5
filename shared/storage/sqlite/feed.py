"""The change feed: one record per item change, written in the SQLite transaction that makes the change.

Records carry the keys and the old and new images (NEW_AND_OLD_IMAGES), like DynamoDB Streams; a write that
changes nothing writes no record, as on DynamoDB. TTL deletions are REMOVE records with DynamoDB's service
identity. Records are kept 24 hours (the stream's retention), then trimmed. `SqliteChangeFeed` reads them in
the shape `dynamodbstreams.get_records` returns, for the local stream runner.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from shared.storage.sqlite.codec import decode

RETENTION_SECONDS = 24 * 3600
SHARD_ID = "shardId-00000000000000000000-00000001"
"""One shard: the feed is totally ordered, which keeps every key's changes in order."""
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    event TEXT NOT NULL,
    keys TEXT NOT NULL,
    old TEXT,
    new TEXT,
    at REAL NOT NULL,
    ttl INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
"""


def record_change(
    db: sqlite3.Connection, table: str, keys: str, old: str | None, new: str | None, *, at: float, ttl: bool = False
) -> None:
    """Append the record of one change (`old`/`new` encoded images, None when absent) to the open transaction."""
    event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    db.execute(
        "INSERT INTO changes (tbl, event, keys, old, new, at, ttl) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (table, event, keys, old, new, at, int(ttl)),
    )


def trim(db: sqlite3.Connection, *, now: float) -> int:
    """Drop records older than the retention; returns how many."""
    return db.execute("DELETE FROM changes WHERE at < ?", (now - RETENTION_SECONDS,)).rowcount


def sequence_text(seq: int) -> str:
    """A sequence number as DynamoDB Streams writes one (digits, compared as integers)."""
    return f"{seq:021d}"


def stream_record(row: tuple[Any, ...], region: str) -> dict[str, Any]:
    """A `changes` row as `get_records` returns a record (images in wire form, binary as bytes)."""
    seq, event, keys, old, new, at, ttl = row
    data: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime.fromtimestamp(int(at), UTC),
        "Keys": decode(keys),
        "SequenceNumber": sequence_text(seq),
        "SizeBytes": len(keys) + len(old or "") + len(new or ""),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        data["NewImage"] = decode(new)
    if old is not None:
        data["OldImage"] = decode(old)
    record: dict[str, Any] = {
        "eventID": f"{seq:032x}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": data,
    }
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return record


class SqliteChangeFeed:
    """The change feed of one table in the embedded database, read as a stream with one shard."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @property
    def source_arn(self) -> str:
        """The stream's ARN (the `eventSourceARN` of the records handed to Lambda)."""
        return str(self.client.describe_table(TableName=self.table)["Table"]["LatestStreamArn"])

    @property
    def region(self) -> str:
        return str(self.client.region)

    def shards(self) -> list[dict[str, Any]]:
        """The shard, with the oldest sequence number still kept (as `describe_stream` lists shards)."""
        first = self.client.read("SELECT MIN(seq) FROM changes WHERE tbl = ?", (self.table,))[0][0]
        shard: dict[str, Any] = {"ShardId": SHARD_ID, "SequenceNumberRange": {}}
        if first is not None:
            shard["SequenceNumberRange"]["StartingSequenceNumber"] = sequence_text(first)
        # The last sequence number ever given (trimmed records included): a runner's checkpoint past it means the
        # file lost committed changes (a power cut with synchronous=NORMAL) and numbers will be given again.
        last = self.client.read("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")
        shard["LastSequenceNumber"] = sequence_text(last[0][0] if last else 0)
        return [shard]

    def read(self, shard_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` records after sequence number `after` (from the oldest kept when None)."""
        rows = self.client.read(
            "SELECT seq, event, keys, old, new, at, ttl FROM changes WHERE tbl = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.table, int(after) if after else 0, limit),
        )
        return [stream_record(row, self.region) for row in rows]

    def reset(self) -> None:
        """Nothing cached to drop (positions are sequence numbers)."""

    def maintain(self, now: float | None = None) -> tuple[int, int]:
        """Expire items past their TTL and trim old records; returns (items expired, records trimmed)."""
        return self.client.expire_items(now=now), self.client.trim_feed(now=now)
