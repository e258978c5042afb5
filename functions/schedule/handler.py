"""Every minute: evaluate the (customer, segment) pairs whose deadline has come, with no new event needed, and
bring up to date the analytics of customers whose update failed during processing."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import logger, metrics
from shared.config import Settings
from shared.services.analytics import definitions_of, update_customers
from shared.services.collect import utcnow
from shared.services.segments import run_scheduler
from shared.storage.dynamo import DynamoTrackingStore
from shared.wiring import function_store

settings = Settings.from_env()
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})


@cache
def store() -> DynamoTrackingStore:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return function_store(settings, "schedule")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def refresh(customer_ids: list[str]) -> None:
        update_customers(store(), customer_ids, definitions_of(store()), now=utcnow())

    result = run_scheduler(store(), now=utcnow(), refresh=refresh)
    metrics.add_metric(name="SegmentsDue", unit=MetricUnit.Count, value=result["due"])
    return result
