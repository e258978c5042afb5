"""The `Meter`: bills requests (wire JSON in, wire JSON out) into a `Ledger`, fed by a botocore client's events
(`Meter.attach`) or by the proxy (`benchmarks/dynamo_meter/proxy.py`)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.dynamo_meter.ledger import Ledger
from benchmarks.dynamo_meter.reader import BackendReader
from benchmarks.dynamo_meter.sizes import (
    FREE,
    READS,
    WRITES,
    Schema,
    canonical,
    entity_of,
    item_size,
    read_units,
    write_units,
)
from shared.storage.schema import TABLE_DEFINITION


@dataclass
class Pending:
    """A request seen before it went out: its operation, parameters and before images."""

    operation: str
    params: dict[str, Any]
    before: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)


class Meter:
    """Bills requests (wire JSON in, wire JSON out) into a `Ledger`."""

    def __init__(
        self,
        reader: BackendReader | None = None,
        *,
        schema: Schema | None = None,
        qualify: Mapping[str, str] | None = None,
    ) -> None:
        self.schema = schema or Schema.from_definition(TABLE_DEFINITION)
        self.reader = reader
        self.qualify = dict(qualify or {})
        self.ledger = Ledger()
        self.lock = threading.Lock()
        """Taken by the proxy around a write's before-read, the write and its after-read."""
        self._ledger_lock = threading.Lock()

    # --- front-end: a botocore client ---------------------------------------------------------------------------------

    @classmethod
    def for_client(cls, client: Any, side_client: Any) -> Meter:
        """A meter attached to `client`, reading images through `side_client` (which it does not watch)."""
        schema = Schema.from_definition(TABLE_DEFINITION)
        meter = cls(BackendReader(side_client, schema), schema=schema)
        meter.attach(client)
        return meter

    def attach(self, client: Any, *, component: str = "") -> None:
        """Bill every request `client` makes; `component`: the function making them (see `Ledger.components`)."""
        state = threading.local()

        def before_call(model: Any, params: dict[str, Any], **_: Any) -> None:
            state.pending = self.before(model.name, json.loads(params.get("body") or b"{}"))

        def after_call(model: Any, http_response: Any, parsed: Any, **_: Any) -> None:
            seen = getattr(state, "pending", None)
            state.pending = None
            if seen is None:
                return
            try:
                answer = json.loads(http_response.content or b"{}")
            except ValueError:
                answer = {}
            self.after(seen, http_response.status_code, answer, component=component)

        client.meta.events.register("before-call.dynamodb", before_call)
        client.meta.events.register("after-call.dynamodb", after_call)

    # --- the billing --------------------------------------------------------------------------------------------------

    def before(self, operation: str, params: dict[str, Any]) -> Pending:
        """Note a request about to go out; for writes, read the items it may change."""
        seen = Pending(operation, params)
        if operation in WRITES and self.reader is not None:
            keys = [self.schema.key_item(k) for _, k in self._write_targets(operation, params)]
            table = self._table(operation, params)
            if keys and table:
                seen.before = self.reader.get_items(table, keys)
        return seen

    def after(self, seen: Pending, status: int, answer: Mapping[str, Any], *, component: str = "") -> None:
        """Bill a request from its answer; `component`: the function that made it (see `Ledger.components`)."""
        operation = seen.operation
        with self._ledger_lock:
            self.ledger.operations[operation] = self.ledger.operations.get(operation, 0) + 1
            made = self.ledger.components.setdefault(component, {})
            made[operation] = made.get(operation, 0) + 1
        if operation in FREE:
            with self._ledger_lock:
                self.ledger.free[operation] = self.ledger.free.get(operation, 0) + 1
            return
        if operation not in WRITES and operation not in READS:
            with self._ledger_lock:
                self.ledger.unknown[operation] = self.ledger.unknown.get(operation, 0) + 1
            return
        # DynamoDB's error body names the error in `__type`; the embedded database's (botocore's parsed `Error`)
        # in `Code`.
        error = str(answer.get("__type") or answer.get("Code") or "").rpartition("#")[2] if status >= 400 else ""
        if error and error not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            with self._ledger_lock:
                self.ledger.rejected[error] = self.ledger.rejected.get(error, 0) + 1
            return
        if operation in WRITES:
            self._bill_writes(seen, error, answer)
        else:
            self._bill_reads(seen, answer)

    # --- writes -------------------------------------------------------------------------------------------------------

    @staticmethod
    def _table(operation: str, params: Mapping[str, Any]) -> str | None:
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return str(params["TableName"])
        if operation == "BatchWriteItem":
            return next(iter(params["RequestItems"]), None)
        if operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                ((_, body),) = action.items()
                return str(body["TableName"])
        return None

    def _write_targets(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(action, key item) of every item a write request touches."""
        if operation == "PutItem":
            return [("Put", self.schema.key_item(params["Item"]))]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(operation[:-4], dict(params["Key"]))]
        if operation == "BatchWriteItem":
            targets = []
            for table, requests in params["RequestItems"].items():
                if len(params["RequestItems"]) > 1:
                    raise ValueError(f"the meter bills one table; BatchWriteItem also wrote {table}")
                for request in requests:
                    if "PutRequest" in request:
                        targets.append(("Put", self.schema.key_item(request["PutRequest"]["Item"])))
                    else:
                        targets.append(("Delete", dict(request["DeleteRequest"]["Key"])))
            return targets
        targets = []
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            targets.append((kind, self.schema.key_item(body["Item"]) if kind == "Put" else dict(body["Key"])))
        return targets

    def _bill_writes(self, seen: Pending, error: str, answer: Mapping[str, Any]) -> None:
        operation, params = seen.operation, seen.params
        table = self._table(operation, params)
        if operation == "TransactWriteItems":
            actions = [next(iter(a.items())) for a in params["TransactItems"]]
            after = self._after_images(seen, [(k, b) for k, b in actions if k == "Update"], failed=bool(error))
            for kind, body in actions:
                key = self.schema.key_of(self.schema.key_item(body["Item"]) if kind == "Put" else body["Key"])
                self._bill_item(seen, kind, key, body, after, factor=2, failed=bool(error))
            return
        if operation == "BatchWriteItem":
            unprocessed = {canonical(r) for r in (answer.get("UnprocessedItems") or {}).get(table, [])}
            for request in params["RequestItems"][table]:
                if canonical(request) in unprocessed:
                    continue  # not applied: not billed (the caller retries it, and that is billed then)
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self._bill_item(seen, "Put", self.schema.key_of(item), {"Item": item}, {}, factor=1, failed=False)
                else:
                    key = self.schema.key_of(request["DeleteRequest"]["Key"])
                    self._bill_item(seen, "Delete", key, request["DeleteRequest"], {}, factor=1, failed=False)
            return
        kind = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}[operation]
        key_item = self.schema.key_item(params["Item"]) if kind == "Put" else params["Key"]
        after = self._after_images(seen, [(kind, params)] if kind == "Update" else [], failed=bool(error))
        self._bill_item(seen, kind, self.schema.key_of(key_item), params, after, factor=1, failed=bool(error))

    def _after_images(
        self, seen: Pending, updates: list[tuple[str, Mapping[str, Any]]], *, failed: bool
    ) -> dict[tuple[str, ...], dict[str, Any]]:
        if failed or not updates or self.reader is None:
            return {}
        table = self._table(seen.operation, seen.params)
        assert table is not None
        return self.reader.get_items(table, [dict(body["Key"]) for _, body in updates])

    def _bill_item(
        self,
        seen: Pending,
        kind: str,
        key: tuple[str, ...],
        body: Mapping[str, Any],
        after_images: Mapping[tuple[str, ...], dict[str, Any]],
        *,
        factor: int,
        failed: bool,
    ) -> None:
        before = seen.before.get(key)
        if failed or kind == "ConditionCheck":
            after = before
        elif kind == "Put":
            after = body["Item"]
        elif kind == "Delete":
            after = None
        else:
            after = after_images.get(key)
        entity = entity_of(after, before, body.get("Item"), body.get("Key"), qualify=self.qualify)
        if failed:
            units = write_units(item_size(before))  # a false condition bills the existing item, minimum 1
        elif kind == "ConditionCheck":
            units = write_units(item_size(before))
        else:
            units = write_units(max(item_size(before), item_size(after)))
        index_writes, index_units = (0, 0) if failed else self._index_bill(before, after)
        with self._ledger_lock:
            line = self.ledger.line(entity)
            line.writes += 1
            line.wu += units * factor
            line.index_writes += index_writes
            line.index_wu += index_units
            if failed:
                line.failed_conditions += 1

    def _index_bill(self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[int, int]:
        writes = units = 0
        for index in self.schema.indexes:
            old, new = self.schema.entry(index, before), self.schema.entry(index, after)
            if old == new:
                continue
            keys_changed = old is None or new is None or any(old[k] != new[k] for k in index.keys)
            if not keys_changed:
                writes, units = writes + 1, units + write_units(max(item_size(old), item_size(new)))
                continue
            if old is not None:
                writes, units = writes + 1, units + write_units(item_size(old))
            if new is not None:
                writes, units = writes + 1, units + write_units(item_size(new))
        return writes, units

    # --- reads --------------------------------------------------------------------------------------------------------

    def _bill_reads(self, seen: Pending, answer: Mapping[str, Any]) -> None:
        operation, params = seen.operation, seen.params
        if operation == "GetItem":
            item = answer.get("Item")
            if item is not None and projected(params) and self.reader is not None:
                found = self.reader.get_items(params["TableName"], [params["Key"]])
                item = found.get(self.schema.key_of(params["Key"]))
            units = read_units(item_size(item), consistent=bool(params.get("ConsistentRead")))
            self._add_reads([(entity_of(item, params["Key"], qualify=self.qualify), 1 if item else 0, units)])
        elif operation == "BatchGetItem":
            self._bill_batch_get(params, answer)
        elif operation == "TransactGetItems":
            bills = []
            for action, response in zip(params["TransactItems"], answer.get("Responses", []), strict=False):
                key = action["Get"]["Key"]
                item = (response or {}).get("Item")
                if item is not None and projected(action["Get"]) and self.reader is not None:
                    item = self.reader.get_items(action["Get"]["TableName"], [key]).get(self.schema.key_of(key))
                bills.append(
                    (
                        entity_of(item, key, qualify=self.qualify),
                        1 if item else 0,
                        2 * read_units(item_size(item), consistent=True),
                    )
                )
            self._add_reads(bills)
        else:
            self._bill_query(seen, answer)

    def _bill_batch_get(self, params: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        bills = []
        for table, request in params["RequestItems"].items():
            returned = {self.schema.key_of(i): i for i in answer.get("Responses", {}).get(table, [])}
            unprocessed = {
                self.schema.key_of(k) for k in (answer.get("UnprocessedKeys") or {}).get(table, {}).get("Keys", [])
            }
            consistent = bool(request.get("ConsistentRead"))
            keys = [k for k in request["Keys"] if self.schema.key_of(k) not in unprocessed]
            full = returned
            if projected(request) and returned and self.reader is not None:
                full = self.reader.get_items(table, [self.schema.key_item(k) for k in keys])
            for key in keys:
                item = full.get(self.schema.key_of(key))
                units = read_units(item_size(item), consistent=consistent)
                bills.append((entity_of(item, key, qualify=self.qualify), 1 if item else 0, units))
        self._add_reads(bills)

    def _bill_query(self, seen: Pending, answer: Mapping[str, Any]) -> None:
        params = seen.params
        items = list(answer.get("Items", []))
        needs_replay = projected(params) or "FilterExpression" in params or params.get("Select") == "COUNT"
        needs_replay = needs_replay or "QueryFilter" in params or "ScanFilter" in params
        if needs_replay and self.reader is not None:
            items = self.reader.evaluated(seen.operation, params)
            if len(items) != int(answer.get("ScannedCount", len(items))):
                with self._ledger_lock:
                    self.ledger.replay_mismatches += 1
        consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
        total = read_units(sum(item_size(i) for i in items), consistent=consistent)
        sizes: dict[str, tuple[int, int]] = {}
        for item in items:
            entity = entity_of(item, qualify=self.qualify)
            count, size = sizes.get(entity, (0, 0))
            sizes[entity] = (count + 1, size + item_size(item))
        if not sizes:
            self._add_reads([("empty " + seen.operation.lower(), 0, total)])
            return
        whole = sum(size for _, size in sizes.values()) or 1
        self._add_reads([(entity, count, total * size / whole) for entity, (count, size) in sizes.items()])

    def _add_reads(self, bills: Iterable[tuple[str, int, float]]) -> None:
        with self._ledger_lock:
            for entity, count, units in bills:
                line = self.ledger.line(entity)
                line.reads += count
                line.ru += units

    # --- reporting ----------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._ledger_lock:
            self.ledger = Ledger()

    def snapshot(self) -> Ledger:
        with self._ledger_lock:
            return copy.deepcopy(self.ledger)


def projected(params: Mapping[str, Any]) -> bool:
    return "ProjectionExpression" in params or "AttributesToGet" in params
