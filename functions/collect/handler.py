"""HTTP API → collect service: the Segment API, the pixel, signed click redirects and signed webhooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.collect import routes, tracker_routes
from functions.observability import logger, metrics
from shared.config import Settings
from shared.domain import trackers
from shared.domain.errors import AuthenticationError, InvalidEventError, PayloadTooLargeError
from shared.ports import StorageError
from shared.services.collect import Collector, utcnow
from shared.wiring import function_store

settings = Settings.from_env()
app = APIGatewayHttpResolver(
    cors=CORSConfig(
        allow_origin=settings.cors_origins[0],
        extra_origins=list(settings.cors_origins[1:]),
        allow_headers=list(routes.CORS_ALLOW_HEADERS),
        max_age=600,
    )
)
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})
Handler = TypeVar("Handler", bound=Callable[..., Response[Any]])


def on_error(kind: type[Exception]) -> Callable[[Handler], Handler]:
    """`app.exception_handler(kind)` with its type kept (Powertools' decorator is untyped)."""
    return cast("Callable[[Handler], Handler]", app.exception_handler(kind))


@cache
def collector() -> Collector:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return Collector(function_store(settings, "collect"), source_cache_seconds=settings.source_cache_seconds)


def _request() -> routes.HttpRequest:
    event = app.current_event
    return routes.HttpRequest(
        path=event.path,
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        raw_query=event.raw_query_string or "",
        body=event.body,
        is_base64=bool(event.is_base64_encoded),
    )


def _state() -> routes.RequestState:
    state: routes.RequestState = app.context.setdefault("state", routes.RequestState())
    return state


def _response(reply: routes.HttpReply) -> Response[Any]:
    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
    return Response(reply.status, reply.content_type, body, reply.headers)


@app.post("/v1/<call>")
def segment_call(call: str) -> Response[Any]:
    if trackers.ABBREVIATED_CALLS.get(call, call) not in trackers.SEGMENT_CALLS:
        return not_found(LookupError(call))
    return _response(routes.segment_call(collector(), _request(), call, now=utcnow(), state=_state()))


@app.get("/v1/pixel/<call>")
def pixel(call: str) -> Response[Any]:
    return _response(routes.pixel(collector(), _request(), call, now=utcnow()))


@app.get("/v1/footfall.js")
def tracker() -> Response[Any]:
    return _response(routes.tracker_script())


@app.get("/v1/r")
def click() -> Response[Any]:
    return _response(routes.click(collector(), _request(), now=utcnow(), state=_state()))


@app.post("/v1/webhooks/<source_id>")
def webhook(source_id: str) -> Response[Any]:
    return _response(routes.webhook(collector(), _request(), source_id, now=utcnow(), state=_state()))


@app.get("/v1/projects/<write_key>/settings")
def segment_settings(write_key: str) -> Response[Any]:
    return _response(tracker_routes.segment_settings(collector(), _request(), write_key, state=_state()))


@app.get("/sourceConfig")
@app.get("/sourceConfig/")
def rudder_source_config() -> Response[Any]:
    return _response(tracker_routes.rudder_source_config(collector(), _request(), state=_state()))


@app.post("/beacon/v1/batch")
def rudder_beacon() -> Response[Any]:
    return _response(tracker_routes.rudder_beacon(collector(), _request(), now=utcnow(), state=_state()))


@app.get("/snowplow/<write_key>/i")
def snowplow_pixel(write_key: str) -> Response[Any]:
    return _response(tracker_routes.snowplow_pixel(collector(), _request(), write_key, now=utcnow()))


@app.get("/i")
def snowplow_pixel_without_key() -> Response[Any]:
    return _response(tracker_routes.snowplow_pixel(collector(), _request(), None, now=utcnow()))


@app.post("/snowplow/<write_key>/com.snowplowanalytics.snowplow/tp2")
def snowplow_post(write_key: str) -> Response[Any]:
    return _response(tracker_routes.snowplow_post(collector(), _request(), write_key, now=utcnow(), state=_state()))


@app.post("/com.snowplowanalytics.snowplow/tp2")
def snowplow_post_without_key() -> Response[Any]:
    return _response(tracker_routes.snowplow_post(collector(), _request(), None, now=utcnow(), state=_state()))


@on_error(NotFoundError)
def not_found(_: Exception) -> Response[Any]:
    metrics.add_metric(name="UnknownRoute", unit=MetricUnit.Count, value=1)
    method = app.current_event.http_method
    return _response(tracker_routes.unknown_route(collector(), _request(), method, now=utcnow()))


def _refuse(status: int, reason: str) -> Response[Any]:
    request = _request()
    collector().record_failure(
        route=request.path[:200],
        reason=reason,
        status=status,
        raw=routes.raw_for_record(request),
        received_at=utcnow(),
        source_id=_state().source_id,
    )
    metrics.add_metric(name=f"Refused{status}", unit=MetricUnit.Count, value=1)
    return _response(routes.error_reply(status, reason))


@on_error(AuthenticationError)
def unauthorized(exc: AuthenticationError) -> Response[Any]:
    return _refuse(401, str(exc))


@on_error(PayloadTooLargeError)
def too_large(exc: PayloadTooLargeError) -> Response[Any]:
    return _refuse(413, exc.reason)


@on_error(InvalidEventError)
def invalid(exc: InvalidEventError) -> Response[Any]:
    return _refuse(400, exc.reason)


@on_error(StorageError)
def unavailable(exc: StorageError) -> Response[Any]:
    logger.warning("storage unavailable", extra={"error": type(exc).__name__})
    metrics.add_metric(name="StorageUnavailable", unit=MetricUnit.Count, value=1)
    return _response(routes.error_reply(503, "storage is unavailable; retry the request"))


@on_error(Exception)
def bug(exc: Exception) -> Response[Any]:
    # A bug, not bad input: the request is kept in the failed-events store so it can be replayed after a fix.
    logger.exception("unhandled error")
    return _refuse(500, f"internal error ({type(exc).__name__})")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
