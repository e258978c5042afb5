"""Reading the backend, unmetered: the before and after images of a write, and the items a read evaluated."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from benchmarks.dynamo_meter.sizes import Schema, as_bytes


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
            return {"BS": [as_bytes(v) for v in value["BS"]]}
        return {k: _python_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python_form(v) for v in value]
    return value
