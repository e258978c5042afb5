"""Analytics storage: definitions, per-customer cells, sharded counters, the live feed (mixed into the store).

| access pattern                                   | key condition                                             |
|--------------------------------------------------|-----------------------------------------------------------|
| funnel and retention definitions                 | PK = `ANALYTICS`, SK = `DEFINITIONS`                      |
| what a customer adds to the counters             | PK = `CUSTOMER#<cid>`, SK = `ANALYTICS`                   |
| a funnel's counters over a range of entry days   | PK = `FUNNEL#<id>`, SK between `DAY#<from>` and `DAY#<to>~` |
| retention cohorts                                | PK = `RETENTION#<day|week>`, SK between cohorts           |
| engagement by channel and hour of week           | PK = `TIMING`                                             |
| one day's event counts (per minute, per name)    | PK = `STATS#<yyyy-mm-dd>`                                 |
| segment size changes per day                     | PK = `SEGSIZE#<segment>`, SK = `DAY#<day>#<shard>`        |
| the live feed (one item per processed batch)     | PK = `LIVE`, SK = `<time>#<first sequence>` (TTL 1 h)     |
| processing status (lag)                          | PK = `STATUS`, SK = `PROCESS`                             |

Counters are exact: a customer's new cells and the difference they make to the counters are written in one
transaction, conditional on the customer's cells item being the version that was read. A redelivered batch
finds the new version (the transaction is cancelled: nothing counted twice); a crash before the commit left
nothing (the retry counts it). Counter items are sharded by customer (no item takes every write), and each
update touches few attributes (an update expression stays far below DynamoDB's 4 KB).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.storage import keys
from shared.storage.errors import ConditionFailedError, StorageError

if TYPE_CHECKING:  # the collector imports this module too: it must not pay for the analytics rules
    from shared.domain.analytics import Cells

DEFINITIONS_KEY = {"PK": "ANALYTICS", "SK": "DEFINITIONS"}
ANALYTICS_SK = "ANALYTICS"
TRANSACTION_ITEMS = 100
ATTRIBUTES_PER_UPDATE = 250
LIVE_TTL_SECONDS = 3600
LIVE_EVENTS_PER_ITEM = 50


@dataclass(frozen=True, slots=True)
class StoredCells:
    customer_id: str
    version: int
    cells: Cells


@dataclass(frozen=True, slots=True)
class CellsChange:
    """A customer's new cells and what they add to the counters (relative to `previous`)."""

    previous: StoredCells
    cells: Cells
    delta: Cells


def encode_cells(cells: Cells) -> bytes:
    plain = {f"{pk}\x1f{sk}": attributes for (pk, sk), attributes in sorted(cells.items())}
    return zlib.compress(json.dumps(plain, separators=(",", ":"), sort_keys=True).encode(), 6)


def decode_cells(data: bytes) -> Cells:
    plain = json.loads(zlib.decompress(bytes(data)))
    return {tuple(key.split("\x1f", 1)): {a: int(n) for a, n in value.items()} for key, value in plain.items()}  # type: ignore[misc]


class AnalyticsStorage:
    """Analytics access patterns; mixed into `DynamoTrackingStore` (uses `_call`, `_query`, `_batch_get`, `_get`)."""

    table_name: str
    client: Any

    # --- definitions ---------------------------------------------------------------------------------------------

    def get_analytics_definitions(self) -> dict[str, Any] | None:
        item = self._get(DEFINITIONS_KEY, consistent=True)  # type: ignore[attr-defined]
        return json.loads(item["document"]) if item else None

    def put_analytics_definitions(self, document: Mapping[str, Any]) -> None:
        from shared.storage.dynamo import serialize

        row = {**DEFINITIONS_KEY, "entity": "analytics_definitions", "document": json.dumps(document, sort_keys=True)}
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))  # type: ignore[attr-defined]

    # --- per-customer cells ----------------------------------------------------------------------------------------

    def get_cells(self, customer_ids: Sequence[str]) -> dict[str, StoredCells]:
        wanted = [{"PK": keys.customer_pk(cid), "SK": ANALYTICS_SK} for cid in dict.fromkeys(customer_ids)]
        by_key = {keys.customer_pk(cid): cid for cid in customer_ids}
        found = {
            by_key[item["PK"]]: item
            for item in self._batch_get(wanted, consistent=True)  # type: ignore[attr-defined]
        }
        return {
            cid: StoredCells(cid, int(found[cid]["version"]), decode_cells(found[cid]["cells"]))
            if cid in found
            else StoredCells(cid, 0, {})
            for cid in dict.fromkeys(customer_ids)
        }

    def save_cells(self, changes: Sequence[CellsChange]) -> list[str]:
        """Write new cells and add their deltas to the counters, atomically per transaction (≤ 100 items).

        Returns:
            The customers whose cells changed since they were read (nothing of their transaction was written:
            read them again and retry).
        """
        conflicted: list[str] = []
        small = []
        for change in changes:
            if len(change.delta) < TRANSACTION_ITEMS and all(
                len(a) <= ATTRIBUTES_PER_UPDATE for a in change.delta.values()
            ):
                small.append(change)
                continue
            for part in _parts(change):  # too big for one transaction: in steps, each exact on its own
                try:
                    self._call(self.client.transact_write_items, TransactItems=self._operations([part]))  # type: ignore[attr-defined]
                except ConditionFailedError:
                    conflicted.append(change.previous.customer_id)
                    break
        for chunk in _chunks(small):
            try:
                self._call(self.client.transact_write_items, TransactItems=self._operations(chunk))  # type: ignore[attr-defined]
            except ConditionFailedError:
                conflicted += [change.previous.customer_id for change in chunk]
        return conflicted

    def _operations(self, chunk: Sequence[CellsChange]) -> list[dict[str, Any]]:
        from shared.storage.dynamo import serialize

        operations: list[dict[str, Any]] = []
        for change in chunk:
            previous = change.previous
            row = {
                "PK": keys.customer_pk(previous.customer_id),
                "SK": ANALYTICS_SK,
                "entity": "analytics_cells",
                "version": previous.version + 1,
                "cells": encode_cells(change.cells),
            }
            put: dict[str, Any] = {"TableName": self.table_name, "Item": serialize(row)}
            if previous.version:
                put |= {
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": {"N": str(previous.version)}},
                }
            else:
                put["ConditionExpression"] = "attribute_not_exists(PK)"
            operations.append({"Put": put})
        total: Cells = {}
        for change in chunk:
            for key, attributes in change.delta.items():
                target = total.setdefault(key, {})
                for name, count in attributes.items():
                    target[name] = target.get(name, 0) + count
        for (pk, sk), attributes in sorted(total.items()):
            attributes = {name: count for name, count in attributes.items() if count}
            if not attributes:
                continue
            names = {f"#{i}": name for i, name in enumerate(sorted(attributes))}
            values = {f":{i}": {"N": str(attributes[name])} for i, name in enumerate(sorted(attributes))}
            expression = "ADD " + ", ".join(f"#{i} :{i}" for i in range(len(names)))
            operations.append(
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
                        "UpdateExpression": expression + " SET entity = :entity",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": {**values, ":entity": {"S": "counter"}},
                    }
                }
            )
        return operations

    # --- counters ----------------------------------------------------------------------------------------------------

    def counter_items(
        self, pk: str, *, start: str | None = None, end: str | None = None
    ) -> list[tuple[str, dict[str, int]]]:
        """`(SK, counts)` of one counter partition, optionally for SKs between `start` and `end` (inclusive)."""
        query: dict[str, Any] = {"ExpressionAttributeNames": {"#pk": "PK"}}
        if start is not None and end is not None:
            query["KeyConditionExpression"] = "#pk = :pk AND SK BETWEEN :a AND :b"
            query["ExpressionAttributeValues"] = {":pk": {"S": pk}, ":a": {"S": start}, ":b": {"S": end}}
        else:
            query["KeyConditionExpression"] = "#pk = :pk"
            query["ExpressionAttributeValues"] = {":pk": {"S": pk}}
        return [
            (item["SK"], {name: int(value) for name, value in item.items() if name not in ("PK", "SK", "entity")})
            for item in self._query(**query)  # type: ignore[attr-defined]
        ]

    # --- live feed and status ---------------------------------------------------------------------------------

    def put_live(self, first_sequence: str, events: Sequence[Mapping[str, Any]], *, now: float | None = None) -> None:
        """The newest events of a processed batch (idempotent per batch: keyed by its first record)."""
        from shared.storage.dynamo import serialize

        moment = time.time() if now is None else now
        row = {
            "PK": "LIVE",
            "SK": f"{moment:017.6f}#{first_sequence}",
            "entity": "live",
            "events": zlib.compress(json.dumps(list(events[-LIVE_EVENTS_PER_ITEM:])).encode()),
            "expires_at": int(moment) + LIVE_TTL_SECONDS,
        }
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))  # type: ignore[attr-defined]

    def live_items(self, *, limit: int) -> Iterator[list[dict[str, Any]]]:
        """Event lists of the newest live items first."""
        response = self._call(  # type: ignore[attr-defined]
            self.client.query,
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "LIVE"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        from shared.storage.dynamo import deserialize

        for raw in response.get("Items", []):
            yield json.loads(zlib.decompress(bytes(deserialize(raw)["events"])))

    def put_status(self, **fields: Any) -> None:
        from shared.storage.dynamo import serialize

        row = {"PK": "STATUS", "SK": "PROCESS", "entity": "status", "status": json.dumps(fields)}
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))  # type: ignore[attr-defined]

    def get_status(self) -> dict[str, Any]:
        item = self._get({"PK": "STATUS", "SK": "PROCESS"})  # type: ignore[attr-defined]
        return json.loads(item["status"]) if item else {}


def _parts(change: CellsChange) -> Iterator[CellsChange]:
    """A change too big for one transaction, as consecutive versions: each part stores the cells it has added so
    far (the stored cells always equal what the counters hold of this customer), the last one stores them all."""
    keys = sorted(change.delta)
    size = TRANSACTION_ITEMS - 1
    previous = change.previous
    for start in range(0, len(keys), size):
        part = {key: change.delta[key] for key in keys[start : start + size]}
        last = start + size >= len(keys)
        cells = dict(previous.cells)
        for key in part:
            if key in change.cells:
                cells[key] = change.cells[key]
            else:
                cells.pop(key, None)
        if last:
            cells = change.cells
        for attributes in part.values():
            if len(attributes) > ATTRIBUTES_PER_UPDATE:
                raise StorageError(
                    f"a counter update of {len(attributes)} attributes (at most {ATTRIBUTES_PER_UPDATE})"
                )
        yield CellsChange(previous, cells, part)
        previous = StoredCells(previous.customer_id, previous.version + 1, cells)


def _chunks(changes: Sequence[CellsChange]) -> Iterator[list[CellsChange]]:
    """Customers grouped so a transaction has ≤ 100 items and each counter update ≤ 250 attributes."""
    chunk: list[CellsChange] = []
    touched: dict[tuple[str, str], set[str]] = {}
    for change in changes:
        merged = {key: set(touched.get(key, set())) | set(attrs) for key, attrs in change.delta.items()}
        keys = touched.keys() | change.delta.keys()
        too_many = len(chunk) + 1 + len(keys) > TRANSACTION_ITEMS or any(
            len(attrs) > ATTRIBUTES_PER_UPDATE for attrs in merged.values()
        )
        if chunk and too_many:
            yield chunk
            chunk, touched, merged = [], {}, {key: set(attrs) for key, attrs in change.delta.items()}
        chunk.append(change)
        touched.update(merged)
    if chunk:
        yield chunk
