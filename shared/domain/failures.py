"""Failed events: everything the collector refused, kept with the raw input and the reason."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus

MAX_RAW_BYTES = 64 * 1024
WRITE_KEY_FIELD = "writeKey"
REDACTED = "[redacted]"
# Every write key Footfall makes starts `ffk_` (sources.WRITE_KEY_PREFIX): one found anywhere else goes too.
_KEY_SHAPES = (
    (re.compile(rb'"writeKey"\s*:\s*"(?:[^"\\]|\\.)*"?', re.IGNORECASE), b'"writeKey":"[redacted]"'),
    (re.compile(rb"(^|[?&])writeKey=[^&]*", re.IGNORECASE), rb"\1writeKey=[redacted]"),
    (re.compile(rb"ffk_[A-Za-z0-9_-]{8,}"), b"[redacted]"),
)


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """One refused input (a whole request, or one event of a batch)."""

    id: str
    received_at: datetime
    route: str
    reason: str
    status: int
    """The HTTP status the client was given for it (a pixel's client still got its 200 GIF)."""
    raw: bytes
    """The input as received, cut to `MAX_RAW_BYTES`."""
    source_id: str | None = None
    message_id: str | None = None
    truncated: bool = False


def failed_event(
    *,
    failure_id: str,
    received_at: datetime,
    route: str,
    reason: str,
    status: int,
    raw: bytes | str,
    source_id: str | None = None,
    message_id: str | None = None,
) -> FailedEvent:
    """Build a failed-event record, cutting oversize raw input to `MAX_RAW_BYTES` (and saying so).

    Write keys never reach the record (`redact_write_keys`), neither in the input nor in the route (a settings or
    Snowplow route carries the key in its path).
    """
    data = redact_write_keys(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    return FailedEvent(
        id=failure_id,
        received_at=received_at,
        route=redact_write_keys(route.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass"),
        reason=reason,
        status=status,
        raw=data[:MAX_RAW_BYTES],
        source_id=source_id,
        message_id=message_id,
        truncated=len(data) > MAX_RAW_BYTES,
    )


def new_failure_id(received_at: datetime, suffix: str) -> str:
    """Public id of a failed event: `<yyyy-mm-dd>.<hhmmssffffff>.<suffix>` (the day is its storage partition)."""
    moment = received_at.astimezone(UTC)
    return f"{moment:%Y-%m-%d}.{moment:%H%M%S}{moment.microsecond:06d}.{suffix}"


def redact_write_keys(raw: bytes) -> bytes:
    """Business rule: a failed-event record keeps no write key, wherever the request carried one.

    A JSON body loses every `writeKey` member (at any depth, however its name is escaped); a query string
    loses `writeKey=` (however percent-encoded) and the `writeKey` inside a pixel's base64 `data`; then any
    text still shaped like a key (a `"writeKey": "…"` or `writeKey=…` in a body cut short, an `ffk_…` token
    anywhere) is masked. Input without a key is kept byte for byte.
    """
    redacted = _redact_json(raw)
    if redacted is None:
        redacted = _redact_query(raw)
    for pattern, replacement in _KEY_SHAPES:
        redacted = pattern.sub(replacement, redacted)
    return redacted


def _redact_json(raw: bytes) -> bytes | None:
    found = False

    def without_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        kept = {}
        for name, value in pairs:
            if name == WRITE_KEY_FIELD:
                found, value = True, REDACTED
            kept[name] = value
        return kept

    try:
        json.loads(raw, object_pairs_hook=without_keys)
    except (ValueError, RecursionError):
        return None
    if not found:
        return raw
    parsed = json.loads(raw, object_pairs_hook=without_keys)
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def _redact_query(raw: bytes) -> bytes:
    if b"=" not in raw or b"{" in raw[:1]:
        return raw
    text = raw.decode("utf-8", "replace")
    pairs = []
    changed = False
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        decoded = unquote_plus(name)
        if decoded == WRITE_KEY_FIELD:
            pair, changed = f"{name}={REDACTED}", True
        elif decoded == "data" and sep:
            data = _redact_base64_json(unquote_plus(value))
            if data is not None:
                pair, changed = f"{name}={quote(data, safe='')}", True
        pairs.append(pair)
    return "&".join(pairs).encode("utf-8") if changed else raw


def _redact_base64_json(value: str) -> str | None:
    try:
        decoded = base64.b64decode(
            value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None
        )
    except (binascii.Error, ValueError):
        return None
    redacted = _redact_json(decoded)
    if redacted is None or redacted == decoded:
        return None
    return base64.b64encode(redacted).decode("ascii")
