"""Reads of the embedded database: GetItem, BatchGetItem, TransactGetItems, Query (table and index) and Scan."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ParamValidationError

from shared.storage.sqlite.base import ClientBase
from shared.storage.sqlite.codec import decode, key_bytes, normalized
from shared.storage.sqlite.expressions import (
    ExpressionError,
    Item,
    Names,
    evaluate,
    parse_condition,
    parse_projection,
)
from shared.storage.sqlite.tables import Table

PAGE_BYTES = 1024 * 1024
"""A Query or Scan page stops after 1 MB read, as on DynamoDB (measured here on the stored JSON: a little early)."""
BATCH_GET_LIMIT = 100
BATCH_GET_BYTES = 16 * 1024 * 1024
_COMMON = {"TableName", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnConsumedCapacity"}
_PAGED = _COMMON | {
    "Limit",
    "ExclusiveStartKey",
    "Select",
    "ProjectionExpression",
    "FilterExpression",
    "ConsistentRead",
}


UNSUPPORTED = frozenset(
    {
        "AttributesToGet",
        "KeyConditions",
        "QueryFilter",
        "ScanFilter",
        "ConditionalOperator",
        "Expected",
        "AttributeUpdates",
        "Segment",
        "TotalSegments",
        "ReturnValuesOnConditionCheckFailure",
    }
)
"""DynamoDB parameters the embedded engine does not implement (the legacy ones have expression equivalents)."""


def check_params(params: dict[str, Any], required: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse unknown and missing parameters as botocore does, before any request is made; refuse parameters
    DynamoDB knows but the embedded engine does not implement (a ValidationException, never ignored)."""
    if unsupported := sorted(UNSUPPORTED & set(params)):
        raise ExpressionError(f"{unsupported[0]} is not supported by the embedded database")
    if unknown := set(params) - set(allowed) - set(required):
        raise ParamValidationError(report=f'Unknown parameter in input: "{sorted(unknown)[0]}"')
    if missing := [name for name in required if name not in params]:
        raise ParamValidationError(report=f'Missing required parameter in input: "{missing[0]}"')


def expression_names(params: dict[str, Any]) -> Names:
    """The request's expression attribute names and values (DynamoDB refuses them empty)."""
    for field in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        if field in params and not params[field]:
            raise ExpressionError(f"{field} must not be empty")
    values = {
        token: normalized({"v": value})["v"] for token, value in (params.get("ExpressionAttributeValues") or {}).items()
    }
    return Names(params.get("ExpressionAttributeNames") or {}, values)


def project(item: Item, attributes: list[str] | None) -> Item:
    return item if attributes is None else {name: item[name] for name in attributes if name in item}


class ReadOperations(ClientBase):
    """The read operations of `SqliteClient` (mixed in; uses its `table`, `read`, `invalid`)."""

    def get_item(self, **params: Any) -> dict[str, Any]:
        """One item by key."""
        return self._get_item(params, "GetItem", None)

    def _get_item(self, params: dict[str, Any], operation: str, db: Any) -> dict[str, Any]:
        check_params(params, ("TableName", "Key"), _COMMON | {"ConsistentRead", "ProjectionExpression"})
        table = self.table(params["TableName"], operation)
        key = table.key_columns(normalized(params["Key"]))
        names = expression_names(params)
        attributes = (
            parse_projection(params["ProjectionExpression"], names) if "ProjectionExpression" in params else None
        )
        names.check_all_used()
        found = self._get(table, key, db=db)
        return {"Item": project(found, attributes)} if found is not None else {}

    def _get(self, table: Table, key: tuple[Any, Any], db: Any = None) -> Item | None:
        rows = self.read("SELECT body FROM items WHERE tbl = ? AND pk = ? AND sk = ?", (table.name, *key), db=db)
        return decode(rows[0][0]) if rows else None

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        """Up to 100 items by key, from one or more tables (past 16 MB the rest is left unprocessed)."""
        check_params(params, ("RequestItems",), {"ReturnConsumedCapacity"})
        request = params["RequestItems"]
        wanted = sum(len(spec.get("Keys", [])) for spec in request.values())
        if wanted > BATCH_GET_LIMIT or wanted == 0:
            raise self.invalid(
                "Too many items requested for the BatchGetItem call" if wanted else "The requested keys are empty",
                "BatchGetItem",
            )
        responses: dict[str, list[Item]] = {}
        unprocessed: dict[str, Any] = {}
        size = 0
        for name, spec in request.items():
            table = self.table(name, "BatchGetItem")
            try:
                keys = [table.key_columns(normalized(key)) for key in spec["Keys"]]
                if len(set(keys)) != len(keys):
                    raise ExpressionError("Provided list of item keys contains duplicates")
                names = expression_names(spec)
                attributes = (
                    parse_projection(spec["ProjectionExpression"], names) if "ProjectionExpression" in spec else None
                )
                names.check_all_used()
            except ExpressionError as exc:
                raise self.invalid(str(exc), "BatchGetItem") from exc
            responses[name] = []
            for raw, key in zip(spec["Keys"], keys, strict=True):
                if size > BATCH_GET_BYTES:
                    unprocessed.setdefault(name, {**spec, "Keys": []})["Keys"].append(raw)
                    continue
                found = self._get(table, key)
                if found is not None:
                    size += len(str(found))
                    responses[name].append(project(found, attributes))
        return {"Responses": responses, "UnprocessedKeys": unprocessed}

    def transact_get_items(self, **params: Any) -> dict[str, Any]:
        """Up to 100 items by key, read together."""
        check_params(params, ("TransactItems",), {"ReturnConsumedCapacity"})
        actions = params["TransactItems"]
        if len(actions) > 100:
            raise self.invalid("Member must have length less than or equal to 100", "TransactGetItems")
        with self.reading() as db:
            db.execute("BEGIN")  # one snapshot for every read
            found = [self._get_item(action["Get"], "TransactGetItems", db) for action in actions]
        return {"Responses": found}

    def query(self, **params: Any) -> dict[str, Any]:
        """Items of one partition (of the table or of its index), in sort key order, a page at a time."""
        check_params(params, ("TableName", "KeyConditionExpression"), _PAGED | {"IndexName", "ScanIndexForward"})
        table = self.table(params["TableName"], "Query")
        try:
            plan = _QueryPlan(table, params)
        except ExpressionError as exc:
            raise self.invalid(str(exc), "Query") from exc
        return self._page(table, plan, params)

    def scan(self, **params: Any) -> dict[str, Any]:
        """Every item of the table, a page at a time (in key order here; DynamoDB's order is by hash)."""
        check_params(params, ("TableName",), _PAGED | {"IndexName"})
        table = self.table(params["TableName"], "Scan")
        try:
            plan = _QueryPlan(table, params, scan=True)
        except ExpressionError as exc:
            raise self.invalid(str(exc), "Scan") from exc
        return self._page(table, plan, params)

    def _page(self, table: Table, plan: _QueryPlan, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("Limit")
        if limit is not None and limit < 1:
            message = "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have "
            raise self.invalid(message + "value greater than or equal to 1", "Query")
        found: list[Item] = []
        scanned, size, last = 0, 0, None
        with self.reading() as db:
            rows = db.execute(plan.sql, plan.args)
            for (body,) in rows:
                full = decode(body)
                item = plan.projected(full)
                scanned += 1
                size += len(body)
                if plan.filter is None or evaluate(plan.filter, item):
                    found.append(project(item, plan.attributes))
                if scanned == limit or size >= PAGE_BYTES:
                    last = plan.last_key(full)
                    break
            rows.close()
        answer: dict[str, Any] = {"Count": len(found), "ScannedCount": scanned}
        if plan.select != "COUNT":
            answer["Items"] = found
        if last is not None:
            answer["LastEvaluatedKey"] = last
        return answer


class _QueryPlan:
    """A Query or Scan turned into one SQL statement plus what is done to each row in Python."""

    def __init__(self, table: Table, params: dict[str, Any], *, scan: bool = False) -> None:
        self.table = table
        names = expression_names(params)
        index = table.index if "IndexName" in params else None
        if "IndexName" in params and (index is None or index.name != params["IndexName"]):
            raise ExpressionError(f"The table does not have the specified index: {params['IndexName']}")
        self.index = index
        if index is not None and params.get("ConsistentRead"):
            raise ExpressionError("Consistent reads are not supported on global secondary indexes")
        hash_name, range_name = (index.hash, index.range) if index else (table.hash, table.range)
        key_columns = ("ipk", "isk") if index else ("pk", "sk")
        where = ["tbl = ?"] + (["ipk IS NOT NULL"] if index else [])
        self.args: list[Any] = [table.name]
        if not scan:
            tree = parse_condition(params["KeyConditionExpression"], names, "KeyConditionExpression")
            conditions, args = _key_condition(tree, table, hash_name, range_name, key_columns)
            where += conditions
            self.args += args
            start = params.get("ExclusiveStartKey") or {}
            if start and normalized({"k": start.get(hash_name, {"NULL": True})})["k"] != _hash_value(tree, hash_name):
                raise ExpressionError("The provided starting key is invalid: it is not in the queried partition")
        self.filter = (
            parse_condition(params["FilterExpression"], names, "FilterExpression")
            if "FilterExpression" in params
            else None
        )
        if self.filter is not None and not scan:
            _refuse_key_filter(self.filter, {name for name in (hash_name, range_name) if name})
        self.attributes = (
            parse_projection(params["ProjectionExpression"], names) if "ProjectionExpression" in params else None
        )
        names.check_all_used()
        self.select = params.get("Select", "SPECIFIC_ATTRIBUTES" if self.attributes else "ALL_ATTRIBUTES")
        if index and self.select == "ALL_ATTRIBUTES" and "Select" in params and index.projection != "ALL":
            raise ExpressionError(
                f"One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global "
                f"secondary index {index.name} because its projection type is not ALL"
            )
        forward = params.get("ScanIndexForward", True)
        order = [*key_columns, "pk", "sk"] if index else ["pk", "sk"]
        if "ExclusiveStartKey" in params:
            start = normalized(params["ExclusiveStartKey"])
            values = (
                [*table.index_columns(start), *table.key_columns(start, exact=False)]
                if index
                else list(table.key_columns(start))
            )
            where.append(f"({', '.join(order)}) {'>' if forward else '<'} ({', '.join('?' * len(order))})")
            self.args += values
        direction = "" if forward else " DESC"
        self.sql = (
            f"SELECT body FROM items {'INDEXED BY items_index ' if index else ''}WHERE {' AND '.join(where)} "
            f"ORDER BY {', '.join(column + direction for column in order)}"
        )

    def projected(self, item: Item) -> Item:
        """What the index holds of an item (all of it for the table)."""
        if self.index is None or self.index.projection == "ALL":
            return item
        kept = self.table.index_keys_of(item)
        return kept | {name: item[name] for name in self.index.included if name in item}

    def last_key(self, item: Item) -> Item:
        return self.table.index_keys_of(item) if self.index else self.table.keys_of(item)


def _key_condition(
    tree: tuple[Any, ...], table: Table, hash_name: str, range_name: str | None, columns: tuple[str, str]
) -> tuple[list[str], list[Any]]:
    parts = [tree[1], tree[2]] if tree[0] == "and" else [tree]
    conditions: list[str] = []
    args: list[Any] = []
    seen: set[str] = set()
    for part in parts:
        name = _key_subject(part)
        if name not in (hash_name, range_name) or name in seen:
            raise ExpressionError(
                f"Query condition missed key schema element: {hash_name if name != hash_name else range_name}"
            )
        seen.add(name)
        column = columns[0] if name == hash_name else columns[1]
        values = [node[1] for node in _operands(part)]
        if any(next(iter(v)) != table.types[name] for v in values):
            raise ExpressionError(
                "One or more parameter values were invalid: Condition parameter type does not match schema type"
            )
        raw = [key_bytes(v) for v in values]
        if name == hash_name and not (part[0] == "cmp" and part[1] == "="):
            raise ExpressionError("Query key condition not supported")
        sql, part_args = _key_sql(part, column, raw)
        conditions += sql
        args += part_args
    if hash_name not in seen:
        raise ExpressionError(f"Query condition missed key schema element: {hash_name}")
    return conditions, args


def _key_sql(part: tuple[Any, ...], column: str, raw: list[Any]) -> tuple[list[str], list[Any]]:
    """One key condition (`=`, `<`…, BETWEEN, begins_with) as SQL on the key's column, with its arguments (`raw`:
    all text or all bytes, the key's type)."""
    if part[0] == "cmp":
        if part[1] == "<>":
            raise ExpressionError("Unsupported operator on KeyConditionExpression: operator: <>")
        return [f"{column} {part[1]} ?"], list(raw)
    if part[0] == "between":
        if raw[0] > raw[1]:
            raise ExpressionError(
                "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than "
                "or equal to lower bound"
            )
        return [f"{column} BETWEEN ? AND ?"], list(raw)
    if upper := _prefix_end(raw[0]):
        return [f"{column} >= ?", f"{column} < ?"], [raw[0], upper]
    return [f"{column} >= ?"], [raw[0]]


def _hash_value(tree: tuple[Any, ...], hash_name: str) -> dict[str, Any]:
    parts = [tree[1], tree[2]] if tree[0] == "and" else [tree]
    return next(dict(p[3][1]) for p in parts if p[0] == "cmp" and _key_subject(p) == hash_name)


def _key_subject(part: tuple[Any, ...]) -> str:
    if part[0] == "cmp" and part[2][0] == "path" and part[3][0] == "value":
        path = part[2]
    elif part[0] == "between" and part[1][0] == "path" and part[2][0] == part[3][0] == "value":
        path = part[1]
    elif part[0] == "fn" and part[1] == "begins_with" and part[2][1][0] == "value":
        path = part[2][0]
    else:
        raise ExpressionError("Invalid KeyConditionExpression: Query key condition not supported")
    if len(path[1]) != 1:
        raise ExpressionError("Invalid KeyConditionExpression: nested paths are not key attributes")
    return str(path[1][0])


def _operands(part: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if part[0] == "cmp":
        return [part[3]]
    if part[0] == "between":
        return [part[2], part[3]]
    return [part[2][1]]


def _prefix_end(prefix: str | bytes) -> str | bytes | None:
    """The smallest key above every key starting with `prefix` (None when there is none)."""
    if isinstance(prefix, bytes):
        stripped = prefix.rstrip(b"\xff")
        return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None
    for cut in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[cut]) + 1
        code = 0xE000 if 0xD800 <= code <= 0xDFFF else code  # UTF-8 order is code point order, minus surrogates
        if code <= 0x10FFFF:
            return prefix[:cut] + chr(code)
    return None


def _refuse_key_filter(tree: tuple[Any, ...], keys: set[str]) -> None:
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple) and node and node[0] == "path":
            if node[1][0] in keys:
                raise ExpressionError(
                    "Filter Expression can only contain non-primary key attributes: "
                    f"Primary key attribute: {node[1][0]}"
                )
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
