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


class WebhookPublisher:
    """POSTs the events as a JSON batch to a URL, signed like inbound webhooks (HMAC-SHA256 of `timestamp.body`)."""

    def __init__(self, url: str, secret: str, *, timeout: float = 5.0) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout

    def publish(self, events: Sequence[TrackingEvent]) -> None:
        """One request per call; a non-2xx answer raises, so the stream delivers the events again."""
        import time
        import urllib.request

        from shared.domain.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook

        body = json.dumps({"batch": [event.to_payload() for event in events]}, separators=(",", ":")).encode()
        stamp = int(time.time())
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign_webhook(body, self.secret, stamp),
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"audience webhook answered {answer.status}")


class Publishers:
    """Several destinations at once (the local outbox file and a webhook)."""

    def __init__(self, *targets: OutboxFile | WebhookPublisher | EventBridgePublisher) -> None:
        self.targets = targets

    def publish(self, events: Sequence[TrackingEvent]) -> None:
        """Publish to each; the first failure raises (and the stream retries: consumers de-duplicate)."""
        for target in self.targets:
            target.publish(events)


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
