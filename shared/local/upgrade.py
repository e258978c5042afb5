"""A data directory of the former embedded backend (moto's server: snapshot and journal) moved to SQLite.

`footfall import --from-moto DIR` starts that backend on DIR once more, checks that the stream runners (process
and fold) had handed over every change (one they had not would never be processed after the move), and restores
every item into `DIR/footfall.db`; the moto files are left where they are.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.local.stack import local_env
from shared.local.streams import CHECKPOINT_FILE, FOLD_CHECKPOINT_FILE, DynamoStreamsFeed, fold_filter, process_filter
from shared.storage.dynamo import DynamoTrackingStore, make_client
from shared.storage.transfer import export_lines


class UnprocessedChangesError(RuntimeError):
    """The stream holds changes the runner had not processed yet."""


@contextlib.contextmanager
def moto_store(data_dir: Path, table: str, region: str) -> Iterator[DynamoTrackingStore]:
    """The table of a moto-backend data directory, served for as long as the block runs."""
    from shared.local.backend import read_credentials

    process = subprocess.Popen(
        [sys.executable, "-m", "shared.local.backend", "--data-dir", str(data_dir)],
        env=local_env(region, "", table),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        credentials = read_credentials(data_dir)
        if not ready or ready[0] != "READY" or credentials is None:
            raise RuntimeError(f"the moto backend did not start on {data_dir}")
        client = make_client(endpoint_url=f"http://127.0.0.1:{ready[1]}", region=region, credentials=credentials)
        yield DynamoTrackingStore(table, client=client)
    finally:
        process.terminate()
        process.wait(timeout=60)


def check_processed(store: DynamoTrackingStore, data_dir: Path, region: str) -> None:
    """Raise unless every change in the stream is at or before the runner's checkpoint."""
    import boto3
    from botocore.config import Config

    from shared.local.backend import read_credentials

    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=store.client.meta.endpoint_url,
        region_name=region,
        config=Config(account_id_endpoint_mode="disabled"),
        **(read_credentials(data_dir) or {}),
    )
    for checkpoint, accepts in ((CHECKPOINT_FILE, process_filter), (FOLD_CHECKPOINT_FILE, fold_filter)):
        feed = DynamoStreamsFeed(store.client, streams, store.table_name, region)
        if _pending(feed, data_dir / checkpoint, accepts):
            raise UnprocessedChangesError(
                "the stream holds changes not processed yet: run `footfall serve --backend moto` on this data "
                "directory until processing catches up, stop it, then import again"
            )


def _pending(feed: DynamoStreamsFeed, checkpoint: Path, accepts: Any) -> bool:
    """Whether a runner (its checkpoint and filter) has records left to hand over."""
    try:
        positions = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        positions = {}
    for shard in feed.shards():
        position = positions.get(shard["ShardId"])
        while records := feed.read(shard["ShardId"], position, 1000):
            # Only what the runner hands to its handler counts: the rest it skips (the handlers' own writes).
            if any(accepts(record) for record in records):
                return True
            position = records[-1]["dynamodb"]["SequenceNumber"]
    return False


def moto_export(data_dir: Path, table: str, region: str) -> list[str]:
    """Every item of a moto-backend data directory, as export lines, once its stream is fully processed."""
    with moto_store(data_dir, table, region) as store:
        check_processed(store, data_dir, region)
        return list(export_lines(store))
