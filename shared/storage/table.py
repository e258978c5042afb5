"""`Table`: the plumbing every storage mixin builds on (one table, its client, retries, paging, batches).

`DynamoTrackingStore` and its mixins (`SegmentStorage`, `SuppressionStorage`, `ErasureStorage`, …) inherit it, so
each of them calls `_get`, `_query`, `_batch_write`… as its own methods, typed, without importing the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.storage.client import RetryPolicy, make_client
from shared.storage.codec import deserialize, serialize
from shared.storage.errors import ThrottledError, translate

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100


class Table:
    """One DynamoDB table: its name, a lazily built client, and the retried, paged calls on it."""

    table_name: str
    retry: RetryPolicy
    _client: DynamoDBClient | None

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, built on first use (never at import: tests start moto first)."""
        if self._client is None:
            self._client = make_client()
        return self._client

    def _batch_get(
        self,
        wanted: list[dict[str, str]],
        *,
        consistent: bool = False,
        projection: str | None = None,
        names: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items by key, 100 per request, retrying unprocessed keys (raises ThrottledError past the retries).

        Args:
            names: expression attribute names used by `projection` (`#x` → attribute).
        """
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys_and_options: dict[str, Any] = {
                "Keys": [serialize(key) for key in wanted[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": consistent,
            }
            if projection:
                keys_and_options["ProjectionExpression"] = projection
            if names:
                keys_and_options["ExpressionAttributeNames"] = names
            request: dict[str, Any] = {self.table_name: keys_and_options}
            attempt = 0
            while request:
                try:
                    response = self._call(self.client.batch_get_item, RequestItems=request)
                except ThrottledError:
                    response = {"UnprocessedKeys": request}
                yield from (deserialize(raw) for raw in response.get("Responses", {}).get(self.table_name, []))
                request = response.get("UnprocessedKeys") or {}
                if request:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        raise ThrottledError("batch read throttled past the retries")
                    self.retry.pause(attempt)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc

    def _get(self, key: dict[str, str], *, consistent: bool = False) -> dict[str, Any] | None:
        response = self._call(
            self.client.get_item, TableName=self.table_name, Key=serialize(key), ConsistentRead=consistent
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start_key = None
        while True:
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.query, TableName=self.table_name, **kwargs)
            yield from (deserialize(raw) for raw in response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return

    def _batch_write(self, to_put: list[dict[str, Any]], *, delete: bool = False) -> list[int]:
        """Put items (or, with `delete`, delete the items of these keys) in batches of 25; returns the positions
        that could not be written after the retries."""
        not_stored: list[int] = []
        for start in range(0, len(to_put), BATCH_WRITE_LIMIT):
            pending = {
                (item["PK"], item["SK"]): (start + offset, _write_request(item, delete=delete))
                for offset, item in enumerate(to_put[start : start + BATCH_WRITE_LIMIT])
            }
            attempt = 0
            while pending:
                requests = [request for _, request in pending.values()]
                try:
                    response = self._call(self.client.batch_write_item, RequestItems={self.table_name: requests})
                    unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                    left = {_request_key(request) for request in unprocessed}
                except ThrottledError:
                    left = set(pending)
                pending = {key: value for key, value in pending.items() if key in left}
                if pending:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        logger.error("batch write gave up", extra={"items": len(pending), "attempts": attempt})
                        not_stored.extend(position for position, _ in pending.values())
                        break
                    self.retry.pause(attempt)
        return sorted(not_stored)

    def _scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item a (filtered) strongly consistent Scan returns, page after page: for one-shot upgrades."""
        start: dict[str, Any] | None = None
        while True:
            page = self._call(
                self.client.scan,
                TableName=self.table_name,
                ConsistentRead=True,
                **kwargs,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            yield from (deserialize(raw) for raw in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return


def _write_request(item: dict[str, Any], *, delete: bool) -> dict[str, Any]:
    if delete:
        return {"DeleteRequest": {"Key": serialize({"PK": item["PK"], "SK": item["SK"]})}}
    return {"PutRequest": {"Item": serialize(item)}}


def _request_key(request: dict[str, Any]) -> tuple[str, str]:
    item = request["PutRequest"]["Item"] if "PutRequest" in request else request["DeleteRequest"]["Key"]
    return item["PK"]["S"], item["SK"]["S"]
