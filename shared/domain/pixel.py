"""Events carried in a URL: the tracking pixel (`?data=<base64 JSON>` or dot-notation) and click links."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from shared.domain.errors import InvalidEventError

# The smallest transparent GIF89a (1x1): 43 bytes.
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
# Parameters that steer the request rather than describe the event.
CONTROL_PARAMS = frozenset({"data", "writeKey", "sig", "url", "src", "exp"})


def strict_json(text: str | bytes) -> Any:
    """`json.loads` that refuses NaN/Infinity (not JSON, and not storable).

    Raises:
        InvalidEventError: on anything that is not strict JSON, including nesting deep enough to exhaust the stack.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, InvalidEventError) else "body is not valid JSON"
        raise InvalidEventError(reason) from None


def _refuse_constant(name: str) -> None:
    raise InvalidEventError(f"body is not valid JSON: {name} is not a JSON value")


def pixel_payload(params: Mapping[str, str]) -> dict[str, Any]:
    """The event described by a pixel's query: `data` (base64 JSON) wins over dot-notation parameters.

    Raises:
        InvalidEventError: `data` is not base64 of a JSON object, or the parameters contradict each other.
    """
    if "data" in params:
        # Accept both alphabets, missing padding, and the "+" that an unescaped URL turns into a space.
        encoded = params["data"].strip().replace(" ", "+").replace("-", "+").replace("_", "/")
        try:
            decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEventError("data is not valid base64", field="data") from None
        payload = strict_json(decoded)
        if not isinstance(payload, dict):
            raise InvalidEventError("data must encode a JSON object", field="data")
        return payload
    return unflatten({key: value for key, value in params.items() if key not in CONTROL_PARAMS})


def unflatten(params: Mapping[str, str]) -> dict[str, Any]:
    """Dot-notation parameters (`properties.plan=pro`) → nested JSON object.

    Raises:
        InvalidEventError: when a name is used both as a value and as an object (`properties=x&properties.a=y`).
    """
    result: dict[str, Any] = {}
    for name, value in sorted(params.items()):
        parts = name.split(".")
        if any(not part for part in parts):
            raise InvalidEventError(f"parameter name {name!r} is not valid dot-notation", field=name)
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidEventError(f"parameter {name!r} conflicts with {part!r}", field=name)
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise InvalidEventError(f"parameter {name!r} conflicts with a nested parameter", field=name)
        node[parts[-1]] = value
    return result
