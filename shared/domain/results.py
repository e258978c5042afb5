"""What the collector answers for each event of a request."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """Per-event outcome of a request."""

    ACCEPTED = "accepted"
    """Stored now."""
    DUPLICATE = "duplicate"
    """Already stored (same source and messageId): stored and counted once."""
    REJECTED = "rejected"
    """Invalid; kept in the failed-events store with the reason."""
    SUPPRESSED = "suppressed"
    """Its user or anonymous id was erased on request (`footfall forget`): not stored; do not send it again."""
    NOT_STORED = "not_stored"
    """Valid, but storage did not take it (throttled past the retries): the client should retry."""


@dataclass(frozen=True, slots=True)
class EventResult:
    """The answer for one event of a request."""

    index: int
    outcome: Outcome
    message_id: str | None = None
    reason: str | None = None
    too_large: bool = False
    """Rejected for size (answered 413 when nothing else in the request was valid)."""

    def to_json(self) -> dict[str, object]:
        """JSON form used in HTTP answers."""
        body: dict[str, object] = {"index": self.index, "status": str(self.outcome)}
        if self.message_id is not None:
            body["messageId"] = self.message_id
        if self.reason is not None:
            body["reason"] = self.reason
        return body
