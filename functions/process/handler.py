"""DynamoDB Streams → the stream pipeline (`shared.services.pipeline`), with partial-batch failure reporting.

Powertools' batch processor decodes each record (what it means: a new event, a segment entry or exit, or an item
that cannot be decoded, which is quarantined); the pipeline takes the batch through its steps and says which records
to retry, and this answers Lambda with them. Counters are the fold's (`functions/fold/handler.py`), a second reader
of the same stream.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import logger, metrics
from shared.config import Settings
from shared.services.pipeline import Decoded, StreamPipeline, Undecodable, decode_images
from shared.services.quarantine import failure_reason
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.stream import STREAM_ITEMS
from shared.wiring import function_store, publishers

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})


@cache
def store() -> DynamoTrackingStore:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return function_store(settings, "process")


@cache
def pipeline() -> StreamPipeline:
    return StreamPipeline(store(), publishers(settings))


def decode(record: DynamoDBRecord) -> Decoded | None:
    image = record.dynamodb
    assert image is not None and image.sequence_number is not None
    sequence = image.sequence_number
    try:
        return decode_images(sequence, image.old_image or None, image.new_image or None, STREAM_ITEMS)
    except Exception as exc:
        return Undecodable(sequence, failure_reason(exc))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with processor(records=event["Records"], handler=decode, lambda_context=context):
        results = processor.process()
    decoded = [(result, record) for status, result, record in results if status == "success" and result is not None]
    undecided = [str(f["itemIdentifier"]) for f in processor.response()["batchItemFailures"]]
    outcome = pipeline().run(decoded, failed=undecided)
    failed = outcome.failed
    metrics.add_metric(name="EventsFolded", unit=MetricUnit.Count, value=outcome.events_folded)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in sorted(failed, key=int)]}
