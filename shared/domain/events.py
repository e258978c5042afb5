"""Segment-spec tracking events: validation, normalisation, clock-skew correction and size limits.

Business rules (from the Segment HTTP API spec):
- six call types; one of `userId`/`anonymousId` is required; `track` needs `event`, `group` needs `groupId`,
  `alias` needs `userId` and `previousId`;
- 32 KB per event, 500 KB and 2,500 events per batch;
- `timestamp = receivedAt - (sentAt - originalTimestamp)` when the client sent `sentAt` (clock-skew correction);
- a missing `messageId` is assigned, so every stored event has one.

Limits Footfall adds so that nothing an attacker sends can break storage or processing later:
- ids (`userId`, `anonymousId`, `messageId`, `groupId`, `previousId`) and names at most 256 bytes of UTF-8
  (they become parts of DynamoDB keys: sort keys hold at most 1,024 bytes);
- JSON nested at most 32 levels deep (checked without recursion, before anything else walks the event);
- numbers finite and within DynamoDB's range (|x| < 1e38); money (`revenue`, `total`, `price`, …, as a number
  or a numeric string) within ±1e15.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from shared.domain.errors import InvalidEventError, PayloadTooLargeError

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
# Ids end up inside DynamoDB keys (partition key ≤ 2,048 bytes, sort key ≤ 1,024 bytes): limited in bytes.
MAX_ID_BYTES = 256
MAX_NAME_BYTES = 256
MAX_DEPTH = 32
MAX_NUMBER = 10**38  # DynamoDB's number range; our counters and profiles must be able to hold any number we accept
MAX_MONEY = Decimal(10**15)
MONEY_KEYS = frozenset({"revenue", "total", "price", "value", "subtotal", "tax", "shipping", "discount"})

OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


class CallType(StrEnum):
    """The six Segment calls."""

    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """One validated, normalised event as Footfall stores it."""

    source_id: str
    message_id: str
    type: CallType
    timestamp: datetime
    received_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    event: str | None = None
    name: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    integrations: Mapping[str, Any] = field(default_factory=dict)
    trusted: bool = False
    """Sent with the key of a `server` source (not part of the Segment payload)."""

    @property
    def identity(self) -> tuple[str, str]:
        """The identity the event is filed under: `("u", userId)` when known, else `("a", anonymousId)`."""
        if self.user_id is not None:
            return ("u", self.user_id)
        assert self.anonymous_id is not None  # guaranteed by parse_event
        return ("a", self.anonymous_id)

    def to_payload(self) -> dict[str, Any]:
        """The event as Segment-shaped JSON (camelCase), the form it is stored and published in."""
        payload: dict[str, Any] = {
            "type": str(self.type),
            "messageId": self.message_id,
            "timestamp": format_timestamp(self.timestamp),
            "receivedAt": format_timestamp(self.received_at),
        }
        optional = {
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "originalTimestamp": format_timestamp(self.original_timestamp) if self.original_timestamp else None,
            "sentAt": format_timestamp(self.sent_at) if self.sent_at else None,
            "event": self.event,
            "name": self.name,
            "groupId": self.group_id,
            "previousId": self.previous_id,
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        for key in OBJECT_FIELDS:
            value = getattr(self, key)
            if value:
                payload[key] = dict(value)
        return payload


def event_from_payload(payload: Mapping[str, Any], *, source_id: str, trusted: bool = False) -> TrackingEvent:
    """Rebuild a stored event from `TrackingEvent.to_payload` output (no validation: it was validated on entry)."""

    def optional_time(key: str) -> datetime | None:
        value = payload.get(key)
        return parse_timestamp(value, key) if value else None

    return TrackingEvent(
        source_id=source_id,
        message_id=payload["messageId"],
        type=CallType(payload["type"]),
        timestamp=parse_timestamp(payload["timestamp"], "timestamp"),
        received_at=parse_timestamp(payload["receivedAt"], "receivedAt"),
        user_id=payload.get("userId"),
        anonymous_id=payload.get("anonymousId"),
        original_timestamp=optional_time("originalTimestamp"),
        sent_at=optional_time("sentAt"),
        event=payload.get("event"),
        name=payload.get("name"),
        group_id=payload.get("groupId"),
        previous_id=payload.get("previousId"),
        **{key: payload.get(key) or {} for key in OBJECT_FIELDS},
        trusted=trusted,
    )


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event of a request that was not accepted, with the reason and the raw input."""

    index: int
    reason: str
    raw: Any
    message_id: str | None = None
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class BatchEnvelope:
    """Request-level fields of `/v1/batch` that apply to every event in it."""

    sent_at: datetime | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    integrations: Mapping[str, Any] = field(default_factory=dict)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a `Z`, the one time format Footfall writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: Any, field_name: str) -> datetime:
    """Parse an ISO-8601 string; a time without an offset is taken as UTC.

    Raises:
        InvalidEventError: naming the field, when the value is not an ISO-8601 date-time string.
    """
    if not isinstance(value, str):
        raise InvalidEventError(f"{field_name} must be an ISO-8601 date-time string", field=field_name)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidEventError(
            f"{field_name} is not an ISO-8601 date-time: {value[:40]!r}", field=field_name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidEventError(f"{field_name} is out of range: {value[:40]!r}", field=field_name) from None


def corrected_timestamp(
    *, received_at: datetime, sent_at: datetime | None, original_timestamp: datetime | None
) -> datetime:
    """Business rule: correct the client's clock by the skew between its `sentAt` and our `receivedAt`."""
    if original_timestamp is None:
        return received_at
    if sent_at is None:
        return original_timestamp
    try:
        return received_at - (sent_at - original_timestamp)
    except OverflowError:
        return original_timestamp


def encoded_size(raw: Any) -> int:
    """Bytes of the compact JSON form of `raw`: what the size limits are measured on."""
    return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def parse_event(
    raw: Any,
    *,
    source_id: str,
    received_at: datetime,
    new_id: Callable[[], str],
    call_type: CallType | None = None,
    envelope: BatchEnvelope | None = None,
) -> TrackingEvent:
    """Validate one Segment call and normalise it.

    Args:
        raw: the decoded JSON of the call.
        source_id: the authenticated source.
        received_at: when the collector received the request (UTC).
        new_id: makes a `messageId` for calls that came without one.
        call_type: the route's type (`/v1/track` → track); `None` for batch items, which carry `type`.
        envelope: request-level `sentAt`/`context`/`integrations` of a batch.

    Raises:
        InvalidEventError: with a reason naming the field.
        PayloadTooLargeError: when the event is over 32 KB.
    """
    if not isinstance(raw, dict):
        raise InvalidEventError("event must be a JSON object")
    check_json_value(raw)
    if encoded_size(raw) > MAX_EVENT_BYTES:
        raise PayloadTooLargeError(f"event is larger than {MAX_EVENT_BYTES // 1024} KB")
    envelope = envelope or BatchEnvelope()
    kind = call_type or _call_type(raw.get("type"))
    objects: dict[str, Any] = {key: _object(raw, key) for key in OBJECT_FIELDS}
    for key in ("context", "integrations"):
        inherited = getattr(envelope, key)
        if inherited:
            objects[key] = {**inherited, **objects[key]}
    if kind is CallType.IDENTIFY and not objects["traits"] and isinstance(objects["context"].get("traits"), dict):
        # RudderStack's SDKs send an identify's traits in context.traits only (Segment's send both).
        objects["traits"] = dict(objects["context"]["traits"])

    user_id = _identifier(raw, "userId")
    anonymous_id = _identifier(raw, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEventError("userId or anonymousId is required", field="userId")
    # An empty messageId counts as none (as an empty userId does): one is assigned.
    message_id = _string(raw, "messageId", MAX_ID_BYTES) if raw.get("messageId") != "" else None
    original = parse_timestamp(raw["timestamp"], "timestamp") if raw.get("timestamp") is not None else None
    sent_at = parse_timestamp(raw["sentAt"], "sentAt") if raw.get("sentAt") is not None else envelope.sent_at
    event = _string(raw, "event", MAX_NAME_BYTES)
    group_id = _identifier(raw, "groupId")
    previous_id = _identifier(raw, "previousId")
    _require_for_type(kind, event=event, group_id=group_id, previous_id=previous_id, user_id=user_id)

    return TrackingEvent(
        source_id=source_id,
        message_id=message_id or new_id(),
        type=kind,
        timestamp=corrected_timestamp(received_at=received_at, sent_at=sent_at, original_timestamp=original),
        received_at=received_at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        original_timestamp=original,
        sent_at=sent_at,
        event=event if kind is CallType.TRACK else None,
        name=_string(raw, "name", MAX_NAME_BYTES) if kind in (CallType.PAGE, CallType.SCREEN) else None,
        group_id=group_id if kind is CallType.GROUP else None,
        previous_id=previous_id if kind is CallType.ALIAS else None,
        **objects,
    )


def parse_envelope(body: Mapping[str, Any]) -> BatchEnvelope:
    """Read the request-level fields of a `/v1/batch` body.

    Raises:
        InvalidEventError: when one of them has the wrong type.
    """
    check_json_value({key: body.get(key) for key in ("context", "integrations")})
    sent_at = parse_timestamp(body["sentAt"], "sentAt") if body.get("sentAt") is not None else None
    return BatchEnvelope(sent_at=sent_at, context=_object(body, "context"), integrations=_object(body, "integrations"))


def batch_items(body: Any) -> list[Any]:
    """The `batch` array of a `/v1/batch` body.

    Raises:
        InvalidEventError: when the body is not an object with a `batch` array.
        PayloadTooLargeError: over 2,500 events.
    """
    if not isinstance(body, dict):
        raise InvalidEventError("body must be a JSON object")
    items = body.get("batch")
    if not isinstance(items, list):
        raise InvalidEventError("batch must be an array of events", field="batch")
    if len(items) > MAX_BATCH_EVENTS:
        raise PayloadTooLargeError(f"batch has {len(items)} events; the limit is {MAX_BATCH_EVENTS}")
    return items


def json_depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON value nests deeper than `limit` objects/arrays (iterative: safe on any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def check_json_value(raw: Any) -> None:
    """Business rule: nesting and numbers within the limits in this module's docstring.

    Raises:
        InvalidEventError: naming the field and the limit.
    """
    if json_depth_exceeds(raw):
        raise InvalidEventError(f"the event is nested deeper than {MAX_DEPTH} levels")
    stack: list[Any] = [raw]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(value, (dict, list)):
                stack.append(value)
            elif isinstance(value, float) and not math.isfinite(value):
                raise InvalidEventError(f"{key} is not a finite number", field=str(key))
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= MAX_NUMBER:
                raise InvalidEventError(f"{key} is out of range (|x| < 1e38)", field=str(key))
            elif key in MONEY_KEYS and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                _check_money(str(key), value)


def _check_money(key: str, value: int | float | str) -> None:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return  # not a number: not money (a "free" price label), counted as no amount
    if not amount.is_finite() or abs(amount) > MAX_MONEY:
        raise InvalidEventError(f"{key} is out of range (money within ±1e15)", field=key)


def _call_type(value: Any) -> CallType:
    try:
        return CallType(value)
    except ValueError:
        allowed = ", ".join(t.value for t in CallType)
        raise InvalidEventError(f"type must be one of {allowed}", field="type") from None


def _object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEventError(f"{key} must be a JSON object", field=key)
    return value


def _identifier(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEventError(f"{key} must be a string", field=key)
    text = _encodable(str(value), key)
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidEventError(f"{key} is longer than {MAX_ID_BYTES} bytes (UTF-8)", field=key)
    return text


def _string(raw: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"{key} must be a string", field=key)
    if not value.strip():
        raise InvalidEventError(f"{key} must not be empty", field=key)
    text = _encodable(value, key)
    if len(text.encode("utf-8")) > limit:
        raise InvalidEventError(f"{key} is longer than {limit} bytes (UTF-8)", field=key)
    return text


def _encodable(text: str, key: str) -> str:
    # JSON allows lone UTF-16 surrogates ("\ud800"); they cannot be stored as UTF-8, so a key holding one is refused.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventError(f"{key} contains an invalid unicode character", field=key) from None
    return text


def _require_for_type(
    kind: CallType, *, event: str | None, group_id: str | None, previous_id: str | None, user_id: str | None
) -> None:
    if kind is CallType.TRACK and event is None:
        raise InvalidEventError("event is required for track", field="event")
    if kind is CallType.GROUP and group_id is None:
        raise InvalidEventError("groupId is required for group", field="groupId")
    if kind is CallType.ALIAS:
        if previous_id is None:
            raise InvalidEventError("previousId is required for alias", field="previousId")
        if user_id is None:
            raise InvalidEventError("userId is required for alias", field="userId")
