"""Table definitions of the embedded database: key schema, the global secondary index, the stream, TTL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.storage.sqlite.codec import InvalidValueError, check_key_value, key_bytes
from shared.storage.sqlite.expressions import Item, number

FIVE_YEARS = 5 * 365 * 24 * 3600


@dataclass(frozen=True)
class Index:
    """A global secondary index (one per table here: its keys are two indexed columns)."""

    name: str
    hash: str
    range: str | None
    projection: str
    """KEYS_ONLY, INCLUDE or ALL."""
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """One table's definition, as created."""

    name: str
    hash: str
    range: str | None
    types: dict[str, str]
    index: Index | None
    stream: bool
    ttl: str | None
    created: float
    definition: dict[str, Any]

    @classmethod
    def create(cls, name: str, definition: dict[str, Any], created: float) -> Table:
        """A table from `create_table`'s parameters (refusing what the embedded engine does not support)."""
        types = {a["AttributeName"]: a["AttributeType"] for a in definition.get("AttributeDefinitions", [])}
        hash_key, range_key = _key_schema(definition.get("KeySchema", []))
        indexes = definition.get("GlobalSecondaryIndexes") or []
        if len(indexes) > 1 or definition.get("LocalSecondaryIndexes"):
            raise InvalidValueError("The embedded engine supports one global secondary index and no local index")
        index = None
        for spec in indexes:
            index_hash, index_range = _key_schema(spec["KeySchema"])
            projection = spec.get("Projection", {})
            index = Index(
                spec["IndexName"],
                index_hash,
                index_range,
                projection.get("ProjectionType", "ALL"),
                tuple(projection.get("NonKeyAttributes", [])),
            )
        for key in (hash_key, range_key, *((index.hash, index.range) if index else ())):
            if key is not None and types.get(key) not in ("S", "B"):
                raise InvalidValueError(
                    f"One or more parameter values were invalid: key {key} must be defined as S or B "
                    "(number keys are not supported by the embedded engine)"
                )
        stream = bool(definition.get("StreamSpecification", {}).get("StreamEnabled"))
        return cls(name, hash_key, range_key, types, index, stream, None, created, definition)

    def keys_of(self, item: Item) -> Item:
        """The table key attributes of an item."""
        return {name: item[name] for name in (self.hash, self.range) if name is not None and name in item}

    def index_keys_of(self, item: Item) -> Item:
        """The table and index key attributes of an item (a KEYS_ONLY index entry)."""
        names = [self.hash, self.range, *((self.index.hash, self.index.range) if self.index else ())]
        return {name: item[name] for name in names if name is not None and name in item}

    def key_columns(self, key: Item, *, exact: bool = True) -> tuple[Any, Any]:
        """The (pk, sk) column values of a key (or item), after checking it against the key schema."""
        if exact and set(key) != {n for n in (self.hash, self.range) if n}:
            raise InvalidValueError("The provided key element does not match the schema")
        check_key_value(self.hash, key.get(self.hash), self.types[self.hash], hash_key=True)
        if self.range is None:
            return key_bytes(key[self.hash]), ""
        check_key_value(self.range, key.get(self.range), self.types[self.range], hash_key=False)
        return key_bytes(key[self.hash]), key_bytes(key[self.range])

    def index_columns(self, item: Item) -> tuple[Any, Any]:
        """The index's (hash, range) column values of an item, or (None, None) when it is not in the index."""
        index = self.index
        if index is None or index.hash not in item or (index.range is not None and index.range not in item):
            return None, None
        check_key_value(index.hash, item[index.hash], self.types[index.hash], hash_key=True, index=index.name)
        if index.range is None:
            return key_bytes(item[index.hash]), ""
        check_key_value(index.range, item[index.range], self.types[index.range], hash_key=False, index=index.name)
        return key_bytes(item[index.hash]), key_bytes(item[index.range])

    def expiry(self, item: Item) -> int | None:
        """The item's TTL time (epoch seconds), if TTL is on and the attribute is a number."""
        value = item.get(self.ttl) if self.ttl else None
        if value is None or "N" not in value:
            return None
        return int(number(value["N"]))

    def description(self, item_count: int, region: str) -> dict[str, Any]:
        """`describe_table`'s answer."""
        created = datetime.fromtimestamp(self.created, UTC)
        arn = f"arn:aws:dynamodb:{region}:000000000000:table/{self.name}"
        table: dict[str, Any] = {
            "TableName": self.name,
            "TableArn": arn,
            "TableStatus": "ACTIVE",
            "CreationDateTime": created,
            "AttributeDefinitions": self.definition.get("AttributeDefinitions", []),
            "KeySchema": self.definition.get("KeySchema", []),
            "ItemCount": item_count,
            "TableSizeBytes": 0,
            "BillingModeSummary": {"BillingMode": self.definition.get("BillingMode", "PROVISIONED")},
        }
        if self.definition.get("GlobalSecondaryIndexes"):
            table["GlobalSecondaryIndexes"] = [
                {**spec, "IndexStatus": "ACTIVE", "IndexArn": f"{arn}/index/{spec['IndexName']}"}
                for spec in self.definition["GlobalSecondaryIndexes"]
            ]
        if self.stream:
            label = created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            table["StreamSpecification"] = self.definition["StreamSpecification"]
            table["LatestStreamLabel"] = label
            table["LatestStreamArn"] = f"{arn}/stream/{label}"
        return {"Table": table}


def _key_schema(schema: list[dict[str, str]]) -> tuple[str, str | None]:
    hash_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "HASH"), None)
    range_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"), None)
    if hash_key is None:
        raise InvalidValueError("1 validation error detected: KeySchema must have a HASH key")
    return hash_key, range_key
