"""DynamoDB Streams → identity stitching and customer profiles, with partial-batch failure reporting.

Powertools' batch processor decodes each record (a record that cannot be decoded is reported failed on
its own); the decoded events are then folded in one coalesced pass (one profile write per customer per
batch), whose failures join the same `batchItemFailures` answer.
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
from shared.services.process import StreamChange, process_changes
from shared.storage import items
from shared.storage.dynamo import DynamoTrackingStore, make_client

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})


@cache
def store() -> DynamoTrackingStore:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return DynamoTrackingStore(
        settings.table_name, client=make_client(endpoint_url=settings.dynamodb_endpoint, validate=False)
    )


def decode(record: DynamoDBRecord) -> StreamChange | None:
    image = record.dynamodb
    assert image is not None and image.sequence_number is not None
    event = items.decode_change(old=image.old_image or None, new=image.new_image or None)
    return None if event is None else StreamChange(image.sequence_number, event)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with processor(records=event["Records"], handler=decode, lambda_context=context):
        results = processor.process()
    changes = [result for status, result, _ in results if status == "success" and result is not None]
    failed = {f["itemIdentifier"] for f in processor.response()["batchItemFailures"]}
    failed.update(process_changes(store(), changes))
    metrics.add_metric(name="EventsFolded", unit=MetricUnit.Count, value=len(changes))
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in sorted(failed, key=int)]}
