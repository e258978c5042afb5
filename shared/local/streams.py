"""The local stream runner: DynamoDB Streams → the process and fold Lambda handlers, as their event source mappings do.

It reproduces the mapping's semantics: batches of up to `batch_size` records (waiting up to
`batch_window` seconds to fill one), Lambda-shaped events, `ReportBatchItemFailures` (the batch is retried
from the lowest failed sequence number), bounded retries, then the failing record goes to the on-failure
store (the failed-events store, route `stream:process`, or `stream:fold` for the fold's runner, replayable with
`footfall failed replay`) and the stream moves on. The position is checkpointed in
`<data-dir>/stream-checkpoint.json` after each batch, so a restart resumes where it stopped (at-least-once: the
handler is idempotent).

The fold (the counters) is a second reader of the same stream with its own filter and checkpoint
(`fold-checkpoint.json`), run `--fold-seconds` (`FOLD_SECONDS`, 5 s; the template's window is 10 s) after the
first record since its last run, as the mapping's batching window opens at the first record it gathers: a counter
item is written once per run, whatever the number of processing batches in between, and a burst shorter than the
window is folded once.

It also runs the scheduler's sweep of the due list every `--sweep-seconds` (`SWEEP_SECONDS`, 5 s), so a time-based
transition happens within 5 s (the period) + 2 s (the sweep's `SETTLE`) + 1 s (deadlines are kept to the second) of
its deadline, plus the evaluation: under 10 s.

Run as `python -m shared.local.streams --data-dir D` with the `FOOTFALL_*` settings in the environment.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.local.context import LocalContext
from shared.local.files import open_private
from shared.services.quarantine import FOLD_ROUTE, STREAM_ROUTE, quarantine_records

logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "stream-checkpoint.json"
FOLD_CHECKPOINT_FILE = "fold-checkpoint.json"
FOLD_SECONDS = 5.0
"""The fold's batching window, in seconds (the fold mapping's MaximumBatchingWindowInSeconds is 10 on AWS)."""
FOLD_BATCH_SIZE = 10_000
"""Records per fold invocation (the fold mapping's BatchSize): a counter item is written once per invocation."""
FOLD_POLLS = 20
"""Batches the fold takes per run at most (so a backlog of counters never holds processing back for long)."""
SWEEP_SECONDS = 5.0
"""Seconds between sweeps of the due list (EventBridge runs the sweep every minute on AWS)."""
ROUTE = STREAM_ROUTE


def lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A `GetRecords` record (as boto3 returns it) in the shape Lambda hands to a stream handler."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = created.timestamp()
    for image in ("NewImage", "OldImage", "Keys"):
        if image in data:
            data[image] = _wire(data[image])
    shaped = {
        "eventID": record.get("eventID", ""),
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:  # a TTL deletion: DynamoDB's service did it (Lambda passes this on)
        shaped["userIdentity"] = record["userIdentity"]
    return shaped


def _entity(record: dict[str, Any]) -> str | None:
    name = record.get("eventName")
    entity: str | None = (
        record["dynamodb"].get("OldImage" if name == "REMOVE" else "NewImage", {}).get("entity", {}).get("S")
    )
    return entity


def process_filter(record: dict[str, Any]) -> bool:
    """The process mapping's filter (also in the SAM template): new event items, membership changes, and writes
    of customer items (whose segment entries and exits it follows)."""
    name, entity = record.get("eventName"), _entity(record)
    return (name == "INSERT" and entity == "event") or (
        name in ("INSERT", "MODIFY") and entity in ("membership", "profile")
    )


def fold_filter(record: dict[str, Any]) -> bool:
    """The fold mapping's filter (also in the SAM template): changes of memberships and of customer items (their
    cells), removals included (the counters are folded from them), and of the cells items tables kept before
    cells moved into the customer item (`footfall migrate` removes them: their removals are folded)."""
    return record.get("eventName") in ("INSERT", "MODIFY", "REMOVE") and _entity(record) in FOLDED_ENTITIES


FOLDED_ENTITIES = ("membership", "profile", "analytics_cells")


def _wire(value: Any) -> Any:
    # boto3 hands binary values over as bytes; Lambda events carry them as base64 text.
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wire(item) for item in value]
    if isinstance(value, set):
        return [_wire(item) for item in value]
    return value


class DynamoStreamsFeed:
    """A table's DynamoDB stream (AWS, moto, DynamoDB Local) read as the runner's feed: shards, then records after a
    sequence number. A shard iterator is kept per shard while reading moves on from where the last read ended."""

    def __init__(self, client: Any, streams: Any, table: str, region: str) -> None:
        self.client = client
        self.streams = streams
        self.table = table
        self.region = region
        self._iterators: dict[str, tuple[str | None, str]] = {}
        """shard → (the sequence number its iterator reads after, the iterator)."""

    @property
    def source_arn(self) -> str:
        return str(self.client.describe_table(TableName=self.table)["Table"]["LatestStreamArn"])

    def shards(self) -> list[dict[str, Any]]:
        return list(self.streams.describe_stream(StreamArn=self.source_arn)["StreamDescription"]["Shards"])

    def read(self, shard_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        cached = self._iterators.get(shard_id)
        if cached is not None and cached[0] == after:
            iterator = cached[1]
        else:
            kwargs = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
                if after
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self.streams.get_shard_iterator(StreamArn=self.source_arn, ShardId=shard_id, **kwargs)[
                "ShardIterator"
            ]
        page = self.streams.get_records(ShardIterator=iterator, Limit=limit)
        records = list(page["Records"])
        following = page.get("NextShardIterator")
        if not records:
            self._iterators[shard_id] = (after, following or iterator)
        elif following:
            self._iterators[shard_id] = (records[-1]["dynamodb"]["SequenceNumber"], following)
        else:
            self._iterators.pop(shard_id, None)
        return records

    def reset(self) -> None:
        """Forget the iterators (after a backend error): the next reads re-open them from the positions."""
        self._iterators.clear()

    def maintain(self) -> None:
        """Nothing to do: the endpoint expires items and trims its stream itself."""


@dataclass
class StreamRunner:
    """Polls one table's change feed (`DynamoStreamsFeed`, or the embedded database's `SqliteChangeFeed`) and feeds
    the handler."""

    feed: Any
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    checkpoint_path: Path
    quarantine: Callable[[dict[str, Any], str], None]
    batch_size: int = 1000
    """Records per invocation (the mapping's BatchSize; bigger batches coalesce more events per profile write)."""
    batch_window: float = 0.5
    """Seconds to let a partial batch fill (the mapping's MaximumBatchingWindowInSeconds)."""
    max_attempts: int = 3
    accepts: Callable[[dict[str, Any]], bool] = process_filter
    """The mapping's event filter: records it refuses move the position on without an invocation."""
    function: str = "footfall-process"

    def __post_init__(self) -> None:
        self.positions: dict[str, str] = self._read_checkpoint()
        self.attempts: dict[str, int] = {}
        self._not_past_the_feed()

    def _not_past_the_feed(self) -> None:
        """At start: a checkpoint past the last sequence number the embedded database's feed ever gave means the file
        lost committed changes the runner had handed over (a power cut with synchronous=NORMAL); the numbers past
        that end will be given to new changes, which must not be skipped as seen: read on from the end."""
        try:
            shards = self.feed.shards()
        except Exception:  # the backend is not up yet: nothing to compare (DynamoDB's streams have no such end)
            logger.warning("the change feed could not be read at start", extra={"function": self.function})
            return
        for shard in shards:
            position, last = self.positions.get(shard["ShardId"]), shard.get("LastSequenceNumber")
            if position and last is not None and int(position) > int(last):
                logger.error("the checkpoint is past the change feed; reading on from its end", extra={"at": last})
                self.positions[shard["ShardId"]] = last
                self._save_checkpoint()

    def _read_checkpoint(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.checkpoint_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save_checkpoint(self) -> None:
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with open_private(tmp, "w") as handle:
            json.dump(self.positions, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.checkpoint_path)

    def poll(self) -> int:
        """Deliver at most one batch per shard; returns the number of records delivered."""
        arn = self.feed.source_arn
        delivered = 0
        for shard in self.feed.shards():
            self._forget_trimmed(shard)
            delivered += self._poll_shard(arn, shard["ShardId"])
        return delivered

    def _forget_trimmed(self, shard: dict[str, Any]) -> None:
        # A checkpoint older than the stream's retention (24 h) points at records that are gone: start from the
        # oldest that is left, and say so loudly (the same loss happens on AWS past MaximumRecordAgeInSeconds).
        position = self.positions.get(shard["ShardId"])
        first = shard.get("SequenceNumberRange", {}).get("StartingSequenceNumber")
        if position and first and int(position) + 1 < int(first):
            logger.error(
                "stream records were trimmed before processing", extra={"lost": int(first) - int(position) - 1}
            )
            del self.positions[shard["ShardId"]]

    def _poll_shard(self, arn: str, shard_id: str) -> int:
        records = self.feed.read(shard_id, self.positions.get(shard_id), self.batch_size)
        if 0 < len(records) < self.batch_size and self.batch_window > 0:
            time.sleep(self.batch_window)  # the batching window: let the batch fill a little
            records = self.feed.read(shard_id, self.positions.get(shard_id), self.batch_size)
        if not records:
            return 0
        wanted = [r for r in records if self.accepts(r)]
        if not wanted:  # like an event filter on the mapping: nothing to invoke for, but the position moves on
            self._advance(shard_id, records[-1]["dynamodb"]["SequenceNumber"])
            return len(records)
        event: dict[str, Any] = {
            "Records": [lambda_record(r, arn, self.feed.region) for r in wanted],
            "shardId": shard_id,
        }
        try:
            answer = self.handler(event, LocalContext(self.function))
        except Exception:
            # As on Lambda: an invocation that raised failed every record, and retries are bounded like any other
            # failure (then the lowest record is quarantined and the stream moves on), never forever.
            logger.exception("the stream handler raised", extra={"function": self.function})
            answer = {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in wanted]}
        failures = [f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])]
        if not failures:
            self._advance(shard_id, records[-1]["dynamodb"]["SequenceNumber"])
            return len(records)
        lowest = min(failures, key=int)
        before = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) < int(lowest)]
        self.attempts[lowest] = self.attempts.get(lowest, 0) + 1
        if self.attempts[lowest] >= self.max_attempts:
            poison = next(r for r in event["Records"] if r["dynamodb"]["SequenceNumber"] == lowest)
            self.quarantine(poison, f"stream record failed {self.attempts.pop(lowest)} times")
            self._advance(shard_id, lowest)
            return len(before) + 1
        if before:
            self._advance(shard_id, before[-1]["dynamodb"]["SequenceNumber"])
        return len(before)

    def _advance(self, shard_id: str, sequence: str) -> None:
        self.positions[shard_id] = sequence
        self.attempts = {seq: n for seq, n in self.attempts.items() if int(seq) > int(sequence)}
        self._save_checkpoint()

    def catch_up(self, limit: int = FOLD_POLLS) -> int:
        """Deliver batches until the stream is read to its end (or `limit` polls); returns the records delivered."""
        delivered = 0
        for _ in range(limit):
            count = self.poll()
            delivered += count
            if count == 0:
                break
        return delivered


def quarantine_into(store: Any, route: str = STREAM_ROUTE) -> Callable[[dict[str, Any], str], None]:
    """The on-failure destination: a failed-event record holding the Lambda-shaped stream record (`route` names
    the reader that set it aside: replay does what that reader does)."""

    def put(record: dict[str, Any], reason: str) -> None:
        quarantine_records(store, [record], reason, now=datetime.now(UTC), route=route)

    return put


def main(argv: list[str] | None = None) -> None:
    """Run the stream runner until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between polls of an idle stream")
    parser.add_argument(
        "--sweep-seconds", type=float, default=SWEEP_SECONDS, help="seconds between sweeps of the due list"
    )
    parser.add_argument(
        "--fold-seconds",
        type=float,
        default=float(os.environ.get("FOOTFALL_FOLD_WINDOW") or FOLD_SECONDS),
        help="the counter fold's batching window: it runs this long after the first record since its last run "
        "(default 5, or FOOTFALL_FOLD_WINDOW)",
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        # The bench sets 1 s, the template's MaximumBatchingWindowInSeconds, to batch as Lambda would on AWS.
        default=float(os.environ.get("FOOTFALL_STREAM_BATCH_WINDOW") or StreamRunner.batch_window),
        help="seconds to let a partial batch fill (default 0.5, or FOOTFALL_STREAM_BATCH_WINDOW)",
    )
    args = parser.parse_args(argv)
    from shared.local.children import die_with_parent

    die_with_parent()
    # Powertools warns on every invocation that publishes no metric; locally metrics are off anyway.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    import boto3
    from botocore.config import Config

    from functions.fold.handler import lambda_handler as fold_handler
    from functions.process.handler import lambda_handler, settings
    from shared.storage.dynamo import DynamoTrackingStore, make_client
    from shared.storage.sqlite import is_sqlite
    from shared.storage.sqlite.feed import SqliteChangeFeed

    region = os.environ.get("AWS_REGION", "us-east-1")
    client = make_client(endpoint_url=settings.dynamodb_endpoint, region=region)
    if is_sqlite(settings.dynamodb_endpoint):
        feed: Any = SqliteChangeFeed(client, settings.table_name)
        fold_feed: Any = feed  # positions are the runners' own: the feed itself keeps nothing
    else:
        streams = boto3.client(
            "dynamodbstreams",
            endpoint_url=settings.dynamodb_endpoint,
            region_name=region,
            config=Config(account_id_endpoint_mode="disabled"),
        )
        feed = DynamoStreamsFeed(client, streams, settings.table_name, region)
        fold_feed = DynamoStreamsFeed(client, streams, settings.table_name, region)  # its own iterators
    store = DynamoTrackingStore(settings.table_name, client=client)
    runner = StreamRunner(
        feed=feed,
        handler=lambda_handler,
        checkpoint_path=args.data_dir / CHECKPOINT_FILE,
        quarantine=quarantine_into(store),
        batch_window=args.batch_window,
    )
    fold = StreamRunner(
        feed=fold_feed,
        handler=fold_handler,
        checkpoint_path=args.data_dir / FOLD_CHECKPOINT_FILE,
        quarantine=quarantine_into(store, FOLD_ROUTE),
        batch_window=0,  # its window is the time between runs
        batch_size=FOLD_BATCH_SIZE,
        accepts=fold_filter,
        function="footfall-fold",
    )
    from functions.schedule.handler import lambda_handler as schedule_handler

    print("READY streams", flush=True)
    next_sweep = 0.0
    # The fold's window opens at the first record since its last run (the process runner reads every record); at
    # start, whatever the fold has not read yet is folded at once.
    window_opened: float | None = time.monotonic() - args.fold_seconds
    while True:
        try:
            if time.monotonic() >= next_sweep:  # the minute job (EventBridge on AWS), more often here
                schedule_handler({}, LocalContext("footfall-schedule"))
                feed.maintain()  # TTL expiry and the 24-hour trim of the embedded database's feed
                next_sweep = time.monotonic() + args.sweep_seconds
            if window_opened is not None and time.monotonic() - window_opened >= args.fold_seconds:
                window_opened = None
                fold.catch_up()
            delivered = runner.poll()
            if delivered and window_opened is None:
                window_opened = time.monotonic()
            if delivered == 0:
                time.sleep(args.interval)
        except Exception:  # keep the runner alive through a transient backend error; it resumes from its checkpoint
            logger.exception("stream poll failed")
            runner.feed.reset()
            fold.feed.reset()
            time.sleep(1)


if __name__ == "__main__":
    main()
