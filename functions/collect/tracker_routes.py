"""Routes for the tracking code websites already run: SDK settings, RudderStack's beacon, Snowplow, unknown routes.

Plain functions of a request, like `routes.py`: analytics.js 2.0's settings, RudderStack JS v3's source config and
beacon batches, Snowplow's pixel and `tp2` POST (on `/snowplow/<writeKey>/…`: Snowplow trackers send no write key,
but take any collector URL, path included), and the answer to a route we do not know (kept as a failed event).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from functions.collect.routes import (
    NO_CACHE,
    HttpReply,
    HttpRequest,
    RequestState,
    _authenticate,
    _error_fields,
    _json_body,
    raw_for_record,
    report_reply,
)
from shared.domain import links, snowplow, trackers
from shared.domain.errors import AuthenticationError, InvalidEventError, TrackingError
from shared.domain.failures import redact_write_keys
from shared.domain.pixel import TRANSPARENT_GIF
from shared.services import requests
from shared.services.collect import Collector

SNOWPLOW_PREFIX = "/snowplow/"
SETTINGS_CACHE = {"Cache-Control": "public, max-age=60"}
"""SDK settings change only with the source: a browser may keep them a minute."""


def collector_url(request: HttpRequest) -> str:
    """This collector's base URL as the client reached it (API Gateway says `x-forwarded-proto: https`)."""
    host = request.headers.get("host") or "YOUR-COLLECTOR"
    scheme = (request.headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    return f"{scheme}://{host}"


def segment_settings(collector: Collector, request: HttpRequest, write_key: str, *, state: RequestState) -> HttpReply:
    """`GET /v1/projects/{writeKey}/settings`: analytics.js's CDN settings, sending to this collector only."""
    _authenticate(collector, write_key, state)
    scheme, _, host = collector_url(request).partition("://")
    settings = trackers.segment_settings(write_key, api_host=f"{host}/v1", protocol=scheme)
    return HttpReply(200, settings, dict(SETTINGS_CACHE))


def rudder_source_config(collector: Collector, request: HttpRequest, *, state: RequestState) -> HttpReply:
    """`GET /sourceConfig/?writeKey=…` (RudderStack JS v3 `configUrl`): this source, no destinations."""
    params = links.unique_query(request.raw_query)
    source = _authenticate(collector, params.get("writeKey"), state)
    return HttpReply(200, trackers.rudder_source_config(source.id, source.name), dict(SETTINGS_CACHE))


def rudder_beacon(collector: Collector, request: HttpRequest, *, now: datetime, state: RequestState) -> HttpReply:
    """`POST /beacon/v1/batch?writeKey=…`: RudderStack's `navigator.sendBeacon` batches (text/plain JSON)."""
    params = links.unique_query(request.raw_query)
    source = _authenticate(collector, params.get("writeKey"), state)
    body = _json_body(request)
    calls = requests.segment_calls("batch", body)
    return report_reply(collector.ingest_calls(source, calls, route=requests.BEACON_ROUTE, received_at=now))


def snowplow_pixel(collector: Collector, request: HttpRequest, write_key: str | None, *, now: datetime) -> HttpReply:
    """`GET /snowplow/{writeKey}/i` (and a refused bare `/i`): one event in the query string; always the GIF."""
    gif = HttpReply(200, TRANSPARENT_GIF, dict(NO_CACHE), "image/gif")
    route = "/snowplow/{writeKey}/i" if write_key is not None else "/i"
    source_id = None
    try:
        if write_key is None:
            raise AuthenticationError(
                f"no write key: {trackers.route_hint('GET', '/snowplow', collector_url(request))}"
            )
        source = collector.authenticate(write_key)
        source_id = source.id
        fields = links.unique_query(request.raw_query)
        call = snowplow.segment_call(fields, user_agent=request.headers.get("user-agent"))
        report = collector.ingest(source, [call], route=route, received_at=now, failure_status=200)
    except TrackingError as exc:
        collector.record_failure(
            route=route,
            reason=str(exc),
            status=200,
            raw=request.raw_query,
            received_at=now,
            source_id=source_id,
        )
        return gif
    if report.not_stored:
        gif.status = 503
    return gif


def snowplow_post(
    collector: Collector, request: HttpRequest, write_key: str | None, *, now: datetime, state: RequestState
) -> HttpReply:
    """`POST /snowplow/{writeKey}/com.snowplowanalytics.snowplow/tp2`: a payload_data batch of events.

    An event that cannot be mapped is kept as a failed event; its neighbours are stored.
    """
    if write_key is None:
        raise AuthenticationError(f"no write key: {trackers.route_hint('POST', '/snowplow', collector_url(request))}")
    source = _authenticate(collector, write_key, state)
    route = "/snowplow/{writeKey}/com.snowplowanalytics.snowplow/tp2"
    calls: list[dict[str, Any]] = []
    for fields in snowplow.payload_events(_json_body(request)):
        try:
            calls.append(snowplow.segment_call(fields, user_agent=request.headers.get("user-agent")))
        except InvalidEventError as exc:
            collector.record_failure(
                route=route, reason=exc.reason, status=400, raw=_json_text(fields), received_at=now, source_id=source.id
            )
    if not calls:
        return HttpReply(400, _error_fields(400, "no event could be read as a Snowplow event"))
    return report_reply(collector.ingest(source, calls, route=route, received_at=now))


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def unknown_route(collector: Collector, request: HttpRequest, method: str, *, now: datetime) -> HttpReply:
    """404 with a hint; the request is kept as a failed event (write keys redacted) so the operator sees it."""
    path = redact_write_keys(request.path[:200].encode()).decode()
    hint = trackers.route_hint(method, path, collector_url(request))
    reason = f"no such route {method} {path}: {hint}"
    collector.record_failure(
        route=path,
        reason=reason,
        status=404,
        raw=raw_for_record(request),
        received_at=now,
    )
    return HttpReply(404, _error_fields(404, reason))
