"""What DynamoDB bills, as numbers: item and attribute sizes, write and read units, which operations are billed,
the table's keys and index entries, and the entity an item is billed to (the rules and their sources are in
`benchmarks/meter.py`'s docstring)."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def as_bytes(value: Any) -> bytes:
    """A binary value's bytes, whether a client holds it (bytes) or the wire does (base64)."""
    return value if isinstance(value, (bytes, bytearray)) else base64.b64decode(value)


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one typed attribute value (`{"S": ...}`, `{"M": {...}}`, ...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8", "surrogatepass"))
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(as_bytes(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode("utf-8", "surrogatepass")) for v in inner)
    if kind == "NS":
        return sum(number_size(v) for v in inner)
    if kind == "BS":
        return sum(len(as_bytes(v)) for v in inner)
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
        return tuple(canonical(item[name]) for name in self.keys)

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


def canonical(value: Any) -> str:
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
