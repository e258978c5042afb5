"""DynamoDB JSON ↔ plain Python items: the one attribute-value codec every storage module uses.

`serialize` and `deserialize` for the items the store writes and reads; `deserialize_wire` for the images a Lambda
stream event carries (binary values as base64 text). And the page tokens the store hands out (`encode_token`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from shared.storage.errors import StorageError

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    """Plain Python item → DynamoDB JSON."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


def deserialize(image: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON → plain Python item (binary values as `bytes`)."""
    return {name: _plain(value) for name, value in image.items()}


def _plain(value: dict[str, Any]) -> Any:
    # Strings and binaries (most attributes of most items) without the general deserializer's dispatch, which was
    # a quarter of the CPU of reading a customer's events from the embedded database.
    if "S" in value:
        return value["S"]
    if "B" in value:
        return value["B"]
    return _deserializer.deserialize(value)  # type: ignore[arg-type]  # DynamoDB JSON: the stubs' TypedDict


def deserialize_wire(image: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON as Lambda stream events carry it (binary values as base64 text) → plain Python item."""
    return deserialize({name: _bytes_from_wire(value) for name, value in image.items()})


def _bytes_from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(value.get("B"), str):
            return {"B": base64.b64decode(value["B"])}
        if "M" in value:
            return {"M": {k: _bytes_from_wire(v) for k, v in value["M"].items()}}
        if "L" in value:
            return {"L": [_bytes_from_wire(v) for v in value["L"]]}
    return value


def encode_token(value: dict[str, Any]) -> str:
    """A page token (opaque to callers) for a cursor: urlsafe base64 of its JSON."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def decode_token(token: str) -> dict[str, Any]:
    """The cursor of a page token.

    Raises:
        StorageError: not a token this store made.
    """
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise StorageError("invalid page token") from exc
    if not isinstance(value, dict):
        raise StorageError("invalid page token")
    return value
