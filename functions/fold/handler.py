"""DynamoDB Streams → the counters: the fold, a second reader of the table's stream (`pipeline.fold_batch`).

It reads what moves counters (customers' cells items and memberships, their removals included) over a longer
batching window than processing, so a counter item is written once per window and shard, not once per batch of
processing: analytics trail processing by up to that window (10 s on AWS, 5 s locally), segments do not wait for
it. Each record's difference is added exactly once (the per-shard mark, see `services.analytics.fold`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import logger, metrics
from shared.config import Settings
from shared.services.analytics import counter_change
from shared.services.collect import utcnow
from shared.services.pipeline import Counted, Decoded, Undecodable, fold_batch
from shared.services.quarantine import failure_reason
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.stream import STREAM_ITEMS
from shared.wiring import function_store

UNSHARDED = "unsharded"
"""The lane when the event names no shard (a direct invocation; the template's tumbling window and the local
stream runner both name it)."""
settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})


@cache
def store() -> DynamoTrackingStore:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return function_store(settings, "fold")


def decode(record: DynamoDBRecord) -> Decoded | None:
    image = record.dynamodb
    assert image is not None and image.sequence_number is not None
    sequence = image.sequence_number
    try:
        moved = STREAM_ITEMS.counter_record(old=image.old_image or None, new=image.new_image or None)
        counted = counter_change(sequence, moved, received=_created(record))
    except Exception as exc:
        return Undecodable(sequence, failure_reason(exc))
    return None if counted is None else Counted(counted)


def _created(record: DynamoDBRecord) -> datetime:
    seconds = (record.raw_event.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    return datetime.fromtimestamp(float(seconds), UTC) if seconds else utcnow()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with processor(records=event["Records"], handler=decode, lambda_context=context):
        results = processor.process()
    decoded = [(result, record) for status, result, record in results if status == "success" and result is not None]
    undecided = [str(f["itemIdentifier"]) for f in processor.response()["batchItemFailures"]]
    outcome = fold_batch(store(), decoded, event.get("shardId") or UNSHARDED, failed=undecided)
    metrics.add_metric(name="RecordsFolded", unit=MetricUnit.Count, value=outcome.events_folded)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(outcome.failed))
    # `state` answers Lambda's tumbling window (configured to learn the shard id; the handler keeps no state).
    failed = sorted(outcome.failed, key=int)
    return {"state": {}, "batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}
