"""A data directory of the former embedded backend (moto's server: snapshot and journal) moved to SQLite.

That backend kept moto's DynamoDB state as a pickle of moto's backends, `dynamodb.snapshot` (it names the journal
generation that continues it), and every state-changing request applied after it in `dynamodb.journal.<generation>`
(JSON lines: the request's `X-Amz-Target`, its SigV4 scope and its body, appended before the answer left).

`footfall import --from-moto DIR` loads both into moto in this process, as a library (`mock_aws`: no server, no
socket, none of moto's internals patched). Changes the stream runners (process and fold) had not handed over yet
(the stack stopped before processing caught up) would never be processed after the move, so they are processed
first, here, by the same process and fold functions `footfall serve` ran, from copies of the runners' checkpoints.
Then every item is returned as export lines for `DIR/footfall.db`; the moto files (checkpoints included) are left
where they are. moto is needed for this one command only: the `from-moto` extra.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import OperatorError
from shared.local.stack import OUTBOX_FILE
from shared.local.streams import CHECKPOINT_FILE, FOLD_CHECKPOINT_FILE, DynamoStreamsFeed, fold_filter, process_filter
from shared.storage.dynamo import DynamoTrackingStore, make_client
from shared.storage.transfer import export_lines

SNAPSHOT_NAME = "dynamodb.snapshot"
JOURNAL_PREFIX = "dynamodb.journal."
EXTRA = "from-moto"
_KEYS = {"aws_access_key_id": "footfall", "aws_secret_access_key": "footfall"}
"""Any key will do for moto; this is the one the journal names (moto routes by the region of the scope only)."""


class UnprocessedChangesError(OperatorError):
    """The stream holds changes the runners had not processed yet."""


def _to_stderr(line: str) -> None:
    print(f"footfall: {line}", file=sys.stderr)


def moto_export(data_dir: Path, table: str, region: str, *, out: Callable[[str], None] = _to_stderr) -> list[str]:
    """Every item of a moto-backend data directory, as export lines, once its stream is fully processed.

    Raises:
        OperatorError: moto is not installed, `data_dir` holds no moto data or not `table`, or (as
            `UnprocessedChangesError`) the runners had not processed every change.
    """
    with _loaded(data_dir, out) as clients:
        store = DynamoTrackingStore(table, client=clients("dynamodb", region))
        try:
            store.client.describe_table(TableName=table)
        except store.client.exceptions.ResourceNotFoundException as exc:
            raise OperatorError(f"the moto data in {data_dir} has no table {table!r}") from exc
        streams = clients("dynamodbstreams", region)
        with tempfile.TemporaryDirectory(prefix="footfall-from-moto-") as work:
            checkpoints = Path(work)
            for name in (CHECKPOINT_FILE, FOLD_CHECKPOINT_FILE):
                if (data_dir / name).exists():
                    shutil.copyfile(data_dir / name, checkpoints / name)
            if not _processed(store, streams, checkpoints, region):
                out("processing the changes the stack had not processed before it stopped")
                process_pending(store, streams, checkpoints, region, outbox=data_dir / OUTBOX_FILE)
            check_processed(store, streams, checkpoints, region)
        return list(export_lines(store))


@contextmanager
def _loaded(data_dir: Path, out: Callable[[str], None]) -> Iterator[Callable[[str, str], Any]]:
    """moto in this process holding the data directory's state, and a maker of clients to it (service, region)."""
    try:
        from moto import mock_aws
    except ImportError as exc:
        raise OperatorError(
            f"reading the former moto backend's files needs moto: pip install 'footfall[{EXTRA}]' ({exc})"
        ) from exc
    snapshot = data_dir / SNAPSHOT_NAME
    if not snapshot.exists() and not list(data_dir.glob(JOURNAL_PREFIX + "*")):
        raise OperatorError(f"{data_dir} holds no data of the former moto backend (no {SNAPSHOT_NAME}, no journal)")
    made: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in made:
            if service == "dynamodb":
                made[service, region] = make_client(region=region, credentials=_KEYS)
            else:
                import boto3
                from botocore.config import Config

                config = Config(account_id_endpoint_mode="disabled")
                made[service, region] = boto3.client(  # type: ignore[call-overload]  # a service name not a literal
                    service, region_name=region, config=config, **_KEYS
                )
        return made[service, region]

    with mock_aws():
        generation = _restore(snapshot) if snapshot.exists() else 0
        _replay(data_dir / f"{JOURNAL_PREFIX}{generation}", lambda region: client("dynamodb", region), out)
        yield client


def _restore(snapshot: Path) -> int:
    """Put the snapshot's DynamoDB backends (tables, items, streams) into moto; returns its journal generation."""
    from moto.dynamodb.models import dynamodb_backends

    with snapshot.open("rb") as handle:
        saved = pickle.load(handle)  # written by the former backend into its owner's own data directory (0600)
    for account, regions in saved["backends"].items():
        for region, backend in regions.items():
            dynamodb_backends[account][region] = backend
    return int(saved["generation"])


def _replay(journal: Path, client: Callable[[str], Any], out: Callable[[str], None]) -> int:
    """Apply a journal's requests in order, as the former backend did on start; returns how many.

    A torn last line (a crash while it was written: never answered) ends the journal. A request that does not
    succeed again is reported and skipped, as the former backend did (it succeeded when journaled).
    """
    from botocore import xform_name
    from botocore.exceptions import BotoCoreError, ClientError

    if not journal.exists():
        return 0
    count = 0
    with journal.open("rb") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                break
            operation = record["target"].rpartition(".")[2]
            dynamodb = client(_scope_region(record["auth"]))
            shape = dynamodb.meta.service_model.operation_model(operation).input_shape
            try:
                getattr(dynamodb, xform_name(operation))(**_parameters(shape, json.loads(record["body"])))
            except (ClientError, BotoCoreError) as exc:
                out(f"journal record {count + 1} ({operation}) did not apply again: {exc}")
            count += 1
    return count


def _scope_region(authorization: str) -> str:
    """The region of a SigV4 `Authorization` header's credential scope (`Credential=<key>/<date>/<region>/...`)."""
    return authorization.split("Credential=", 1)[1].split("/")[2]


def _parameters(shape: Any, value: Any) -> Any:
    """A request body of DynamoDB's JSON protocol as boto3's parameters: the same, with binary values as bytes."""
    if shape.type_name == "structure":
        return {name: _parameters(shape.members[name], inner) for name, inner in value.items() if name in shape.members}
    if shape.type_name == "list":
        return [_parameters(shape.member, inner) for inner in value]
    if shape.type_name == "map":
        return {key: _parameters(shape.value, inner) for key, inner in value.items()}
    if shape.type_name == "blob":
        return base64.b64decode(value)
    return value


PENDING_ROUNDS = 20
"""Rounds of process-then-fold at most (each round's writes bring records for the next: memberships, cells)."""


def process_pending(store: DynamoTrackingStore, streams: Any, checkpoints: Path, region: str, *, outbox: Path) -> None:
    """Run the process and fold functions over the stream from the checkpoints in `checkpoints` until neither has
    anything left, as `footfall serve`'s stream runner did (their stores reach this process's moto: `mock_aws`).

    Raises:
        UnprocessedChangesError: the functions were already set up for another table in this process, or the
            stream did not settle within `PENDING_ROUNDS` rounds.
    """
    from shared.local.streams import StreamRunner, quarantine_into
    from shared.services.quarantine import FOLD_ROUTE

    os.environ.update(
        {
            "FOOTFALL_TABLE_NAME": store.table_name,
            "FOOTFALL_DYNAMODB_ENDPOINT": "",
            "FOOTFALL_OUTBOX_PATH": str(outbox),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    from functions.fold import handler as fold
    from functions.process import handler as process

    for function in (process, fold):
        if function.settings.table_name != store.table_name or function.settings.dynamodb_endpoint:
            raise UnprocessedChangesError("the stream holds changes not processed yet, and they cannot be here")
        function.store.cache_clear()
    process.pipeline.cache_clear()
    runners = [
        StreamRunner(
            feed=DynamoStreamsFeed(store.client, streams, store.table_name, region),
            handler=process.lambda_handler,
            checkpoint_path=checkpoints / CHECKPOINT_FILE,
            quarantine=quarantine_into(store),
            batch_window=0,
        ),
        StreamRunner(
            feed=DynamoStreamsFeed(store.client, streams, store.table_name, region),
            handler=fold.lambda_handler,
            checkpoint_path=checkpoints / FOLD_CHECKPOINT_FILE,
            quarantine=quarantine_into(store, FOLD_ROUTE),
            batch_window=0,
            accepts=fold_filter,
            function="footfall-fold",
        ),
    ]
    for _ in range(PENDING_ROUNDS):
        if sum(runner.catch_up() for runner in runners) == 0:
            return
    raise UnprocessedChangesError(f"the stream's changes did not settle in {PENDING_ROUNDS} rounds of processing")


def check_processed(store: DynamoTrackingStore, streams: Any, checkpoints: Path, region: str) -> None:
    """Raise unless every change in the stream is at or before the runners' checkpoints (in `checkpoints`)."""
    if not _processed(store, streams, checkpoints, region):
        raise UnprocessedChangesError("the stream still holds changes not processed after processing them")


def _processed(store: DynamoTrackingStore, streams: Any, checkpoints: Path, region: str) -> bool:
    for checkpoint, accepts in ((CHECKPOINT_FILE, process_filter), (FOLD_CHECKPOINT_FILE, fold_filter)):
        feed = DynamoStreamsFeed(store.client, streams, store.table_name, region)
        if _pending(feed, checkpoints / checkpoint, accepts):
            return False
    return True


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
