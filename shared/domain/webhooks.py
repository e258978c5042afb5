"""Inbound webhooks: signature verification and the per-source mapping to Segment-shaped events."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.domain.errors import AuthenticationError, InvalidEventError
from shared.domain.sources import WebhookMapping

TIMESTAMP_HEADER = "x-footfall-timestamp"
SIGNATURE_HEADER = "x-footfall-signature"
TOLERANCE_SECONDS = 300
MAX_WEBHOOK_EVENTS = 500
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def sign_webhook(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header value a sender puts on `body`: `v1=<hex HMAC-SHA256 of "timestamp.body">`."""
    return "v1=" + _digest(body, secret, timestamp)


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Iterable[str],
    *,
    now: datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Business rule: accept a webhook only if signed by an active secret within `tolerance` seconds of now.

    Raises:
        AuthenticationError: missing headers, a timestamp outside the tolerance (stale or future), or no match.
    """
    stamp = headers.get(TIMESTAMP_HEADER, "")
    header = headers.get(SIGNATURE_HEADER, "")
    if not stamp or not header:
        raise AuthenticationError(f"webhook must carry {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:  # "²".isdigit(), but int("²") fails
        raise AuthenticationError(f"{TIMESTAMP_HEADER} must be Unix seconds")
    if abs(now.timestamp() - int(stamp)) > tolerance:
        raise AuthenticationError(f"webhook timestamp is more than {tolerance} s away from now")
    # `compare_digest` raises TypeError on non-ASCII text; a non-ASCII signature matches nothing anyway.
    given = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=") and part.isascii()]
    expected = [_digest(body, secret, int(stamp)) for secret in secrets]
    if not any(hmac.compare_digest(g, e) for g in given for e in expected):
        raise AuthenticationError("webhook signature does not match")


def with_derived_message_ids(raws: list[Any], body: bytes, headers: Mapping[str, str]) -> list[Any]:
    """Business rule: an event of a signed webhook without a `messageId` gets one derived from what was signed.

    The id hashes the signed timestamp, the body and the event's place in it, so a replay of the same signed
    request (accepted within the tolerance) carries the same ids and is de-duplicated like any event, while
    the same body sent again later (a new timestamp) is a new delivery.
    """
    stamp = headers.get(TIMESTAMP_HEADER, "").encode("ascii", "replace")
    derived = []
    for index, raw in enumerate(raws):
        if isinstance(raw, dict) and not raw.get("messageId"):
            digest = hashlib.sha256(stamp + b"." + body + b"#" + str(index).encode("ascii")).hexdigest()
            raw = {**raw, "messageId": "wh-" + digest[:32]}
        derived.append(raw)
    return derived


def resolve(path: str, payload: Any, headers: Mapping[str, str]) -> Any:
    """Value at `path` (`$.a.b[0]`, `$headers.name`); a string not starting with `$` is a literal."""
    if not path.startswith("$"):
        return path
    if path.startswith("$headers."):
        return headers.get(path[len("$headers.") :].lower())
    node = payload
    position = 1
    for match in _PATH_STEP.finditer(path, 1):
        if match.start() != position:
            return None
        position = match.end()
        key, index = match.groups()
        if key is not None and isinstance(node, dict):
            node = node.get(key)
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    return node if position == len(path) else None


def map_webhook(
    payload: Any, headers: Mapping[str, str], mapping: WebhookMapping, *, source_id: str
) -> list[dict[str, Any]]:
    """Turn a provider payload into Segment-shaped raw events (validated afterwards like any other call).

    A payload without a mapped message id gets one derived from its content, so that a provider's
    redelivery of the same payload is de-duplicated.

    Raises:
        InvalidEventError: when `events` does not point to an array or there are too many events.
    """
    records = [payload] if mapping.events is None else resolve(mapping.events, payload, headers)
    if not isinstance(records, list):
        raise InvalidEventError(f"webhook mapping path {mapping.events} does not point to an array")
    if len(records) > MAX_WEBHOOK_EVENTS:
        raise InvalidEventError(f"webhook carries more than {MAX_WEBHOOK_EVENTS} events")
    return [_map_record(record, headers, mapping, source_id) for record in records]


def _map_record(record: Any, headers: Mapping[str, str], mapping: WebhookMapping, source_id: str) -> dict[str, Any]:
    def value(path: str | None) -> Any:
        return None if path is None else resolve(path, record, headers)

    raw: dict[str, Any] = {"type": mapping.type}
    name = value(mapping.event)
    if name is not None:
        raw["event"] = mapping.event_names.get(str(name), str(name))
    for key, path in (
        ("userId", mapping.user_id),
        ("anonymousId", mapping.anonymous_id),
        ("messageId", mapping.message_id),
        ("timestamp", mapping.timestamp),
    ):
        found = value(path)
        if found is not None:
            raw[key] = found if key != "messageId" else str(found)
    for key, fields in (("properties", mapping.properties), ("traits", mapping.traits), ("context", mapping.context)):
        values = {name: value(path) for name, path in fields.items()}
        raw[key] = {name: found for name, found in values.items() if found is not None}
    if "messageId" not in raw:
        fingerprint = json.dumps([source_id, record], sort_keys=True, default=str).encode("utf-8", "surrogatepass")
        raw["messageId"] = "wh-" + hashlib.sha256(fingerprint).hexdigest()[:32]
    return raw


def mapping_from_dict(data: Mapping[str, Any]) -> WebhookMapping:
    """Build a mapping from its JSON form (the `footfall sources` file format).

    Raises:
        InvalidEventError: on an unknown key or a wrongly typed value.
    """
    known = set(WebhookMapping.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise InvalidEventError(f"unknown webhook mapping keys: {', '.join(sorted(unknown))}")
    for key in ("event_names", "properties", "traits", "context"):
        if not isinstance(data.get(key, {}), dict):
            raise InvalidEventError(f"webhook mapping {key} must be an object")
    return WebhookMapping(**data)
