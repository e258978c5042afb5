"""Analytics storage: definitions, per-customer cells, counters folded from the stream, the live feed (mixed into
the store).

| access pattern                                   | key condition                                             |
|--------------------------------------------------|-----------------------------------------------------------|
| funnel and retention definitions                 | PK = `ANALYTICS`, SK = `DEFINITIONS`                      |
| what a customer adds to the counters             | PK = `CUSTOMER#<cid>`, SK = `ANALYTICS`                   |
| a funnel's counters over a range of entry days   | PK = `FUNNEL#<id>`, SK between `DAY#<from>` and `DAY#<to>~` |
| retention cohorts                                | PK = `RETENTION#<day|week>`, SK between cohorts           |
| engagement by channel and hour of week           | PK = `TIMING`                                             |
| one day's event counts (per minute, per name)    | PK = `STATS#<yyyy-mm-dd>`                                 |
| segment size changes per day                     | PK = `SEGSIZE#<segment>`, SK = `DAY#<day>#<shard>`        |
| how far a stream shard has been folded           | PK = `FOLD`, SK = `<stream shard id>`                     |
| the live feed (one item per processed batch)     | PK = `LIVE`, SK = `<time>#<first sequence>` (TTL 1 h)     |
| processing status (lag)                          | PK = `STATUS`, SK = `PROCESS`                             |

Counters are exact, and no customer writes them. Processing writes a customer's cells item (one put, conditional
on the version it read); the item's stream record carries its old and new cells, and the stream handler folds
the differences of a whole batch into the counters: one update per counter item per batch, whatever the number
of customers (`fold_counters`). A counter therefore equals the sum of every customer's stored cells (a merged or
erased customer's item holds no cells, or is gone, and its REMOVE takes them back).

The fold is idempotent under redelivery: its transaction moves the stream shard's watermark (`FOLD` / shard
id: the highest record folded, and the part of it, for a record too big for one transaction) on the condition
that it still holds what was read. Records of one shard come in order, so a retried batch skips what is at or
below the mark; a crash before the commit left nothing (the retry folds it).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.storage import keys
from shared.storage.errors import ConditionFailedError, StorageError
from shared.storage.items import binary

if TYPE_CHECKING:  # the collector imports this module too: it must not pay for the analytics rules
    from shared.domain.analytics import Cells

DEFINITIONS_KEY = {"PK": "ANALYTICS", "SK": "DEFINITIONS"}
ANALYTICS_SK = "ANALYTICS"
CELLS_ENTITY = "analytics_cells"
TRANSACTION_ITEMS = 100
PARALLEL_PUTS = 8
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
    """A customer's new cells (replacing `previous`), computed at `at` (the overview horizon they were cut at)."""

    previous: StoredCells
    cells: Cells
    at: str


FOLD_PK = "FOLD"
WHOLE = 9999
"""The part number of a record folded completely (a record too big for one transaction is folded in parts)."""


def fold_position(sequence: str, part: int = WHOLE) -> str:
    """A watermark value: stream sequence numbers (digits, up to 40) padded so strings compare as numbers."""
    return f"{int(sequence):040d}:{part:04d}"


def decode_cells_change(
    *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[Cells, Cells, str] | None:
    """A cells item's stream record as (old cells, new cells, when the new ones were computed); None otherwise.

    A REMOVE (the customer erased) has no new cells: it takes back all of the old ones.
    """
    image = new or old
    if not image or image.get("entity") != CELLS_ENTITY:
        return None
    before = decode_cells(binary(old["cells"])) if old and "cells" in old else {}
    after = decode_cells(binary(new["cells"])) if new and "cells" in new else {}
    return before, after, str((new or {}).get("at") or "")


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
        """Write each customer's new cells: one put each, conditional on the version that was read.

        Returns:
            The customers whose cells changed since they were read (nothing of theirs was written: read them again
            and retry).
        """
        with ThreadPoolExecutor(max_workers=PARALLEL_PUTS) as pool:
            saved = list(pool.map(self._put_cells, changes))
        return [change.previous.customer_id for change, ok in zip(changes, saved, strict=True) if not ok]

    def _put_cells(self, change: CellsChange) -> bool:
        from shared.storage.dynamo import serialize

        previous = change.previous
        row = {
            "PK": keys.customer_pk(previous.customer_id),
            "SK": ANALYTICS_SK,
            "entity": CELLS_ENTITY,
            "version": previous.version + 1,
            "cells": encode_cells(change.cells),
            "at": change.at,
        }
        condition: dict[str, Any] = (
            {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(previous.version)}}}
            if previous.version
            else {"ConditionExpression": "attribute_not_exists(PK)"}
        )
        try:
            self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row), **condition)  # type: ignore[attr-defined]
        except ConditionFailedError:
            return False
        return True

    # --- the fold ------------------------------------------------------------------------------------------------

    def fold_mark(self, lane: str) -> str | None:
        """How far a stream shard has been folded (`fold_position`), or None before its first fold."""
        item = self._get({"PK": FOLD_PK, "SK": lane}, consistent=True)  # type: ignore[attr-defined]
        return str(item["mark"]) if item else None

    def fold_counters(self, lane: str, *, after: str | None, upto: str, delta: Cells) -> None:
        """Add `delta` to the counters and move the shard's mark from `after` to `upto`, in one transaction.

        `delta` must fit one transaction (at most 99 counter items, each at most 250 attributes).

        Raises:
            ConditionFailedError: the mark is no longer `after` (another fold ran): nothing was written.
        """
        operations = [
            {"Update": self._counter_update(pk, sk, attributes)}
            for (pk, sk), attributes in sorted(delta.items())
            if any(attributes.values())
        ]
        if len(operations) >= TRANSACTION_ITEMS or any(len(a) > ATTRIBUTES_PER_UPDATE for a in delta.values()):
            raise StorageError(f"a fold of {len(operations)} counter items does not fit one transaction")
        mark: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"PK": {"S": FOLD_PK}, "SK": {"S": lane}},
            "UpdateExpression": "SET mark = :upto, entity = :entity",
            "ExpressionAttributeValues": {":upto": {"S": upto}, ":entity": {"S": "fold"}},
        }
        if after is None:
            mark["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            mark["ConditionExpression"] = "mark = :after"
            mark["ExpressionAttributeValues"][":after"] = {"S": after}
        self._call(self.client.transact_write_items, TransactItems=[*operations, {"Update": mark}])  # type: ignore[attr-defined]

    def _counter_update(self, pk: str, sk: str, attributes: Mapping[str, int]) -> dict[str, Any]:
        present = sorted(name for name, count in attributes.items() if count)
        names = {f"#{i}": name for i, name in enumerate(present)}
        values = {f":{i}": {"N": str(attributes[name])} for i, name in enumerate(present)}
        return {
            "TableName": self.table_name,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "UpdateExpression": "ADD " + ", ".join(f"#{i} :{i}" for i in range(len(names))) + " SET entity = :entity",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**values, ":entity": {"S": "counter"}},
        }

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
