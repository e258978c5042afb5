"""Items in DynamoDB's wire form: stored as compact JSON, checked against DynamoDB's rules and limits.

The limits are DynamoDB's, so that nothing written locally would be refused on AWS: 400 KB per item (attribute
names plus values, `shared.storage.capacity`), 2048 bytes per partition key, 1024 per sort key, no empty string or
binary in a key, 38 significant digits per number, no empty or duplicated set.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from shared.storage.capacity import item_size
from shared.storage.sqlite.expressions import ExpressionError, Item, Value, number, number_text

MAX_ITEM_BYTES = 400 * 1024
MAX_HASH_KEY_BYTES = 2048
MAX_RANGE_KEY_BYTES = 1024
_SETS = ("SS", "NS", "BS")


class InvalidValueError(ExpressionError):
    """A value or item DynamoDB refuses (a ValidationException)."""


def encode(item: Item) -> str:
    """An item as compact JSON (binary values as base64)."""
    return json.dumps({name: _encode_value(value) for name, value in item.items()}, separators=(",", ":"))


def decode(text: str) -> Item:
    """An item stored by `encode`, back in wire form (binary values as bytes, as boto3 returns them)."""
    return {name: decode_value(value) for name, value in json.loads(text).items()}


def _encode_value(value: Value) -> Value:
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode("ascii") for v in inner]}
    if kind == "M":
        return {"M": {k: _encode_value(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_encode_value(v) for v in inner]}
    return value


def decode_value(value: Value) -> Value:
    """A value as JSON carries it (binary in base64) back in boto3's form (bytes); export lines use it too."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if kind == "M":
        return {"M": {k: decode_value(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [decode_value(v) for v in inner]}
    return value


def normalized(item: Item) -> Item:
    """A request's item checked value by value and put in canonical form (bytes for binary, numbers as DynamoDB
    writes them back: `1.50` is read as `1.5`)."""
    return {name: _normalized(value) for name, value in item.items()}


def _normalized(value: Any) -> Value:
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidValueError("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
    kind, inner = next(iter(value.items()))
    if kind == "S" and isinstance(inner, str):
        return {"S": inner}
    if kind == "N":
        return {"N": _number(str(inner))}
    if kind == "B":
        return {"B": _bytes(inner)}
    if kind in _SETS and isinstance(inner, list):
        return _normalized_set(kind, inner)
    return _normalized_other(kind, inner)


def _normalized_set(kind: str, inner: list[Any]) -> Value:
    members = [_number(str(v)) if kind == "NS" else _bytes(v) if kind == "BS" else v for v in inner]
    if not members:
        raise InvalidValueError(f"One or more parameter values were invalid: An {kind} may not be empty")
    unique = {number(str(m)) for m in members} if kind == "NS" else set(members)
    if len(unique) != len(members):
        raise InvalidValueError("One or more parameter values were invalid: Input collection contains duplicates")
    return {kind: members}


def _normalized_other(kind: str, inner: Any) -> Value:
    if kind == "BOOL" and isinstance(inner, bool):
        return {"BOOL": inner}
    if kind == "NULL" and inner is True:
        return {"NULL": True}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {str(k): _normalized(v) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [_normalized(v) for v in inner]}
    raise InvalidValueError(f"Supplied AttributeValue has an unsupported or malformed datatype: {kind}")


def _number(text: str) -> str:
    value = number(text.strip())
    if not value.is_finite():
        raise InvalidValueError(f"A value provided cannot be converted into a number: {text}")
    digits = value.normalize().as_tuple().digits
    if value != 0 and len(digits) > 38:
        raise InvalidValueError("Attempting to store more than 38 significant digits in a Number")
    if value != 0 and not Decimal("1E-130") <= abs(value) < Decimal("1E+126"):
        raise InvalidValueError(
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        )
    return number_text(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")  # as botocore does with text given for a blob
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    inner = getattr(value, "value", None)  # boto3's Binary
    if isinstance(inner, (bytes, bytearray)):
        return bytes(inner)
    raise InvalidValueError("Supplied AttributeValue has an unsupported or malformed datatype: B")


def plain(value: Value) -> Any:
    """A wire value as the plain Python value `capacity` measures."""
    kind, inner = next(iter(value.items()))
    if kind == "N":
        return Decimal(inner)
    if kind == "NS":
        return {Decimal(v) for v in inner}
    if kind in ("SS", "BS"):
        return set(inner)
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    if kind == "NULL":
        return None
    return inner


def check_item_size(item: Item) -> None:
    """Refuse an item over DynamoDB's 400 KB."""
    if item_size({name: plain(value) for name, value in item.items()}) > MAX_ITEM_BYTES:
        raise InvalidValueError("Item size has exceeded the maximum allowed size")


def key_bytes(value: Value) -> bytes | str:
    """A key attribute's value as it is stored in a key column (text for S, bytes for B)."""
    return value["S"] if "S" in value else bytes(value["B"])


def check_key_value(name: str, value: Value | None, expected: str, *, hash_key: bool, index: str | None = None) -> None:
    """Refuse a key attribute of the wrong type, empty, or over its byte limit (for a table or an index key)."""
    if value is None:
        raise InvalidValueError(f"One or more parameter values were invalid: Missing the key {name} in the item")
    actual = next(iter(value))
    if actual != expected:
        where = f"Index Key {name} Expected: {expected} Actual: {actual} IndexName: {index}" if index else f"key {name}"
        suffix = "" if index else f" expected: {expected} actual: {actual}"
        raise InvalidValueError(f"One or more parameter values were invalid: Type mismatch for {where}{suffix}")
    raw = key_bytes(value)
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size == 0:
        if index:
            raise InvalidValueError(
                "One or more parameter values are not valid. A value specified for a secondary index key is not "
                f"supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: "
                f"{index}, IndexKey: {name}"
            )
        raise InvalidValueError(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
            f"empty string value. Key: {name}"
        )
    if hash_key and size > MAX_HASH_KEY_BYTES:
        raise InvalidValueError(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of "
            f"{MAX_HASH_KEY_BYTES} bytes"
        )
    if not hash_key and size > MAX_RANGE_KEY_BYTES:
        raise InvalidValueError(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
            f"limit of {MAX_RANGE_KEY_BYTES} bytes"
        )
