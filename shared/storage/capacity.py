"""DynamoDB item sizes and write units, computed the way DynamoDB bills them (moto's figures are not real)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

WRITE_UNIT_BYTES = 1024


def value_size(value: Any) -> int:
    """Bytes a value takes in an item (AWS "Item sizes and formats")."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        digits = str(Decimal(str(value)).normalize()).lstrip("-").replace(".", "").lstrip("0")
        return math.ceil(len(digits.split("E")[0]) / 2) + 1
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode("utf-8")) + value_size(v) + 1 for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 3 + sum(value_size(v) + 1 for v in value)
    if isinstance(value, (set, frozenset)):
        return sum(value_size(v) for v in value)
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def item_size(item: Mapping[str, Any]) -> int:
    """Size of an item: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(item: Mapping[str, Any]) -> int:
    """Write units of a standard (non-transactional) put of `item`, index writes excluded."""
    return max(1, math.ceil(item_size(item) / WRITE_UNIT_BYTES))
