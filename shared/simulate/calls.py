"""What the simulator produces and sends: one call (`SimEvent`) by one of three routes, and its one error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SimulatorError(Exception):
    """The simulator cannot go on (collector unreachable, write key refused, no link secret)."""


class Route(StrEnum):
    """How an event reaches the collector."""

    BATCH = "batch"
    """In a `POST /v1/batch` (website and server calls)."""
    PIXEL = "pixel"
    """`GET /v1/pixel/track?data=…` (an e-mail open)."""
    CLICK = "click"
    """`GET /v1/r?…` on a signed link (an e-mail click); the collector answers 302 to `target`."""


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated call, ready to send."""

    at: datetime
    route: Route
    payload: dict[str, Any]
    """The Segment call (`type` only on batch items); `timestamp` is `at`."""
    person: str
    """Which simulated person did it (one person should become one customer)."""
    target: str | None = None
    """Where a click's link goes."""
