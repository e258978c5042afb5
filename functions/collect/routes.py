"""The collector's routes as plain functions of a request: Segment API, pixel, click redirect, webhooks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from shared.domain import links, webhooks
from shared.domain.errors import AuthenticationError, InvalidEventError, TrackingError
from shared.domain.events import CallType
from shared.domain.pixel import TRANSPARENT_GIF, strict_json
from shared.domain.sources import Source
from shared.domain.trackers import ABBREVIATED_CALLS
from shared.domain.wire import basic_auth_user, decode_body
from shared.ports import StorageError
from shared.services import requests
from shared.services.collect import Collector, IngestReport

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What browsers may send cross-origin: analytics.js (X-Retry-Count), RudderStack JS (AnonymousId, SentAt, Rsa-*),
# Snowplow (SP-Anonymous). The infra template's CorsConfiguration lists the same.
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Encoding",
    "X-Retry-Count",
    "AnonymousId",
    "SentAt",
    "Rsa-Recovered",
    "Rsa-Retry-Attempt",
    "Rsa-Since-Last-Attempt",
    "Rsa-Since-First-Attempt",
    "Rsa-Retry-Reason",
    "SP-Anonymous",
)
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}


@dataclass(frozen=True)
class HttpRequest:
    """What the routes need of an HTTP request (API Gateway v2 or the local bridge)."""

    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    raw_query: str = ""
    body: str | None = None
    is_base64: bool = False


@dataclass
class HttpReply:
    """An answer: JSON `body` (dict) or raw bytes, status and headers."""

    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class RequestState:
    """What a route learned before it failed: which source, for the failed-event record."""

    source_id: str | None = None


# Error codes in answers, next to the human reason: SDKs (RudderStack's) read `code` and `message`.
ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def _error_fields(status: int, reason: str) -> dict[str, Any]:
    return {"success": False, "error": reason, "code": ERROR_CODES.get(status, "error"), "message": reason}


def report_reply(report: IngestReport) -> HttpReply:
    """200 when every valid event is stored, 503 (retry) when one was not, 400/413 when nothing was valid."""
    results = {"results": [r.to_json() for r in report.results]}
    if report.not_stored:
        reason = "some events could not be stored; retry the request (stored events are de-duplicated)"
        return HttpReply(503, {**_error_fields(503, reason), **results}, {"Retry-After": "1"})
    if report.all_rejected:
        status = 413 if report.all_too_large else 400
        only = report.results[0].reason if len(report.results) == 1 else "every event was rejected"
        return HttpReply(status, {**_error_fields(status, only or ""), **results})
    return HttpReply(200, {"success": True, **results})


def _json_body(request: HttpRequest) -> Any:
    data = decode_body(
        request.body, is_base64=request.is_base64, content_encoding=request.headers.get("content-encoding")
    )
    if not data.strip():
        raise InvalidEventError("body is empty")
    return strict_json(data)


def _authenticate(collector: Collector, write_key: Any, state: RequestState) -> Source:
    source = collector.authenticate(write_key if isinstance(write_key, str) else None)
    state.source_id = source.id
    return source


def segment_call(
    collector: Collector, request: HttpRequest, call: str, *, now: datetime, state: RequestState
) -> HttpReply:
    """`POST /v1/{track,identify,page,screen,group,alias,batch}`, and analytics.js's `/v1/{t,i,p,s,g,a,b}`."""
    call = ABBREVIATED_CALLS.get(call, call)
    if call != "batch" and call not in CallType.__members__.values():
        raise InvalidEventError(f"unknown call /v1/{call[:40]}")
    header_key = basic_auth_user(request.headers.get("authorization"))
    # With a Basic-auth key the caller is checked before its body is even parsed.
    source = _authenticate(collector, header_key, state) if header_key else None
    body = _json_body(request)
    if source is None:
        source = _authenticate(collector, body.get("writeKey") if isinstance(body, dict) else None, state)
    report = collector.ingest_calls(source, requests.segment_calls(call, body), route=f"/v1/{call}", received_at=now)
    return report_reply(report)


def pixel(collector: Collector, request: HttpRequest, call: str, *, now: datetime) -> HttpReply:
    """`GET /v1/pixel/{track,page}`: always the GIF; 200 unless a valid event could not be stored."""
    gif = HttpReply(200, TRANSPARENT_GIF, dict(NO_CACHE), "image/gif")
    route = f"/v1/pixel/{call[:20]}"
    source_id = None
    try:
        calls, key = requests.pixel_calls(call, request.raw_query)
        source = collector.authenticate(key if isinstance(key, str) else None)
        source_id = source.id
        report = collector.ingest_calls(source, calls, route=route, received_at=now, failure_status=200)
    except TrackingError as exc:
        collector.record_failure(
            route=route, reason=str(exc), status=200, raw=request.raw_query, received_at=now, source_id=source_id
        )
        return gif
    if report.not_stored:
        gif.status = 503
    return gif


def click(collector: Collector, request: HttpRequest, *, now: datetime, state: RequestState) -> HttpReply:
    """`GET /v1/r`: record the click and redirect, only for links Footfall signed."""
    params = links.unique_query(request.raw_query)
    source = collector.source(params.get(links.SOURCE_PARAM, ""))
    if source is None:
        raise InvalidEventError("link refused: unknown source")
    state.source_id = source.id
    try:
        target = _verified(collector, source, lambda s: links.verify_click(params, s.link_secrets, now=now))
    except AuthenticationError as exc:
        raise InvalidEventError(f"link refused: {exc}") from None
    calls = requests.click_calls(params, target)
    try:
        report = collector.ingest_calls(source, calls, route=requests.CLICK_ROUTE, received_at=now)
        stored = not report.not_stored
    except StorageError:
        stored = False
    if not stored:
        # The person clicking must reach the page: the click is reported as lost, the redirect still happens.
        logger.error("click not stored", extra={"source_id": source.id})
    return HttpReply(302, {}, {"Location": target, **NO_CACHE})


def _verified(collector: Collector, source: Source, verify: Callable[[Source], T]) -> T:
    """Run a signature check; on failure retry once with the source read fresh (its secret may have rotated)."""
    try:
        return verify(source)
    except AuthenticationError:
        fresh = collector.source(source.id, fresh=True)
        if fresh is None or fresh == source:
            raise
        return verify(fresh)


def webhook(
    collector: Collector, request: HttpRequest, source_id: str, *, now: datetime, state: RequestState
) -> HttpReply:
    """`POST /v1/webhooks/{source}`: signed (HMAC-SHA256 over `timestamp.body`), mapped, stored."""
    source = collector.source(source_id)
    if source is None:
        raise AuthenticationError("unknown webhook source")
    state.source_id = source.id
    body = decode_body(
        request.body, is_base64=request.is_base64, content_encoding=request.headers.get("content-encoding")
    )

    def verify(candidate: Source) -> Source:
        webhooks.verify_webhook(body, request.headers, candidate.webhook_secrets, now=now)
        return candidate

    source = _verified(collector, source, verify)
    calls = requests.webhook_calls(source, strict_json(body), body, request.headers)
    route = f"{requests.WEBHOOK_PREFIX}{source.id}"
    return report_reply(collector.ingest_calls(source, calls, route=route, received_at=now))


def error_reply(status: int, reason: str) -> HttpReply:
    """The JSON answer for a refused request."""
    headers = {"WWW-Authenticate": 'Basic realm="footfall"'} if status == 401 else {}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return HttpReply(status, _error_fields(status, reason), headers)


def raw_for_record(request: HttpRequest) -> bytes:
    """The request as kept in a failed-event record: the body, else the query string."""
    if request.body is None:
        return request.raw_query.encode("utf-8", "replace")
    return request.body.encode("utf-8", "surrogatepass") if not request.is_base64 else request.body.encode()


@functools.cache
def _tracker_script() -> bytes:
    return (Path(__file__).parent / "footfall.js").read_bytes()


def tracker_script() -> HttpReply:
    """`GET /v1/footfall.js`: the browser tracker (cacheable; the write key goes in the page's script tag)."""
    return HttpReply(200, _tracker_script(), {"Cache-Control": "public, max-age=300"}, "application/javascript")
