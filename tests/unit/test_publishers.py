"""Audience publishers: the outbox file and the signed webhook."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.events import CallType, TrackingEvent
from shared.domain.webhooks import verify_webhook
from shared.publishers import OutboxFile, Publishers, WebhookPublisher

AT = datetime(2026, 5, 1, tzinfo=UTC)
EVENT = TrackingEvent(
    source_id="footfall",
    message_id="aud:x:u:c:in:t",
    type=CallType.TRACK,
    timestamp=AT,
    received_at=AT,
    user_id="c",
    event="Audience Entered",
    properties={"audience_key": "x"},
)


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Any:
    _Receiver.received, _Receiver.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, _Receiver
    server.shutdown()


def test_the_webhook_gets_a_signed_batch_a_campaign_tool_can_verify(receiver, tmp_path):
    server, handler = receiver
    url = f"http://127.0.0.1:{server.server_port}/hook"
    Publishers(OutboxFile(tmp_path / "outbox.jsonl"), WebhookPublisher(url, "s3cret")).publish([EVENT])
    ((headers, body),) = handler.received
    verify_webhook(body, headers, ["s3cret"], now=datetime.now(UTC))  # raises if not signed right
    assert json.loads(body)["batch"][0]["messageId"] == "aud:x:u:c:in:t"
    assert json.loads((tmp_path / "outbox.jsonl").read_text())["event"] == "Audience Entered"


def test_a_failing_webhook_raises_so_the_stream_retries(receiver):
    server, handler = receiver
    handler.status = 500
    with pytest.raises(Exception, match="500"):
        WebhookPublisher(f"http://127.0.0.1:{server.server_port}/hook", "s").publish([EVENT])
