"""Failed events: everything the collector refused, kept with the raw input and the reason."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus

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


# Fields that name an identity, in Segment calls and in the trackers' own shapes (Snowplow's `uid`/`duid`).
_USER_FIELDS = frozenset({"userId", "user_id", "uid"})
_ANONYMOUS_FIELDS = frozenset({"anonymousId", "anonymous_id", "duid"})
_EITHER_FIELDS = frozenset({"previousId", "previous_id"})
_MAX_INFLATED = 1024 * 1024


def identities_in(raw: bytes, *, decode_more: Callable[[Any], Iterable[str]] | None = None) -> set[str]:
    """Business rule: the identities (`u:…`/`a:…`) a refused input names, however the request encoded them.

    The raw input is read as the collector would have: a gzip body inflated, a base64 body decoded, a JSON body
    parsed, a query string percent-decoded, a pixel's base64 `data` decoded. Every identity field at any depth
    counts (a `previousId` as either kind). `decode_more` finds identities in parsed JSON that this module
    cannot read (stored items inside a quarantined stream record). Used to index failed records by identity,
    so `forget` finds them whatever the encoding.
    """
    found: set[str] = set()
    pending: list[tuple[bytes, int]] = [(raw, 0)]
    while pending:
        data, depth = pending.pop()
        if depth <= 4:
            found |= _layer_identities(data, depth, pending, decode_more)
    return found


def _layer_identities(
    data: bytes, depth: int, pending: list[tuple[bytes, int]], decode_more: Callable[[Any], Iterable[str]] | None
) -> set[str]:
    """The identities one layer of the input names; the layers inside it (inflated, base64-decoded) go to
    `pending`."""
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(zlib.error, EOFError):
            pending.append((zlib.decompressobj(wbits=47).decompress(data, _MAX_INFLATED), depth + 1))
        return set()
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, (dict, list)):
        found = _json_identities(parsed)
        return found | set(decode_more(parsed)) if decode_more is not None else found
    return _text_identities(data.decode("utf-8", "replace").strip(), depth, pending)


def _text_identities(text: str, depth: int, pending: list[tuple[bytes, int]]) -> set[str]:
    if text[:1] in ("{", "["):  # JSON cut short or broken: its identity members still name someone
        return _members_in_text(text)
    if "=" in text.rstrip("=") or "&" in text:
        found: set[str] = set()
        for name, value in parse_qsl(text, keep_blank_values=False):
            if name == "data":
                pending.append((_lenient_base64(value), depth + 1))
            else:
                found |= _field_identities(name, value)
        return found
    if text:
        pending.append((_lenient_base64(text), depth + 1))
    return set()


_MEMBER = re.compile(r'"(userId|user_id|anonymousId|anonymous_id|previousId|previous_id)"\s*:\s*("(?:[^"\\]|\\.)*")')


def _members_in_text(text: str) -> set[str]:
    found: set[str] = set()
    for name, quoted in _MEMBER.findall(text):
        with contextlib.suppress(ValueError):
            found |= _field_identities(name, json.loads(quoted))
    return found


def _lenient_base64(text: str) -> bytes:
    cleaned = text.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _field_identities(name: str, value: Any) -> set[str]:
    if not isinstance(value, str) or not value:
        return set()
    if name in _USER_FIELDS:
        return {f"u:{value}"}
    if name in _ANONYMOUS_FIELDS:
        return {f"a:{value}"}
    if name in _EITHER_FIELDS:
        return {f"u:{value}", f"a:{value}"}
    return set()


def _json_identities(value: Any) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:  # iterative: refused input may nest deeper than the stack allows
        node = stack.pop()
        if isinstance(node, dict):
            for name, item in node.items():
                found |= _field_identities(name, item)
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
    return found
