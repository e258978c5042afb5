"""Sending simulated calls through the collector's HTTP routes: keep-alive connections, batching, pacing, retries.

`POST /v1/batch` (up to 100 events, Basic auth with the write key), `GET /v1/pixel/track?data=<base64 JSON>` for
e-mail opens, and `GET /v1/r?…` on links signed with the source's link secret for e-mail clicks.
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared.domain import links
from shared.simulate.calls import Route, SimEvent, SimulatorError

BATCH_SIZE = 100
MAX_BATCH_WAIT = 1.0
"""Seconds a paced event may wait for its batch to fill before the batch goes out anyway."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to send."""

    url: str
    """The collector's base URL."""
    write_key: str
    source_id: str
    link_secret: str
    """The source's newest link secret, to sign click links."""


def click_link(target: Target, payload: Mapping[str, Any], destination: str) -> str:
    """A signed `/v1/r` link for a click, made as `footfall links sign` makes it, plus the click's message id and
    time: the e-mail tool puts an id per recipient and link in it, so a second click is the same message."""
    params = links.click_params(
        source_id=target.source_id,
        target=destination,
        secret=target.link_secret,
        event=payload["event"],
        user_id=payload.get("userId"),
        anonymous_id=payload.get("anonymousId"),
        properties=payload.get("properties"),
        message_id=payload["messageId"],
        timestamp=payload["timestamp"],
    )
    return links.click_url(target.url, params)


def pixel_path(target: Target, payload: Mapping[str, Any]) -> str:
    """`/v1/pixel/track?writeKey=…&data=<base64url JSON>` for an e-mail open."""
    data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return "/v1/pixel/track?" + urlencode({"writeKey": target.write_key, "data": data})


@dataclass
class Stats:
    """What the collector answered so far."""

    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    not_stored: int = 0
    """Answered suppressed or not_stored (never expected from simulated data)."""
    opens: int = 0
    """Pixel requests answered with the GIF (an open is recorded, or was already)."""
    clicks: int = 0
    """Click links answered 302 (recorded, or already)."""
    requests: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    _mark: tuple[float, int] = (0.0, 0)

    @property
    def rate(self) -> float:
        """Events sent per second since the start."""
        return self.sent / max(time.monotonic() - self.started, 1e-6)

    def line(self, *, recent: bool = False) -> str:
        """One progress line; `recent`: the rate since the previous recent line (else since the start)."""
        rate = self.rate
        if recent:
            now = time.monotonic()
            since, sent = self._mark if self._mark[0] else (self.started, 0)
            rate, self._mark = (self.sent - sent) / max(now - since, 1e-6), (now, self.sent)
        return (
            f"{self.sent:,} events sent ({rate:,.0f}/s): {self.accepted:,} accepted, "
            f"{self.duplicate:,} duplicate, {self.rejected:,} rejected; {self.opens:,} e-mail opens (pixel), "
            f"{self.clicks:,} clicks (302)"
        )

    def to_json(self) -> dict[str, Any]:
        """Machine-readable figures."""
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "not_stored": self.not_stored,
            "opens": self.opens,
            "clicks": self.clicks,
            "requests": self.requests,
            "seconds": round(time.monotonic() - self.started, 3),
            "events_per_second": round(self.rate, 1),
            "reasons": dict(self.reasons),
        }


class _Retry(Exception):
    def __init__(self, after: float) -> None:
        super().__init__(f"retry after {after} s")
        self.after = after


class CollectorClient:
    """One keep-alive HTTP connection to the collector (not thread-safe: one per sending thread)."""

    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimulatorError(f"collector URL must be http(s)://host[:port], not {target.url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._auth = "Basic " + base64.b64encode(f"{target.write_key}:".encode()).decode()

    def close(self) -> None:
        """Close the connection (a new one is opened on the next request)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request; a connection the server closed meanwhile is reopened once.

        Raises:
            OSError, http.client.HTTPException: the collector cannot be reached.
        """
        headers = {"Authorization": self._auth}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._connection is None:
                kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._connection = kind(self._host, self._port, timeout=self._timeout)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                answer = self._connection.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if answer.will_close:
                self.close()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data
        raise AssertionError("unreachable")

    def batch(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`POST /v1/batch`; the per-event results."""
        body = json.dumps({"batch": payloads}, separators=(",", ":")).encode()
        status, headers, data = self.request("POST", "/v1/batch", body)
        if status in (429, 503):
            raise _Retry(float(headers.get("retry-after", "1") or 1))
        if status == 401:
            raise SimulatorError("the collector refused the write key (401)")
        try:
            results = json.loads(data)["results"]
        except (ValueError, KeyError, TypeError):
            raise SimulatorError(f"the collector answered {status}: {data[:200]!r}") from None
        return list(results)

    def pixel(self, payload: Mapping[str, Any]) -> int:
        """`GET /v1/pixel/track`; the status (200 with the GIF)."""
        status, _headers, _data = self.request("GET", pixel_path(self.target, payload))
        if status == 503:
            raise _Retry(1.0)
        return status

    def click(self, payload: Mapping[str, Any], destination: str) -> tuple[int, str]:
        """`GET /v1/r?…` on a signed link; the status and the redirect target (or the refusal's reason)."""
        link = click_link(self.target, payload, destination)
        status, headers, data = self.request("GET", link[len(self.target.url.rstrip("/")) :])
        if status == 302:
            return status, headers.get("location", "")
        if status in (429, 503):
            raise _Retry(1.0)
        try:
            reason = str(json.loads(data).get("error"))
        except (ValueError, AttributeError):
            reason = data[:200].decode("utf-8", "replace")
        return status, reason


class _Sender:
    """Batches events and hands requests to a few connections, each in its own thread.

    Requests may complete out of order across connections, as they do from real browsers and e-mail clients;
    every event carries its own timestamp, and processing gives the same result in any order.
    """

    ATTEMPTS = 30

    def __init__(
        self,
        target: Target,
        stats: Stats,
        stop: threading.Event,
        on_rejection: Callable[[str], None] | None,
        connections: int,
    ) -> None:
        self.target, self.stats, self.stop, self.on_rejection = target, stats, stop, on_rejection
        self.pending: list[dict[str, Any]] = []
        self.pending_since = 0.0
        self.lock = threading.Lock()
        self.error: SimulatorError | None = None
        self.requests: queue.Queue[tuple[Route, Any, str | None] | None] = queue.Queue(maxsize=2 * connections)
        self.clients = [CollectorClient(target) for _ in range(max(1, connections))]
        self.threads = [
            threading.Thread(target=self._work, args=(client,), name=f"simulate-send-{n}", daemon=True)
            for n, client in enumerate(self.clients)
        ]
        for thread in self.threads:
            thread.start()

    # --- the sending loop's side --------------------------------------------------------------------------------

    def add(self, event: SimEvent) -> None:
        with self.lock:
            self.stats.sent += 1
        if event.route is Route.BATCH:
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append(event.payload)
            if len(self.pending) >= BATCH_SIZE:
                self.flush()
        else:
            self._put((event.route, event.payload, event.target))

    def flush(self) -> None:
        if self.pending:
            payloads, self.pending = self.pending, []
            self._put((Route.BATCH, payloads, None))

    def batch_age(self) -> float:
        return time.monotonic() - self.pending_since if self.pending else 0.0

    def _put(self, request: tuple[Route, Any, str | None]) -> None:
        while self.error is None:
            try:
                self.requests.put(request, timeout=0.2)
                return
            except queue.Full:
                continue
        raise self.error

    def close(self) -> None:
        """Send what is batched, wait for every request to be answered, close the connections."""
        try:
            self.flush()
        finally:
            for _ in self.threads:
                self.requests.put(None)
            for thread in self.threads:
                thread.join()
            for client in self.clients:
                client.close()
        if self.error is not None:
            raise self.error

    # --- the connections' side ----------------------------------------------------------------------------------

    def _work(self, client: CollectorClient) -> None:
        while (request := self.requests.get()) is not None:
            if self.error is not None:
                continue  # drain: the sending loop is about to stop
            try:
                self._handle(client, *request)
            except SimulatorError as exc:
                self.error = exc
            except Exception as exc:  # a bug must stop the run, not leave it waiting for a dead thread
                self.error = SimulatorError(f"sending failed: {exc!r}")

    def _handle(self, client: CollectorClient, route: Route, payload: Any, destination: str | None) -> None:
        if route is Route.BATCH:
            self._batch(client, payload)
        elif route is Route.PIXEL:
            status = self._call(lambda: client.pixel(payload))
            if status == 200:
                self._count("opens")
            else:
                self._reject(f"pixel answered {status}")
        else:
            status, detail = self._call(lambda: client.click(payload, destination or ""))
            if status == 302 and detail == destination:
                self._count("clicks")
            else:
                self._reject(f"click answered {status}: {detail}")

    def _batch(self, client: CollectorClient, payloads: list[dict[str, Any]]) -> None:
        for result in self._call(lambda: client.batch(payloads)):
            status = result.get("status")
            if status in ("accepted", "duplicate"):
                self._count(str(status))
            elif status == "rejected":
                self._reject(str(result.get("reason")))
            else:
                self._count("not_stored")

    def _count(self, name: str) -> None:
        with self.lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _reject(self, reason: str) -> None:
        with self.lock:
            self.stats.rejected += 1
            first = self.stats.reasons[reason] == 0
            self.stats.reasons[reason] += 1
        if first and self.on_rejection is not None:
            self.on_rejection(reason)

    def _call(self, call: Callable[[], Any]) -> Any:
        # 503 means "not stored, send again" (what was stored is then answered duplicate); a refused connection
        # may be a collector worker restarting. Both are retried for a while; a stop request ends the waiting.
        error: BaseException | None = None
        for _ in range(self.ATTEMPTS):
            try:
                with self.lock:
                    self.stats.requests += 1
                return call()
            except _Retry as retry:
                error, pause = retry, retry.after
            except (OSError, http.client.HTTPException) as exc:
                error, pause = exc, 1.0
            if self.stop.wait(pause):
                break
        raise SimulatorError(f"the collector at {self.target.url} is not answering: {error}")


def send(
    events: Iterable[SimEvent],
    target: Target,
    *,
    rate: float = 0.0,
    connections: int = 2,
    stop: threading.Event | None = None,
    stats: Stats | None = None,
    on_progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    on_rejection: Callable[[str], None] | None = None,
) -> Stats:
    """Send `events`: batch calls in `/v1/batch` requests of up to 100, opens by pixel, clicks by signed link.

    Args:
        rate: events per second (0: as fast as the collector answers). Paced events wait at most
            `MAX_BATCH_WAIT` for their batch to fill. Events are taken from `events` only when they are due,
            so a live generator stamps them with the time they are sent.
        connections: keep-alive connections used at once (the local stack runs 2 collector workers).
        stop: set it to stop early (what is batched already is still sent).
        on_progress: called with the figures every `progress_every` seconds.
        on_rejection: called once per new rejection reason.

    Raises:
        SimulatorError: the collector refused the write key or stopped answering.
    """
    stop = stop or threading.Event()
    stats = stats or Stats()
    sender = _Sender(target, stats, stop, on_rejection, connections)
    started = time.monotonic()
    last_progress = started
    taken = 0
    source = iter(events)
    try:
        while not stop.is_set():
            if rate > 0 and _wait_for_slot(sender, started + taken / rate, stop):
                break
            event = next(source, None)
            if event is None:
                break
            taken += 1
            sender.add(event)
            if on_progress is not None and time.monotonic() - last_progress >= progress_every:
                last_progress = time.monotonic()
                on_progress(stats)
    finally:
        sender.close()
    return stats


def _wait_for_slot(sender: _Sender, due: float, stop: threading.Event) -> bool:
    """Sleep until `due`, sending a batch that has waited long enough meanwhile; True when asked to stop."""
    while True:
        if sender.pending and sender.batch_age() >= MAX_BATCH_WAIT:
            sender.flush()
        wait = due - time.monotonic()
        if wait <= 0:
            return False
        if sender.pending:
            wait = min(wait, MAX_BATCH_WAIT - sender.batch_age())
        if stop.wait(max(wait, 0.0)):
            return True
