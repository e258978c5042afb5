"""Where `Audience Entered/Exited` events go for campaign tools: a local JSON-lines outbox, or EventBridge."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.domain.events import TrackingEvent

DETAIL_TYPE = "footfall.audience"


class OutboxFile:
    """Appends one JSON line per event to a file (fsync'd: a published event is not lost)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()

    def publish(self, events: Sequence[TrackingEvent]) -> None:
        """Append the events (a redelivery may append one again: consumers de-duplicate by messageId)."""
        lines = "".join(json.dumps(event.to_payload(), separators=(",", ":")) + "\n" for event in events)
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())


class EventBridgePublisher:
    """Puts the events on an EventBridge bus (source `footfall`, detail type `footfall.audience`)."""

    def __init__(self, bus: str, client: Any = None) -> None:
        self.bus = bus
        self._client = client

    def publish(self, events: Sequence[TrackingEvent]) -> None:
        """Send in groups of 10 (the PutEvents limit); raise if any entry failed, so the stream retries."""
        import boto3

        client = self._client or boto3.client("events")
        for start in range(0, len(events), 10):
            entries = [
                {
                    "Source": "footfall",
                    "DetailType": DETAIL_TYPE,
                    "EventBusName": self.bus,
                    "Detail": json.dumps(event.to_payload()),
                }
                for event in events[start : start + 10]
            ]
            answer = client.put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                raise RuntimeError(f"{answer['FailedEntryCount']} audience events were not accepted by EventBridge")
