"""Failed events: everything the collector refused, kept with the raw input and the reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

MAX_RAW_BYTES = 64 * 1024


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
    """Build a failed-event record, cutting oversize raw input to `MAX_RAW_BYTES` (and saying so)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return FailedEvent(
        id=failure_id,
        received_at=received_at,
        route=route,
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
