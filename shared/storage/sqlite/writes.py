"""Writes of the embedded database: PutItem, DeleteItem, UpdateItem, BatchWriteItem, TransactWriteItems.

Every request is checked whole before anything is written (keys, values, limits, expressions), then run in
one SQLite transaction: a batch or a transaction is all-or-nothing here (DynamoDB's batch is per item; ours never
leaves items unprocessed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.storage.sqlite.base import ClientBase
from shared.storage.sqlite.codec import check_item_size, encode, normalized
from shared.storage.sqlite.expressions import ExpressionError, Item, evaluate, parse_condition
from shared.storage.sqlite.reads import _COMMON, check_params, expression_names
from shared.storage.sqlite.tables import Table
from shared.storage.sqlite.updates import Update, apply_update, parse_update

BATCH_WRITE_LIMIT = 25
TRANSACTION_LIMIT = 100
_CONDITIONAL = _COMMON | {"ConditionExpression", "ReturnValues", "ReturnItemCollectionMetrics"}
_CONDITION_FAILED = "The conditional request failed"


class _ConditionFailedError(Exception):
    pass


@dataclass
class _Write:
    """One item write, checked and ready to run against the item as it is."""

    table: Table
    key: tuple[Any, Any]
    condition: tuple[Any, ...] | None
    change: Callable[[Item | None], Item | None]
    """The new item (None: deleted) from the old one (None: absent)."""
    update: Update | None = None

    def run(self, old: Item | None) -> Item | None:
        if self.condition is not None and not evaluate(self.condition, old or {}):
            raise _ConditionFailedError
        new = self.change(old)
        if self.update is not None and new is not None:  # a put's item was checked with its request
            check_item_size(new)
            self.table.index_columns(new)
        return new


class WriteOperations(ClientBase):
    """The write operations of `SqliteClient` (mixed in; uses its `table`, `_write`, `load`, `store`, `error`)."""

    def _prepare(self, kind: str, params: dict[str, Any], operation: str) -> _Write:
        table = self.table(params["TableName"], operation)
        try:
            names = expression_names(params)
            condition = (
                parse_condition(params["ConditionExpression"], names) if "ConditionExpression" in params else None
            )
            if kind == "Put":
                item = normalized(params["Item"])
                key = _item_key(table, item)
                check_item_size(item)
                table.index_columns(item)
                write = _Write(table, key, condition, _replace_with(item))
            elif kind == "Delete" or kind == "ConditionCheck":
                key = table.key_columns(normalized(params["Key"]))
                write = _Write(table, key, condition, (lambda _old: None) if kind == "Delete" else (lambda old: old))
            else:
                key_item = normalized(params["Key"])
                key = table.key_columns(key_item)
                update = parse_update(params["UpdateExpression"], names)
                if touched := [n for n in update.names() if n in key_item]:
                    raise ExpressionError(
                        "One or more parameter values were invalid: "
                        f"Cannot update attribute {touched[0]}. This attribute is part of the key"
                    )
                write = _Write(table, key, condition, lambda old: apply_update(update, old or dict(key_item)), update)
            names.check_all_used()
        except ExpressionError as exc:
            raise self.invalid(str(exc), operation) from exc
        return write

    def _single(self, kind: str, params: dict[str, Any], operation: str) -> dict[str, Any]:
        write = self._prepare(kind, params, operation)
        returns = params.get("ReturnValues", "NONE")
        allowed = (
            ("NONE", "ALL_OLD") if kind != "Update" else ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW")
        )
        if returns not in allowed:
            raise self.invalid("Return values set to invalid value", operation)
        try:
            with self._write() as db:
                old = self.load(db, write.table, write.key)
                new = write.run(old)
                self.store(db, write.table, write.key, old, new)
        except _ConditionFailedError:
            raise self.error("ConditionalCheckFailedException", _CONDITION_FAILED, operation) from None
        except ExpressionError as exc:
            raise self.invalid(str(exc), operation) from exc
        return _returned(returns, old, new, write.update)

    def put_item(self, **params: Any) -> dict[str, Any]:
        """Create or replace an item, if its condition holds."""
        check_params(params, ("TableName", "Item"), _CONDITIONAL)
        return self._single("Put", params, "PutItem")

    def delete_item(self, **params: Any) -> dict[str, Any]:
        """Delete an item (nothing to do when absent), if its condition holds."""
        check_params(params, ("TableName", "Key"), _CONDITIONAL)
        return self._single("Delete", params, "DeleteItem")

    def update_item(self, **params: Any) -> dict[str, Any]:
        """Update (or create) an item with an update expression, if its condition holds."""
        check_params(params, ("TableName", "Key", "UpdateExpression"), _CONDITIONAL)
        return self._single("Update", params, "UpdateItem")

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        """Up to 25 puts and deletes (no condition), written together."""
        check_params(params, ("RequestItems",), {"ReturnConsumedCapacity", "ReturnItemCollectionMetrics"})
        writes: list[_Write] = []
        for name, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    writes.append(self._prepare("Put", {"TableName": name, **request["PutRequest"]}, "BatchWriteItem"))
                else:
                    writes.append(
                        self._prepare("Delete", {"TableName": name, **request["DeleteRequest"]}, "BatchWriteItem")
                    )
        if not writes or len(writes) > BATCH_WRITE_LIMIT:
            raise self.invalid(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must "
                "satisfy constraint: [Member must have length less than or equal to 25, Member must have length "
                "greater than or equal to 1]",
                "BatchWriteItem",
            )
        if len({(w.table.name, w.key) for w in writes}) != len(writes):
            raise self.invalid("Provided list of item keys contains duplicates", "BatchWriteItem")
        with self._write() as db:
            for write in writes:
                old = self.load(db, write.table, write.key)
                self.store(db, write.table, write.key, old, write.run(old))
        return {"UnprocessedItems": {}}

    def restore_items(self, *, TableName: str, Items: list[dict[str, Any]]) -> dict[str, Any]:
        """Not DynamoDB's API: put items as a restore does (DynamoDB's ImportTable), checked like any put but with
        no change record, so that nothing imported is processed again."""
        writes = [self._prepare("Put", {"TableName": TableName, "Item": item}, "RestoreItems") for item in Items]
        with self._write() as db:
            for write in writes:
                new = write.run(None)
                assert new is not None
                db.execute(
                    "INSERT OR REPLACE INTO items (tbl, pk, sk, ipk, isk, expires, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (TableName, *write.key, *write.table.index_columns(new), write.table.expiry(new), encode(new)),
                )
        return {}

    def _transaction_writes(self, actions: list[dict[str, Any]]) -> list[_Write]:
        """A transaction's actions checked (one of Put, Delete, Update, ConditionCheck each; one item once) and
        prepared."""
        writes: list[_Write] = []
        for action in actions:
            if len(action) != 1 or next(iter(action)) not in ("Put", "Delete", "Update", "ConditionCheck"):
                raise self.invalid(
                    "TransactItems can only contain one of Check, Put, Update or Delete", "TransactWriteItems"
                )
            kind, spec = next(iter(action.items()))
            if kind == "ConditionCheck" and "ConditionExpression" not in spec:
                raise self.invalid("ConditionCheck requires a ConditionExpression", "TransactWriteItems")
            writes.append(self._prepare(kind, spec, "TransactWriteItems"))
        if len({(w.table.name, w.key) for w in writes}) != len(writes):
            raise self.invalid(
                "Transaction request cannot include multiple operations on one item", "TransactWriteItems"
            )
        return writes

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        """Up to 100 conditional writes on distinct items: all of them, or none (TransactionCanceledException)."""
        check_params(
            params, ("TransactItems",), {"ClientRequestToken", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics"}
        )
        actions = params["TransactItems"]
        if not actions or len(actions) > TRANSACTION_LIMIT:
            raise self.invalid(
                "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have "
                "length less than or equal to 100",
                "TransactWriteItems",
            )
        writes = self._transaction_writes(actions)
        reasons: list[dict[str, str]] = []
        with self._write() as db:
            results = []
            for write in writes:
                old = self.load(db, write.table, write.key)
                try:
                    results.append((write, old, write.run(old)))
                    reasons.append({"Code": "None"})
                except _ConditionFailedError:
                    reasons.append({"Code": "ConditionalCheckFailed", "Message": _CONDITION_FAILED})
                except ExpressionError as exc:
                    reasons.append({"Code": "ValidationError", "Message": str(exc)})
            if all(reason["Code"] == "None" for reason in reasons):
                for write, old, new in results:
                    self.store(db, write.table, write.key, old, new)
                return {}
        codes = ", ".join(reason["Code"] for reason in reasons)
        raise self.error(
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            "TransactWriteItems",
            CancellationReasons=reasons,
        )


def _item_key(table: Table, item: Item) -> tuple[Any, Any]:
    key: dict[str, Any] = {name: item.get(name) for name in (table.hash, table.range) if name}  # missing: refused
    return table.key_columns(key, exact=False)


def _returned(returns: str, old: Item | None, new: Item | None, update: Update | None) -> dict[str, Any]:
    if returns == "ALL_OLD" and old:
        return {"Attributes": old}
    if returns == "ALL_NEW" and new:
        return {"Attributes": new}
    if returns in ("UPDATED_OLD", "UPDATED_NEW") and update is not None:
        source = (old if returns == "UPDATED_OLD" else new) or {}
        changed = {name: source[name] for name in update.names() if name in source}
        return {"Attributes": changed} if changed else {}
    return {}


def _replace_with(item: Item) -> Callable[[Item | None], Item | None]:
    """A put's change: whatever was there, the new item."""
    return lambda _old: item
