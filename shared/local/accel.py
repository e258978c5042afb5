"""Partition indexes for moto's DynamoDB, so a Query costs what it costs on DynamoDB: one partition.

moto answers every Query by sorting *all* items of the table and filtering them (and a GSI Query by
walking them all), so with a million stored events each request took seconds and the embedded backend
slowed down with every event. DynamoDB itself reads only the requested partition. `install()` narrows
moto's candidates to that partition and leaves everything else (key conditions, filters, paging,
projections, capacity) to moto's own code:

- a table Query reads `table.items[hash key]`, which moto already keys by partition;
- a GSI Query reads a partition map kept per index (`index → hash value → item key → item`), maintained
  after every write path moto has (put, update in place, delete; batch writes and transactions go
  through these; a transaction that fails restores a deep copy of the table, maps included).

Two more per-request costs are cut the same way, without changing a byte of what moto answers:

- data-plane answers (items, pages, batch results) are JSON-encoded directly instead of through moto's
  shape-walking serializer (which cost more than the operation itself); only binary values need care;
- `direct_app` hands DynamoDB and DynamoDB Streams requests straight to moto's handlers, skipping the
  per-request service routing and Flask (every other request still takes moto's full app).

`tests/integration/test_local_accel.py` checks, for random write sequences, that every Query answers
exactly what stock moto answers, and that the direct answers equal the serializer's.
"""

from __future__ import annotations

import base64
import calendar
import functools
import inspect
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

_INSTALLED: dict[str, Callable[..., Any]] = {}
DIRECT_ACTIONS = {
    "dynamodb": frozenset(
        {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem"}
        | {"TransactGetItems", "TransactWriteItems"}
    ),
    "dynamodbstreams": frozenset({"GetRecords"}),
}
"""Operations whose answer is items, counts and record times, and so is plain JSON once binaries are encoded."""
_GSI = "_footfall_gsi"
"""Table attribute: {index name: {hash values: {item key: item}}}."""
_WHERE = "_footfall_gsi_where"
"""Table attribute: {item key: [(index name, hash values)]}: where an item is filed, to move it on change."""


class _Narrowed:
    """A table as `Table.query` sees it, whose `all_items()` is only the candidate partition."""

    __slots__ = ("_candidates", "_table")

    def __init__(self, table: Any, candidates: list[Any]) -> None:
        self._table = table
        self._candidates = candidates

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        return self._candidates


def install() -> None:
    """Patch moto (idempotent). Only the embedded backend's process calls this."""
    if _INSTALLED:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    assert DynamoHandler.serialized is DynamoDBStreamsHandler.serialized  # both BaseResponse's
    _INSTALLED.update(
        query=Table.query,
        put=Table.put_item,
        delete=Table.delete_item,
        update=DynamoDBBackend.update_item,
        serialized=DynamoHandler.serialized,
        transact=DynamoDBBackend.transact_write_items,
    )
    signature = inspect.signature(Table.query)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        index_name = bound.arguments.get("index_name")
        if not index_name:
            partition = self.items.get(bound.arguments.get("hash_key"))
            candidates = list(partition.values()) if isinstance(partition, dict) else [partition] if partition else []
        else:
            candidates = _gsi_candidates(self, index_name, bound.arguments.get("hash_key_conditions"))
            if candidates is None:
                return _INSTALLED["query"](self, *args, **kwargs)
        return _INSTALLED["query"](_Narrowed(self, candidates), *args, **kwargs)

    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        item = _INSTALLED["put"](self, item_attrs, *args, **kwargs)
        _refile(self, (item.hash_key, item.range_key))
        return item

    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        item = _INSTALLED["delete"](self, hash_key, range_key)
        _refile(self, (hash_key, range_key))
        return item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = _INSTALLED["update"](self, table_name, *args, **kwargs)
        if item is not None:  # updated in place: its index attributes may have changed
            _refile(self.get_table(table_name), (item.hash_key, item.range_key))
        return item

    def serialized(self: Any, action_result: Any) -> Any:
        result = getattr(action_result, "result", None)
        if self._get_action() not in DIRECT_ACTIONS.get(self.service_name, ()) or not isinstance(result, dict):
            return _INSTALLED["serialized"](self, action_result)
        members = _output_members(self.service_name, self._get_action())  # moto adds fields the API lacks
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
        return 200, headers, json.dumps(_wire({k: v for k, v in result.items() if k in members}), separators=(",", ":"))

    Table.query = query
    DynamoDBBackend.transact_write_items = _transact_write_items
    Table.put_item = put_item
    Table.delete_item = delete_item
    DynamoDBBackend.update_item = update_item
    DynamoHandler.serialized = serialized
    DynamoDBStreamsHandler.serialized = serialized


@functools.cache
def _output_members(service: str, action: str) -> frozenset[str]:
    from moto.core.responses import get_service_model

    return frozenset(get_service_model(service).operation_model(action).output_shape.members)


def _wire(value: Any) -> Any:
    """A result as DynamoDB's JSON protocol writes it: binary attribute values in base64."""
    if isinstance(value, dict):
        wired = {}
        for key, inner in value.items():
            if key == "B" and isinstance(inner, bytes | str):
                wired[key] = _base64(inner)
            elif key == "BS" and isinstance(inner, list) and all(isinstance(i, bytes | str) for i in inner):
                wired[key] = [_base64(i) for i in inner]
            else:
                wired[key] = _wire(inner)
        return wired
    if isinstance(value, list | tuple):
        return [_wire(inner) for inner in value]
    if isinstance(value, datetime):  # a stream record's time: epoch seconds, milliseconds truncated
        return calendar.timegm(value.timetuple()) + (value.microsecond // 1000) / 1000.0
    return value


def _base64(value: bytes | str) -> str:
    return base64.b64encode(value.encode("utf-8") if isinstance(value, str) else value).decode("ascii")


def direct_app(fallback: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that answers DynamoDB and DynamoDB Streams requests with moto's handlers directly."""
    from botocore.exceptions import ClientError
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.wrappers import Response

    handlers = {"DynamoDB_20120810": DynamoHandler, "DynamoDBStreams_20120810": DynamoDBStreamsHandler}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = handlers.get(environ.get("HTTP_X_AMZ_TARGET", "").partition(".")[0])
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return fallback(environ, start_response)
        request = BackendRequest(environ)
        try:
            status, headers, body = handler.dispatch(request, request.raw_url, dict(request.headers))
        except ClientError as error:
            status, headers, body = 400, {}, error.response["Error"]["Message"]
        return Response(response=body, status=status, headers=headers)(environ, start_response)

    return app


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    # moto deep-copies every table a transaction touches to roll back on failure: seconds per call on a big
    # table. Keep only what it can change (its items and the stream's length) and restore that instead.
    from moto.dynamodb.models.table import Table

    saved = _before_transaction(self, transact_items)
    Table.__deepcopy__ = lambda table, memo: table  # the "copy" moto keeps is the table itself
    try:
        _INSTALLED["transact"](self, transact_items)
    except Exception:
        _roll_back(self, saved)
        raise
    finally:
        del Table.__deepcopy__


def _before_transaction(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any, int]]:
    """(table, hash, range, deep copy of the item or None, stream length) for every item a transaction names."""
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    saved = []
    for entry in transact_items:
        operation = next(iter(entry.values()))
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue
        key = operation.get("Key") or operation.get("Item") or {}
        if table.hash_key_attr not in key:
            continue
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        partition = table.items.get(hash_key)
        item = partition.get(range_key) if isinstance(partition, dict) else partition
        stream = len(table.stream_shard.items) if table.stream_shard is not None else 0
        saved.append((table, hash_key, range_key, copy.deepcopy(item), stream))
    return saved


def _roll_back(backend: Any, saved: list[tuple[Any, Any, Any, Any, int]]) -> None:
    for table, hash_key, range_key, item, stream in reversed(saved):
        if backend.tables.get(table.name) is not table:
            backend.tables[table.name] = table  # moto put its "copy" (the same table) back: keep ours
        if item is None:
            partition = table.items.get(hash_key)
            if isinstance(partition, dict):
                partition.pop(range_key, None)
            elif partition is not None:
                table.items.pop(hash_key, None)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item
        _refile(table, (hash_key, range_key))
        if table.stream_shard is not None:
            del table.stream_shard.items[stream:]


def _index_hash_attributes(table: Any) -> dict[str, list[str]]:
    return {
        index.name: [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
        for index in (table.global_indexes or [])
    }


def _gsi_candidates(table: Any, index_name: str, conditions: Any) -> list[Any] | None:
    attributes = _index_hash_attributes(table).get(index_name)
    wanted = dict(conditions or [])
    if not attributes or any(name not in wanted for name in attributes):
        return None  # not a GSI, or a shape this index does not cover: moto's own full walk
    files = _files(table)
    return list(files.get(index_name, {}).get(tuple(wanted[name] for name in attributes), {}).values())


def _files(table: Any) -> dict[str, dict[tuple[Any, ...], dict[Any, Any]]]:
    files = table.__dict__.get(_GSI)
    if files is None:  # first GSI Query (or a table from an older snapshot): file every item once
        setattr(table, _GSI, {})
        setattr(table, _WHERE, {})
        for partition in list(table.items.values()):
            for item in partition.values() if isinstance(partition, dict) else [partition]:
                _refile(table, (item.hash_key, item.range_key))
        files = table.__dict__[_GSI]
    return files


def _refile(table: Any, key: tuple[Any, Any]) -> None:
    files = table.__dict__.get(_GSI)
    if files is None:
        return  # not filed yet: the first GSI Query files everything
    where = table.__dict__[_WHERE]
    for index_name, values in where.pop(key, []):
        partition = files[index_name][values]
        partition.pop(key, None)
        if not partition:
            del files[index_name][values]
    hash_key, range_key = key
    partition = table.items.get(hash_key)
    item = partition.get(range_key) if isinstance(partition, dict) else partition
    if item is None:
        return
    filed = []
    for index_name, attributes in _index_hash_attributes(table).items():
        if all(name in item.attrs for name in attributes):
            values = tuple(item.attrs[name] for name in attributes)
            files.setdefault(index_name, {}).setdefault(values, {})[key] = item
            filed.append((index_name, values))
    if filed:
        where[key] = filed
