"""A DynamoDB meter that bills every request as AWS bills it, per entity: used by `make bench` and by the tests.

Not shipped (it lives beside the benchmarks). It sees requests in one of two ways, both feeding the same `Meter`:

- `Meter.attach(client)`: botocore's `before-call.dynamodb` / `after-call.dynamodb` events on one client (the
  serialized request body and the raw response body, exactly what goes over the wire). For in-process code that
  takes an injected client (tests, the TUI bench).
- `meter_this_process(directory)`: the same hook on every embedded-database client a process makes through
  `make_client`, its ledger dumped to `<directory>/<pid>.json` a few times a second. `footfall serve` runs its
  collector workers and stream runner as child processes that build their own clients; the cost bench starts it
  with `benchmarks/metered/` on `PYTHONPATH`, whose `sitecustomize` calls this in each of them when
  `FOOTFALL_METER_DIR` is set, and sums the dumps (`MeterDumps`). This is what the bench uses: the real local
  pipeline on the embedded database, nothing in between.
- `python benchmarks/meter.py proxy --upstream URL`: an HTTP proxy in front of a DynamoDB endpoint (any endpoint a
  `footfall serve --endpoint-url` can use; every call of its processes goes through it).

What is billed (Amazon DynamoDB Developer Guide; `search` docs corpus, pages cited):
- Item size ("Item sizes and formats", CapacityUnitCalculations.html): attribute name lengths (UTF-8) plus values;
  strings by UTF-8 length; binary by raw length; numbers 1 byte per two significant digits (leading and trailing
  zeros trimmed) + 1; null and boolean 1 byte; a list or map 3 bytes + 1 byte per element + its elements (a map's
  element includes its key's length); a set the sum of its elements.
- Writes (read-write-operations.md, "Capacity unit consumption for write operations"): one write unit per 1 KB,
  rounded up per item, minimum 1. PutItem and UpdateItem bill the larger of the item before and after; DeleteItem
  bills the deleted item (1 WU when there was none). BatchWriteItem bills each put and delete as if alone; requests
  returned in `UnprocessedItems` were not applied and are not billed. A write whose `ConditionExpression` is false
  still consumes write units: the size of the existing item, minimum 1 ("Conditional writes").
- Transactions (transaction-apis.html, "Capacity management for transactions"): two underlying writes per item
  (prepare and commit), so every TransactWriteItems action is billed 2x its item units, ConditionCheck included
  (2x the checked item's units, minimum 2); TransactGetItems 2x the read units of each item. A cancelled
  transaction is billed here like a failed conditional write of every action, at 2x (the guide does not give the
  figure; this is the conservative reading, stated).
- Global secondary indexes (GSI.html, "Writes to a global secondary index"): an index write per item write that
  changes the index: a new entry (put), an entry whose index key changes (delete + put: two writes), an entry
  removed (delete), an entry whose projected attributes change (one write); nothing when neither the keys nor the
  projection change. Entry size = the projected attributes (table keys + index keys for KEYS_ONLY), per 1 KB.
  Index writes are standard writes (index propagation is not transactional), billed 1x.
- Reads (read-write-operations.md, "Capacity unit consumption for read operations"): per 4 KB; eventually
  consistent half, strongly consistent full, transactional double. GetItem and each BatchGetItem key on the full
  item size (a projection does not reduce it; a missing item still costs the minimum); Query and Scan on the total
  size of the items *evaluated* per request (before any FilterExpression, whatever the projection), rounded up to
  4 KB, minimum one unit; a GSI read on the index entries. Unprocessed keys are not billed. Reads of the stream by
  the processing Lambda are free (DynamoDB Streams pricing for Lambda triggers), as are control-plane calls.
- Not billed: throttled and otherwise rejected requests (no capacity consumed). Any operation the meter does not
  know is counted in `Ledger.unknown`; the bench fails on a non-empty one rather than skipping it.

Before and after images: the meter reads them from the backend through a separate, unmetered client (`BackendReader`,
consistent BatchGetItem) just before a write goes out and, for updates, just after. A shadow of sizes would have to
re-implement UpdateExpression; a read of the real item cannot disagree with the backend. The proxy holds one lock from
the before-read to the after-read of every write (and of every read it must replay), so no other write can slip in
between; the client hook does not (exact for one writer per item at a time, which is how the tests use it; the
pipeline's functions seldom write one item at the same moment). Query/Scan with a filter, a projection or
`Select=COUNT`, and GetItem/BatchGetItem with a projection, are replayed unmetered without them to size what DynamoDB
evaluated.

Per-entity ledger: every item carries an `entity` attribute (after image, else before image, else the request's
item); an item without one is classed by its partition key prefix (`PK` up to the first `#`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import http.client
import json
import math
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.storage.schema import TABLE_DEFINITION  # noqa: E402

WRITE_KB = 1024
READ_KB = 4096
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
FREE = frozenset(
    {
        # control plane: not billed per request
        "CreateTable",
        "DeleteTable",
        "DescribeTable",
        "UpdateTable",
        "ListTables",
        "DescribeTimeToLive",
        "UpdateTimeToLive",
        "ListTagsOfResource",
        "TagResource",
        "UntagResource",
        "DescribeContinuousBackups",
        "DescribeLimits",
        "DescribeEndpoints",
        # DynamoDB Streams, read by the process Lambda's event source mapping: free for Lambda triggers
        "ListStreams",
        "DescribeStream",
        "GetShardIterator",
        "GetRecords",
    }
)
THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)


# --- sizes ------------------------------------------------------------------------------------------------------------


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    mantissa = re.split("[eE]", text.strip().lstrip("+-"))[0].replace(".", "").strip("0")
    return math.ceil(len(mantissa) / 2) + 1


def _binary(value: Any) -> bytes:
    return value if isinstance(value, (bytes, bytearray)) else base64.b64decode(value)


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one typed attribute value (`{"S": ...}`, `{"M": {...}}`, ...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8", "surrogatepass"))
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(_binary(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode("utf-8", "surrogatepass")) for v in inner)
    if kind == "NS":
        return sum(number_size(v) for v in inner)
    if kind == "BS":
        return sum(len(_binary(v)) for v in inner)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8", "surrogatepass")) + value_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind!r}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of a typed item: attribute names plus values (0 for no item)."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8", "surrogatepass")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write units of one item write of `size` bytes (minimum 1)."""
    return max(1, math.ceil(size / WRITE_KB))


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of reading `size` bytes as one unit of rounding (minimum one 4 KB unit)."""
    units = max(1, math.ceil(size / READ_KB))
    return float(units) if consistent else units / 2


# --- the table --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    """Key attributes and global secondary indexes of the table (from `TABLE_DEFINITION`)."""

    keys: tuple[str, ...]
    indexes: tuple[Index, ...]

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> Schema:
        indexes = tuple(
            Index(
                name=gsi["IndexName"],
                keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection=gsi["Projection"]["ProjectionType"],
                include=tuple(gsi["Projection"].get("NonKeyAttributes", ())),
            )
            for gsi in definition.get("GlobalSecondaryIndexes", ())
        )
        return cls(keys=tuple(k["AttributeName"] for k in definition["KeySchema"]), indexes=indexes)

    def key_of(self, item: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(_canonical(item[name]) for name in self.keys)

    def key_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.keys}

    def entry(self, index: Index, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The index entry an item makes (projected attributes), or None when it lacks an index key."""
        if not item or any(name not in item for name in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        names = {*self.keys, *index.keys, *(index.include if index.projection == "INCLUDE" else ())}
        return {name: value for name, value in item.items() if name in names}

    def index(self, name: str) -> Index:
        return next(i for i in self.indexes if i.name == name)


def _canonical(value: Any) -> str:
    """One spelling of a typed value, whether its binary is bytes (client side) or base64 (wire)."""
    return json.dumps(value, sort_keys=True, default=lambda raw: base64.b64encode(raw).decode())


def entity_of(*items: Mapping[str, Any] | None, qualify: Mapping[str, str] | None = None) -> str:
    """The `entity` of the first item that has one, else the first item's partition key prefix.

    Args:
        qualify: entity → attribute whose value splits it (`{"event": "src"}` bills `event/<source>` apart).
    """
    for item in items:
        if item and "S" in item.get("entity", {}):
            entity = str(item["entity"]["S"])
            attribute = (qualify or {}).get(entity)
            if attribute and "S" in item.get(attribute, {}):
                return f"{entity}/{item[attribute]['S']}"
            return entity
    for item in items:
        if item and "S" in item.get("PK", {}):
            return "pk:" + item["PK"]["S"].split("#", 1)[0]
    return "unknown"


# --- the ledger -------------------------------------------------------------------------------------------------------


@dataclass
class Line:
    """One entity's bill."""

    writes: int = 0
    """Item writes billed (each put, update, delete, condition check, failed condition; not index writes)."""
    wu: float = 0.0
    """Table write units."""
    index_writes: int = 0
    index_wu: float = 0.0
    failed_conditions: int = 0
    reads: int = 0
    """Items read (returned or evaluated)."""
    ru: float = 0.0

    @property
    def total_wu(self) -> float:
        return self.wu + self.index_wu


@dataclass
class Ledger:
    """The bill so far: per entity, per operation, and whatever the meter could not bill."""

    entities: dict[str, Line] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    """Operations the meter does not know how to bill (a non-empty one fails the bench)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Requests answered with an error that consumes no capacity (throttling, validation), by error code."""
    replay_mismatches: int = 0
    """Replayed reads whose evaluated count differed from the answer's `ScannedCount` (sizes then approximate)."""
    components: dict[str, dict[str, int]] = field(default_factory=dict)
    """Requests by the function that made them (`footfall/<component>` in the User-Agent; "" when unnamed), by
    operation."""

    def line(self, entity: str) -> Line:
        return self.entities.setdefault(entity, Line())

    @property
    def wu(self) -> float:
        return sum(line.total_wu for line in self.entities.values())

    @property
    def ru(self) -> float:
        return sum(line.ru for line in self.entities.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": {name: asdict(line) for name, line in self.entities.items()},
            "operations": self.operations,
            "free": self.free,
            "unknown": self.unknown,
            "rejected": self.rejected,
            "replay_mismatches": self.replay_mismatches,
            "components": self.components,
        }

    def add(self, other: Ledger) -> None:
        """Add `other`'s bill to this one (the ledgers of several processes)."""
        for name, line in other.entities.items():
            mine = self.line(name)
            for counted, value in asdict(line).items():
                setattr(mine, counted, getattr(mine, counted) + value)
        for mine, theirs in (
            (self.operations, other.operations),
            (self.free, other.free),
            (self.unknown, other.unknown),
            (self.rejected, other.rejected),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.replay_mismatches += other.replay_mismatches
        for component, operations in other.components.items():
            made = self.components.setdefault(component, {})
            for operation, count in operations.items():
                made[operation] = made.get(operation, 0) + count

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ledger:
        return cls(
            entities={name: Line(**line) for name, line in data["entities"].items()},
            operations=dict(data["operations"]),
            free=dict(data["free"]),
            unknown=dict(data["unknown"]),
            rejected=dict(data["rejected"]),
            replay_mismatches=int(data["replay_mismatches"]),
            components={name: dict(ops) for name, ops in data.get("components", {}).items()},
        )


# --- reading the backend, unmetered -----------------------------------------------------------------------------------


class BackendReader:
    """Before/after images and read replays through a client the meter does not watch."""

    def __init__(self, client: Any, schema: Schema) -> None:
        self.client = client
        self.schema = schema

    def get_items(self, table: str, keys: Iterable[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
        wanted = {self.schema.key_of(k): k for k in keys}
        found: dict[tuple[str, ...], dict[str, Any]] = {}
        pending = list(wanted.values())
        for start in range(0, len(pending), 100):
            request: dict[str, Any] = {table: {"Keys": pending[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(table, []):
                    found[self.schema.key_of(item)] = item
                request = answer.get("UnprocessedKeys") or {}
        return found

    def evaluated(self, operation: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The items a Query/Scan evaluated: the same request without filter, projection and Select."""
        replay = {k: v for k, v in params.items() if k not in _REPLAY_DROP}
        used = " ".join(str(replay.get(k, "")) for k in ("KeyConditionExpression",))
        names = {k: v for k, v in params.get("ExpressionAttributeNames", {}).items() if k in used}
        values = {k: v for k, v in params.get("ExpressionAttributeValues", {}).items() if k in used}
        if names:
            replay["ExpressionAttributeNames"] = names
        if values:
            replay["ExpressionAttributeValues"] = values
        call = self.client.query if operation == "Query" else self.client.scan
        return list(call(**_python_form(replay)).get("Items", []))


_REPLAY_DROP = frozenset(
    {
        "FilterExpression",
        "ProjectionExpression",
        "AttributesToGet",
        "Select",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "ReturnConsumedCapacity",
        "QueryFilter",
        "ScanFilter",
        "ConditionalOperator",
    }
)


def _python_form(value: Any) -> Any:
    """Wire JSON (binary in base64) → the form a botocore client takes (binary as bytes)."""
    if isinstance(value, dict):
        if len(value) == 1 and "B" in value and isinstance(value["B"], str):
            return {"B": base64.b64decode(value["B"])}
        if len(value) == 1 and "BS" in value:
            return {"BS": [_binary(v) for v in value["BS"]]}
        return {k: _python_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python_form(v) for v in value]
    return value


# --- the meter --------------------------------------------------------------------------------------------------------


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
            unprocessed = {_canonical(r) for r in (answer.get("UnprocessedItems") or {}).get(table, [])}
            for request in params["RequestItems"][table]:
                if _canonical(request) in unprocessed:
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
            if item is not None and _projected(params) and self.reader is not None:
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
                if item is not None and _projected(action["Get"]) and self.reader is not None:
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
            if _projected(request) and returned and self.reader is not None:
                full = self.reader.get_items(table, [self.schema.key_item(k) for k in keys])
            for key in keys:
                item = full.get(self.schema.key_of(key))
                units = read_units(item_size(item), consistent=consistent)
                bills.append((entity_of(item, key, qualify=self.qualify), 1 if item else 0, units))
        self._add_reads(bills)

    def _bill_query(self, seen: Pending, answer: Mapping[str, Any]) -> None:
        params = seen.params
        items = list(answer.get("Items", []))
        needs_replay = _projected(params) or "FilterExpression" in params or params.get("Select") == "COUNT"
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


def _projected(params: Mapping[str, Any]) -> bool:
    return "ProjectionExpression" in params or "AttributesToGet" in params


# --- front-end: an HTTP proxy -----------------------------------------------------------------------------------------

CONTROL_PATH = "/_meter"


class MeteringProxy(ThreadingHTTPServer):
    """Forwards every request to `upstream` and bills it; `GET /_meter` answers the ledger, `POST /_meter/reset`
    starts a new one."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], upstream: str, meter: Meter) -> None:
        super().__init__(address, _ProxyHandler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.meter = meter
        self.local = threading.local()

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list, bytes]:
        connection = getattr(self.local, "connection", None)
        for attempt in range(2):
            if connection is None:
                connection = http.client.HTTPConnection(*self.upstream, timeout=120)
                self.local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MeteringProxy

    def do_GET(self) -> None:
        if self.path.startswith(CONTROL_PATH):
            self._answer(200, json.dumps(self.server.meter.snapshot().to_json()).encode())
            return
        self._relay(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith(CONTROL_PATH + "/reset"):
            self.server.meter.reset()
            self._answer(200, b"{}")
            return
        self._relay(body)

    def _relay(self, body: bytes) -> None:
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rpartition(".")[2]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        meter = self.server.meter
        params = json.loads(body) if body and operation else {}
        replayed_read = operation in READS and _needs_replay(operation, params)
        serialize = operation in WRITES or replayed_read
        with meter.lock if serialize else contextlib.nullcontext():
            seen = meter.before(operation, params) if operation else None
            status, response_headers, data = self.server.forward(self.command, self.path, body, headers)
            if seen is not None:
                try:
                    answer = json.loads(data) if data else {}
                except ValueError:
                    answer = {}
                meter.after(seen, status, answer, component=_component(self.headers.get("User-Agent", "")))
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _component(user_agent: str) -> str:
    """The function a request came from: `footfall/<component>` in its User-Agent (`make_client(component=…)`)."""
    found = re.search(r"footfall/([a-z]+)", user_agent)
    return found.group(1) if found else ""


def _needs_replay(operation: str, params: Mapping[str, Any]) -> bool:
    if operation in ("Query", "Scan"):
        return (
            bool(_projected(params) or {"FilterExpression", "QueryFilter", "ScanFilter"} & set(params))
            or params.get("Select") == "COUNT"
        )
    if operation == "GetItem":
        return _projected(params)
    if operation == "BatchGetItem":
        return any(_projected(r) for r in params.get("RequestItems", {}).values())
    if operation == "TransactGetItems":
        return any(_projected(a.get("Get", {})) for a in params.get("TransactItems", []))
    return False


def start_proxy(
    upstream: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    region: str = "us-east-1",
    qualify: Mapping[str, str] | None = None,
) -> MeteringProxy:
    """A metering proxy in front of `upstream`, serving in a daemon thread (`shutdown()` stops it)."""
    from shared.storage.dynamo import make_client

    schema = Schema.from_definition(TABLE_DEFINITION)
    reader = BackendReader(make_client(endpoint_url=upstream, region=region), schema)
    meter = Meter(reader, schema=schema, qualify=qualify)
    proxy = MeteringProxy((host, port), upstream, meter)
    threading.Thread(target=proxy.serve_forever, daemon=True, name="metering-proxy").start()
    return proxy


def fetch_ledger(endpoint: str, *, reset: bool = False) -> Ledger:
    """The ledger of a proxy (started with `proxy`), optionally starting a new one."""
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    try:
        connection.request("GET", CONTROL_PATH)
        ledger = Ledger.from_json(json.loads(connection.getresponse().read()))
        if reset:
            connection.request("POST", CONTROL_PATH + "/reset", body=b"")
            connection.getresponse().read()
        return ledger
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Metering proxy in front of a DynamoDB endpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=0)
    proxy.add_argument("--region", default="us-east-1")
    proxy.add_argument("--qualify", action="append", default=[], metavar="ENTITY=ATTRIBUTE")
    args = parser.parse_args(argv)
    qualify = dict(pair.split("=", 1) for pair in args.qualify)
    server = start_proxy(args.upstream, host=args.host, port=args.port, region=args.region, qualify=qualify)
    print(f"READY {server.server_address[1]}", flush=True)
    threading.Event().wait()


# --- metering the processes of a `footfall serve` on the embedded database ------------------------------------------

DUMP_SECONDS = 0.2
GENERATION_FILE = "generation"


def meter_this_process(directory: Path, *, qualify: Mapping[str, str] | None = None) -> Meter:
    """Bill every embedded-database client this process makes through `shared.storage.dynamo.make_client` from now
    on (call it before the code that imports `make_client` by name), and dump the ledger to `<directory>/<pid>.json`
    every `DUMP_SECONDS`: `{"pid", "generation", "at", "ledger"}`. Writing a higher number into
    `<directory>/generation` resets the ledger (the next dump carries that generation). Images are read through an
    unmetered client on the same file."""
    import os
    import time

    from shared.storage import client as clients
    from shared.storage import dynamo
    from shared.storage.sqlite.engine import SqliteClient

    original = clients.make_client
    meter = Meter(qualify=qualify)

    def make_client(**options: Any) -> Any:
        client = original(**options)
        if isinstance(client, SqliteClient):
            if meter.reader is None:
                side = original(endpoint_url=options.get("endpoint_url"), region=options.get("region"))
                meter.reader = BackendReader(side, meter.schema)
            meter.attach(client, component=options.get("component") or "")
        return client

    clients.make_client = dynamo.make_client = make_client  # the bench's processes only (dynamo re-exports it)
    target = directory / f"{os.getpid()}.json"

    def dump_forever() -> None:
        generation = 0
        while True:
            with contextlib.suppress(OSError, ValueError):
                wanted = int((directory / GENERATION_FILE).read_text() or 0)
                if wanted > generation:
                    meter.reset()
                    generation = wanted
            dump = {
                "pid": os.getpid(),
                "generation": generation,
                "at": time.time(),
                "ledger": meter.snapshot().to_json(),
            }
            partial = target.with_suffix(".tmp")
            partial.write_text(json.dumps(dump))
            partial.replace(target)
            time.sleep(DUMP_SECONDS)

    threading.Thread(target=dump_forever, name="meter-dump", daemon=True).start()
    return meter


@dataclass
class MeterDumps:
    """The bench's side of `meter_this_process`: reset every process's ledger, and sum them."""

    directory: Path
    generation: int = 0

    def _live_dumps(self) -> list[dict[str, Any]]:
        import os

        dumps = []
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                dump = json.loads(path.read_text())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(dump["pid"]), 0)  # a process gone (never, while the stack runs) is left out
                    dumps.append(dump)
        return dumps

    def _wait(self, done: Any, timeout: float, what: str) -> list[dict[str, Any]]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dumps = self._live_dumps()
            if dumps and all(done(dump) for dump in dumps):
                return dumps
            time.sleep(DUMP_SECONDS / 2)
        raise RuntimeError(f"the metered processes did not {what} within {timeout:g} s")

    def reset(self, timeout: float = 30.0) -> None:
        """Start every process's ledger afresh; returns once each has (its next dump carries the new generation)."""
        self.generation += 1
        (self.directory / GENERATION_FILE).write_text(str(self.generation))
        self._wait(lambda dump: dump["generation"] == self.generation, timeout, "reset their ledgers")

    def ledger(self, timeout: float = 30.0) -> Ledger:
        """The sum of every process's ledger as of now (waits for a dump of each made after this call)."""
        import time

        asked = time.time()
        dumps = self._wait(
            lambda dump: dump["at"] > asked and dump["generation"] == self.generation, timeout, "dump their ledgers"
        )
        total = Ledger()
        for dump in dumps:
            total.add(Ledger.from_json(dump["ledger"]))
        return total


def ledger_rows(ledger: Ledger, events: int) -> list[tuple[str, int, float, float, float]]:
    """(entity, writes incl. index writes, WU, WU/event, RU/event) per entity, biggest bill first."""
    rows = [
        (name, line.writes + line.index_writes, line.total_wu, line.total_wu / events, line.ru / events)
        for name, line in ledger.entities.items()
    ]
    return sorted(rows, key=lambda row: (-row[2], -row[4], row[0]))


if __name__ == "__main__":
    main()
