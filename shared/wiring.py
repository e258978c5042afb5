"""The composition root: the one place a store is built, from where its table is.

The Lambdas build theirs from their environment (`function_store`, with the process function's publishers from
`publishers`); the CLI and the TUI from their connection arguments (`shared.compose.open_store`, which finds a
local stack's data dir first, then comes here). Shipped in every Lambda zip: it imports no operator tool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.config import Settings
from shared.storage.dynamo import DynamoTrackingStore, make_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from shared.publishers import Publishers


def store_at(
    table: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    component: str | None = None,
    validate: bool = True,
    settings: Settings | None = None,
    client: DynamoDBClient | None = None,
) -> DynamoTrackingStore:
    """The store of `table` at `endpoint_url` (AWS when None; `sqlite:///…` the embedded database).

    Args:
        component: the function making the requests (named in them: `make_client`).
        validate: botocore's client-side parameter validation (the Lambdas turn it off: `make_client`).
        settings: retention of the events and failed-event records it writes (the store's defaults without).
        client: a client made elsewhere (tests hand a function theirs), instead of one for `endpoint_url`.
    """
    if client is None:
        client = make_client(
            endpoint_url=endpoint_url, region=region, profile=profile, validate=validate, component=component
        )
    if settings is None:
        return DynamoTrackingStore(table, client=client)
    return DynamoTrackingStore(
        table, client=client, event_retention=settings.event_retention, failed_retention=settings.failed_retention
    )


def function_store(settings: Settings, component: str, *, client: DynamoDBClient | None = None) -> DynamoTrackingStore:
    """A Lambda's store: its settings' table and retention, requests named after the function (`component`)."""
    return store_at(
        settings.table_name,
        endpoint_url=settings.dynamodb_endpoint,
        component=component,
        validate=False,
        settings=settings,
        client=client,
    )


def publishers(settings: Settings) -> Publishers | None:
    """Where the process function publishes audience events: the outbox file, a signed webhook, an EventBridge bus
    (each when configured); None when nowhere."""
    from shared.publishers import EventBridgePublisher, OutboxFile, Publishers, WebhookPublisher

    targets: list[OutboxFile | WebhookPublisher | EventBridgePublisher] = []
    if settings.outbox_path:
        targets.append(OutboxFile(settings.outbox_path))
    if settings.outbox_webhook_url and settings.outbox_webhook_secret:
        targets.append(WebhookPublisher(settings.outbox_webhook_url, settings.outbox_webhook_secret))
    if settings.event_bus:
        targets.append(EventBridgePublisher(settings.event_bus))
    return Publishers(*targets) if targets else None
